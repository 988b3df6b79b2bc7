"""Camera math shared by the renderer and the tests (pure numpy, no bpy).

``cameras.json`` (version 1)::

    {"version": 1, "kind": "ring" | "turntable", "width": W, "height": H,
     "frames": [{"image": "0000.jpg", "K": [[fx,0,cx],[0,fy,cy],[0,0,1]],
                 "R": [[...3x3...]], "t": [tx,ty,tz]}],
     "subject": {"bbox_min": [x,y,z], "bbox_max": [x,y,z], "points": [[x,y,z], ...]}}

R, t are world-to-camera in OpenCV axes (x right, y down, z forward): x_cam = R @ X + t and
pixel = K @ x_cam / z, with OpenCV's pixel convention (the centre of the top-left pixel is
(0, 0), so cx = W/2 - 0.5). World is the subject's frame (z up, origin at the subject's base
centre); for a turntable each pose is the camera relative to the rotated subject, so both kinds
read as a camera orbiting a static subject. (COLMAP puts pixel centres at +0.5: add 0.5 to cx, cy.)
"""

from __future__ import annotations

import numpy as np

BLENDER_TO_CV = np.diag([1.0, -1.0, -1.0])


def intrinsics(focal_mm: float, sensor_width_mm: float, width: int, height: int) -> np.ndarray:
    """K for a Blender camera with sensor_fit HORIZONTAL and square pixels."""
    f = focal_mm / sensor_width_mm * width
    return np.array([[f, 0, width / 2 - 0.5], [0, f, height / 2 - 0.5], [0, 0, 1.0]])


def world_to_camera(cam_to_world_blender: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) in OpenCV axes from a Blender camera matrix (4x4, camera looks down -Z, +Y up)."""
    m = np.asarray(cam_to_world_blender, float)
    rc, c = m[:3, :3], m[:3, 3]
    # normalise away any scale in the matrix
    rc = rc / np.linalg.norm(rc, axis=0, keepdims=True)
    r = BLENDER_TO_CV @ rc.T
    return r, -r @ c


def project(points: np.ndarray, k, r, t) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N,2) and depths (N,) of world points."""
    x = np.asarray(points, float) @ np.asarray(r).T + np.asarray(t)
    uv = x @ np.asarray(k).T
    return uv[:, :2] / uv[:, 2:3], x[:, 2]


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Blender camera-to-world 4x4 looking from ``eye`` at ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    upv = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, upv, back, eye
    return m


def orbit_eye(target, distance: float, azimuth: float, elevation: float) -> np.ndarray:
    """Eye position; azimuth 0 is in front of the subject (-y), counter-clockwise from above."""
    ce = np.cos(elevation)
    return np.asarray(target, float) + distance * np.array(
        [ce * np.sin(azimuth), -ce * np.cos(azimuth), np.sin(elevation)]
    )


def bbox_corners(bmin, bmax) -> np.ndarray:
    bmin, bmax = np.asarray(bmin), np.asarray(bmax)
    return np.array(
        [
            [x, y, z]
            for x in (bmin[0], bmax[0])
            for y in (bmin[1], bmax[1])
            for z in (bmin[2], bmax[2])
        ]
    )
