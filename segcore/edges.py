"""The learned edge refiner: a small CNN that redraws the boundary at the frame's resolution.

The coarse network decides the mask away from its boundary. Along the boundary, in a band a
few network pixels wide, every full-resolution pixel is decided by the refiner from the
frame's own pixels and the coarse probability upsampled by the cubic spline (the spirit of
Background Matting V2's refiner): the band is covered by cells of ``cell`` frame pixels; each
cell is read with ``margin`` pixels of context on every side (a window of ``cell + 2 *
margin``), and the whole frame's windows go through the ONNX model as one batch in OpenCV's
DNN. The model adds a correction to the coarse logit, so where it has nothing to say the
spline's answer stands.

Input of the model, per window (N, 4, S, S) float32: the frame's R, G, B in 0..1 and the
prior's logit ``log(p / (1 - p)) / LOGIT_SCALE`` (p clipped to [P_CLIP, 1 - P_CLIP]). Output
(N, 1, S, S): the refined logit; only the centre ``cell`` x ``cell`` is used. (A graph may
return only that centre and a rim around it, (N, 1, k, k) with ``cell <= k <= S``: the
runtime graph ONNX Runtime runs, ``onnx_runtime`` below, computes no more than that.)

The model card names the refiner under ``edge_refiner``: ``{"onnx": "<file>", "cell": 32,
"margin": 8, "guide": "spline"}`` and, where ONNX Runtime is installed, optionally
``"onnx_runtime": {"onnx": "<file>", ...}``, the same refiner computing only the centre and
in int8 (``training.runtime_graph.write_refiner_graph``; OpenCV's DNN, in Blender, keeps
``onnx``); with ``"guide": "guided"`` the prior channel is the guided
filter's probability (``segcore.refine``) instead of the spline's, and the model learns
where to trust it. A card without the entry keeps the guided filter alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .backend import onnx_backend
from .card import edge_refiner_fields
from .errors import ModelError
from .fields import FieldError

P_CLIP = 0.005
LOGIT_SCALE = 4.0
BATCH = 128  # windows per forward pass


def coarse_logit(p: np.ndarray) -> np.ndarray:
    """The model's fourth input channel from a probability map."""
    q = np.clip(p, P_CLIP, 1 - P_CLIP)
    return (np.log(q / (1 - q)) / LOGIT_SCALE).astype(np.float32)


def active_cells(band: np.ndarray, rows: np.ndarray, cols: np.ndarray, cell: int) -> np.ndarray:
    """(n, 2) top-left corners (frame pixels) of the ``cell``-sized cells that hold any pixel
    of ``band`` (network scale; ``rows``/``cols`` map frame rows/columns to network ones)."""
    H, W = len(rows), len(cols)
    ys = np.arange(0, H, cell)
    xs = np.arange(0, W, cell)
    # network rows / columns each cell spans: [first, last]
    r0, r1 = rows[ys], rows[np.minimum(ys + cell, H) - 1]
    c0, c1 = cols[xs], cols[np.minimum(xs + cell, W) - 1]
    # the band's integral image, (h + 1, w + 1) with a zero first row and column; OpenCV's is
    # some 60 times faster than two numpy cumsums (the band is the frame's own size on a
    # 24 MP frame's second stage: 1.3 s a frame the other way)
    ii = cv2.integral(np.ascontiguousarray(band, dtype=bool).view(np.uint8))
    s = (
        ii[r1[:, None] + 1, c1[None, :] + 1]
        - ii[r0[:, None], c1[None, :] + 1]
        - ii[r1[:, None] + 1, c0[None, :]]
        + ii[r0[:, None], c0[None, :]]
    )
    iy, ix = np.nonzero(s > 0)
    return np.stack([ys[iy], xs[ix]], axis=1)


def window(img: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """``img[y:y+size, x:x+size]``, reflected where it leaves the frame."""
    H, W = img.shape[:2]
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + size, H), min(x + size, W)
    out = img[y0:y1, x0:x1]
    pads = (y0 - y, y + size - y1, x0 - x, x + size - x1)
    if any(pads):
        out = cv2.copyMakeBorder(out, *pads, cv2.BORDER_REFLECT_101)
    return out


def build_inputs(bgr: np.ndarray, logit_at, corners: np.ndarray, cell: int, margin: int):
    """(N, 4, S, S) float32 model input for the cells at ``corners``.

    ``logit_at(y0, y1, x0, x1)`` returns the coarse logit channel for a region inside the
    frame (the caller's spline field)."""
    S = cell + 2 * margin
    H, W = bgr.shape[:2]
    blob = np.empty((len(corners), 4, S, S), np.float32)
    for n, (y, x) in enumerate(corners):
        wy, wx = int(y) - margin, int(x) - margin
        rgb = window(bgr, wy, wx, S)[..., ::-1]
        blob[n, :3] = np.moveaxis(rgb, 2, 0) * np.float32(1 / 255)
        y0, x0, y1, x1 = max(wy, 0), max(wx, 0), min(wy + S, H), min(wx + S, W)
        lg = logit_at(y0, y1, x0, x1)
        pads = (y0 - wy, wy + S - y1, x0 - wx, wx + S - x1)
        blob[n, 3] = cv2.copyMakeBorder(lg, *pads, cv2.BORDER_REFLECT_101) if any(pads) else lg
    return blob


@dataclass(frozen=True)
class RefinerSpec:
    onnx: Path
    cell: int = 32
    margin: int = 8
    guide: str = "spline"  # the prior channel: "spline" or "guided" (the guided filter's)
    onnx_runtime: Path | None = None  # the same refiner as ONNX Runtime's graph

    @classmethod
    def from_card(cls, card_dir: Path, d) -> RefinerSpec:
        """The card's ``edge_refiner`` entry; :class:`ModelError` naming the bad field."""
        try:
            return cls(**edge_refiner_fields(Path(card_dir), d))
        except FieldError as exc:
            raise ModelError(f"{exc.field} {exc.problem}") from None


class EdgeRefiner:
    """The refiner's ONNX model (:func:`segcore.backend.onnx_backend`)."""

    def __init__(self, spec: RefinerSpec):
        self.spec = spec
        self.backend = onnx_backend(spec.onnx, spec.onnx_runtime)
        S, c = spec.cell + 2 * spec.margin, spec.cell
        out = self.logits(np.zeros((1, 4, S, S), np.float32))  # fail now, not on a frame
        k = out.shape[-1] if out.ndim == 4 else -1
        if out.shape != (1, 1, k, k) or not c <= k <= S or (k - c) % 2:
            raise ModelError(
                f"{getattr(self.backend, 'path', spec.onnx)}: the edge refiner returned shape "
                f"{tuple(out.shape)} for a (1, 4, {S}, {S}) input; expected (1, 1, {S}, {S}) "
                f"(or its centre, at least {c} x {c})"
            )

    def logits(self, blob: np.ndarray) -> np.ndarray:
        out = [
            self.backend.logits(np.ascontiguousarray(blob[i : i + BATCH])).copy()
            for i in range(0, len(blob), BATCH)
        ]
        return np.concatenate(out) if out else np.zeros((0, 1, *blob.shape[2:]), np.float32)

    def refine(self, bgr: np.ndarray, logit_at, corners: np.ndarray) -> np.ndarray:
        """(N, cell, cell) float32 probability for the cells at ``corners``."""
        c, m = self.spec.cell, self.spec.margin
        if len(corners) == 0:
            return np.zeros((0, c, c), np.float32)
        out = self.logits(build_inputs(bgr, logit_at, corners, c, m))
        k = (out.shape[-1] - c) // 2  # the centre of a whole window or of a centre-only graph
        out = out[:, 0, k : k + c, k : k + c]
        return (1.0 / (1.0 + np.exp(-np.clip(out, -30, 30)))).astype(np.float32)


def load_refiner(card) -> EdgeRefiner | None:
    """The card's learned edge refiner, or None when the card names none."""
    entry = card.extra.get("edge_refiner")
    if entry is None or card.onnx_path is None:
        return None
    return EdgeRefiner(RefinerSpec.from_card(card.onnx_path.parent, entry))
