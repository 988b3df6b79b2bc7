"""How far to trust each frame's mask, from the network's own output.

A mask can be wrong without any error: a real photo of a person, a garment the colour of its
backdrop, a frame out of focus. Four signals, each from what the network said, mark such a
frame **suspect**:

- ``uncertain``: the network hesitates. Pixels whose subject probability lies between
  :data:`HESITANT` and ``1 -`` :data:`HESITANT`, per pixel of the mask's outline, at the
  network's scale: the mean width (network pixels) of the band where it is unsure. A clean
  mask has a band of about one pixel along its edge; a confused one has wide patches.
- ``flip``: the network disagrees with itself. With flip averaging (the default) it sees the
  frame and its mirror image; ``1 - IoU`` of the two masks.
- ``foreground``: the mask's size is far from the sequence's: ``|log2(share / median)|``, the
  median over the sequence's frames with a subject.
- ``temporal``: the mask disagrees with its neighbouring frames more than they disagree with
  each other (IoU on a common grid; frames with a neighbour on each side).

Each signal ``x`` has a limit ``L`` in :data:`LIMITS`; its score is ``1 - x / (2 L)`` clipped
to [0, 1] (1: nothing odd, 0.5: at the limit), and a frame's **confidence** is the lowest of
its scores. A frame is suspect when its confidence is below 0.5, that is when a signal passes
its limit; the reasons name those signals. An empty mask, or one covering almost the whole
frame, is suspect with confidence 0.

The limits are measured, not guessed: ``python -m training confidence`` runs the pipeline on
rendered validation sequences (and real photos of people, which must be flagged) and prints
each signal's spread and the flag's precision and recall for frames with IoU < 0.9
(``docs/guide-training.md``). Re-check them whenever the model changes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: a pixel is hesitant where its subject probability is in (HESITANT, 1 - HESITANT)
HESITANT = 0.1

#: limits past which a frame is suspect (see the module docstring). Measured, not guessed:
#: each is the largest value the signal took on a validation frame the model got right
#: (IoU >= 0.9), x 1.1, so no such frame is flagged: 48 frames of the validation families
#: (photo_wall, plaid, similar_colour: data/fam_val and data/fam_val3, 1280x960), set with
#: ``garment`` v13 (v5's limits flagged 5 of those frames and 13 of 120 good frames of
#: 24-frame test rings, nearly all side views narrower than the sequence's median; v13 fails
#: none of them); the three real photos of people are flagged (uncertain >= 5.0, flip
#: >= 0.67). Re-measure with ``python -m training confidence --families VAL... --photos``
#: whenever the model changes.
LIMITS = {
    "uncertain": 2.03,  # network pixels: mean width of the hesitant band (good frames <= 1.85)
    "flip": 0.087,  # 1 - IoU of the direct and the mirrored pass (good frames <= 0.079)
    "foreground": 0.58,  # |log2(share / the sequence's median)|: 1.5x (good frames <= 0.53)
    "temporal": 0.26,  # IoU(before, after) - IoU(frame, the nearer of the two) (<= 0.234)
}

GRID = 128  # masks compared between frames on a GRID x GRID grid (any frame size)
ALMOST_ALL = 0.95  # a mask covering more of the frame than this is suspect


def frame_signals(p: np.ndarray, passes: list | None, threshold: float) -> dict[str, float]:
    """The signals one frame gives by itself: ``uncertain`` and (with the flip pair in
    ``passes``) ``flip_iou``, from the subject probability ``p`` at network scale."""
    mask = p > threshold
    hesitant = np.count_nonzero((p > HESITANT) & (p < 1 - HESITANT))
    edge = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    outline = max(1, np.count_nonzero(edge)) / 2  # the gradient is two pixels wide
    out = {"uncertain": round(hesitant / outline, 4)}
    if passes and len(passes) == 2:
        a, b = (q > threshold for q in passes)
        union = np.count_nonzero(a | b)
        out["flip_iou"] = round(np.count_nonzero(a & b) / union, 4) if union else 1.0
    return out


def grid_mask(mask: np.ndarray) -> np.ndarray:
    """A mask (any size, > 127 or True = subject) on the common GRID x GRID grid, packed."""
    m = np.asarray(mask)
    m = (m > 127) if m.dtype == np.uint8 else m.astype(bool)
    small = cv2.resize(m.view(np.uint8) * np.uint8(255), (GRID, GRID), interpolation=cv2.INTER_AREA)
    return np.packbits(small > 127)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.unpackbits(a), np.unpackbits(b)
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def temporal_deficits(grids: list[np.ndarray | None]) -> list[float | None]:
    """Per frame (in sequence order), how much less its mask agrees with its neighbours than
    they agree with each other: IoU(before, after) - max(IoU(frame, before), IoU(frame,
    after)). Two steps apart, the neighbours normally agree less than either does with the
    frame between them (a negative value); a frame that is the odd one out agrees less.
    None for the first and last frame (no neighbour on one side) and frames without a mask."""
    idx = [i for i, g in enumerate(grids) if g is not None]
    out: list[float | None] = [None] * len(grids)
    for k in range(1, len(idx) - 1):
        a, i, b = idx[k - 1], idx[k], idx[k + 1]
        own = max(_iou(grids[i], grids[a]), _iou(grids[i], grids[b]))
        out[i] = round(_iou(grids[a], grids[b]) - own, 4)
    return out


def _score(x: float, limit: float) -> float:
    return float(np.clip(1.0 - x / (2.0 * limit), 0.0, 1.0))


def assess(frames: list[dict], limits: dict[str, float] | None = None) -> list[dict]:
    """Confidence of each frame of a sequence (in sequence order).

    ``frames``: one dict per frame, with ``foreground_share`` (None for a frame without a
    mask), optionally ``uncertain``, ``flip_iou`` (:func:`frame_signals`) and ``grid``
    (:func:`grid_mask`). Returns one dict per frame: ``confidence`` (0..1, None without a
    mask), ``suspect``, ``reasons`` (plain words) and ``signals`` (the measured values)."""
    lim = {**LIMITS, **(limits or {})}
    shares = [f.get("foreground_share") for f in frames]
    present = [s for s in shares if s]
    median = float(np.median(present)) if len(present) >= 3 else None
    deficits = temporal_deficits([f.get("grid") for f in frames])
    out = []
    for f, share, deficit in zip(frames, shares, deficits):
        if share is None:
            out.append({"confidence": None, "suspect": False, "reasons": [], "signals": {}})
            continue
        signals: dict[str, float] = {}
        scores: list[tuple[float, str | None]] = []
        if share == 0.0:
            scores.append((0.0, "no subject found: the mask is empty"))
        elif share > ALMOST_ALL:
            scores.append((0.0, "the mask covers almost the whole frame"))
        u = f.get("uncertain")
        if u is not None:
            signals["uncertain"] = u
            scores.append(
                (
                    _score(u, lim["uncertain"]),
                    f"the network hesitates over wide areas ({u:.1f} px band along the "
                    f"outline, limit {lim['uncertain']:g})",
                )
            )
        fi = f.get("flip_iou")
        if fi is not None:
            signals["flip_iou"] = fi
            scores.append(
                (
                    _score(1.0 - fi, lim["flip"]),
                    f"the frame and its mirror image give different masks (IoU {fi:.2f})",
                )
            )
        if median and share > 0:
            ratio = share / median
            signals["foreground_ratio"] = round(ratio, 4)
            scores.append(
                (
                    _score(abs(math.log2(ratio)), lim["foreground"]),
                    f"the mask is {ratio:.2g}x the sequence's median size",
                )
            )
        if deficit is not None:
            signals["temporal"] = deficit
            scores.append(
                (
                    _score(deficit, lim["temporal"]),
                    f"the mask disagrees with its neighbouring frames (IoU {deficit:.2f} "
                    "below theirs with each other)",
                )
            )
        conf = min((s for s, _ in scores), default=1.0)
        reasons = [why for s, why in scores if s < 0.5 and why]
        out.append(
            {
                "confidence": round(conf, 3),
                "suspect": conf < 0.5,
                "reasons": reasons,
                "signals": signals,
            }
        )
    return out


def verdict(n_suspect: int, n_assessed: int, sheet: str | None) -> str:
    """The run's one line about its frames' confidence."""
    see = f": see {sheet}" if sheet else ""
    if not n_assessed:
        return "no frame was assessed"
    if n_suspect == 0:
        return f"all {n_assessed} frames look reliable" + (
            f" (contact sheet: {sheet})" if sheet else ""
        )
    frames = "frame looks" if n_assessed == 1 else "frames look"
    return f"{n_suspect} of {n_assessed} {frames} unreliable{see}"
