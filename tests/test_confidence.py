"""Per-frame confidence, suspect frames, the run's verdict and its contact sheet
(segcore.confidence, SequenceJob.assess / write_contact_sheet, `segcore segment --strict`)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import segcore.confidence as conf
from segcore.card import MODELS_DIR
from segcore.cli import main
from segcore.confidence import assess, frame_signals, grid_mask, temporal_deficits, verdict
from segcore.outputs import Manifest

from .conftest import blob_image


def _disc(h=120, w=160, r=30, cx=80, cy=60):
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (cx, cy), r, 255, -1)
    return m


# --- the signals ---------------------------------------------------------------------------


def test_a_sure_network_has_a_thin_band_and_a_confused_one_a_wide_one():
    sure = cv2.GaussianBlur(_disc().astype(np.float32) / 255, (3, 3), 0)
    rng = np.random.default_rng(0)
    confused = np.clip(sure * 0.4 + rng.uniform(0.2, 0.6, sure.shape), 0, 1).astype(np.float32)
    a, b = frame_signals(sure, None, 0.5), frame_signals(confused, None, 0.5)
    assert a["uncertain"] < 1.5 < b["uncertain"]
    assert "flip_iou" not in a  # no flip pair, no flip signal


def test_flip_agreement_is_the_iou_of_the_two_passes():
    d = _disc().astype(np.float32) / 255
    moved = np.roll(d, 20, axis=1)
    same = frame_signals(d, [d, d], 0.5)["flip_iou"]
    apart = frame_signals(d, [d, moved], 0.5)["flip_iou"]
    assert same == 1.0 and 0.3 < apart < 0.8


def test_the_odd_frame_out_disagrees_with_its_neighbours():
    masks = [_disc(cx=60 + 4 * i) for i in range(7)]
    masks[3] = _disc(cx=120, r=15)  # a frame whose mask jumped away
    d = temporal_deficits([grid_mask(m) for m in masks])
    assert d[0] is None and d[-1] is None  # no neighbour on one side
    assert d[3] > conf.LIMITS["temporal"]
    assert all(x < conf.LIMITS["temporal"] for k, x in enumerate(d) if x is not None and k != 3)


def test_assess_flags_with_reasons_and_scores_at_the_limits():
    frames = [
        {"foreground_share": 0.2, "uncertain": 0.2, "flip_iou": 0.99},
        {"foreground_share": 0.21, "uncertain": conf.LIMITS["uncertain"] * 3, "flip_iou": 0.99},
        {"foreground_share": 0.19, "uncertain": 0.2, "flip_iou": 1 - 2 * conf.LIMITS["flip"]},
        {"foreground_share": 0.0},
        {"foreground_share": 0.8, "uncertain": 0.2, "flip_iou": 0.99},  # 4x the median
        {"foreground_share": None},  # failed: not assessed
    ]
    a = assess(frames)
    assert [x["suspect"] for x in a] == [False, True, True, True, True, False]
    assert a[0]["confidence"] > 0.5 and a[5]["confidence"] is None
    assert "hesitates" in a[1]["reasons"][0]
    assert "mirror image" in a[2]["reasons"][0]
    assert a[3]["confidence"] == 0.0 and "empty" in a[3]["reasons"][0]
    assert "median size" in a[4]["reasons"][0]
    assert a[4]["signals"]["foreground_ratio"] == pytest.approx(0.8 / 0.205, abs=1e-3)
    # at a limit the score is 0.5: a frame just under every limit is not suspect
    at = {"foreground_share": 0.2, "uncertain": conf.LIMITS["uncertain"] * 0.99}
    assert not assess([at])[0]["suspect"] and assess([at])[0]["confidence"] >= 0.5


def test_verdict_line():
    assert verdict(7, 36, "out/contact_sheet.png") == (
        "7 of 36 frames look unreliable: see out/contact_sheet.png"
    )
    assert verdict(0, 5, None) == "all 5 frames look reliable"


# --- a run -------------------------------------------------------------------------------


@pytest.fixture()
def shoot(tmp_path):
    d = tmp_path / "shoot"
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"f_{i}.jpg"), blob_image(seed=i)[0])
    return d


def _segment(shoot, out, model, *extra):
    return main(["segment", str(shoot), "-o", str(out), "--model", str(model), *extra])


def test_every_frame_gets_a_confidence_and_the_run_a_contact_sheet(
    shoot, tmp_path, shapes_model, capsys
):
    out = tmp_path / "out"
    assert _segment(shoot, out, shapes_model["card"]) == 0
    err = capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    for f in report["frames"]:
        assert 0.0 <= f["confidence"] <= 1.0 and isinstance(f["suspect"], bool)
        assert {"uncertain", "flip_iou"} <= set(f["signals"])
    assert report["confidence"]["assessed"] == 5 and report["contact_sheet"] == "contact_sheet.png"
    assert "confidence: median" in err and "contact_sheet.png" in err
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] > 300
    # the sheet is the command's own output: a rerun may replace it, nothing else
    assert Manifest(out, "segment").owns(out / "contact_sheet.png")
    assert _segment(shoot, out, shapes_model["card"], "--overwrite", "-q") == 0


def test_a_contact_sheet_the_command_did_not_write_is_left_alone(
    shoot, tmp_path, shapes_model, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "contact_sheet.png").write_bytes(b"the user's own picture")
    assert _segment(shoot, out, shapes_model["card"]) == 0
    assert (out / "contact_sheet.png").read_bytes() == b"the user's own picture"
    err = capsys.readouterr().err
    assert "contact_sheet.png: `segcore segment` did not write it" in err
    assert json.loads((out / "report.json").read_text())["contact_sheet"] is None


def test_suspect_frames_are_written_and_exit_0_unless_strict(
    shoot, tmp_path, shapes_model, capsys, monkeypatch
):
    monkeypatch.setitem(conf.LIMITS, "uncertain", 1e-6)  # every frame hesitates past it
    out = tmp_path / "out"
    assert _segment(shoot, out, shapes_model["card"]) == 0
    err = capsys.readouterr().err
    assert err.count("suspect: ") == 5
    assert f"warning: 5 of 5 frames look unreliable: see {out / 'contact_sheet.png'}" in err
    assert len(list((out / "masks").glob("*.png"))) == 5  # written all the same
    report = json.loads((out / "report.json").read_text())
    assert all(f["suspect"] and f["reasons"] for f in report["frames"])
    assert report["confidence"]["suspect"] == 5
    code = _segment(shoot, tmp_path / "strict", shapes_model["card"], "--strict", "-q")
    err = capsys.readouterr().err
    assert code == 1 and "error: 5 of 5 frames look unreliable" in err and "(--strict)" in err


def test_a_resumed_run_keeps_the_kept_frames_signals(shoot, tmp_path, shapes_model):
    out = tmp_path / "out"
    assert _segment(shoot, out, shapes_model["card"], "-q") == 0
    first = {f["path"]: f for f in json.loads((out / "report.json").read_text())["frames"]}
    (out / "masks" / "f_4.png").unlink()
    assert _segment(shoot, out, shapes_model["card"], "-q", "--skip-existing") == 0
    again = json.loads((out / "report.json").read_text())["frames"]
    assert [f["status"] for f in again] == ["skipped"] * 4 + ["ok"]
    for f in again[:4]:
        assert f["signals"]["uncertain"] == first[f["path"]]["signals"]["uncertain"]
        assert f["confidence"] is not None


def test_the_contact_sheet_is_bounded_and_puts_suspect_frames_first(tmp_path):
    from segcore.sheet import MAX_TILES, run_sheet

    img = np.full((60, 80, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "f.png"), img)
    items = [(i, tmp_path / "f.png", 0.9, False, []) for i in range(1000)]
    items[500] = (500, tmp_path / "f.png", 0.2, True, ["the network hesitates"])
    calls = []

    def read_mask(i):
        calls.append(i)
        return np.zeros((60, 80), bool)

    sheet = run_sheet(items, read_mask)
    assert len(calls) == MAX_TILES and calls[0] == 500  # the suspect one first
    small = run_sheet(items[:MAX_TILES], read_mask)
    # 1000 frames: as big as 48 (plus one header line saying how many are shown)
    assert sheet.shape[1] == small.shape[1] and sheet.shape[0] <= small.shape[0] + 40


# --- the shipped model on real photos of people -------------------------------------------


@pytest.mark.skipif(not (MODELS_DIR / "garment.json").exists(), reason="no bundled model")
def test_real_photos_of_people_are_flagged(tmp_path, capsys):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    from training.realphotos import package_people_photos

    d = tmp_path / "photos"
    d.mkdir()
    photos = package_people_photos()
    assert len(photos) == 3
    for k, (_, img) in enumerate(photos):
        cv2.imwrite(str(d / f"{k}.png"), img)
    assert main(["segment", str(d), "-o", str(tmp_path / "out"), "--formats", "mask"]) == 0
    err = capsys.readouterr().err
    frames = json.loads((tmp_path / "out" / "report.json").read_text())["frames"]
    assert all(f["suspect"] for f in frames), [f["signals"] for f in frames]
    assert "3 of 3 frames look unreliable" in err


@pytest.mark.skipif(not (MODELS_DIR / "garment.json").exists(), reason="no bundled model")
def test_the_bundled_example_is_not_flagged(tmp_path):
    from segcore.pipeline import SegmentOptions, SequenceJob

    job = SequenceJob(
        Path(__file__).resolve().parent.parent / "examples" / "garment_ring" / "images",
        tmp_path / "out",
        SegmentOptions(formats=("mask",), plate="off"),
    )
    for _ in job.run():
        pass
    job.write_report(sheet=False)
    assert job.confidence["suspect"] == 0, [(r.path, r.reasons) for r in job.results]
