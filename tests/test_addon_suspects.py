"""The add-on lists a run's suspect frames and opens one, with the bpy wheel, through
``execute`` (background mode)."""

from __future__ import annotations

import json
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


class Layout:
    """Records the labels, properties and operator buttons a panel draws (no window in
    background mode); a property must exist on the real property group."""

    def __init__(self):
        self.labels, self.props, self.buttons = [], [], []

    def __getattr__(self, name):
        return lambda *a, **k: self

    def prop(self, data, name, **kw):
        assert hasattr(data, name), name
        self.props.append(name)
        return self

    def label(self, text="", **kw):
        self.labels.append(text)
        return self

    def operator(self, idname, **kw):
        button = type("Button", (), {"idname": idname})()
        self.buttons.append(button)
        return button


def test_suspect_frames_are_listed_and_open_with_their_mask(addon, tmp_path):
    """Four rendered turntable frames and one blank frame: the bundled model finds no garment
    on the blank one, so the run names it suspect; the panel lists it with its reason and
    its button opens the frame with its mask as alpha."""
    if not RENDERED.is_dir():
        pytest.skip("tests/data/recon_turntable is missing")
    from blender_addon import correct, review

    frames = tmp_path / "frames"
    frames.mkdir()
    for src in sorted((RENDERED / "images").glob("*.jpg"))[:4]:
        shutil.copyfile(src, frames / src.name)
    cv2.imwrite(str(frames / "0004.jpg"), np.full((300, 400, 3), 128, np.uint8))
    s = bpy.context.scene.garment_seg
    s.input_dir, s.output_dir = str(frames), str(tmp_path / "out")
    s.use_default_formats = False
    s.formats.rgba = s.formats.mask = True
    s.plate = "OFF"
    assert bpy.ops.garment_seg.segment_sequence() == {"FINISHED"}

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    want = [Path(f["path"]).name for f in report["frames"] if f["suspect"]]
    assert "0004.jpg" in want
    found = review.review(s.output_dir)
    assert [x.name for x in found.suspects] == want and found.assessed == 5
    blank = next(x for x in found.suspects if x.name == "0004.jpg")
    assert blank.reasons and blank.confidence < 0.5

    layout = Layout()
    correct.draw_correct(layout, bpy.context)
    assert f"{len(want)} of 5 frames look unreliable:" in layout.labels
    assert f"0004.jpg: {blank.reasons}" in layout.labels
    buttons = [b for b in layout.buttons if b.idname == "garment_seg.open_suspect"]
    assert [b.name for b in buttons] == want

    # the button: the frame with its mask as alpha, and Correct's Frame set to it
    s.preview_index = 0
    assert bpy.ops.garment_seg.open_suspect(name="0004.jpg") == {"FINISHED"}
    assert s.preview_index == 4
    img = bpy.data.images["Garment correction"]
    assert img["garment_stem"] == "0004" and tuple(img.size) == (400, 300)
    px = np.empty(400 * 300 * 4, np.float32)
    img.pixels.foreach_get(px)
    mask = cv2.imread(str(tmp_path / "out" / "masks" / "0004.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(px.reshape(300, 400, 4)[::-1, :, 3] > 0.5, mask > 127)


def test_open_suspect_names_a_frame_missing_from_the_input_folder(addon, tmp_path):
    s = bpy.context.scene.garment_seg
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    s.input_dir, s.output_dir = str(tmp_path / "frames"), str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="b.jpg is not in the input folder"):
        bpy.ops.garment_seg.open_suspect(name="b.jpg")


def test_no_report_or_a_broken_one_lists_nothing(tmp_path):
    pytest.importorskip("bpy")
    from blender_addon import review

    assert review.review(str(tmp_path)) is None
    (tmp_path / "report.json").write_text("{not json")
    assert review.review(str(tmp_path)) is None
    (tmp_path / "report.json").write_text(json.dumps({"frames": [
        {"index": 1, "path": "/x/b.jpg", "confidence": 0.2, "suspect": True,
         "reasons": ["the network hesitates"]},
        {"index": 0, "path": "/x/a.jpg", "confidence": 0.9, "suspect": False, "reasons": []},
        {"index": 2, "path": "/x/c.jpg", "status": "failed", "confidence": None},
    ]}))  # fmt: skip
    os.utime(tmp_path / "report.json", ns=(1, 2))  # a new modification time: read again
    got = review.review(str(tmp_path))
    assert [(x.name, x.reasons) for x in got.suspects] == [("b.jpg", "the network hesitates")]
    assert got.assessed == 2
