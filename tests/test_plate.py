"""segcore.plate: masks completed from a still background (a turntable's)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segcore.io import read_label, write_png
from segcore.plate import ADD_LEVEL, clear_of, plate_of, still_plate
from segcore.recon import ReconResult, prepare_workspace

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


def _plate(frames, masks, force=False):
    return still_plate(len(frames), lambda i: (frames[i], masks[i]), force)


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
    plate = _plate(frames, body)
    assert plate is not None and plate.still > 0.95
    fixed = [plate.correct(f, m) for f, m in zip(frames, body)]
    before = np.mean([_iou(m, t) for m, t in zip(body, truth)])
    after = np.mean([_iou(m, t) for m, t in zip(fixed, truth)])
    assert before < 0.9 and after > 0.97, (before, after)
    # nothing added away from the subject (no rim grown round the disc either)
    for f, t in zip(fixed, truth):
        assert (
            f & ~cv2.dilate(t.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        ).sum() == 0


def _faint_turntable():
    """:func:`_turntable` with the leg only a little lighter than the wall behind it."""
    frames, truth, body = _turntable()
    bg = _background()
    for f, t, b in zip(frames, truth, body):
        f[t & ~b] = np.clip(bg[t & ~b].astype(int) + 20, 0, 255).astype(np.uint8)
    return frames, truth, body


def test_a_faint_turning_leg_is_added_to_the_hulls_masks_only():
    frames, truth, body = _faint_turntable()
    plate = _plate(frames, body)
    pairs = [plate.correct_pair(f, m) for f, m in zip(frames, body)]
    masks = np.mean([_iou(m, t) for (m, _), t in zip(pairs, truth)])
    hulls = np.mean([_iou(h, t) for (_, h), t in zip(pairs, truth)])
    assert masks < 0.9 and hulls > 0.95, (masks, hulls)  # the masks keep the sure parts
    assert all((h | ~m).all() for m, h in pairs)  # a hull's mask never holds less
    m, h = plate.correct_pair(frames[3], body[3], ADD_LEVEL)  # at the masks' own level
    assert np.array_equal(m, h) and np.array_equal(m, plate.correct(frames[3], body[3]))


def test_right_masks_are_left_alone_and_a_leak_is_removed():
    frames, truth, _ = _turntable()
    leaky = [t.copy() for t in truth]
    leaky[4][90:110, 10:40] = True  # a patch of background in one frame's mask
    plate = _plate(frames, leaky)
    fixed = [plate.correct(f, m) for f, m in zip(frames, leaky)]
    assert not fixed[4][95:105, 15:35].any()
    for i, (f, t) in enumerate(zip(fixed, truth)):
        assert _iou(f, t) > 0.97, i


def test_a_pole_kept_in_every_frame_goes_where_an_artist_removed_it_once():
    """A still pole the network keeps in every frame is never seen clear, so the plate says
    nothing there; once a person's mask (``artist``) shows it as background, it is removed
    from every frame, and the turning subject is left as it is."""
    frames, truth, _ = _turntable()
    kept = []
    for f, t in zip(frames, truth):
        f[68:115, 78:82] = (200, 200, 200)  # a pale pole under the disc, still in every frame
        k = t.copy()
        k[68:115, 78:82] = True
        kept.append(k)
    plain = _plate(frames, kept)
    assert all(np.array_equal(plain.correct(f, m), m) for f, m in zip(frames, kept))
    drawn = [m.copy() for m in kept]
    drawn[0] = truth[0]  # the artist's mask of frame 0: no pole
    plate = still_plate(len(frames), lambda i: (frames[i], drawn[i]), artist=[0])
    fixed = [plate.correct(f, m) for f, m in zip(frames, drawn)]
    for i, (f, t) in enumerate(zip(fixed, truth)):
        assert not (f & ~t)[75:112, 78:82].any(), i  # the pole, below the subject's edge
        assert _iou(f, t) > 0.97, i


def test_moving_background_is_not_a_plate():
    frames, _, body = _turntable(moving_background=True)
    assert _plate(frames, body) is None
    assert _plate(frames[:5], body[:5], force=True) is None  # too few frames


def test_corrections_apply_at_full_resolution():
    frames, truth, body = _turntable()
    plate = _plate(frames, body)
    big = cv2.resize(body[3].astype(np.uint8), (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    frame = cv2.resize(frames[3], (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    out = plate.correct(frame, big.astype(bool))
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
    res = ReconResult(tmp_path / "ws", {}, [], np.zeros((0, 3)), np.zeros((0, 3)), [], 0.0)
    hull_dir = tmp_path / "ws" / "hull_masks"
    if plate == "auto":
        missed = sum(bool((t & ~b).any()) for t, b in zip(truth, body))
        assert info["frames_changed"] == missed and info["added_share"] > 0
        assert iou > 0.97
        assert len(list(hull_dir.iterdir())) == N  # the hull's own masks, never less
        for i, u in enumerate(used):
            assert (read_label(hull_dir / f"f{i:02d}.png.png") | ~u).all()
        assert res.hull_mask_path("f03.png") == hull_dir / "f03.png.png"
    else:
        assert info is None and iou < 0.9
        assert not hull_dir.exists()  # no plate, no hull masks: the hull takes the masks
        assert res.hull_mask_path("f03.png") == tmp_path / "ws" / "masks" / "f03.png.png"
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before  # inputs kept


def test_the_hull_is_carved_from_the_workspaces_hull_masks(tmp_path):
    from segcore.recon import Intrinsics, Pose, views_from_result

    frames, truth, body = _faint_turntable()
    for d in ("frames", "m"):
        (tmp_path / d).mkdir()
    for i, (f, m) in enumerate(zip(frames, body)):
        write_png(tmp_path / "frames" / f"f{i:02d}.png", f)
        write_png(tmp_path / "m" / f"f{i:02d}.png", np.where(m, 255, 0).astype(np.uint8))
    ws = tmp_path / "ws"
    info = prepare_workspace(tmp_path / "frames", tmp_path / "m", ws, plate="auto").plate
    assert info["frames_changed"] == 0  # too faint for the masks...
    assert info["hull_frames_changed"] > 0 and info["hull_added_share"] > 0  # ...not the hull's
    masks = [read_label(ws / "masks" / f"f{i:02d}.png.png") for i in range(N)]
    hulls = [read_label(ws / "hull_masks" / f"f{i:02d}.png.png") for i in range(N)]
    assert np.mean([_iou(m, t) for m, t in zip(masks, truth)]) < 0.9
    assert np.mean([_iou(h, t) for h, t in zip(hulls, truth)]) > 0.95
    cam = Intrinsics(1, "SIMPLE_RADIAL", W, H, 100.0, 100.0, W / 2, H / 2, 0.0)
    poses = [Pose(f"f{i:02d}.png", 1, np.eye(3), np.zeros(3)) for i in range(N)]
    res = ReconResult(ws, {1: cam}, poses, np.zeros((0, 3)), np.zeros((0, 3)), [], 0.0)
    views = views_from_result(res, with_images=False)
    assert all(np.array_equal(v.mask, h) for v, h in zip(views, hulls))  # what is carved
    # the same workspace again without the plate: no hull masks left behind
    prepare_workspace(tmp_path / "frames", tmp_path / "m", ws, plate="off")
    assert not (ws / "hull_masks").exists()
    assert all(np.array_equal(v.mask, m) for v, m in zip(views_from_result(res, False), masks))


def _finished_job(tmp_path, frames, masks, formats=("mask",)):
    """A segment job over ``frames`` whose outputs (``masks``, as the network left them,
    a soft rim in RGBA) are written and counted as done: ready for the plate pass."""
    from segcore.pipeline import FrameResult, SegmentOptions, SequenceJob

    (tmp_path / "frames").mkdir()
    for i, f in enumerate(frames):
        write_png(tmp_path / "frames" / f"f{i:02d}.png", f)
    out = tmp_path / "out"
    job = SequenceJob(tmp_path / "frames", out, SegmentOptions(formats=formats, workers=1))
    for i, (f, m) in enumerate(zip(frames, masks)):
        m8 = np.where(m, 255, 0).astype(np.uint8)
        for w in job.writers:
            target = out / w.folder / w.filename(job.frames[i])
            if w.name == "rgba":
                rgba = cv2.cvtColor(f, cv2.COLOR_BGR2BGRA)
                rgba[:, :, 3] = cv2.GaussianBlur(m8, (3, 3), 0)
                write_png(target, rgba)
            else:
                write_png(target, m8)
        job.results.append(FrameResult(i, str(job.frames[i]), "skipped"))
    return job, out


def _network_classes(job, kept, support=None):
    """What the network said of each frame (as the job keeps it between its passes): the
    kept classes' probability 1 on ``kept``, the support's 0.6 on ``support``, at the
    network's quarter scale."""
    for i, k in enumerate(kept):
        small = [
            cv2.resize(m.astype(np.float32), (W // 4, H // 4), interpolation=cv2.INTER_AREA)
            for m in (k, support[i] if support is not None else np.zeros_like(k))
        ]
        classes = np.zeros((4, H // 4, W // 4), np.float32)
        classes[1] = small[0]
        classes[3] = 0.6 * small[1] * (1 - small[0])
        classes[0] = 1 - classes[1] - classes[3]
        job._rest_masks[i] = job._rest_png(classes)


def test_segment_job_completes_its_outputs_from_the_plate(tmp_path):
    frames, truth, body = _turntable()
    job, out = _finished_job(tmp_path, frames, body, ("mask", "rgba", "colmap"))
    _network_classes(job, body)  # the network says nothing of the leg it missed
    rim = read_label(out / "rgba" / "f00.png")
    info = job.complete_from_plate()
    assert info is not None and info["frames_changed"] >= N - 1
    assert job.report()["plate"] == info
    for i in range(N):
        mask = read_label(out / "masks" / f"f{i:02d}.png")
        assert _iou(mask, truth[i]) > 0.97
        assert (read_label(out / "colmap_masks" / f"f{i:02d}.png.png") == mask).all()
        alpha = cv2.imread(str(out / "rgba" / f"f{i:02d}.png"), cv2.IMREAD_UNCHANGED)[:, :, 3]
        assert (alpha[mask & ~body[i]] == 255).all()  # the leg is opaque in the cut-out
    soft = cv2.imread(str(out / "rgba" / "f00.png"), cv2.IMREAD_UNCHANGED)[:, :, 3]
    assert ((soft > 0) & (soft < 255)).any() and rim.shape == soft.shape  # rim kept soft
    # inputs untouched
    assert all((cv2.imread(str(job.frames[i])) == frames[i]).all() for i in range(N))


def test_a_turning_part_the_network_calls_a_support_is_not_added(tmp_path):
    """The plate finds the turning leg; the network's classes say it is a support (a
    stand's leg: background by default), so the kept masks stay without it."""
    frames, truth, body = _turntable()
    job, out = _finished_job(tmp_path, frames, body)
    _network_classes(job, body, [t & ~b for t, b in zip(truth, body)])
    info = job.complete_from_plate()
    assert info is not None and info["added_share"] < 1e-4
    for i in range(N):
        assert _iou(read_label(out / "masks" / f"f{i:02d}.png"), body[i]) > 0.98


def test_segment_job_leaves_a_moving_background_alone(tmp_path):
    frames, _, body = _turntable(moving_background=True)
    job, out = _finished_job(tmp_path, frames, body)
    before = [(out / "masks" / f"f{i:02d}.png").read_bytes() for i in range(N)]
    assert job.complete_from_plate() is None and job.plate is None
    assert [(out / "masks" / f"f{i:02d}.png").read_bytes() for i in range(N)] == before


def test_plate_loads_a_bounded_sample_of_a_long_sequence():
    from segcore import plate as plate_mod

    frames, truth, body = _turntable()
    loaded = []

    def load(i):
        loaded.append(i)
        return frames[i % N], body[i % N]

    plate = still_plate(1000, load)
    assert plate is not None and plate.frames == plate_mod.MAX_FRAMES
    assert len(loaded) == plate_mod.MAX_FRAMES and loaded[0] == 0 and loaded[-1] == 999


def test_the_bundled_ring_is_not_taken_for_a_turntable():
    from pathlib import Path

    from segcore.io import discover_frames, read_image

    root = Path(__file__).resolve().parents[1] / "examples" / "garment_ring"
    frames = discover_frames(root / "images")
    masks = [read_label(root / "masks" / f"{p.stem}.png") for p in frames]
    assert still_plate(len(frames), lambda i: (read_image(frames[i]), masks[i])) is None


def test_segment_job_reports_the_plate_pass_and_can_stop_it(tmp_path):
    from segcore.plate import STAGES

    frames, truth, body = _turntable()
    job, out = _finished_job(tmp_path, frames, body)
    _network_classes(job, body)
    seen = []
    job.complete_from_plate(
        progress=lambda *a: seen.append(a), should_stop=lambda: len(seen) >= N + 4
    )
    stages = [s for s, _, _ in seen]
    assert set(stages) <= set(STAGES) and stages.count("plate") == N
    assert seen[N - 1] == ("plate", N, N) and seen[-1] == ("plate masks", 4, N)  # stopped
    changed = [_iou(read_label(out / "masks" / f"f{i:02d}.png"), truth[i]) > 0.97 for i in range(N)]
    assert changed[:4] == [True] * 4 and not all(changed)  # the rest kept the network's


@pytest.mark.parametrize("moving", [False, True])
def test_auto_mapper_follows_the_background(tmp_path, moving):
    from segcore.recon.sfm import auto_mapper, still_background

    frames, truth, _ = _turntable(moving_background=moving)
    (tmp_path / "masks").mkdir()
    paths = []
    for i, (f, m) in enumerate(zip(frames, truth)):
        paths.append(tmp_path / f"f{i:02d}.png")
        write_png(paths[-1], f)
        write_png(tmp_path / "masks" / f"f{i:02d}.png.png", np.where(m, 255, 0).astype(np.uint8))
    want = "incremental" if moving else "turntable"
    assert auto_mapper(still_background(paths, tmp_path, True, "off", None)) == want  # here
    assert still_background(paths, tmp_path, False, "off", None) is None  # no masks
    assert auto_mapper(None) == "incremental"
    assert not still_background(paths, tmp_path, True, "auto", None)  # measured: moving
    assert still_background(paths, tmp_path, True, "on", {"still_share": 0.95})
    assert auto_mapper(True) == "turntable"


def test_masks_segment_completed_are_not_completed_again_by_a_workspace(tmp_path):
    """``segcore segment``'s still-background pass chose what to add with the network's
    classes; its report says so, and a reconstruction reads that instead of completing the
    binary masks again (which would add a stand's legs back)."""
    import json
    import shutil

    from segcore.recon.workspace import segment_plate

    frames, truth, body = _turntable()
    job, out = _finished_job(tmp_path, frames, body)
    _network_classes(job, body)
    info = job.complete_from_plate()
    report = {"output": str(out), "plate": info}
    (out / "report.json").write_text(json.dumps(report))
    assert segment_plate(out / "masks") == info
    assert segment_plate(out) == info  # the output folder itself names its masks/
    (out / "report.json").write_text(json.dumps({**report, "plate": {**info, "stopped": True}}))
    assert segment_plate(out / "masks") is None  # a pass that stopped completed only some
    (out / "report.json").write_text(json.dumps({**report, "plate": None}))
    assert segment_plate(out / "masks") is None  # no still background: nothing was done
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "report.json").write_text(json.dumps(report))
    assert segment_plate(copy / "masks") is None  # a report that names another folder
