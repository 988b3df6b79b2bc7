"""Edge refinement guided by the full-resolution photo.

The network sees a compressed frame; after spline upsampling its boundary is smooth but can
be a few pixels off the photo's real edge. A colour guided filter (He, Sun and Tang; the fast
variant computes the linear coefficients on a subsampled grid and upsamples them) pulls the
probability onto the photo's edges. It only runs on tiles of the boundary band: elsewhere the
mask is already decided, which keeps a 24 MP frame cheap.
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, sub: int = 1):
    """Fast guided filter. ``guide`` float32 (H, W, 3) or (H, W) in [0, 1], ``src`` (H, W).

    Returns float32 (H, W): locally ``a . guide + b``, the least-squares fit of ``src``.
    """
    H, W = src.shape
    if sub > 1:
        hs, ws = max(1, H // sub), max(1, W // sub)
        g = cv2.resize(guide, (ws, hs), interpolation=cv2.INTER_AREA)
        p = cv2.resize(src, (ws, hs), interpolation=cv2.INTER_AREA)
        r = max(1, round(radius / sub))
    else:
        g, p, r = guide, src, radius
    if g.ndim == 2:
        mg, mp = _box(g, r), _box(p, r)
        a = (_box(g * p, r) - mg * mp) / (_box(g * g, r) - mg * mg + eps)
        b = mp - a * mg
        ma, mb = _box(a, r), _box(b, r)
        if sub > 1:
            ma = cv2.resize(ma, (W, H), interpolation=cv2.INTER_LINEAR)
            mb = cv2.resize(mb, (W, H), interpolation=cv2.INTER_LINEAR)
        return ma * guide + mb
    mp = _box(p, r)
    gp = cv2.split(np.ascontiguousarray(g, dtype=np.float32))
    mg = [_box(c, r) for c in gp]
    cov_gp = [_box(c * p, r) - m * mp for c, m in zip(gp, mg)]
    a = _solve3_planes(gp, mg, cov_gp, r, eps)
    b = mp - sum(ak * mk for ak, mk in zip(a, mg))
    ma, mb = cv2.merge([_box(ak, r) for ak in a]), _box(b, r)
    if sub > 1:
        ma = cv2.resize(ma, (W, H), interpolation=cv2.INTER_LINEAR)
        mb = cv2.resize(mb, (W, H), interpolation=cv2.INTER_LINEAR)
    return (ma * guide).sum(axis=2) + mb


def refine_params(scale: float, radius: float = 4.0) -> tuple[int, int]:
    """(radius, subsampling) in frame pixels for ``scale`` frame pixels per network pixel and
    a window ``radius`` in network pixels.

    The default window spans four network pixels each side: wide enough to see both the
    subject's and the background's colours where the upsampled boundary lies within the
    network's uncertainty band, small enough that the window holds few colours, which the
    filter's linear colour model needs. ``python -m training.tune_refine`` with model v4 at
    camera resolution (16 unseen frames at 1280x960): F1 0.9784 / BF@2px 0.8014 at radius 4
    against 0.9764 / 0.7822 at 8. Wider windows shrink dark figures on dark backgrounds and
    chrome bases that mirror the room (mask IoU 0.927 -> 0.957 and 0.918 -> 0.941 on two
    benchmark turntables at 768x1024). Models v1 to v3, blurrier, preferred 8. Coefficients
    are computed at twice the network's resolution, which is fine enough for them (they vary
    slowly) and cheap at 24 MP; the box filters cost the same at any radius.
    """
    return max(2, round(radius * scale)), max(1, round(scale / 2))


class GuidedCoefficients:
    """Colour guided filter coefficients for a whole frame, computed on a subsampled grid.

    ``apply(bgr_region, y0, x0)`` evaluates the filter output ``a . I + b`` on a
    full-resolution region, interpolating the coefficients bilinearly. Only the boundary
    band's tiles ever pay the full-resolution cost.

    ``guide_small`` and ``prob_small`` may be a window of the ``grid_hw`` grid at ``origin``
    (:func:`band_window`): the coefficients are then exact inside it, away from its edges.

    Everything runs on contiguous single-channel planes with in-place arithmetic (a 640x480
    grid costs about 20 ms of CPU instead of 50 with interleaved arrays and temporaries), and
    ``apply`` interpolates ``(a, b)`` as one four-channel map that meets the region's pixels
    as BGRA (alpha 255 carries ``b``), so a region costs a warp, a multiply and a channel sum.
    """

    def __init__(
        self,
        guide_small: np.ndarray,
        prob_small: np.ndarray,
        frame_hw,
        radius_small,
        eps: float = 1e-4,
        origin: tuple[int, int] = (0, 0),
        grid_hw: tuple[int, int] | None = None,
    ):
        hs, ws = prob_small.shape if grid_hw is None else grid_hw
        H, W = frame_hw
        self.sy, self.sx = H / hs, W / ws
        self.oy, self.ox = origin  # a window of the grid (see band_window): its top-left
        r = max(1, int(radius_small))
        p = np.ascontiguousarray(prob_small, dtype=np.float32)
        planes = cv2.split(guide_small)
        g = [c.astype(np.float32) * np.float32(1.0 / 255.0) for c in planes]
        mp = _box(p, r)
        mg = [_box(c, r) for c in g]
        cov_gp = [_box(c * p, r) for c in g]
        for c, m in zip(cov_gp, mg):
            c -= m * mp
        a = _solve3_planes(g, mg, cov_gp, r, eps)
        b = mp
        for ak, mk in zip(a, mg):
            b -= ak * mk  # b = mean(p) - a . mean(I)
        # (a, b) / 255 as one 4-channel map: against BGRA uint8 pixels (A = 255) it gives a.I+b
        k = np.float32(1.0 / 255.0)
        self.ab = cv2.merge([_box(c, r) * k for c in (*a, b)])
        # local background colour (for defringing): mean of the guide where p is low
        wb = np.clip(1.0 - 2.0 * p, 0.0, 1.0)
        rb = max(2, r // 2)  # about four network pixels
        norm = 1.0 / (_box(wb, rb) + np.float32(1e-3))
        self.back = cv2.merge([_box(c.astype(np.float32) * wb, rb) * norm for c in planes])

    def _warp(self, grid: np.ndarray, h: int, w: int, y0: int, x0: int) -> np.ndarray:
        m = np.array(
            [
                [1 / self.sx, 0, (x0 + 0.5) / self.sx - 0.5 - self.ox],
                [0, 1 / self.sy, (y0 + 0.5) / self.sy - 0.5 - self.oy],
            ],
            np.float64,
        )
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(grid, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)

    def apply(
        self, bgr: np.ndarray, y0: int, x0: int, background: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(filtered probability (h, w), local background colour (h, w, 3) or None)."""
        h, w = bgr.shape[:2]
        ab = self._warp(self.ab, h, w, y0, x0)
        prod = cv2.multiply(ab, cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), dtype=cv2.CV_32F)
        q = cv2.transform(prod, _SUM4)
        np.clip(q, 0.0, 1.0, out=q)
        return q, (self.background(h, w, y0, x0) if background else None)

    def background(self, h: int, w: int, y0: int, x0: int) -> np.ndarray:
        """The local background colour (h, w, 3) of the region at (``y0``, ``x0``)."""
        return self._warp(self.back, h, w, y0, x0)


_SUM4 = np.ones((1, 4), np.float32)


def band_window(band: np.ndarray, grid_hw: tuple[int, int], radius_small: int):
    """(y0, y1, x0, x1): the window of a ``grid_hw`` coefficient grid that the boundary
    ``band`` (a bool map at any coarser scale) needs, so the filter runs there only.

    A coefficient depends on the grid within two box radii (the box of the box), and a
    frame pixel on the coefficients within one grid pixel; the window adds both to the
    band's bounding box. A garment seldom fills the frame: this is a third of it, typically.
    """
    hs, ws = grid_hw
    h, w = band.shape
    rows, cols = np.flatnonzero(band.any(axis=1)), np.flatnonzero(band.any(axis=0))
    m = 2 * max(2, int(radius_small)) + 3
    y0 = max(0, int(rows[0] * hs / h) - m)
    y1 = min(hs, int(np.ceil((rows[-1] + 1) * hs / h)) + m)
    x0 = max(0, int(cols[0] * ws / w) - m)
    x1 = min(ws, int(np.ceil((cols[-1] + 1) * ws / w)) + m)
    return y0, y1, x0, x1


def _solve3_planes(g, mg, cov_gp, r, eps):
    """Per-pixel (cov(g) + eps I)^-1 cov(g, p) for a 3-plane guide, closed form, in place."""
    c = {}
    for i in range(3):
        for j in range(i, 3):
            cij = _box(g[i] * g[j], r)
            cij -= mg[i] * mg[j]
            c[i, j] = cij
    for i in range(3):
        c[i, i] += np.float32(eps)
    rr, rg, rb, gg, gb, bb = c[0, 0], c[0, 1], c[0, 2], c[1, 1], c[1, 2], c[2, 2]
    i_rr, i_rg, i_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    i_gg, i_gb, i_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * i_rr
    det += rg * i_rg
    det += rb * i_rb
    v0, v1, v2 = cov_gp
    out = []
    for k0, k1, k2 in ((i_rr, i_rg, i_rb), (i_rg, i_gg, i_gb), (i_rb, i_gb, i_bb)):
        ak = k0 * v0
        ak += k1 * v1
        ak += k2 * v2
        ak /= det
        out.append(ak)
    return out
