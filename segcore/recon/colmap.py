"""pycolmap at the edges: importing it, its models as :class:`ReconResult`, the final
distortion refinement, and writing a model to the workspace."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import optional_import
from .result import Intrinsics, Pose, ReconResult, ReconstructionError

log = logging.getLogger(__name__)


MAX_K1 = 0.5  # a refined |k1| beyond this is a runaway, not a lens


def import_pycolmap():
    """pycolmap, with its (glog) console chatter limited to errors unless we log DEBUG."""
    # OpenCV first: imported after pycolmap, cv2's PNG encoder binds pycolmap's bundled zlib
    # and crashes in deflateEnd (pycolmap 4.2.1 + opencv-python-headless 4.11 wheels).
    import cv2  # noqa: F401

    pycolmap = optional_import("pycolmap", "pycolmap")
    if not log.isEnabledFor(logging.DEBUG):
        # glog: 0 info, 1 warning, 2 error, 3 fatal. Its errors too ("Failed to create any
        # sparse model") stay off the terminal: every failure is said in segcore's words
        pycolmap.logging.minloglevel = 3
    return pycolmap


def from_reconstruction(rec, workspace: Path, frames: list[str], masked: bool) -> ReconResult:
    cams = {}
    for cid, cam in rec.cameras.items():
        cams[int(cid)] = intrinsics_from_colmap(
            int(cid), cam.model.name, cam.width, cam.height, list(cam.params)
        )
    order = {n: i for i, n in enumerate(frames)}
    poses = []
    for img in rec.images.values():
        if not img.has_pose:
            continue
        m = img.cam_from_world().matrix()
        poses.append(Pose(img.name, int(img.camera_id), np.array(m[:, :3]), np.array(m[:, 3])))
    poses.sort(key=lambda p: order.get(p.name, len(order)))
    ids = list(rec.points3D)
    pts = np.array([rec.points3D[i].xyz for i in ids], float).reshape(-1, 3)
    cols = np.array([rec.points3D[i].color for i in ids], np.uint8).reshape(-1, 3)
    err = float(rec.compute_mean_reprojection_error()) if ids else float("nan")
    return ReconResult(workspace, cams, poses, pts, cols, list(frames), err, masked=masked)


def intrinsics_from_colmap(cid: int, model: str, width: int, height: int, params) -> Intrinsics:
    """COLMAP camera parameters -> :class:`Intrinsics` (principal point shifted by -0.5)."""
    p = [float(x) for x in params]
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = p
        fx = fy = f
        d = [0.0] * 4
    elif model == "PINHOLE":
        fx, fy, cx, cy = p
        d = [0.0] * 4
    elif model == "SIMPLE_RADIAL":
        f, cx, cy, k1 = p
        fx = fy = f
        d = [k1, 0.0, 0.0, 0.0]
    elif model == "RADIAL":
        f, cx, cy, k1, k2 = p
        fx = fy = f
        d = [k1, k2, 0.0, 0.0]
    elif model == "OPENCV":
        fx, fy, cx, cy, *d = p
    else:
        raise ReconstructionError(
            f"camera model {model} is not supported here; use SIMPLE_RADIAL, RADIAL or OPENCV"
        )
    return Intrinsics(cid, model, int(width), int(height), fx, fy, cx - 0.5, cy - 0.5, *d)


def refine_distortion(pycolmap, rec, refine_focal: bool = True):
    """A final bundle adjustment that also refines the radial distortion: its result is
    returned when it lowers the reprojection error and k1 stays plausible, else ``rec``.
    A known focal length (``refine_focal=False``) stays fixed here too, as in the mapping.
    """
    if rec.num_points3D() < 200:
        return rec
    before = rec.compute_mean_reprojection_error()
    trial = pycolmap.Reconstruction(rec)
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_extra_params = True
    opts.refine_focal_length = bool(refine_focal)
    opts.print_summary = False
    try:
        global_bundle_adjustment(pycolmap, trial, opts)
    except Exception as exc:  # pragma: no cover - Ceres failures are rare
        log.info("distortion refinement failed (%s); keeping k1 = 0", exc)
        return rec
    ks = [c.params[3] for c in trial.cameras.values() if c.model.name == "SIMPLE_RADIAL"]
    after = trial.compute_mean_reprojection_error()
    if ks and max(abs(k) for k in ks) < MAX_K1 and after < before:
        log.info("refined k1 = %s, reprojection error %.3f -> %.3f px", ks, before, after)
        return trial
    return rec


def global_bundle_adjustment(pycolmap, rec, opts) -> None:
    """``pycolmap.bundle_adjustment`` (its controller's steps, the same result) without its
    option manager, which resets glog's level to INFO and so prints its heading and timer
    whatever :func:`import_pycolmap` set."""
    pycolmap.ObservationManager(rec).filter_observations_with_negative_depth()
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        config.add_image(image_id)
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    pycolmap.create_default_bundle_adjuster(opts, config, rec).solve()
    rec.update_point_3d_errors()


def write_model(rec, sparse: Path) -> None:
    """Write the model to ``sparse`` through a temporary folder and a rename."""
    tmp = sparse.with_name(f".{sparse.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rec.write(tmp)
    shutil.rmtree(sparse, ignore_errors=True)
    os.replace(tmp, sparse)
