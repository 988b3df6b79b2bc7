"""The add-on's correct -> adapt loop with the bpy wheel: Correct Frame, Save Correction and
Adapt to Corrections through ``execute`` (background mode)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="bpy-user-"))
bpy = pytest.importorskip("bpy")
cv2 = pytest.importorskip("cv2")

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parent.parent
RENDERED = ROOT / "tests" / "data" / "recon_turntable"


def _run(op):
    try:
        return op(), None
    except RuntimeError as exc:  # an ERROR report
        return None, str(exc)


def test_correct_save_adapt_through_execute(addon, random_model, tmp_path):
    if not RENDERED.is_dir():
        pytest.skip("tests/data/recon_turntable is missing")
    frames = tmp_path / "frames"
    frames.mkdir()
    for src in sorted((RENDERED / "images").glob("*.jpg"))[:4]:
        shutil.copyfile(src, frames / src.name)
    s = bpy.context.scene.garment_seg
    s.input_dir, s.output_dir = str(frames), str(tmp_path / "out")
    s.model_source, s.model_file = "FILE", str(random_model["card"])
    s.use_default_formats = False
    s.formats.rgba = s.formats.mask = True
    s.plate = "OFF"

    # nothing saved yet: adapting says so
    assert _run(bpy.ops.garment_seg.segment_sequence) == ({"FINISHED"}, None)
    _, error = _run(bpy.ops.garment_seg.adapt_sequence)
    assert error and "no such folder of corrected masks" in error and "Traceback" not in error

    # open frame 1 for correction: the frame, its mask as alpha
    s.preview_index = 1
    assert _run(bpy.ops.garment_seg.correct_frame) == ({"FINISHED"}, None)
    img = bpy.data.images["Garment correction"]
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    alpha = px.reshape(h, w, 4)[::-1, :, 3]
    mask = cv2.imread(str(tmp_path / "out" / "masks" / "0001.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(alpha > 0.5, mask > 127)

    # an emptied correction is refused with a clear message, nothing saved
    erased = px.reshape(h, w, 4).copy()
    erased[..., 3] = 0
    img.pixels.foreach_set(erased.ravel())
    _, error = _run(bpy.ops.garment_seg.save_correction)
    assert error and "the correction is empty" in error
    assert not (tmp_path / "out" / "corrected" / "0001.png").exists()

    # "paint" the true mask into the alpha and save it
    truth = cv2.imread(str(RENDERED / "masks" / "0001.png"), cv2.IMREAD_GRAYSCALE) > 127
    painted = px.reshape(h, w, 4).copy()
    painted[..., 3] = truth[::-1].astype(np.float32)
    img.pixels.foreach_set(painted.ravel())
    assert _run(bpy.ops.garment_seg.save_correction) == ({"FINISHED"}, None)
    saved = tmp_path / "out" / "corrected" / "0001.png"
    assert np.array_equal(cv2.imread(str(saved), cv2.IMREAD_GRAYSCALE) > 127, truth)
    before = saved.read_bytes()
    assert (saved.parent / "keep.txt").read_text() == "garment,figure\n"  # what it shows

    # adapt: every frame written again, the corrected one is the artist's mask
    assert _run(bpy.ops.garment_seg.adapt_sequence) == ({"FINISHED"}, None)
    assert saved.read_bytes() == before
    assert (tmp_path / "out" / "masks" / "0001.png").read_bytes() == before
    assert (tmp_path / "out" / "adapted.json").is_file()
    # and a second adaptation reuses the fitted model
    assert _run(bpy.ops.garment_seg.adapt_sequence) == ({"FINISHED"}, None)
    assert saved.read_bytes() == before
