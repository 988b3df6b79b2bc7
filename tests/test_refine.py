"""Edge refinement: the guided filter pulls a blurred, shifted boundary onto the photo's edge,
and computing it only in the window the boundary band needs changes nothing."""

from __future__ import annotations

import cv2
import numpy as np

from segcore.refine import GuidedCoefficients, band_window


def _disc_scene(H=480, W=640, radius=150, shift=6):
    """A dark disc on a light background, and a probability that is soft and off by ``shift``."""
    yy, xx = np.mgrid[0:H, 0:W]
    d = np.hypot(yy - H / 2, xx - W / 2)
    bgr = np.where((d < radius)[:, :, None], np.uint8(40), np.uint8(210)).astype(np.uint8)
    bgr = np.ascontiguousarray(np.broadcast_to(bgr, (H, W, 3)))
    bgr[:, :, 2] = np.where(d < radius, 150, 200)  # a little colour
    p = 1.0 / (1.0 + np.exp((d - radius - shift) / 4.0))  # boundary `shift` px too far out
    return bgr, p.astype(np.float32), d


def test_refined_boundary_lands_on_the_photo_edge():
    bgr, p, d = _disc_scene()
    small = cv2.resize(bgr, (320, 240), interpolation=cv2.INTER_AREA)
    p_small = cv2.resize(p, (320, 240), interpolation=cv2.INTER_AREA)
    gc = GuidedCoefficients(small, p_small, bgr.shape[:2], radius_small=8)
    q, _ = gc.apply(bgr, 0, 0)
    ring = np.abs(d - 150) < 12  # the pixels between the true and the predicted edge
    err_plain = np.mean((p[ring] > 0.5) != (d[ring] < 150))
    err_refined = np.mean((q[ring] > 0.5) != (d[ring] < 150))
    assert err_plain > 0.2  # the input boundary really is off (6 of the 24 px)
    assert err_refined < 0.05, err_refined


def test_band_window_gives_the_whole_grid_result_on_the_band():
    bgr, p, d = _disc_scene(shift=2)
    small = cv2.resize(bgr, (320, 240), interpolation=cv2.INTER_AREA)
    p_small = cv2.resize(p, (320, 240), interpolation=cv2.INTER_AREA)
    band = np.abs(cv2.resize(d, (160, 120)) - 150) < 4  # network-scale band, 160x120
    r = 8
    y0, y1, x0, x1 = band_window(band, small.shape[:2], r)
    assert (y1 - y0) * (x1 - x0) < 0.8 * small.shape[0] * small.shape[1]  # it does crop
    whole = GuidedCoefficients(small, p_small, bgr.shape[:2], r)
    part = GuidedCoefficients(
        small[y0:y1, x0:x1],
        p_small[y0:y1, x0:x1],
        bgr.shape[:2],
        r,
        origin=(y0, x0),
        grid_hw=small.shape[:2],
    )
    sel = cv2.resize(band.astype(np.uint8), (640, 480), interpolation=cv2.INTER_NEAREST) > 0
    qa, ba = whole.apply(bgr, 0, 0)
    qb, bb = part.apply(bgr, 0, 0)
    assert np.abs(qa - qb)[sel].max() < 1e-4
    assert np.abs(ba - bb)[sel].max() < 1e-2  # background colour, 0..255
    q_only, none = part.apply(bgr, 0, 0, background=False)
    assert none is None and np.array_equal(q_only, qb)
