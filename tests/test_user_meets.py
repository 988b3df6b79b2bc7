"""What a user meets around the core (issue 34): eval's worst-frames sheet and its checks on
the ground truth, terminal output that says what matters once, the training CLI that never
overwrites a model, the README's training block, the license."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from segcore.cli import main

from .conftest import ROOT, blob_image

# --- segcore eval ------------------------------------------------------------------------------


@pytest.fixture()
def scored(tmp_path, random_model):
    """A segment output of three frames and their truth."""
    shoot, truth = tmp_path / "shoot", tmp_path / "truth"
    shoot.mkdir()
    truth.mkdir()
    for i in range(3):
        img, mask = blob_image(seed=i)
        cv2.imwrite(str(shoot / f"f_{i}.png"), img)
        cv2.imwrite(str(truth / f"f_{i}.png"), mask)
    out = tmp_path / "out"
    assert main(["segment", str(shoot), "-o", str(out), "--model", str(random_model["card"]),
                 "-q"]) == 0  # fmt: skip
    return shoot, truth, out


def test_eval_writes_a_worst_frames_sheet_over_the_frames(scored, tmp_path, capsys):
    _, truth, out = scored
    assert main(["eval", str(out), str(truth), "--sheet", str(tmp_path / "worst.png")]) == 0
    sheet = cv2.imread(str(tmp_path / "worst.png"))
    assert sheet is not None and sheet.shape[1] >= 3 * 320
    assert "worst frames: " in capsys.readouterr().err
    # beside --json when no --sheet is given
    assert (
        main(["eval", str(out / "masks"), str(truth), "--json", str(tmp_path / "s.json"), "-q"])
        == 0
    )
    assert (tmp_path / "s_worst.png").exists() and (tmp_path / "s.json").exists()


def test_eval_quiet_markdown_is_a_markdown_table(scored, capsys):
    _, truth, out = scored
    assert main(["eval", str(out), str(truth), "-q", "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| frame | P | R |") and lines[1].startswith("|---")
    assert len(lines) == 3 and lines[2].startswith("| pooled |")


def test_eval_warns_when_the_truth_is_photos(scored, capsys):
    shoot, _, out = scored
    main(["eval", str(out), str(shoot), "-q"])
    err = capsys.readouterr().err
    assert "looks like a photo, not a mask" in err and "(and 2 more masks)" in err


def test_masks_are_not_taken_for_photos(tmp_path):
    from segcore.io import read_label

    soft = cv2.GaussianBlur(blob_image(seed=1)[1], (7, 7), 0)  # a mask with a soft rim
    cv2.imwrite(str(tmp_path / "m.png"), soft)
    cv2.imwrite(str(tmp_path / "m.jpg"), blob_image(seed=2)[1])  # a lossy JPEG mask
    for name in ("m.png", "m.jpg"):
        said: list[str] = []
        read_label(tmp_path / name, said)
        assert said == [], name


# --- terminal output ---------------------------------------------------------------------------


def test_the_first_progress_line_shows_no_absurd_rate():
    import io

    from segcore.progress import Progress

    bar = Progress(10, "Segmenting", stream=io.StringIO())
    bar.update()
    assert "--/s" in bar.line() and "left --:--" in bar.line()
    bar.t0 -= 2.0  # two seconds later: a real rate
    assert re.search(r" 0\.50/s ", bar.line())


def test_a_warning_every_frame_shares_is_said_once(tmp_path, random_model, capsys):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        img = blob_image(seed=i)[0]
        cv2.imwrite(str(d / f"f_{i}.png"), np.dstack([img, np.full(img.shape[:2], 200, np.uint8)]))
    assert main(["segment", str(d), "-o", str(tmp_path / "o"), "--model",
                 str(random_model["card"])]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("alpha channel") == 2  # once for f_0, once in the count
    assert "the same for 2 more frames (each named in report.json)" in err


def test_sixteen_bit_frames_say_they_are_read_as_eight(tmp_path):
    from segcore.io import SIXTEEN_BITS, decode_image

    img = blob_image()[0].astype(np.uint16) * 257
    for ext in (".png", ".tif"):
        said: list[str] = []
        decode_image(cv2.imencode(ext, img)[1].tobytes(), f"x{ext}", warnings=said)
        assert said == [SIXTEEN_BITS], ext
    said = []
    decode_image(cv2.imencode(".png", blob_image()[0])[1].tobytes(), "x.png", warnings=said)
    assert said == []


def _png_with_bad_profile(img: np.ndarray) -> bytes:
    """A PNG with an iCCP chunk libpng complains about (like scikit-image's astronaut)."""
    data = cv2.imencode(".png", img)[1].tobytes()
    payload = b"ICC Profile\x00\x00" + zlib.compress(b"\x00" * 128 + b"not a real profile")
    chunk = len(payload).to_bytes(4, "big") + b"iCCP" + payload
    chunk += zlib.crc32(b"iCCP" + payload).to_bytes(4, "big")
    return data[:33] + chunk + data[33:]


def test_a_colour_profile_is_decoded_without_libpng_chatter(tmp_path, capfd):
    from segcore.io import read_image, without_png_profile

    img = blob_image()[0]
    data = _png_with_bad_profile(img)
    assert without_png_profile(data) != data and b"iCCP" not in without_png_profile(data)
    (tmp_path / "p.png").write_bytes(data)
    out = read_image(tmp_path / "p.png")
    assert np.array_equal(out, img)
    assert "libpng" not in capfd.readouterr().err


def test_the_empty_folder_hint_names_every_format_read(tmp_path):
    from segcore.errors import InputError
    from segcore.io import IMAGE_EXTENSIONS, discover_frames

    with pytest.raises(InputError) as e:
        discover_frames(tmp_path)
    assert all(ext in str(e.value) for ext in IMAGE_EXTENSIONS)


def test_the_report_says_why_there_was_no_still_background_pass(tmp_path, random_model):
    from segcore.pipeline import SegmentOptions, SequenceJob

    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"f_{i}.jpg"), blob_image(seed=i)[0])
    job = SequenceJob(d, tmp_path / "out", SegmentOptions(model=str(random_model["card"])))
    for _ in job.run():
        pass
    job.write_report(sheet=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["plate"] is None and "needs 6 or more" in report["plate_note"]


def test_install_hints_agree():
    from segcore.errors import RECON_INSTALL

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    recon = pyproject["project"]["optional-dependencies"]["recon"]
    assert all(r.split(">")[0].split("<")[0] in RECON_INSTALL for r in recon)
    for doc in ("segcore/cli.py", "README.md", "blender_addon/README.md", "docs/recon.md"):
        assert "segcore[recon]" not in (ROOT / doc).read_text(), doc


# --- the training command line -----------------------------------------------------------------


def test_every_training_command_explains_itself():
    from training.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, parser in sub.choices.items():
        if name == "adapt-eval":
            continue  # another command's own
        assert parser.description, name
        undocumented = [a.dest for a in parser._actions if not a.help and a.dest != "help"]
        assert not undocumented, (name, undocumented)


def test_export_never_overwrites_and_defaults_to_the_user_folder(
    shapes_model, tmp_path, monkeypatch, capsys
):
    from segcore.card import MODELS_DIR, load_card, resolve_model_path
    from training.cli import main as training

    monkeypatch.setenv("SEGCORE_MODELS", str(tmp_path / "mine"))
    bundled = sorted(p.name for p in MODELS_DIR.iterdir())
    best = str(shapes_model["run"] / "best.pt")
    assert training(["export", best, "--name", "blobs"]) == 0
    assert (tmp_path / "mine" / "blobs.json").exists() and (tmp_path / "mine" / "blobs.pt").exists()
    assert "--model blobs" in capsys.readouterr().out  # found by name
    assert resolve_model_path("blobs") == tmp_path / "mine" / "blobs.json"
    before = (tmp_path / "mine" / "blobs.onnx").read_bytes()
    assert training(["export", best, "--name", "blobs"]) == 2
    assert "already there; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "mine" / "blobs.onnx").read_bytes() == before
    assert training(["export", best, "--name", "blobs", "--overwrite"]) == 0
    load_card("blobs")
    assert sorted(p.name for p in MODELS_DIR.iterdir()) == bundled  # the package untouched
    assert not list((tmp_path / "mine").glob(".segcore-*"))


def test_export_runs_the_network_at_another_size_on_request(shapes_model, tmp_path):
    import onnxruntime as ort

    from segcore.card import load_card
    from training.cli import main as training

    best = str(shapes_model["run"] / "best.pt")
    assert (
        training(
            ["export", best, "--name", "big", "--out-dir", str(tmp_path), "--input-size", "160"]
        )
        == 0
    )
    card = load_card(str(tmp_path / "big.json"))
    assert card.preprocess.input_size == 160
    assert card.extra["training"]["config"]["input_size"] == 128  # as trained
    shape = ort.InferenceSession(str(tmp_path / "big.onnx")).get_inputs()[0].shape
    assert list(shape) == [1, 3, 128, 160]  # a 4:3 landscape frame at 160, padded to 32


def test_export_like_a_card_takes_its_edges_and_keeps_them_through_overwrite(
    shapes_model, tmp_path, capsys
):
    from segcore.card import MODELS_DIR, load_card
    from segcore.infer import Segmenter
    from training.cli import main as training

    best = str(shapes_model["run"] / "best.pt")
    out = ["--out-dir", str(tmp_path)]
    assert training(["export", best, "--name", "blobs", *out, "--like", "garment"]) == 0
    shipped, card = load_card("garment"), load_card(str(tmp_path / "blobs.json"))
    assert card.postprocess == shipped.postprocess  # clean-ups, flip, threshold
    entry = card.extra["edge_refiner"]
    assert entry["onnx"] == "blobs_edges.onnx"
    for ours, theirs in (
        (entry["onnx"], shipped.extra["edge_refiner"]["onnx"]),
        (entry["onnx_runtime"]["onnx"], shipped.extra["edge_refiner"]["onnx_runtime"]["onnx"]),
    ):
        assert (tmp_path / ours).read_bytes() == (MODELS_DIR / theirs).read_bytes()
    assert card.extra["inherited"] == {"from": "garment", "fields": ["postprocess", "edge_refiner"]}
    assert Segmenter.load(str(tmp_path / "blobs.json")).edges is not None
    # exported again over itself, like itself: the refiner stays; a threshold given wins
    again = [*out, "--like", str(tmp_path / "blobs.json"), "--overwrite", "--threshold", "0.4"]
    assert training(["export", best, "--name", "blobs", *again]) == 0
    card = load_card(str(tmp_path / "blobs.json"))
    assert card.postprocess.threshold == 0.4 and card.postprocess.flip == shipped.postprocess.flip
    assert (tmp_path / "blobs_edges.onnx").read_bytes() == (
        MODELS_DIR / shipped.extra["edge_refiner"]["onnx"]
    ).read_bytes()
    # without --like: the defaults (guided-filter edges), as before
    assert training(["export", best, "--name", "plain", *out]) == 0
    assert "edge_refiner" not in load_card(str(tmp_path / "plain.json")).extra
    plain = str(tmp_path / "plain.json")
    assert training(["export", best, "--name", "p2", *out, "--like", plain]) == 0
    assert load_card(str(tmp_path / "p2.json")).extra["inherited"]["fields"] == ["postprocess"]
    capsys.readouterr()
    assert training(["export", best, "--name", "x", *out, "--like", str(tmp_path / "no.json")]) == 2
    assert "no.json" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    (tmp_path / "blobs_edges.onnx").unlink()  # a like card whose refiner is gone: one line
    assert (
        training(["export", best, "--name", "x", *out, "--like", str(tmp_path / "blobs.json")]) == 2
    )
    err = capsys.readouterr().err
    assert "blobs_edges.onnx is not beside it" in err and "Traceback" not in err


def test_finetune_keeps_the_base_models_edges_and_not_its_validation_sets(shapes_model, tmp_path):
    from segcore.card import load_card
    from training.cli import main as training

    base = tmp_path / "base"
    best = str(shapes_model["run"] / "best.pt")
    assert (
        training(["export", best, "--name", "b", "--out-dir", str(base), "--like", "garment"]) == 0
    )
    # the base's validation sets (the shipped garment's name the project's) are not the user's
    torch = pytest.importorskip("torch")
    ck = torch.load(base / "b.pt", weights_only=False)
    ck["config"]["val_data"] = ["fam_val/photo_wall"]
    torch.save(ck, base / "b.pt")
    data = shapes_model["data"]
    seq = sorted(p for p in data.iterdir() if p.is_dir())[0]
    args = [str(seq / "images"), str(seq / "masks"), "--base", str(base / "b.json"), "--steps", "2"]
    args += ["--work", str(tmp_path / "work"), "--out-dir", str(tmp_path / "mine")]
    assert training(["finetune", *args, "--name", "ft"]) == 0
    card = load_card(str(tmp_path / "mine" / "ft.json"))
    assert card.extra["inherited"]["from"] == "b"
    assert card.postprocess == load_card(str(base / "b.json")).postprocess
    assert (tmp_path / "mine" / "ft_edges.onnx").read_bytes() == (
        base / "b_edges.onnx"
    ).read_bytes()
    assert training(["finetune", *args, "--name", "fresh", "--fresh-card"]) == 0
    assert "edge_refiner" not in load_card(str(tmp_path / "mine" / "fresh.json")).extra
    # held-out photos of one's own: the checkpoint is picked on them
    other = sorted(p for p in data.iterdir() if p.is_dir())[1]
    val = ["--val", str(other / "images"), str(other / "masks")]
    args[args.index("--work") + 1] = str(tmp_path / "work2")
    assert training(["finetune", *args, *val, "--name", "picked"]) == 0
    run = tmp_path / "work2" / "run"
    assert json.loads((run / "split.json").read_text())["val"] == ["val/photos"]
    assert (
        "best.pt"
        in load_card(str(tmp_path / "mine" / "picked.json")).extra["training"]["checkpoint"]
    )


def test_finetune_refuses_before_any_work(tmp_path, monkeypatch, capsys):
    from training.cli import main as training

    monkeypatch.setenv("SEGCORE_MODELS", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "ft.json").write_text("{}")
    work = tmp_path / "work"
    code = training(["finetune", str(tmp_path), str(tmp_path), "--name", "ft", "--work", str(work)])
    assert code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert not work.exists()


def test_finetune_finds_the_shipped_weights():
    from segcore.card import MODELS_DIR
    from training.cli import base_checkpoint

    if not (MODELS_DIR / "garment.pt").exists():
        pytest.skip("no bundled weights")
    assert base_checkpoint("garment") == MODELS_DIR / "garment.pt"
    # and the card beside them, whose edge refiner and clean-ups a fine-tune keeps
    from training.cli import base_card
    from training.export import like_card

    assert base_card(MODELS_DIR / "garment.pt") == MODELS_DIR / "garment.json"
    taken = like_card(MODELS_DIR / "garment.json")
    assert taken["edge_refiner"] and taken["files"]["onnx"] and taken["postprocess"]["flip"]
    with pytest.raises(FileNotFoundError, match="weights to fine-tune from"):
        base_checkpoint("no-such-model")


def test_training_and_the_weights_are_installed():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = pyproject["tool"]["setuptools"]
    assert "training*" in tool["packages"]["find"]["include"]
    assert "models/*.pt" in tool["package-data"]["segcore"]
    assert "train" in pyproject["project"]["optional-dependencies"]


def _readme_training_block() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Training and fine-tuning") :]
    block = section[section.index("```") + 3 :]
    block = block[: block.index("```")]
    lines = [line.split("  #")[0].strip() for line in block.strip().splitlines()]
    return [shlex.split(line) for line in lines if line]


def test_the_readme_training_block_runs_in_order():
    """Every command parses, and every folder a step reads was made by a step before it."""
    from segcore.cli import build_parser as segcore_parser
    from training.cli import build_parser

    made = {"examples/garment_ring/images"}  # ships with the repository
    models: set[str] = set()
    steps = _readme_training_block()
    assert steps[0][:3] == ["python", "build.py", "setup"]
    for argv in steps[1:]:
        if argv[:3] == [".venv/bin/python", "-m", "training"]:
            args = build_parser().parse_args(argv[3:])
            data = getattr(args, "data", None) or []
            for d in [data] if isinstance(data, str) else data:
                assert d in made, f"{d} is read before a step makes it"
            model = getattr(args, "model", None)
            if args.command == "eval":
                assert str(Path(model).parent) in made, model
                made.add(args.out)
            if args.command == "synth":
                made.add(args.out)
            if args.command == "train":
                made.add(f"{args.out}/best.pt".rsplit("/", 1)[0])
                made.add(args.out)
            if args.command == "export":
                assert str(Path(args.checkpoint).parent) in made
                models.add(args.name)
        else:
            assert argv[0] == ".venv/bin/segcore"
            args = segcore_parser().parse_args(argv[1:])
            assert args.input in made and args.model in models


# --- the license -------------------------------------------------------------------------------


def test_the_license_is_the_gpl_version_3():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in text and "END OF TERMS AND CONDITIONS" in text
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == {"text": "GPL-3.0-or-later"}
    assert "GPL-3.0-or-later" in (ROOT / "README.md").read_text()
