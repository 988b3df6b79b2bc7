"""From probability to mask to cut-out: threshold, clean-up, and the mask operation.

Area limits are shares of the frame, so they mean the same at any resolution. Only holes
that are fully enclosed by the subject *and* smaller than ``max_hole_share`` are filled:
a garment's real openings (the gap between arm and torso, between the legs) are large and
stay open.
"""

from __future__ import annotations

import cv2
import numpy as np


def threshold(prob: np.ndarray, t: float = 0.5) -> np.ndarray:
    """Probability map -> uint8 mask, 255 = subject."""
    if not 0.0 < t < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {t}")
    return np.where(prob > t, np.uint8(255), np.uint8(0))


def _fill_small(mask: np.ndarray, max_area: float, subject: bool, alpha=None) -> None:
    """In place: the 8-connected components of the subject (``subject``; 255 in ``mask``)
    or of the background smaller than ``max_area`` pixels take the other value, in ``mask``
    and ``alpha`` alike. Background components that touch the frame border are never
    filled (they are not holes). Each component is written within its bounding box, so a
    24 MP frame with a few specks costs the labelling pass and little more."""
    src = mask if subject else cv2.bitwise_not(mask)
    n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        src, 8, cv2.CV_32S, cv2.CCL_SPAGHETTI
    )
    if n <= 1:
        return
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    small = stats[:, cv2.CC_STAT_AREA] < max_area
    small[0] = False  # label 0 is the complement
    if not subject:
        H, W = mask.shape
        small &= ~((x == 0) | (y == 0) | (x + w == W) | (y + h == H))
    value = np.uint8(0 if subject else 255)
    for i in np.nonzero(small)[0]:
        box = np.s_[y[i] : y[i] + h[i], x[i] : x[i] + w[i]]
        sel = labels[box] == i
        mask[box][sel] = value
        if alpha is not None:
            alpha[box][sel] = value


def clean_mask(
    mask: np.ndarray,
    min_blob_share: float,
    max_hole_share: float,
    satellite_share: float = 0.0,
    satellite_gap: float = 0.05,
) -> np.ndarray:
    """Remove subject specks and fill small enclosed holes (limits as shares of the frame);
    with ``satellite_share`` also the pieces far from the subject (:func:`drop_satellites`)."""
    out = np.where(mask > 0, np.uint8(255), np.uint8(0))
    total = mask.shape[0] * mask.shape[1]
    if min_blob_share > 0:
        _fill_small(out, min_blob_share * total, subject=True)
    if satellite_share > 0:
        drop_satellites(out, satellite_share, satellite_gap * max(mask.shape))
    if max_hole_share > 0:
        _fill_small(out, max_hole_share * total, subject=False)
    return out


SATELLITE_MAX_FRAME_SHARE = 0.02  # a piece larger than this share of the frame always stays


def drop_satellites(mask: np.ndarray, share: float, gap_px: float) -> None:
    """In place: subject pieces far from the subject go (a lamp's base, a blob of the wall
    kept as subject). The subject is the largest piece, every piece at least ``share`` of it,
    and, step by step, every piece within ``gap_px`` of those (a garment's own pieces that a
    thin gap cuts off, a hand or the feet below the legs, lie close to it); a piece larger
    than ``SATELLITE_MAX_FRAME_SHARE`` of the frame always stays, so a large false piece
    never takes a small subject with it."""
    n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        mask, 8, cv2.CV_32S, cv2.CCL_SPAGHETTI
    )
    if n <= 2:
        return
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    area[0] = 0
    big = (area >= share * area.max()) | (area > SATELLITE_MAX_FRAME_SHARE * mask.size)
    kept = big.copy()
    kept[0] = False
    while True:
        near = cv2.distanceTransform(
            np.where(kept[labels], 0, 255).astype(np.uint8), cv2.DIST_L2, 5
        )
        closest = np.full(n, np.inf)
        np.minimum.at(closest, labels.ravel(), near.ravel())
        grow = ~kept & (closest <= gap_px)
        grow[0] = False
        if not grow.any():
            break
        kept |= grow
    drop = ~kept
    drop[0] = False
    if drop.any():
        mask[drop[labels]] = 0


def clean_edges(mask: np.ndarray, alpha: np.ndarray, share: float) -> None:
    """In place: subject specks and enclosed holes smaller than ``share`` of the frame go
    from the full-resolution ``mask`` (uint8 0/255), and ``alpha`` follows it there.

    Only the subject's bounding box is labelled (a garment figure fills a third of a frame
    or less): every speck and every hole lies inside it, and a piece of background that
    reaches the box's edge meets the background all around the box there, which reaches the
    frame's border: no hole, as in the whole frame."""
    limit = share * mask.shape[0] * mask.shape[1]
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return
    box = np.s_[y : y + h, x : x + w]
    _fill_small(mask[box], limit, subject=True, alpha=alpha[box])
    _fill_small(mask[box], limit, subject=False, alpha=alpha[box])


def smooth_outline(mask: np.ndarray, alpha: np.ndarray, sigma: float, t: float = 0.5) -> None:
    """In place: the outline drawn again from ``alpha`` (uint8) blurred by a Gaussian of
    ``sigma`` frame pixels, ``mask`` (uint8 0/255) where the blurred alpha exceeds ``t``.

    The edge refiner decides every pixel of the rim on its own, so where the photo's edge is
    faint its outline follows the sensor's noise: notches and bumps a pixel or two deep. A
    blur of about a pixel and a half evens them out and keeps any detail wider than a few
    pixels (a collar's point, a strap). Only the subject's bounding box (with the blur's
    reach) is touched; ``alpha`` becomes the blurred alpha, so the two still agree."""
    if sigma <= 0:
        return
    x, y, w, h = cv2.boundingRect(alpha)
    if w == 0:
        return
    r = int(np.ceil(4 * sigma)) + 1
    H, W = mask.shape
    box = np.s_[max(0, y - r) : min(H, y + h + r), max(0, x - r) : min(W, x + w + r)]
    a = cv2.GaussianBlur(alpha[box], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    alpha[box] = a
    # uint8 source: OpenCV compares with the threshold's floor, i.e. exactly a > t * 255
    cv2.threshold(a, t * 255, 255, cv2.THRESH_BINARY, dst=mask[box])


def cutout(bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The mask operation: the frame with ``alpha`` (uint8, 255 = subject) as its alpha."""
    if bgr.shape[:2] != alpha.shape[:2]:
        raise ValueError(f"frame {bgr.shape[:2]} and alpha {alpha.shape[:2]} differ in size")
    out = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)  # 20x faster than numpy's strided copy
    out[:, :, 3] = alpha
    return out


def foreground_share(mask: np.ndarray) -> float:
    return float(np.count_nonzero(mask)) / max(1, mask.size)


def decide(
    prob: np.ndarray,
    t: float,
    min_blob_share: float,
    max_hole_share: float,
    satellite_share: float = 0.0,
    satellite_gap: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coarse decision at network scale: (mask, probability agreeing with it, band).

    The mask is thresholded and cleaned (:func:`clean_mask`); the probability is set to 1 in
    filled holes and 0 in removed specks and pieces, so an upsampled edge never reopens them;
    the band (bool) is the mask's boundary dilated by one pixel, where full-resolution edges
    are decided.
    """
    coarse = clean_mask(
        threshold(prob, t), min_blob_share, max_hole_share, satellite_share, satellite_gap
    )
    p = prob.copy()
    p[(coarse > 0) & (prob <= t)] = 1.0  # filled holes
    p[(coarse == 0) & (prob > t)] = 0.0  # removed specks
    k3 = np.ones((3, 3), np.uint8)
    band = cv2.dilate(cv2.morphologyEx(coarse, cv2.MORPH_GRADIENT, k3), k3) > 0
    return coarse, p, band
