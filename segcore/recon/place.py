"""A reconstruction placed in a Blender scene: upright, centred on the garment, to scale, and
Blender's camera data for its intrinsics. numpy only (the add-on calls it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .result import Intrinsics, Pose, ReconResult, ReconstructionError


@dataclass
class Placement:
    """World (SfM) -> scene: ``x_scene = scale * rotation @ (x - center)``, z up."""

    scale: float
    rotation: np.ndarray  # (3, 3) proper rotation
    center: np.ndarray  # (3,) SfM point that lands on the scene origin

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(points, float) - self.center) @ self.rotation.T

    def camera_matrix(self, pose: Pose) -> np.ndarray:
        """Blender camera-to-world 4x4 (camera looks down -Z, +Y up) of a pose, unscaled."""
        m = np.eye(4)
        m[:3, :3] = self.rotation @ np.asarray(pose.R).T @ np.diag([1.0, -1.0, -1.0])
        m[:3, 3] = self.apply(pose.center[None])[0]
        return m


def up_vector(poses: list[Pose]) -> np.ndarray:
    """The scene's up: the normal of the plane the cameras orbit in, signed by their mean
    "up" (-y of the camera); the mean "up" alone when the centres are not spread in a plane.
    """
    ups = np.array([-np.asarray(p.R)[1] for p in poses])
    mean_up = ups.mean(axis=0)
    mean_up /= max(np.linalg.norm(mean_up), 1e-12)
    if len(poses) >= 3:
        c = np.array([p.center for p in poses])
        _, s, vt = np.linalg.svd(c - c.mean(axis=0))
        if s[1] > 1e-9 and s[2] < 0.35 * s[1]:  # spread in a plane: use its normal
            n = vt[2]
            return n if n @ mean_up >= 0 else -n
    return mean_up


def placement(result: ReconResult, vertices: np.ndarray | None = None, height: float = 1.7):
    """Upright (z = up from the cameras), centred on the garment (x, y) with its lowest point
    at z = 0, scaled to ``height`` units tall, the first camera on the -y side (front view).
    The garment is the hull's ``vertices`` if given, else the sparse points (2nd-98th
    percentiles).
    """
    if not result.poses:
        raise ReconstructionError("no registered frames to place in the scene")
    up = up_vector(result.poses)
    pts = np.asarray(vertices if vertices is not None else result.points, float).reshape(-1, 3)
    if len(pts) == 0:
        pts = np.array([p.center for p in result.poses])
    # the first camera's direction from the garment, flattened, becomes -y
    mid = np.median(pts, axis=0)
    toward = result.poses[0].center - mid
    toward -= (toward @ up) * up
    if np.linalg.norm(toward) < 1e-12:
        toward = np.cross(up, [1.0, 0, 0]) if abs(up[0]) < 0.9 else np.cross(up, [0, 1.0, 0])
    minus_y = toward / np.linalg.norm(toward)
    x_axis = np.cross(-minus_y, up)  # right-handed: x = y cross z
    rot = np.stack([x_axis / np.linalg.norm(x_axis), -minus_y, up])  # rows: scene axes
    local = pts @ rot.T
    lo_q, hi_q = (0.0, 100.0) if vertices is not None else (2.0, 98.0)
    lo, hi = np.percentile(local, lo_q, axis=0), np.percentile(local, hi_q, axis=0)
    tall = max(float(hi[2] - lo[2]), 1e-9)
    centre_local = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return Placement(height / tall, rot, rot.T @ centre_local)


def blender_camera(cam: Intrinsics, sensor_mm: float = 36.0) -> dict:
    """Blender camera data for ``cam``: sensor fit on the long side, lens from fx (fy for a
    portrait frame; square pixels assumed), shift from the principal point (in units of the
    long side), and the render size.
    """
    w, h = int(cam.width), int(cam.height)
    long_side = max(w, h)
    fit = "HORIZONTAL" if w >= h else "VERTICAL"
    f = cam.fx if fit == "HORIZONTAL" else cam.fy
    cx, cy = cam.cx + 0.5, cam.cy + 0.5  # image-corner origin, as Blender's frame
    return {
        "sensor_fit": fit,
        "sensor_width": sensor_mm,
        "sensor_height": sensor_mm,
        "lens": float(f) * sensor_mm / long_side,
        "shift_x": float((w / 2 - cx) / long_side),
        "shift_y": float((cy - h / 2) / long_side),
        "resolution_x": w,
        "resolution_y": h,
    }
