"""Calibrated views for the visual hull: a camera with its mask and frame, projection with
OpenCV's distortion model, and the views of a reconstruction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry import resize_mask, scaled_intrinsics


@dataclass
class View:
    """One calibrated view: OpenCV intrinsics and pixel convention, world-to-camera (R, t)."""

    K: np.ndarray  # noqa: N815  (3, 3)
    R: np.ndarray  # noqa: N815  (3, 3)
    t: np.ndarray  # (3,)
    width: int
    height: int
    mask: np.ndarray | None = None  # bool (H, W), True = subject
    dist: np.ndarray = field(default_factory=lambda: np.zeros(4))  # OpenCV k1, k2, p1, p2
    image: Path | None = None  # the frame, for vertex colours
    name: str = ""

    @property
    def center(self) -> np.ndarray:
        return -np.asarray(self.R).T @ np.asarray(self.t)


def project(points: np.ndarray, view: View) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) (OpenCV convention, distortion applied) and depths (N,) of points."""
    x = np.asarray(points, np.float64) @ np.asarray(view.R, np.float64).T + view.t
    z = x[:, 2]
    zs = np.where(np.abs(z) < 1e-12, 1e-12, z)
    a, b = x[:, 0] / zs, x[:, 1] / zs
    k1, k2, p1, p2 = (float(v) for v in view.dist)
    if k1 or k2 or p1 or p2:
        r2 = a * a + b * b
        radial = 1 + k1 * r2 + k2 * r2 * r2
        a, b = (
            a * radial + 2 * p1 * a * b + p2 * (r2 + 2 * a * a),
            b * radial + p1 * (r2 + 2 * b * b) + 2 * p2 * a * b,
        )
    K = view.K  # noqa: N806
    uv = np.stack([K[0, 0] * a + K[0, 1] * b + K[0, 2], K[1, 1] * b + K[1, 2]], axis=1)
    return uv, z


def scaled_view(view: View, long_side: int) -> View:
    """``view`` (and its mask) at most ``long_side`` pixels on the long side."""
    s = min(1.0, long_side / max(view.width, view.height))
    if s >= 1.0:
        return view
    w, h = max(1, round(view.width * s)), max(1, round(view.height * s))
    k = scaled_intrinsics(view.K, w / view.width, h / view.height)
    mask = resize_mask(view.mask, (w, h)) if view.mask is not None else None
    return View(k, view.R, view.t, w, h, mask, view.dist, view.image, view.name)


def camera_focus(centers: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """The point nearest (least squares) to every camera's optical axis (centre, direction)."""
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for c, d in zip(centers, dirs):
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ c
    return np.linalg.lstsq(a, b, rcond=None)[0]


def views_from_result(result, with_images: bool = True) -> list[View]:
    """One :class:`View` per registered frame of a ``ReconResult`` (masks from its workspace:
    the hull's own, ``hull_masks/``, where the plate made them)."""
    from ..io import read_label

    views = []
    for p in result.poses:
        cam = result.camera(p)
        mpath = result.hull_mask_path(p.name)
        mask = read_label(mpath) if mpath is not None and mpath.exists() else None
        img = result.images_dir / p.name
        views.append(
            View(
                cam.K,
                np.asarray(p.R),
                np.asarray(p.t),
                cam.width,
                cam.height,
                mask,
                cam.dist,
                img if with_images and img.exists() else None,
                p.name,
            )
        )
    return views
