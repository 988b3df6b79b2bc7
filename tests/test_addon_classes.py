"""The add-on's "Keep" choice and the batch script's --keep, with a multi-class model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from .test_addon import ADDON, _batch, run_op  # noqa: F401  (sets up bpy like test_addon)
from .test_classes import classes_model  # noqa: F401  (the multi-class model fixture)

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender


class EnabledLayout:
    """A UILayout stand-in that records each drawn property with its row's ``enabled``."""

    def __init__(self, log, enabled=True):
        self.log, self.enabled = log, enabled

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split", "grid_flow"):
            return lambda *a, **k: EnabledLayout(self.log, self.enabled)
        if name in ("label", "separator", "progress"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def prop(self, data, name, **kw):
        assert data.bl_rna.properties.get(name) is not None, name
        self.log[name] = self.enabled

    def operator(self, idname, **kw):
        return type("Props", (), {})()


def _draw():
    from blender_addon import panels

    log = {}
    panels.draw_garment_panel(EnabledLayout(log), bpy.context)
    return log


@pytest.fixture
def settings(addon, classes_model, tmp_path):  # noqa: F811
    s = bpy.context.scene.garment_seg
    s.input_dir = str(classes_model["frames"])
    s.output_dir = str(tmp_path / "out")
    s.model_source = "FILE"
    s.use_default_formats = False
    s.formats.rgba, s.formats.mask, s.formats.labels = False, True, True
    s.plate = "OFF"
    return s


def test_keep_is_greyed_and_ignored_for_a_binary_model(settings, random_model):
    from blender_addon.properties import read_settings

    settings.model_file = str(random_model["card"])
    settings.keep = "GARMENT"
    drawn = _draw()
    assert drawn["keep"] is False and drawn["labels"] is False and drawn["mask"] is True
    assert read_settings(bpy.context).keep is None  # a binary model keeps the garment figure


def test_keep_presets_segment_through_execute(settings, classes_model, tmp_path):  # noqa: F811
    from blender_addon.properties import read_settings
    from segcore.labels import read_labels

    settings.model_file = str(classes_model["card"])
    drawn = _draw()
    assert drawn["keep"] is True and drawn["labels"] is True
    areas = {}
    for preset, keep in (
        ("GARMENT", "garment"),
        ("GARMENT_FIGURE", "garment,figure"),
        ("ALL", "garment,figure,support"),
    ):
        settings.keep = preset
        settings.output_dir = str(tmp_path / preset)
        assert read_settings(bpy.context).keep == keep
        assert run_op(bpy.ops.garment_seg.segment_sequence) == ({"FINISHED"}, None)
        mask = cv2.imread(str(tmp_path / preset / "masks" / "f1.png"), cv2.IMREAD_UNCHANGED)
        labels = read_labels(tmp_path / preset / "labels" / "f1.png")
        assert np.array_equal(labels > 0, mask > 0)
        assert set(np.unique(labels)) == {0, *(i + 1 for i in range(len(keep.split(","))))}
        areas[preset] = int((mask > 0).sum())
    assert areas["GARMENT"] < areas["GARMENT_FIGURE"] < areas["ALL"]


def test_batch_script_keep(classes_model, random_model, tmp_path):  # noqa: F811
    frames, card = classes_model["frames"], classes_model["card"]
    common = ("--input", frames, "--model", card, "--formats", "mask,labels", "--plate", "off")
    ok = _batch(*common, "--output", tmp_path / "g", "--keep", "garment", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    labels = cv2.imread(str(tmp_path / "g" / "labels" / "f0.png"), cv2.IMREAD_UNCHANGED)
    assert labels is not None and len(list((tmp_path / "g" / "labels").iterdir())) == 3
    bad = _batch(*common, "--output", tmp_path / "h", "--keep", "garment,hat", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown class hat" in bad.stderr
    binary = _batch(
        "--input", frames, "--model", random_model["card"], "--output", tmp_path / "b",
        "--keep", "garment", cwd=tmp_path,
    )  # fmt: skip
    assert binary.returncode == 2 and "has no classes" in binary.stderr


def test_correct_frame_follows_the_keep_it_was_segmented_with(settings, classes_model, tmp_path):  # noqa: F811
    """Masks segmented keeping the garment alone are corrected with Keep Garment: another
    Keep is refused with a message that says which; the correction notes its Keep."""
    settings.model_file = str(classes_model["card"])
    settings.keep = "GARMENT"
    assert run_op(bpy.ops.garment_seg.segment_sequence) == ({"FINISHED"}, None)
    settings.keep, settings.preview_index = "GARMENT_FIGURE", 1
    _, error = run_op(bpy.ops.garment_seg.correct_frame)
    assert error and "segmented keeping garment, Keep is garment,figure" in error
    settings.keep = "GARMENT"
    assert run_op(bpy.ops.garment_seg.correct_frame) == ({"FINISHED"}, None)
    assert run_op(bpy.ops.garment_seg.save_correction) == ({"FINISHED"}, None)
    assert (tmp_path / "out" / "corrected" / "keep.txt").read_text() == "garment\n"
