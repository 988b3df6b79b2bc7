"""Each photogrammetry mask convention: file name and polarity (a wrong one silently ruins a
reconstruction)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from segcore.formats import WRITERS
from segcore.frame import FrameMasks

EXPECTED = {
    "mask": ("masks", "frame_001.png"),
    "rgba": ("rgba", "frame_001.png"),
    "colmap": ("colmap_masks", "frame_001.jpg.png"),
    "meshroom": ("meshroom_masks", "frame_001.png"),
    "realitycapture": ("realitycapture_masks", "frame_001.jpg.mask.png"),
    "metashape": ("metashape_masks", "frame_001_mask.png"),
    "openmvs": ("openmvs_masks", "frame_001.mask.png"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_naming_and_polarity(name, tmp_path):
    w = WRITERS[name]
    folder, fname = EXPECTED[name]
    assert w.folder == folder and w.filename(Path("shoot/frame_001.jpg")) == fname
    bgr = np.full((6, 8, 3), 90, np.uint8)
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:6] = 255  # the subject
    fm = FrameMasks(mask, mask, np.zeros((1, 1), np.float32), {})
    w.write(tmp_path / fname, bgr, fm)
    out = cv2.imread(str(tmp_path / fname), cv2.IMREAD_UNCHANGED)
    assert out.shape[:2] == (6, 8)
    keep = out[:, :, 3] if out.ndim == 3 else out
    # every tool here keeps the subject: white / non-zero on the subject, 0 elsewhere
    assert (keep[mask > 0] == 255).all() and (keep[mask == 0] == 0).all()


def test_every_writer_is_documented():
    for w in WRITERS.values():
        assert w.doc
