"""Silhouette coherence on a coarse grid: the masks at a reduced size, and how well the hull
carved by a circular-motion hypothesis reprojects onto them (the solver's coarse start)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from ...geometry import resize_mask, scaled_intrinsics
from .circular import axis_direction, circular_poses


def resized_masks(masks, K, long_side: int):
    """The masks with ``long_side`` pixels along their long side (area-averaged, then cut at
    half), the intrinsics to match (OpenCV's pixel centres) and the size (w, h)."""
    H, W = masks[0].shape
    s = long_side / max(H, W)
    size = (max(1, round(W * s)), max(1, round(H * s)))
    return [resize_mask(m, size) for m in masks], scaled_intrinsics(K, s, s), size


class Silhouettes:
    """The masks at a reduced size, and the coherence of a circular-motion hypothesis."""

    def __init__(self, masks, K, long_side: int = 160, grid: int = 48, misses: int = 0, ignore=()):
        small, self.K, _ = resized_masks(masks, K, long_side)
        self.m = np.array(small)
        self.grid = grid
        self.misses = misses  # a voxel survives outside this many masks (robustness)
        self.ignore = set(ignore)  # views that neither carve nor count (suspect masks)
        h, w = self.m.shape[1:]
        ys, xs = np.nonzero(self.m.any(axis=0))
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        # the subject's extent on the plane z = 1 of the first camera
        self.x_range = ((xs.min() - cx) / fx, (xs.max() - cx) / fx) if len(xs) else (-1, 1)
        self.y_range = ((ys.min() - cy) / fy, (ys.max() - cy) / fy) if len(ys) else (-1, 1)
        # where the axis crosses the image, to start with: the mean of the masks' centroids
        # (the subject turns about the axis, so its centroid swings about it; the middle of
        # the masks' joint extent is pulled by whichever side reaches out furthest, an arm
        # held forward: 24 px off at 1280x960 on a body figure, and no step fits from there)
        cents = [
            np.nonzero(m)[1].mean()
            for i, m in enumerate(self.m)
            if i not in self.ignore and m.any()
        ]
        self.x_centre = float((np.mean(cents) - cx) / fx) if cents else float(np.mean(self.x_range))
        self.hw = (h, w)
        # the voxels of a unit cylinder (the grid's cells within radius 1, heights 0..1)
        lin = (np.arange(grid) + 0.5) / grid
        A, B, C = np.meshgrid(lin * 2 - 1, lin * 2 - 1, lin, indexing="ij")
        inside_cyl = A**2 + B**2 <= 1
        self.cylinder = (A[inside_cyl], B[inside_cyl], C[inside_cyl])

    def coherence(self, params) -> float:
        """Mean IoU of the hull's reprojections with the masks (0 when the hull vanishes),
        over the views not ignored."""
        ious = self.per_view(params)
        keep = [i for i in range(len(ious)) if i not in self.ignore]
        return float(np.mean(ious[keep])) if keep else 0.0

    def per_view(self, params) -> np.ndarray:
        """IoU per view of the hull's reprojection with its mask (zeros when the hull
        vanishes). With ``misses`` > 0 one view's bad mask neither carves the hull away nor
        is hidden by it: its own IoU drops, the others' do not."""
        n = len(self.m)
        h, w = self.hw
        e, r, u, v, _ = params
        rs, ts = circular_poses(n, params)
        a = axis_direction(e, r)
        c = np.array([u, v, 1.0])
        rad = 1.3 * max(abs(self.x_range[0] - u), abs(self.x_range[1] - u))
        h0, h1 = 1.2 * self.y_range[0], 1.2 * self.y_range[1]
        e1 = np.cross(a, [0.0, 0.0, 1.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(a, e1)
        g = self.grid
        A, B, C = self.cylinder
        heights = (h0 + (h1 - h0) * C) - v
        V = c + rad * (A[:, None] * e1 + B[:, None] * e2)
        V = V - heights[:, None] * a
        K = self.K

        def project(i, X):
            """The pixels of points ``X`` in view ``i``, and which of them it sees."""
            xc = X @ rs[i].T + ts[i]
            z = np.maximum(xc[:, 2], 1e-6)
            px = np.rint(K[0, 0] * xc[:, 0] / z + K[0, 2]).astype(np.int64)
            py = np.rint(K[1, 1] * xc[:, 1] / z + K[1, 2]).astype(np.int64)
            ok = (xc[:, 2] > 0.05) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
            return px, py, ok

        # carve: a voxel outside more than ``misses`` masks is gone, and the views after
        # that need not look at it (the hull is a small part of the cylinder)
        alive = np.arange(len(V))
        outside = np.zeros(len(V), np.int32)
        for i in range(n):
            if i in self.ignore:
                continue
            px, py, ok = project(i, V[alive])
            inside = np.zeros(len(alive), bool)
            inside[ok] = self.m[i][py[ok], px[ok]]
            outside[alive] += ~inside
            alive = alive[outside[alive] <= self.misses]
        if len(alive) < 20:
            return np.zeros(n)
        k = max(1, int(np.ceil(2 * rad / g * self.K[0, 0])))
        kernel = np.ones((k, k), np.uint8)
        ious = []
        for i in range(n):
            px, py, sel = project(i, V[alive])
            img = np.zeros((h, w), np.uint8)
            img[py[sel], px[sel]] = 1
            sil = cv2.dilate(img, kernel) > 0
            union = (sil | self.m[i]).sum()
            ious.append((sil & self.m[i]).sum() / union if union else 1.0)
        return np.array(ious, float)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> ThreadPoolExecutor:
    """Threads for the solver's independent pieces of work (views, hypotheses): one per core
    (at most four), made once. numpy and OpenCV release the GIL, so the cores share them."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="turntable"
            )
        return _POOL
