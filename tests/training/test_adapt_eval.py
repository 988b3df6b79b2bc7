"""python -m training adapt-eval: the correct -> adapt protocol on a root of sequences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.adapt_eval import main, summary

ROOT = Path(__file__).resolve().parents[2]
RENDERED = ROOT / "tests" / "data" / "recon_turntable"


def test_summary_names_the_largest_loss_and_compares_two_with_one():
    rows = [
        {"family": "f", "sequence": "a", "before": {"iou": 0.90, "bf2": 0.70},
         "after1": {"iou": 0.96, "bf2": 0.80}, "after2": {"iou": 0.97, "bf2": 0.82}},
        {"family": "f", "sequence": "b", "before": {"iou": 0.98, "bf2": 0.90},
         "after1": {"iou": 0.97, "bf2": 0.88}, "after2": {"iou": 0.965, "bf2": 0.87}},
    ]  # fmt: skip
    text = summary(rows)
    assert "1 corrected: mean IoU +0.0250, BF@2px +0.0400 over 2 sequences" in text
    assert "largest IoU loss -0.0100 (f/b)" in text
    assert "two corrections at least as good as one (IoU): 1 of 2" in text


def test_only_the_worst_sequences_are_adapted(tmp_path, capsys):
    if not RENDERED.is_dir():
        pytest.skip("tests/data/recon_turntable is missing")
    root = tmp_path / "root"
    frames = sorted((RENDERED / "images").glob("*.jpg"))[::3][:4]
    for name, picked in (("first", frames), ("second", frames[::-1])):
        for sub in ("images", "masks"):
            (root / "fam" / name / sub).mkdir(parents=True)
        for k, src in enumerate(picked):
            shutil.copyfile(src, root / "fam" / name / "images" / f"{k:04d}.jpg")
            shutil.copyfile(RENDERED / "masks" / f"{src.stem}.png",
                            root / "fam" / name / "masks" / f"{k:04d}.png")  # fmt: skip
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out), "--worst", "1", "--workers", "1"]) == 0
    rows = json.loads((out / "adapt_eval.json").read_text())
    assert len(rows) == 1 and rows[0]["frames"] == 4
    assert len(rows[0]["corrected"]) == 2 and "after2" in rows[0]
    assert rows[0]["after1"]["iou"] > 0.5
    text = capsys.readouterr().out
    assert text.count("segmented fam/") == 2
    assert "1 corrected: mean IoU" in text and "over 1 sequence;" in text


def test_keep_garment_scores_and_corrects_against_the_label_maps_garment(tmp_path):
    example = ROOT / "examples" / "garment_ring"
    root, other = tmp_path / "root", tmp_path / "other"
    shutil.copytree(example, root / "ring", ignore=shutil.ignore_patterns("*.json"))
    shutil.copytree(root / "ring", other / "ring")  # two roots, one name: refused
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="ring: the same sequence name, or the same sequence"):
        main([str(root), str(other), "--out", str(out)])
    (other / "ring").rename(other / "ring2")
    args = [str(root), str(other), "--out", str(out), "--keep", "garment", "--worst", "1"]
    assert main([*args, "--workers", "1", "--sequences", "ring"]) == 0
    (row,) = json.loads((out / "adapt_eval.json").read_text())
    assert row["keep"] == ["garment"]
    import numpy as np

    from segcore.io import read_label
    from training.data import read_classes

    stem = row["corrected"][0]
    corrected = read_label(out / "ring" / "corrected1" / f"{stem}.png")
    garment = read_classes(example / "labels" / f"{stem}.png") == 1
    figure = read_label(example / "masks" / f"{stem}.png")
    assert np.array_equal(corrected, garment) and figure.sum() > garment.sum()
    assert 0.0 < row["before"]["iou"] <= 1.0 and 0.0 < row["after1"]["iou"] <= 1.0
