"""nerfstudio's ``transforms.json`` from a reconstruction (what ``ns-process-data`` writes).

Convention (nerfstudio ``nerfstudio/process_data/colmap_utils.py``, ``colmap_to_json`` and
``parse_colmap_camera_params``; docs.nerf.studio › Quickstart › Data conventions):

- intrinsics ``fl_x, fl_y, cx, cy, w, h`` with ``camera_model`` "OPENCV" and ``k1, k2, p1,
  p2``, at the top level when every frame shares one camera, else per frame. ``cx, cy`` are
  COLMAP's values as they are: nerfstudio shoots the ray of pixel (i, j) through (i + 0.5,
  j + 0.5), i.e. the top-left pixel's centre is at (0.5, 0.5) as in COLMAP (OpenCV's
  convention, which :class:`segcore.recon.Intrinsics` uses, is 0.5 smaller).
- per frame ``file_path`` (relative to the json, ``images/<name>``), ``transform_matrix``:
  camera-to-world 4x4 in OpenGL/Blender camera axes (x right, y up, z back: COLMAP's
  c2w with columns 1 and 2 negated), and ``mask_path`` (relative, read by
  ``nerfstudio.data.utils.data_utils.get_image_mask_tensor_from_path`` as ``bool(pixel)``:
  0 = ignore, non-zero = use; same size as the image).
- the world is re-oriented as ``ns-process-data`` does by default: rows (x, z, -y) of
  COLMAP's world, recorded as ``applied_transform`` (3x4) so tools can undo it;
  ``ply_file_path`` names the sparse points in that same world.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes
from .ply import write_ply_points
from .result import Intrinsics, ReconResult

# ns-process-data's default world change: x' = x, y' = z, z' = -y (colmap_to_json).
APPLIED_TRANSFORM = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]])
CV_TO_GL = np.diag([1.0, -1.0, -1.0])


def c2w_opengl(R, t, applied: np.ndarray | None = APPLIED_TRANSFORM) -> np.ndarray:  # noqa: N803
    """World-to-camera (R, t) in OpenCV axes -> nerfstudio's camera-to-world 4x4 (OpenGL)."""
    R, t = np.asarray(R, float), np.asarray(t, float)  # noqa: N806
    c2w = np.eye(4)
    c2w[:3, :3] = R.T @ CV_TO_GL  # == c2w[0:3, 1:3] *= -1
    c2w[:3, 3] = -R.T @ t
    if applied is not None:
        a = np.eye(4)
        a[:3] = applied
        c2w = a @ c2w
    return c2w


def w2c_opencv(c2w, applied: np.ndarray | None = APPLIED_TRANSFORM):
    """The inverse of :func:`c2w_opengl`: (R, t) world-to-camera in OpenCV axes."""
    m = np.asarray(c2w, float)
    if applied is not None:
        a = np.eye(4)
        a[:3] = applied
        m = np.linalg.inv(a) @ m
    rc = m[:3, :3] @ CV_TO_GL
    R = rc.T  # noqa: N806
    return R, -R @ m[:3, 3]


def camera_params(cam: Intrinsics) -> dict:
    """nerfstudio's intrinsics block for one camera (COLMAP pixel convention)."""
    return {
        "w": int(cam.width),
        "h": int(cam.height),
        "fl_x": float(cam.fx),
        "fl_y": float(cam.fy),
        "cx": float(cam.cx + 0.5),
        "cy": float(cam.cy + 0.5),
        "k1": float(cam.k1),
        "k2": float(cam.k2),
        "p1": float(cam.p1),
        "p2": float(cam.p2),
        "camera_model": "OPENCV",
    }


def transforms(
    result: ReconResult,
    images: str = "images",
    masks: str | None = "masks",
    ply: str | None = "sparse_pc.ply",
    applied: np.ndarray | None = APPLIED_TRANSFORM,
) -> dict:
    """The ``transforms.json`` dictionary for ``result`` (paths relative to the workspace)."""
    single = len({p.camera_id for p in result.poses}) <= 1
    out: dict = {}
    if single and result.poses:
        out.update(camera_params(result.camera(result.poses[0])))
    frames = []
    for p in result.poses:
        f = {
            "file_path": f"{images}/{p.name}",
            "transform_matrix": c2w_opengl(p.R, p.t, applied).tolist(),
        }
        if masks is not None and result.masks_dir is not None:
            f["mask_path"] = f"{masks}/{p.name}.png"  # COLMAP's naming, reused as it is
        if not single:
            f.update(camera_params(result.camera(p)))
        frames.append(f)
    out["frames"] = frames
    if applied is not None:
        out["applied_transform"] = np.asarray(applied).tolist()
    if ply is not None:
        out["ply_file_path"] = ply
    return out


def write_transforms(result: ReconResult, workspace: Path | None = None) -> Path:
    """Write ``transforms.json`` (and ``sparse_pc.ply``) into the workspace."""
    ws = Path(workspace or result.workspace)
    data = transforms(result)
    pts = np.asarray(result.points, float).reshape(-1, 3)
    write_ply_points(ws / "sparse_pc.ply", pts @ APPLIED_TRANSFORM[:, :3].T, result.colors)
    path = ws / "transforms.json"
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return path
