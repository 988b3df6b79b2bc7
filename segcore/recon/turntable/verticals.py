"""The room's vertical edges: they meet at the vanishing point of the turntable's axis, which
stands upright on a level floor (the still background's, :func:`vertical_edges`), or of the
axis an even ring of cameras turns about (every frame's, :func:`ring_vertical_edges`)."""

from __future__ import annotations

import cv2
import numpy as np

from ...plate import clear_of, plate_of
from .circular import axis_direction
from .coherence import pixel_at

VERTICAL_MIN = 6  # fewer vertical background edges: no vertical-direction term
VERTICAL_MAX = 40  # the longest this many are used
VERTICAL_LEN = 0.025  # shortest edge, share of the frame's long side
VERTICAL_DEG = 20.0  # largest angle to the image's vertical
VERTICAL_WEIGHT = 20.0  # a vertical edge's pixel against an outline's


def vertical_edges(grays, masks) -> np.ndarray:
    """(N, 4) straight edges (x1, y1, x2, y2) of the still background near the image's
    vertical: walls' corners, door frames, table legs, a lamp's pole.

    A turntable stands on a level floor, so its axis is vertical, and so are such edges: they
    meet at the image of the axis direction (the vertical vanishing point), which fixes the
    axis' tilt and roll without the subject. Taken from the background plate (the frames'
    per-pixel median where the subject is clear, :func:`segcore.plate.plate_of`) with OpenCV's
    line segment detector, away from every frame's mask; at most ``VERTICAL_MAX``, the longest.
    Empty when OpenCV has no line segment detector.
    """
    plate, seen = plate_of(np.array(grays, np.float32), clear_of(masks, 3), 3)
    return _upright_segments(plate, (_off_subject(np.any(masks, axis=0))) & (seen >= 3))


def ring_vertical_edges(grays, masks) -> np.ndarray:
    """The room's near-vertical edges in every frame of a camera carried round the garment
    on an even ring, pooled: (N, 4), at most ``VERTICAL_MAX`` a frame, away from its mask.

    The room stands still and its vertical edges are vertical in the world. A camera that
    keeps one height and turns about the garment's vertical axis sees that axis at the same
    place in every frame (circular motion leaves its own axis where it is), so every frame's
    edges meet at the same vanishing point: the axis' tilt and roll, the one thing the
    garment's outlines and tracks leave nearly free on such a ring (``docs/recon.md``)."""
    out = [_upright_segments(g, _off_subject(m)) for g, m in zip(grays, masks)]
    return np.concatenate(out) if out else np.zeros((0, 4))


def _off_subject(mask) -> np.ndarray:
    """Where the image is clear of ``mask`` by 2 % of its long side (bool)."""
    h, w = mask.shape
    pad = max(3, round(0.02 * max(h, w)))
    return cv2.dilate(np.asarray(mask, np.uint8), np.ones((2 * pad + 1,) * 2, np.uint8)) == 0


def _upright_segments(img, away) -> np.ndarray:
    """The ``VERTICAL_MAX`` longest line segments of ``img`` within ``VERTICAL_DEG`` of the
    image's vertical and ``VERTICAL_LEN`` of its long side or longer that lie where ``away``
    (bool): (N, 4) (x1, y1, x2, y2); empty without OpenCV's line segment detector."""
    if not hasattr(cv2, "createLineSegmentDetector"):
        return np.zeros((0, 4))
    h, w = away.shape
    try:
        segs = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD).detect(
            np.clip(img, 0, 255).astype(np.uint8)
        )[0]
    except cv2.error:  # builds without the detector raise on use
        return np.zeros((0, 4))
    if segs is None:
        return np.zeros((0, 4))
    segs = segs.reshape(-1, 4).astype(np.float64)
    d = segs[:, 2:] - segs[:, :2]
    length = np.linalg.norm(d, axis=1)
    upright = np.degrees(np.arctan2(np.abs(d[:, 0]), np.abs(d[:, 1]))) <= VERTICAL_DEG
    ok = np.ones(len(segs), bool)
    for t in np.linspace(0.0, 1.0, 5):  # the ends, the middle and between
        ok &= pixel_at(away, segs[:, :2] + t * d)
    keep = upright & ok & (length >= VERTICAL_LEN * max(h, w))
    segs, length = segs[keep], length[keep]
    return segs[np.argsort(-length)[:VERTICAL_MAX]]


def vertical_residuals(K, edges, params) -> np.ndarray:
    """Per edge, how far (pixels) its first end lies from the line through its middle and
    the vanishing point of the axis of ``params``: 0 when the edge points along the axis."""
    v = K @ axis_direction(params[0], params[1])
    a, b = edges[:, :2], edges[:, 2:]
    m = np.hstack([(a + b) / 2, np.ones((len(a), 1))])
    line = np.cross(m, v[None])
    line /= np.maximum(np.linalg.norm(line[:, :2], axis=1, keepdims=True), 1e-12)
    return line[:, 0] * a[:, 0] + line[:, 1] * a[:, 1] + line[:, 2]


def vertical_axis(K, edges) -> tuple[float, float, float]:
    """(tilt, roll, median residual in pixels) of the axis that the vertical edges alone
    give (robust least squares from upright)."""
    from scipy.optimize import least_squares

    res = least_squares(
        lambda x: vertical_residuals(K, edges, (x[0], x[1])), [0.0, 0.0], loss="cauchy"
    )
    r = np.abs(vertical_residuals(K, edges, res.x))
    return float(res.x[0]), float(res.x[1]), float(np.median(r))
