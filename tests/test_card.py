"""Model cards are input: every field segcore reads is checked for its type and range when the
card is read, with one message naming the card file and the field."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from segcore.card import MODELS_DIR, load_card
from segcore.cli import main
from segcore.errors import ModelError

SHIPPED = MODELS_DIR / "garment.json"


def shipped() -> dict:
    return json.loads(SHIPPED.read_text())


def write_card(folder: Path, d: dict, name: str = "m.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(d))  # NaN and Infinity written as JSON's extension, as read
    return path


def mutate(d: dict, dotted: str, value) -> dict:
    *parents, key = dotted.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[key] = value
    return d


# (field, bad value[, the field the message names]): the reproductions of issue 33 and
# their neighbours
BAD = [
    ("onnx", None),
    ("onnx", 3),
    ("onnx", ""),
    ("onnx", "../../../etc/passwd"),
    ("onnx", "/etc/passwd"),
    ("onnx", "sub/../../m.onnx"),
    ("onnx", "notes.txt"),
    ("name", 5),
    ("arch", [1, 2]),
    ("arch.widths", "8"),
    ("arch.widths", [8, 16], "arch"),  # three depths
    ("arch.depths", [1, -3, 3]),
    ("arch.in_channels", 0),
    ("arch.batchnorm", "true"),
    ("arch.blocks", 3, "arch.blocks"),
    ("preprocess", None),
    ("preprocess.input_size", 100000),
    ("preprocess.input_size", 320.0),
    ("preprocess.input_size", 8),
    ("preprocess.pad_multiple", 0),
    ("preprocess.pad_multiple", -32),
    ("preprocess.pad_multiple", True),
    ("preprocess.denoise_sigma", math.nan),
    ("preprocess.denoise_sigma", 1e6),
    ("preprocess.denoise_sigma", -1),
    ("preprocess.mean", [0.5, 0.5]),
    ("preprocess.mean", [0.5, 0.5, "0.5"]),
    ("preprocess.std", [0, 0, 0]),
    ("preprocess.std", [0.2, 0.2, -0.2]),
    ("preprocess.std", [0.2, 0.2, math.inf]),
    ("preprocess.color_order", "BGR"),
    ("preprocess.sigma", 0.5),
    ("postprocess", [1, 2]),
    ("postprocess.threshold", 2),
    ("postprocess.threshold", -1),
    ("postprocess.threshold", 0),
    ("postprocess.threshold", 1),
    ("postprocess.threshold", math.nan),
    ("postprocess.threshold", math.inf),
    ("postprocess.threshold", "0.5"),
    ("postprocess.min_blob_share", 2),
    ("postprocess.min_blob_share", 1),
    ("postprocess.satellite_share", -0.1),
    ("postprocess.satellite_gap", 1),
    ("postprocess.max_hole_share", -0.1),
    ("postprocess.outline_sigma", -1),
    ("postprocess.outline_sigma", 100),
    ("postprocess.outline_sigma", "1.5"),
    ("postprocess.refine", "false"),
    ("postprocess.refine", 0),
    ("postprocess.flip", None),
    ("postprocess.refine_radius", 1e9),
    ("postprocess.refine_radius", 0),
    ("postprocess.refine_eps", 0),
    ("postprocess.treshold", 0.5),
    ("edge_refiner", "x"),
    ("edge_refiner", None),
    ("edge_refiner.onnx", "../garment_edges.onnx"),
    ("edge_refiner.onnx", "/etc/passwd"),
    ("edge_refiner.cell", 0),
    ("edge_refiner.margin", 1e3),
    ("edge_refiner.guide", "bilateral"),
    ("edge_refiner.scale", 2),
    ("classes", "garment"),
    ("classes", []),
    ("classes", ["background", "garment", "garment"]),
    ("classes", ["background", ""]),
    ("classes", ["background", 1]),
]


@pytest.mark.parametrize("row", BAD, ids=[f"{r[0]}={r[1]!r}" for r in BAD])
def test_bad_card_field_is_named_with_the_card(tmp_path, row):
    field, value, named = (*row, row[0])[:3]
    path = write_card(tmp_path, mutate(shipped(), field, value))
    with pytest.raises(ModelError) as info:
        load_card(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: model card field {named} "), msg
    assert "\n" not in msg


def test_shipped_card_loads_with_its_informational_fields(tmp_path):
    card = load_card(SHIPPED)
    assert card.preprocess.input_size == 320 and card.postprocess.refine is True
    for key in ("training", "metrics", "splits", "commands", "edge_refiner"):
        assert key in card.extra


@pytest.mark.parametrize(
    "field, value",
    [
        ("notes", "anything at all"),
        ("metrics", {"f1": "n/a"}),
        ("classes", ["background", "garment", "figure", "support"]),
        ("onnx", "sub/m.onnx"),
        ("onnx", "./m.onnx"),
        ("postprocess.threshold", 0.3),
        ("postprocess.refine", False),
        ("preprocess.denoise_sigma", 0),
        ("preprocess.pad_multiple", 64),
    ],
)
def test_good_card_values_load(tmp_path, field, value):
    d = mutate(shipped(), field, value)
    card = load_card(write_card(tmp_path, d))
    if field == "onnx":
        assert card.onnx_path.parent.resolve().is_relative_to(tmp_path.resolve())


def test_an_absolute_onnx_path_inside_the_card_folder_is_accepted(tmp_path):
    card = load_card(write_card(tmp_path, mutate(shipped(), "onnx", str(tmp_path / "m.onnx"))))
    assert card.onnx_path.resolve() == (tmp_path / "m.onnx").resolve()


def test_bad_card_stops_segment_before_any_output(random_model, tmp_path, capsys):
    import shutil

    import cv2

    from .conftest import blob_image

    frames = tmp_path / "in"
    frames.mkdir()
    cv2.imwrite(str(frames / "f0.jpg"), blob_image(48, 64, seed=1)[0])
    card = json.loads(Path(random_model["card"]).read_text())
    card["postprocess"]["refine"] = "false"
    m = tmp_path / "model"
    m.mkdir()
    shutil.copy(random_model["onnx"], m / "rand.onnx")
    path = write_card(m, card, "rand.json")
    out = tmp_path / "out"
    code = main(["segment", str(frames), "-o", str(out), "--model", str(path), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}: model card field postprocess.refine must be true or false" in err
    assert "Traceback" not in err and not out.exists()
