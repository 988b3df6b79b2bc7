"""segcore.plate: masks completed from a still background (a turntable's)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segcore.io import read_label, write_png
from segcore.plate import clear_of, plate_corrections, plate_of
from segcore.reconstruct import prepare_workspace

H, W, N = 120, 160, 12


def _background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (H // 8, W // 8, 3)).astype(np.uint8)
    return cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)


def _turntable(moving_background: bool = False):
    """Frames, true masks and "network" masks that miss a thin turning leg.

    The subject: a disc in the middle (red) and a 3-pixel leg (dark blue) that turns
    30 degrees a frame, as a stand's leg on a turntable.
    """
    bg = _background()
    frames, truth, body = [], [], []
    for i in range(N):
        img = bg.copy()
        if moving_background:  # a handheld camera: the background slides
            img = np.roll(bg, 6 * i, axis=1)
        m = np.zeros((H, W), np.uint8)
        cv2.circle(m, (80, 50), 18, 1, -1)
        body.append(m.astype(bool))
        a = np.deg2rad(30 * i)
        tip = (int(80 + 45 * np.cos(a)), int(75 + 20 * np.sin(a)))
        cv2.line(m, (80, 60), tip, 1, 3)
        img[m.astype(bool)] = (40, 20, 10)
        img[body[-1]] = (30, 30, 200)
        frames.append(img)
        truth.append(m.astype(bool))
    return frames, truth, body


def _iou(a, b) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_plate_is_the_background_where_it_is_seen_clear():
    frames, truth, _ = _turntable()
    bg = _background()
    plate, seen = plate_of(np.array(frames), clear_of(truth, 1))
    ok = seen >= 3
    assert ok.mean() > 0.8
    assert np.abs(plate[ok] - bg[ok]).max() < 1e-3
    assert (plate[~ok] == 0).all()
    assert seen[50, 80] == 0  # the disc covers the middle in every frame


def test_turning_leg_missed_by_the_masks_is_added():
    frames, truth, body = _turntable()
    fix = plate_corrections(frames, body)
    assert fix is not None and fix.still > 0.95
    fixed = [fix.apply(i, m) for i, m in enumerate(body)]
    before = np.mean([_iou(m, t) for m, t in zip(body, truth)])
    after = np.mean([_iou(m, t) for m, t in zip(fixed, truth)])
    assert before < 0.9 and after > 0.97, (before, after)
    # nothing added away from the subject (no rim grown round the disc either)
    for f, t in zip(fixed, truth):
        assert (
            f & ~cv2.dilate(t.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        ).sum() == 0


def test_right_masks_are_left_alone_and_a_leak_is_removed():
    frames, truth, _ = _turntable()
    leaky = [t.copy() for t in truth]
    leaky[4][90:110, 10:40] = True  # a patch of background in one frame's mask
    fix = plate_corrections(frames, leaky)
    fixed = [fix.apply(i, m) for i, m in enumerate(leaky)]
    assert not fixed[4][95:105, 15:35].any()
    for i, (f, t) in enumerate(zip(fixed, truth)):
        assert _iou(f, t) > 0.97, i


def test_moving_background_is_not_a_plate():
    frames, _, body = _turntable(moving_background=True)
    assert plate_corrections(frames, body) is None
    assert plate_corrections(frames[:5], body[:5], force=True) is None  # too few frames


def test_corrections_apply_at_full_resolution():
    frames, truth, body = _turntable()
    fix = plate_corrections(frames, body)
    big = cv2.resize(body[3].astype(np.uint8), (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    out = fix.apply(3, big.astype(bool))
    assert out.shape == (2 * H, 2 * W)
    small = cv2.resize(out.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA) > 0.5
    assert _iou(small, truth[3]) > 0.95


@pytest.mark.parametrize("plate", ["auto", "off"])
def test_workspace_masks_are_completed_on_a_turntable(tmp_path, plate):
    frames, truth, body = _turntable()
    (tmp_path / "frames").mkdir()
    (tmp_path / "m").mkdir()
    for i, (f, m) in enumerate(zip(frames, body)):
        write_png(tmp_path / "frames" / f"f{i:02d}.png", f)
        write_png(tmp_path / "m" / f"f{i:02d}.png", np.where(m, 255, 0).astype(np.uint8))
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    names, masked, info = prepare_workspace(
        tmp_path / "frames", tmp_path / "m", tmp_path / "ws", plate=plate
    )
    assert masked and len(names) == N
    used = [read_label(tmp_path / "ws" / "masks" / f"f{i:02d}.png.png") for i in range(N)]
    iou = np.mean([_iou(u, t) for u, t in zip(used, truth)])
    if plate == "auto":
        missed = sum(bool((t & ~b).any()) for t, b in zip(truth, body))
        assert info["frames_changed"] == missed and info["added_share"] > 0
        assert iou > 0.97
    else:
        assert info is None and iou < 0.9
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before  # inputs kept
