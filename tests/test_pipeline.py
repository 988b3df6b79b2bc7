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
