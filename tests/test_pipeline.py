"""segment_frame on the bundled model: the mask-only path skips the rim colours and nothing else."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segcore.card import MODELS_DIR
from segcore.infer import Segmenter
from segcore.io import discover_frames, read_image
from segcore.pipeline import segment_frame

from .conftest import ROOT

pytestmark = pytest.mark.skipif(
    not (MODELS_DIR / "garment.json").exists(), reason="no bundled model yet"
)


@pytest.mark.parametrize("upscale", [1, 5])
def test_mask_only_path_gives_the_same_mask_without_rim_colours(upscale):
    seg = Segmenter.load()
    bgr = read_image(discover_frames(ROOT / "examples" / "garment_ring" / "images")[0])
    if upscale > 1:  # a large frame: small tiles of the boundary band
        h, w = bgr.shape[:2]
        bgr = cv2.resize(bgr, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC)
    full = segment_frame(bgr, seg, seg.card.postprocess)
    bare = segment_frame(bgr, seg, seg.card.postprocess, rim_colours=False)
    assert np.array_equal(full.mask, bare.mask)
    assert np.array_equal(full.alpha, bare.alpha)
    assert full.rim and not bare.rim
    # the RGBA's rim is defringed only on the full path; elsewhere the frames agree
    a, b = full.rgba(bgr), bare.rgba(bgr)
    differs = (a != b).any(axis=2)
    assert differs.any()
    assert np.all((full.alpha[differs] > 0) & (full.alpha[differs] < 255))


def test_sequence_runs_one_opencv_thread_per_frame_and_restores_the_setting(tmp_path):
    from segcore.pipeline import SegmentOptions, SequenceJob

    frames = ROOT / "examples" / "garment_ring" / "images"
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)  # what a host application (Blender) might have chosen
    try:
        job = SequenceJob(frames, tmp_path / "out", SegmentOptions(formats=("mask",), workers=2))
        during = [cv2.getNumThreads() for r in job.run() if r.status == "ok"]
        assert len(during) == len(job.frames)
        assert set(during) == {1}  # two frames in flight, one core each
        assert cv2.getNumThreads() == 3  # the host's setting is back
    finally:
        cv2.setNumThreads(before)


def test_temporal_sequence_is_the_same_with_one_or_two_frames_in_flight(tmp_path):
    """--temporal chains each frame to its predecessor: results do not depend on threads,
    a bad frame breaks the chain without stopping the run, and the masks differ from the
    per-frame ones only a little (smoothing, not a different segmentation)."""
    import shutil

    from segcore.io import read_label
    from segcore.metrics import confusion, iou
    from segcore.pipeline import SegmentOptions, SequenceJob

    frames = tmp_path / "frames"
    shutil.copytree(ROOT / "examples" / "garment_ring" / "images", frames)
    (frames / "0003.jpg").write_bytes(b"not a jpeg")  # one bad frame in the middle
    masks = {}
    for name, opts in {
        "one": SegmentOptions(formats=("mask",), workers=1, temporal=True),
        "two": SegmentOptions(formats=("mask",), workers=2, temporal=True),
        "plain": SegmentOptions(formats=("mask",), workers=2),
    }.items():
        job = SequenceJob(frames, tmp_path / name, opts)
        results = list(job.run())
        assert [r.status for r in results].count("failed") == 1
        assert all("temporal" in r.timings for r in results if r.status == "ok") == opts.temporal
        masks[name] = {p.name: read_label(p) for p in sorted((tmp_path / name / "masks").iterdir())}
    assert len(masks["one"]) == 7
    for k in masks["one"]:
        assert np.array_equal(masks["one"][k], masks["two"][k]), k
        assert iou(confusion(masks["one"][k], masks["plain"][k])) > 0.95, k
    # the first frame and the one after the bad frame have no predecessor: unchanged
    for k in ("0000.png", "0004.png"):
        assert np.array_equal(masks["one"][k], masks["plain"][k]), k


def test_edge_speck_share_removes_the_edges_specks_and_fills_their_holes(monkeypatch):
    from dataclasses import replace

    import segcore.frame as frame_mod
    from segcore.card import PostprocessParams
    from segcore.frame import FrameMasks, segment_frame

    mask = np.zeros((200, 300), np.uint8)
    mask[40:160, 60:240] = 255  # the subject
    mask[90:93, 140:143] = 0  # a 9-pixel hole the edges left inside it
    mask[10:13, 10:13] = 255  # a 9-pixel speck outside it
    mask[100:200, 0:30] = 255  # a real part (3000 px) touching the border
    alpha = mask.copy()
    alpha[40, 60:240] = 128  # a soft rim, left as it is
    drawn = FrameMasks(mask, alpha, np.zeros((20, 30), np.float32), {"refine": 0.0})
    monkeypatch.setattr(frame_mod, "_segment", lambda *a: replace(drawn))
    post = PostprocessParams(edge_speck_share=100 / mask.size)
    fm = segment_frame(np.zeros((200, 300, 3), np.uint8), None, post)
    want = mask.copy()
    want[90:93, 140:143] = 255
    want[10:13, 10:13] = 0
    assert np.array_equal(fm.mask, want)
    assert fm.alpha[91, 141] == 255 and fm.alpha[11, 11] == 0 and fm.alpha[40, 100] == 128
    assert np.array_equal(drawn.mask, mask)  # the drawn result is not changed in place
    off = segment_frame(np.zeros((200, 300, 3), np.uint8), None, PostprocessParams())
    assert np.array_equal(off.mask, mask)  # 0, the default (older cards): nothing changes


def test_outline_sigma_redraws_the_learned_refiners_outline_only(monkeypatch):
    from dataclasses import replace
    from types import SimpleNamespace

    import segcore.frame as frame_mod
    from segcore.card import PostprocessParams
    from segcore.frame import FrameMasks, segment_frame

    mask = np.zeros((200, 300), np.uint8)
    mask[40:160, 60:240] = 255
    mask[39, 60:240:4] = 255  # the refiner's one-pixel bumps
    drawn = FrameMasks(mask, mask.copy(), np.zeros((20, 30), np.float32), {"refine": 0.0})
    monkeypatch.setattr(frame_mod, "_segment", lambda *a: replace(drawn))
    frame = np.zeros((200, 300, 3), np.uint8)
    learned = SimpleNamespace(edges=object())  # a segmenter with a learned edge refiner
    fm = segment_frame(frame, learned, PostprocessParams(outline_sigma=1.5))
    assert not fm.mask[39].any() and fm.mask[40:160, 64:236].all()
    assert np.array_equal(fm.alpha > 127, fm.mask > 0)
    assert np.array_equal(drawn.mask, mask)  # the drawn result is not changed in place
    raw = segment_frame(frame, learned, PostprocessParams(outline_sigma=1.5, refine=False))
    assert np.array_equal(raw.mask, mask)  # --no-refine: the spline's outline as it is
    guided = SimpleNamespace(edges=None)  # --edges guided: the filter's outline as it is
    assert np.array_equal(
        segment_frame(frame, guided, PostprocessParams(outline_sigma=1.5)).mask, mask
    )
