"""Edge refinement guided by the full-resolution photo.

The network sees a compressed frame; after spline upsampling its boundary is smooth but can
be a few pixels off the real edge. A fast guided filter (He and Sun, 2015: the linear
coefficients are computed on a subsampled grid and upsampled) pulls the probability map onto
the photo's edges. It is applied in a band around the boundary only; elsewhere the upsampled
probability is kept.
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, sub: int = 1):
    """Fast guided filter with a gray guide. ``guide`` and ``src`` float32 (H, W) in [0, 1]."""
    H, W = src.shape
    if sub > 1:
        hs, ws = max(1, H // sub), max(1, W // sub)
        g = cv2.resize(guide, (ws, hs), interpolation=cv2.INTER_AREA)
        p = cv2.resize(src, (ws, hs), interpolation=cv2.INTER_AREA)
        r = max(1, round(radius / sub))
    else:
        g, p, r = guide, src, radius
    mean_g = _box(g, r)
    mean_p = _box(p, r)
    cov_gp = _box(g * p, r) - mean_g * mean_p
    var_g = _box(g * g, r) - mean_g * mean_g
    a = cov_gp / (var_g + eps)
    b = mean_p - a * mean_g
    mean_a = _box(a, r)
    mean_b = _box(b, r)
    if sub > 1:
        mean_a = cv2.resize(mean_a, (W, H), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (W, H), interpolation=cv2.INTER_LINEAR)
    return mean_a * guide + mean_b


def refine_probability(
    bgr: np.ndarray, prob: np.ndarray, scale: float, eps: float = 1e-3
) -> np.ndarray:
    """Refine an upsampled probability map (H, W) with the frame (H, W, 3) as guide.

    ``scale`` is frame pixels per network pixel: the filter radius and the band width follow
    it, so the network's uncertainty band (about two network pixels) is what gets refined.
    """
    radius = max(2, round(2.0 * scale))
    sub = max(1, round(scale / 2))
    guide = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) * (1.0 / 255.0)
    q = guided_filter(guide, prob, radius, eps, sub)
    band = (prob > 0.02) & (prob < 0.98)
    band = cv2.dilate(band.astype(np.uint8), None, iterations=max(1, radius)).astype(bool)
    out = prob.copy()
    out[band] = np.clip(q[band], 0.0, 1.0)
    return out
