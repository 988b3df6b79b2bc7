"""Geometry of masks and pixels shared by segmentation and photogrammetry.

A mask resized to another size, bilinear samples of a float image, a mask's signed distance
to its edge, and the intrinsics of a scaled image (OpenCV's pixel convention throughout: the
centre of the top-left pixel is (0, 0)). numpy and OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask at ``size`` (w, h): area-averaged, then cut at half."""
    if mask.shape[::-1] == tuple(size):
        return np.asarray(mask, bool)
    return cv2.resize(np.asarray(mask, np.float32), size, interpolation=cv2.INTER_AREA) > 0.5


def sample_bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples of a float32 image at pixel positions ``uv`` (N, 2)."""
    n = len(uv)
    cols = 1024
    rows = -(-n // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n], my[:n] = uv[:, 0], uv[:, 1]
    out = cv2.remap(
        img,
        mx.reshape(rows, cols),
        my.reshape(rows, cols),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(-1)[:n]


def silhouette_sdf(mask: np.ndarray) -> np.ndarray:
    """Signed distance (pixels) to the silhouette's edge: > 0 inside, < 0 outside."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if not m.any():
        return np.full(m.shape, -1e4, np.float32)
    if m.all():
        return np.full(m.shape, 1e4, np.float32)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 5)
    # the edge lies half a pixel outside the last inside pixel
    return np.where(m > 0, inside - 0.5, 0.5 - outside).astype(np.float32)


def scaled_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:  # noqa: N803
    """``K`` for the image scaled by (sx, sy), OpenCV's pixel centres kept at pixel centres."""
    k = np.asarray(K, float).copy()
    k[0] *= sx
    k[1] *= sy
    k[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return k
