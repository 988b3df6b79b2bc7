"""Temporal consistency: motion-compensated smoothing along a sequence (segcore.temporal)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from segcore.metrics import flicker
from segcore.temporal import SequenceSmoother, smooth_step


def _texture(h, w, seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1), dtype=np.uint8)
    t = cv2.resize(t, (w + 8, h + 8), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(t, (3, 3), 0.8)


def _scene(shift, h=96, w=128, size=40):
    """A textured square moved ``shift`` px right over a different textured background."""
    bg = _texture(h, w, 1)[:h, :w]
    fg = _texture(size, size, 2)[:size, :size]
    img, truth = bg.copy(), np.zeros((h, w), np.float32)
    y0, x0 = 28, 20 + shift
    img[y0 : y0 + size, x0 : x0 + size] = fg
    truth[y0 : y0 + size, x0 : x0 + size] = 1.0
    return img, truth


def _iou(a, b):
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_static_sequence_keeps_a_steady_probability():
    img, truth = _scene(0)
    out = smooth_step(img, truth, img, truth)
    np.testing.assert_allclose(out, truth, atol=1e-6)


def test_noise_is_averaged_on_a_static_scene():
    img, truth = _scene(0)
    rng = np.random.default_rng(0)
    clean = 0.2 + 0.6 * truth  # a network unsure everywhere, so nothing is clipped
    noisy = [(clean + rng.normal(0, 0.05, truth.shape)).astype(np.float32) for _ in range(8)]
    prev_g, prev_p = img, noisy[0]
    errs_raw, errs_smooth = [], []
    for p in noisy[1:]:
        prev_p = smooth_step(prev_g, prev_p, img, p)
        errs_raw.append(np.abs(p - clean).mean())
        errs_smooth.append(np.abs(prev_p - clean).mean())
    # a recursive blend with weight 1/2 leaves 1/sqrt(3) of the noise in the limit
    assert np.mean(errs_smooth[2:]) < 0.7 * np.mean(errs_raw[2:])


def test_real_motion_is_followed_not_blurred():
    """A square moving 3 px a frame: the smoothed mask stays on the square, no trail."""
    prev_g, prev_p = _scene(0)
    for k in range(1, 8):
        g, truth = _scene(3 * k)
        prev_p = smooth_step(prev_g, prev_p, g, truth)
        prev_g = g
        assert _iou(prev_p > 0.5, truth > 0.5) > 0.97, k


def test_a_wrong_flow_falls_back_to_the_frame_itself():
    """Where the warped previous frame does not match the pixels, the frame's own estimate wins."""
    g0, p0 = _scene(0)
    g1, p1 = _scene(30)  # a jump far beyond what the flow tracks
    out = smooth_step(g0, p0, g1, p1)
    assert _iou(out > 0.5, p1 > 0.5) > 0.9


def test_a_frame_of_another_size_restarts_the_chain():
    g0, p0 = _scene(0)
    g1, p1 = _scene(0, h=80, w=80)
    assert smooth_step(g0, p0, g1, p1) is p1


def test_smoother_waits_for_the_previous_frame_whatever_the_thread_order():
    frames = [_scene(2 * k) for k in range(6)]
    rng = np.random.default_rng(1)
    probs = [np.clip(t + rng.normal(0, 0.2, t.shape), 0, 1).astype(np.float32) for _, t in frames]
    ref = SequenceSmoother(len(frames))
    expected = [ref.smooth(i, g, p) for i, ((g, _), p) in enumerate(zip(frames, probs))]

    sm = SequenceSmoother(len(frames))
    got: dict[int, np.ndarray] = {}

    def run(i):
        got[i] = sm.smooth(i, frames[i][0], probs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in reversed(range(len(frames)))]
    for t in threads:  # the last frame starts first and must wait for the chain
        t.start()
    for t in threads:
        t.join(timeout=30)
    for i in range(len(frames)):
        np.testing.assert_array_equal(got[i], expected[i])


def test_a_skipped_frame_unblocks_the_next_and_restarts_the_chain():
    (g0, p0), (g2, p2) = _scene(0), _scene(2)
    sm = SequenceSmoother(3)
    sm.smooth(0, g0, p0)
    sm.skip(1)
    assert sm.smooth(2, g2, p2) is p2  # no predecessor: the frame's own estimate
    sm.skip(2)  # settling twice is a no-op
    with pytest.raises(RuntimeError):
        sm.smooth(0, g0, p0)


def test_smoother_keeps_only_the_last_states():
    sm = SequenceSmoother(20)
    for i in range(20):
        g, p = _scene(i % 3)
        sm.smooth(i, g, p)
    assert len(sm._state) <= 2


def test_flicker_compares_consecutive_ious_with_the_truth():
    _, a = _scene(0)
    _, b = _scene(4)
    truth = [a > 0.5, b > 0.5, a > 0.5]
    assert flicker(truth, truth) == 0.0
    steady = [a > 0.5, a > 0.5, a > 0.5]  # the truth moves, the prediction does not
    assert flicker(steady, truth) > 0.1
    assert flicker(truth[:1], truth[:1]) == 0.0
