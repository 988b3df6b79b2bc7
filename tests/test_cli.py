"""The ``segcore`` CLI end to end, on tiny folders (the docs/design.md contract)."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from segcore.cli import main

from .conftest import ROOT, blob_image


@pytest.fixture()
def frames(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(3):
        img, _ = blob_image(seed=i)
        cv2.imwrite(str(d / f"f_{i + 1}.jpg"), img)
    (d / "f_10.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (d / ".DS_Store").write_bytes(b"junk")
    return d


def test_segment_writes_good_frames_and_names_the_bad_one(frames, tmp_path, random_model, capsys):
    before = {p.name: p.read_bytes() for p in frames.iterdir()}
    out = tmp_path / "out"
    code = main(
        ["segment", str(frames), "-o", str(out), "--model", str(random_model["card"]), "-q"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "f_10.jpg" in err and ("decode" in err or "truncated" in err)
    for i in (1, 2, 3):
        m = cv2.imread(str(out / "masks" / f"f_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert m.shape == (96, 128) and m.dtype == np.uint8
        assert set(np.unique(m)) <= {0, 255}
        rgba = cv2.imread(str(out / "rgba" / f"f_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert rgba.shape == (96, 128, 4)
        assert ((rgba[:, :, 3] > 127) == (m > 0)).mean() > 0.99  # soft alpha on the rim
    assert not (out / "masks" / "f_10.png").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["ok"] == 3 and report["summary"]["failed"] == 1
    ran = report["networks"]  # what ran: this card has no refiner and no runtime graph
    assert ran["coarse"]["graph"] == "rand.onnx" and ran["edge_refiner"] is None
    assert ran["coarse"]["runtime"] in ("onnxruntime", "opencv")
    bad = [f for f in report["frames"] if f["status"] == "failed"]
    assert len(bad) == 1 and bad[0]["path"].endswith("f_10.jpg")
    assert "decode" in bad[0]["error"] or "truncated" in bad[0]["error"]
    assert [os.path.basename(f["path"]) for f in report["frames"]] == [
        "f_1.jpg",
        "f_2.jpg",
        "f_3.jpg",
        "f_10.jpg",
    ]  # natural order
    # inputs untouched, no temporaries left
    assert {p.name: p.read_bytes() for p in frames.iterdir()} == before
    assert not [p for p in out.rglob("*") if p.name.startswith(".segcore")]


def test_existing_outputs_need_skip_or_overwrite(frames, tmp_path, random_model, capsys):
    out = tmp_path / "out"
    args = ["segment", str(frames), "-o", str(out), "--model", str(random_model["card"]), "-q"]
    main(args)
    capsys.readouterr()
    assert main(args) == 2
    assert "--skip-existing" in capsys.readouterr().err
    mtime = (out / "masks" / "f_1.png").stat().st_mtime_ns
    assert main([*args, "--skip-existing"]) == 1  # the corrupt frame still fails
    assert (out / "masks" / "f_1.png").stat().st_mtime_ns == mtime
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["skipped"] == 3


def test_output_inside_input_is_refused(frames, random_model, capsys):
    code = main(
        ["segment", str(frames), "-o", str(frames / "out"), "--model", str(random_model["card"])]
    )
    assert code == 2
    assert "inside" in capsys.readouterr().err
    assert not (frames / "out").exists() or not any((frames / "out").iterdir())


def test_user_errors_are_one_line_without_traceback(tmp_path, random_model):
    (tmp_path / "empty").mkdir()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "segcore",
            "segment",
            str(tmp_path / "empty"),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(random_model["card"]),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "empty" in r.stderr


def test_single_image_input_and_formats(frames, tmp_path, random_model):
    out = tmp_path / "one"
    code = main(
        [
            "segment",
            str(frames / "f_2.jpg"),
            "-o",
            str(out),
            "--model",
            str(random_model["card"]),
            "--formats",
            "mask,colmap",
            "-q",
        ]
    )
    assert code == 0
    assert (out / "masks" / "f_2.png").exists()
    assert (out / "colmap_masks" / "f_2.jpg.png").exists()
    assert not (out / "rgba").exists()


def test_trained_model_segments_shapes_and_eval_scores_them(shapes_model, tmp_path, capsys):
    seq = sorted(shapes_model["data"].iterdir())[0]
    out = tmp_path / "pred"
    assert (
        main(
            [
                "segment",
                str(seq / "images"),
                "-o",
                str(out),
                "--model",
                str(shapes_model["card"]),
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(["eval", str(out / "masks"), str(seq / "masks"), "--json", str(tmp_path / "s.json")])
        == 0
    )
    table = capsys.readouterr().out
    assert "pooled" in table and "BF@2px" in table
    pooled = json.loads((tmp_path / "s.json").read_text())["pooled"]
    assert pooled["f1"] > 0.85, pooled


def test_help_is_readable():
    r = subprocess.run(
        [sys.executable, "-m", "segcore", "segment", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0
    for flag in (
        "--model",
        "--size",
        "--threshold",
        "--refine",
        "--flip",
        "--no-flip",
        "--formats",
        "--skip-existing",
        "--workers",
        "-q",
    ):
        assert flag in r.stdout
