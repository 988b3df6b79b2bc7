"""Segmentation metrics as pure functions over counts (subject = positive class).

Region metrics come from a :class:`Counts` of tp/fp/fn/tn. Boundary F (Csurka et al.) is at
fixed pixel tolerances at the frame's full resolution: a boundary pixel of the prediction
counts as matched when a ground-truth boundary pixel lies within ``tol`` pixels, and vice
versa. A tolerance that grows with the diagonal would be 50+ px at 24 MP and call every
mask perfect, so it does not.

Label maps (a multi-class model's ``labels/``) are scored per class by :class:`ClassScores`
(:func:`class_scores` for one frame): each class as a mask of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from .config import CLASSES

TOLERANCES = (1, 2, 4)


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class BoundaryCounts:
    pred_matched: int = 0
    pred_total: int = 0
    gt_matched: int = 0
    gt_total: int = 0

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        return BoundaryCounts(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )


def _div(a: float, b: float, empty: float = 1.0) -> float:
    return a / b if b else empty


def precision(c: Counts) -> float:
    return _div(c.tp, c.tp + c.fp, 1.0 if c.fn == 0 else 0.0)


def recall(c: Counts) -> float:
    return _div(c.tp, c.tp + c.fn, 1.0 if c.fp == 0 else 0.0)


def f1(c: Counts) -> float:
    return _div(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def iou(c: Counts) -> float:
    return _div(c.tp, c.tp + c.fp + c.fn)


def boundary_f(b: BoundaryCounts) -> float:
    p = _div(b.pred_matched, b.pred_total, 1.0 if b.gt_total == 0 else 0.0)
    r = _div(b.gt_matched, b.gt_total, 1.0 if b.pred_total == 0 else 0.0)
    return _div(2 * p * r, p + r, 0.0)


def _as_bool(mask: np.ndarray) -> np.ndarray:
    return mask if mask.dtype == bool else mask > (127 if mask.dtype == np.uint8 else 0.5)


def confusion(pred: np.ndarray, gt: np.ndarray) -> Counts:
    """Counts of one prediction against its ground truth (same shape; bool or 0/255)."""
    p, g = _as_bool(pred), _as_bool(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in size")
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(g)) - tp
    return Counts(tp, fp, fn, p.size - tp - fp - fn)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: subject pixels with a 4-neighbour outside (frame edge not counted)."""
    m = _as_bool(mask).astype(np.uint8)
    eroded = cv2.erode(
        m, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8), borderType=cv2.BORDER_REPLICATE
    )
    return (m - eroded).astype(bool)


def distance_to(b: np.ndarray) -> np.ndarray:
    """Each pixel's distance to the nearest True pixel of ``b`` (inf when there is none)."""
    if not b.any():
        return np.full(b.shape, np.inf, np.float32)
    return cv2.distanceTransform((~b).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def boundary_counts(
    pred: np.ndarray, gt: np.ndarray, tolerances=TOLERANCES
) -> dict[int, BoundaryCounts]:
    """Matched and total boundary pixels at each pixel tolerance."""
    bp, bg = boundary(pred), boundary(gt)
    if bp.shape != bg.shape:
        raise ValueError(f"prediction {bp.shape} and ground truth {bg.shape} differ in size")
    d_to_gt, d_to_pred = distance_to(bg)[bp], distance_to(bp)[bg]
    n_p, n_g = int(bp.sum()), int(bg.sum())
    return {
        t: BoundaryCounts(
            int(np.count_nonzero(d_to_gt <= t)), n_p, int(np.count_nonzero(d_to_pred <= t)), n_g
        )
        for t in tolerances
    }


@dataclass
class Scores:
    """Accumulates counts over frames; reports per-frame and pooled figures."""

    counts: Counts = Counts()
    bcounts: dict | None = None
    n: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> dict:
        c = confusion(pred, gt)
        b = boundary_counts(pred, gt)
        self.counts = self.counts + c
        self.bcounts = b if self.bcounts is None else {t: self.bcounts[t] + b[t] for t in b}
        self.n += 1
        return summarize(c, b)

    def pooled(self) -> dict:
        return summarize(self.counts, self.bcounts or {t: BoundaryCounts() for t in TOLERANCES})


def summarize(c: Counts, b: dict[int, BoundaryCounts]) -> dict:
    out = {"precision": precision(c), "recall": recall(c), "f1": f1(c), "iou": iou(c)}
    for t, bc in sorted(b.items()):
        out[f"bf{t}"] = boundary_f(bc)
    return out


def flicker(pred: list[np.ndarray], gt: list[np.ndarray]) -> float:
    """Mask flicker along a sequence: the mean, over consecutive frame pairs, of
    ``|IoU(pred_i, pred_i+1) - IoU(gt_i, gt_i+1)|``.

    The subject really moves between frames, so consecutive masks should differ exactly as
    much as the ground truth's do; 0 is a prediction that changes like the truth.
    """
    if len(pred) != len(gt):
        raise ValueError("pred and gt need one mask per frame")
    steps = []
    for k in range(len(pred) - 1):
        ip = iou(confusion(pred[k], pred[k + 1]))
        ig = iou(confusion(gt[k], gt[k + 1]))
        steps.append(abs(ip - ig))
    return float(np.mean(steps)) if steps else 0.0


class ClassScores:
    """Per-class scores of label maps (class indices, :data:`segcore.config.CLASSES`): each
    foreground class scored as its own mask (``pred == c`` against ``gt == c``) with the
    region and boundary figures of :class:`Scores`; IoU and ``bf2`` (BF@2px) are the
    headline ones. Pooled over frames like :class:`Scores`."""

    def __init__(self, classes: tuple[str, ...] | None = None):
        names = CLASSES if classes is None else tuple(classes)
        self.index = {name: names.index(name) for name in names[1:]}  # 0 is the background
        self.scores = {name: Scores() for name in self.index}

    def add(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, dict]:
        """Score one frame's label maps (same shape); returns {class: figures}."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        return {n: self.scores[n].add(pred == i, gt == i) for n, i in self.index.items()}

    def pooled(self) -> dict[str, dict]:
        return {n: s.pooled() for n, s in self.scores.items()}


def class_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, dict]:
    """Per-class figures of one pair of label maps (see :class:`ClassScores`)."""
    return ClassScores().add(pred, gt)
