"""Cubic B-spline upsampling of a probability map to the frame's full resolution.

The values are those of ``scipy.ndimage.zoom(p, zoom, order=3, mode="reflect",
grid_mode=True)``: pixel centres are aligned (the half-pixel convention of image resizing),
the spline is interpolating (the input is prefiltered into B-spline coefficients) and the
border is extended by half-sample symmetry.

It is evaluated separably and fast, without scipy's per-pixel 4x4 loop:

1. prefilter the small map into spline coefficients ``C`` (scipy, microseconds);
2. for each axis, a banded interpolation matrix ``A`` (out x in, four taps a row) is built
   once per (in, out) size pair by interpolating the identity with scipy itself (so the
   boundary handling is scipy's by construction) and cached;
3. ``out = A_y @ C @ A_x.T``, both products in blocks of output rows (columns), each a
   small dense BLAS product over the handful of input rows (columns) that block touches, so
   the 24 MP result costs a few passes over memory (the horizontal product done densely
   cost as much again: 384 x 6000 mostly zero weights per input row).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

MODE = "reflect"
_BLOCK_ROWS = 128


@lru_cache(maxsize=32)
def interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix of cubic B-spline weights (no prefilter)."""
    a = np.empty((n_out, n_in), dtype=np.float32)
    basis = np.zeros(n_in, dtype=np.float64)
    for j in range(n_in):  # interpolate each basis vector: column j of the operator
        basis[j] = 1.0
        a[:, j] = ndimage.zoom(
            basis, n_out / n_in, order=3, mode=MODE, grid_mode=True, prefilter=False
        )
        basis[j] = 0.0
    a.setflags(write=False)
    return a


@lru_cache(maxsize=32)
def _row_blocks(n_in: int, n_out: int) -> tuple:
    """For each block of output rows, the range of input rows with non-zero weights."""
    a = interpolation_matrix(n_in, n_out)
    blocks = []
    for r0 in range(0, n_out, _BLOCK_ROWS):
        r1 = min(n_out, r0 + _BLOCK_ROWS)
        cols = np.flatnonzero(np.any(a[r0:r1] != 0, axis=0))
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        blocks.append((r0, r1, c0, c1, np.ascontiguousarray(a[r0:r1, c0:c1])))
    return tuple(blocks)


def spline_coefficients(p: np.ndarray) -> np.ndarray:
    """B-spline (order 3) coefficients of ``p`` with the module's boundary mode."""
    return ndimage.spline_filter(np.asarray(p, dtype=np.float64), order=3, mode=MODE).astype(
        np.float32
    )


def spline_upsample(
    p: np.ndarray, out_shape: tuple[int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """Resize a 2-D map to ``out_shape`` (H, W) with order-3 spline interpolation.

    Returns float32. Equal to ``scipy.ndimage.zoom(p, (H/h, W/w), order=3, mode="reflect",
    grid_mode=True)`` within float32 rounding, at a fraction of its cost.
    """
    p = np.asarray(p)
    if p.ndim != 2:
        raise ValueError(f"spline_upsample expects a 2-D map, got shape {p.shape}")
    h, w = p.shape
    H, W = (int(s) for s in out_shape)
    if H < 1 or W < 1 or h < 1 or w < 1:
        raise ValueError(f"cannot resize {p.shape} to {out_shape}")
    coef = spline_coefficients(p)
    t = np.empty((h, W), dtype=np.float32)  # horizontal pass, in column blocks: coef @ A_x.T
    for r0, r1, c0, c1, a in _row_blocks(w, W):
        np.matmul(coef[:, c0:c1], a.T, out=t[:, r0:r1])
    if out is None:
        out = np.empty((H, W), dtype=np.float32)
    for r0, r1, c0, c1, a in _row_blocks(h, H):
        np.matmul(a, t[c0:c1], out=out[r0:r1])
    return out


@lru_cache(maxsize=32)
def _support(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output index, the first and one-past-last input index with non-zero weight."""
    nz = interpolation_matrix(n_in, n_out) != 0
    lo = nz.argmax(axis=1)
    hi = n_in - nz[:, ::-1].argmax(axis=1)
    return lo, hi


class SplineField:
    """The spline-upsampled map of ``p`` at ``out_shape``, evaluated on demand for regions.

    ``field.region(y0, y1, x0, x1)`` equals ``spline_upsample(p, out_shape)[y0:y1, x0:x1]``
    but costs only the region: a frame's boundary band is a small part of a 24 MP frame.
    """

    def __init__(self, p: np.ndarray, out_shape: tuple[int, int]):
        p = np.asarray(p)
        if p.ndim != 2:
            raise ValueError(f"SplineField expects a 2-D map, got shape {p.shape}")
        self.shape = (int(out_shape[0]), int(out_shape[1]))
        h, w = p.shape
        self.coef = spline_coefficients(p)
        self.ay = interpolation_matrix(h, self.shape[0])
        self.ax = interpolation_matrix(w, self.shape[1])
        self.sy = _support(h, self.shape[0])
        self.sx = _support(w, self.shape[1])

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        ya, yb = int(self.sy[0][y0:y1].min()), int(self.sy[1][y0:y1].max())
        xa, xb = int(self.sx[0][x0:x1].min()), int(self.sx[1][x0:x1].max())
        c = self.coef[ya:yb, xa:xb]
        return self.ay[y0:y1, ya:yb] @ (c @ self.ax[x0:x1, xa:xb].T)
