"""Garment against figure, made coherent with the frame's colours and texture.

The network tells garment from figure (dress form, mannequin, body) well where it sees the
difference, and poorly where a garment covers the part of the form that it mostly saw bare
in training: the bodice of a dress on a dress form, a coat's shoulders, taken for the
figure while the skirt below, the same cloth, is garment. A garment is one cloth: so the
subject's pixels that the confident garment reaches through pixels of its own colour and
texture are garment. For each subject pixel, the reference is the local mean (Lab colour,
and the spread of lightness over 5x5 pixels) of the confident garment pixels nearest to it;
the pixels within ``GROW_TOL`` and ``GROW_SD_TOL`` of their reference that are connected to
the confident garment take the figure's probability over to the garment. The neck cap, a
mannequin's skin or a dress form's own fabric differ in colour or texture and stay figure
(texture keeps a pink plaid skirt from reaching a pink mannequin's skin through its
skin-coloured squares). Only the split of the subject between the two classes changes: the
garment figure's mask (the default) is the same with or without it.

Measured with ``python -m training eval --model garment --families DIR --keep garment``
(and ``--no-garment-regions``), garment IoU at full resolution: the test families 0.7601 ->
0.7791 (higher or equal on each of the six), the validation families (28 frames) 0.9235 ->
0.9237, the two bundled examples (a dress on a dress form) 0.7280 -> 0.8831 (docs/results.md).
numpy and OpenCV only (it runs inside Blender); about 3 ms a frame on one core.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import CLASSES

GARMENT, FIGURE = CLASSES.index("garment"), CLASSES.index("figure")
GROW_CONF = 0.9  # garment share of the subject's probability above this: a seed
GROW_TOL = 24.0  # Lab distance (0-255 scale) from the seeds' local colour: the same cloth
GROW_WINDOW = 15  # network pixels: the window of the seeds' local mean colour
GROW_SD_TOL = 2.0  # ... and the spread of lightness (5x5) within this of the seeds' (texture)
MIN_SEEDS = 20  # fewer confident garment pixels: nothing changes


def grow_garment(small_bgr: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``probs`` (C, h, w), the network's softmax at its scale, with the figure's probability
    moved to the garment wherever the confident garment reaches through its own colour;
    ``small_bgr`` is the frame at that scale (h, w, 3). A new array; ``probs`` is left as
    it is."""
    c, h, w = probs.shape
    if c != len(CLASSES) or small_bgr.shape[:2] != (h, w):
        return probs
    g, f = probs[GARMENT], probs[FIGURE]
    rest = np.max(np.delete(probs, (GARMENT, FIGURE), axis=0), axis=0)
    garment = (g >= f) & (g >= rest)  # the argmax, without argmax's slow pass over axis 0
    figure = (f > g) & (f >= rest)
    subject = garment | figure
    seeds = (garment & (g > GROW_CONF * (g + f))).astype(np.uint8)
    n_seeds = int(seeds.sum())
    if n_seeds < MIN_SEEDS or not figure.any():
        return probs
    # the subject's bounding box (a margin for the window): the rest cannot change
    ys, xs = np.nonzero(subject)
    m = GROW_WINDOW
    y0, y1 = max(0, ys.min() - m), min(h, ys.max() + m + 1)
    x0, x1 = max(0, xs.min() - m), min(w, xs.max() + m + 1)
    box = np.s_[y0:y1, x0:x1]
    figure, subject, seeds = figure[box], subject[box], seeds[box]
    lab = cv2.cvtColor(small_bgr[box], cv2.COLOR_BGR2LAB).astype(np.float32)
    # texture: the spread of lightness over 5x5, within the subject only (normalised
    # convolution), so that the background beyond the outline does not count
    inside = subject.astype(np.float32)
    n5 = np.maximum(cv2.blur(inside, (5, 5)), 1e-3)
    light = lab[..., 0] * inside
    m5 = cv2.blur(light, (5, 5)) / n5
    spread = np.sqrt(np.maximum(cv2.blur(light * lab[..., 0], (5, 5)) / n5 - m5 * m5, 0.0))
    lab = np.dstack([lab, spread])  # colour, and texture
    k = (GROW_WINDOW, GROW_WINDOW)
    total = cv2.boxFilter(lab * seeds[..., None], -1, k, normalize=False)
    count = cv2.boxFilter(seeds.astype(np.float32), -1, k, normalize=False)
    local = total / np.maximum(count, 1e-6)[..., None]  # the seeds' local colour, at seeds
    # every pixel's nearest seed: its label, the seeds numbered from 1 in row-major order
    _, nearest = cv2.distanceTransformWithLabels(
        1 - seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    ys, xs = np.nonzero(seeds)
    ref = local[ys[nearest - 1], xs[nearest - 1]]
    near = (((lab[..., :3] - ref[..., :3]) ** 2).sum(axis=2) < GROW_TOL**2) & (
        np.abs(lab[..., 3] - ref[..., 3]) < GROW_SD_TOL
    )
    same = ((subject & near) | (seeds > 0)).astype(np.uint8)
    n, comp = cv2.connectedComponents(same, connectivity=4)
    seeded = np.zeros(n, bool)
    seeded[comp[seeds > 0]] = True
    reached = seeded[comp] & figure
    if not reached.any():
        return probs
    out = probs.copy()
    g, f = out[GARMENT][box], out[FIGURE][box]  # views into out
    g[reached] += f[reached]
    f[reached] = 0.0
    return out
