import csv
import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segcore.backend import OpenCVBackend, TorchBackend  # noqa: E402
from segcore.card import load_card  # noqa: E402
from segcore.infer import Segmenter  # noqa: E402
from training.augment import augment, dihedral  # noqa: E402
from training.data import find_sequences, split_sequences  # noqa: E402
from training.prepare import prepare  # noqa: E402
from training.train import TrainConfig, make_model  # noqa: E402

from ..conftest import ROOT, blob_image  # noqa: E402


def test_tiny_training_run_learns(shapes_model):
    rows = list(csv.DictReader((shapes_model["run"] / "log.csv").read_text().splitlines()))
    assert len(rows) == 2
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    # held-out sequences after 150 tiny steps: far above chance (about 0.45 here)
    assert shapes_model["scores"]["f1"] > 0.75
    assert float(rows[-1]["val_f1"]) > 0.75
    assert (shapes_model["run"] / "curves.png").stat().st_size > 1000
    split = json.loads((shapes_model["run"] / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])  # split by sequence


def test_export_matches_torch(shapes_model):
    card = load_card(shapes_model["card"])
    pt = shapes_model["card"].with_suffix(".pt")
    ck = torch.load(pt, weights_only=False)
    model = make_model(TrainConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["model"])
    img, _ = blob_image(120, 90, seed=5)
    # the card's own graph (what OpenCV and Blender run); ONNX Runtime's int8 graph of it is
    # held to its masks in tests/training/test_runtime_graph.py
    p_cv, _ = Segmenter(card, backend=OpenCVBackend(card.onnx_path)).probability(img)
    p_t, _ = Segmenter(card, backend=TorchBackend(model)).probability(img)
    assert np.abs(p_cv - p_t).max() < 1e-4
    assert card.extra["training"]["steps"] > 0
    # trained in a temporary folder: neither the card nor the weights name it
    tmp = str(shapes_model["run"].parent)
    assert tmp not in shapes_model["card"].read_text()
    assert tmp not in json.dumps(ck["config"])
    assert not ck["config"]["out"].startswith("/")


def test_portable_paths_are_relative_or_shortened(tmp_path, monkeypatch):
    from training.export import portable

    monkeypatch.chdir(tmp_path)
    got = portable({"data": [str(tmp_path / "data" / "a"), "/elsewhere/x/y/z"], "lr": 0.1})
    assert got == {"data": ["data/a", "y/z"], "lr": 0.1}
    assert portable("runs/v1") == "runs/v1"


def test_resume_continues_from_checkpoint(shapes_model, tmp_path):
    from dataclasses import replace

    from training.train import train

    cfg = TrainConfig.from_dict(json.loads((shapes_model["run"] / "config.json").read_text()))
    import shutil

    run = tmp_path / "run"
    shutil.copytree(shapes_model["run"], run)
    cfg = replace(cfg, out=str(run), steps=cfg.steps + 10, epoch_steps=cfg.steps + 10)
    train(cfg, resume=True, progress=False)
    ck = torch.load(run / "last.pt", weights_only=False)
    assert ck["step"] == cfg.steps
    assert len(list(csv.DictReader((run / "log.csv").read_text().splitlines()))) == 3


def test_prepare_makes_eight_aligned_symmetries(tmp_path):
    photos, labels = tmp_path / "photos", tmp_path / "labels"
    photos.mkdir()
    labels.mkdir()
    img, mask = blob_image(80, 120, seed=3)
    img[mask > 0] = (0, 0, 255)  # subject pure red, so alignment is checkable pixel by pixel
    img[mask == 0] = (255, 0, 0)
    cv2.imwrite(str(photos / "a.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    rgba = np.dstack([img, mask])  # an alpha cut-out as label
    cv2.imwrite(str(labels / "a.png"), rgba)
    done, errors = prepare(photos, labels, tmp_path / "out", size=64, margin=0.1, sigma=0.0)
    assert done == 1 and not errors
    seq = tmp_path / "out" / "photos"
    outs = sorted((seq / "images").iterdir())
    assert len(outs) == 8
    shapes = set()
    for p in outs:
        im = cv2.imread(str(p))
        m = cv2.imread(str(seq / "masks" / p.name), cv2.IMREAD_GRAYSCALE)
        shapes.add(im.shape[:2])
        inner = cv2.erode(m, np.ones((3, 3), np.uint8)) > 0
        outer = cv2.dilate(m, np.ones((3, 3), np.uint8)) == 0
        assert (im[inner][:, 2] > 200).mean() > 0.98  # red where the label says subject
        assert (im[outer][:, 0] > 200).mean() > 0.98  # blue elsewhere
    assert len(shapes) == 2  # rotations by 90 degrees swap height and width


def test_prepare_keeps_whole_upright_frames_for_fine_tuning(tmp_path):
    photos, labels = tmp_path / "photos", tmp_path / "labels"
    photos.mkdir()
    labels.mkdir()
    img, mask = blob_image(80, 120, seed=3)
    cv2.imwrite(str(photos / "a.png"), img)
    cv2.imwrite(str(labels / "a.png"), mask)
    done, errors = prepare(
        photos, labels, tmp_path / "out", size=60, margin=None, sigma=0.0, symmetries=2
    )
    assert done == 1 and not errors
    seq = tmp_path / "out" / "photos"
    outs = sorted((seq / "images").iterdir())
    assert [p.name for p in outs] == ["a_s0.png", "a_s1.png"]
    small = cv2.resize(mask, (60, 40), interpolation=cv2.INTER_AREA) >= 128
    first = cv2.imread(str(seq / "masks" / "a_s0.png"), cv2.IMREAD_GRAYSCALE) > 0
    second = cv2.imread(str(seq / "masks" / "a_s1.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert first.shape == (40, 60)  # the whole frame, upright, not cropped to the subject
    assert (first == small).mean() > 0.98 and (second == first[:, ::-1]).all()
    with pytest.raises(ValueError, match="symmetries"):
        prepare(photos, labels, tmp_path / "x", symmetries=4)
    # prepared the paper's way into the same folder, then whole again: no rotated frame stays
    prepare(photos, labels, tmp_path / "out", size=60, sigma=0.0)
    assert len(list((seq / "images").iterdir())) == 8
    prepare(photos, labels, tmp_path / "out", size=60, margin=None, sigma=0.0, symmetries=2)
    assert sorted(p.name for p in (seq / "masks").iterdir()) == ["a_s0.png", "a_s1.png"]


def test_dihedral_group():
    x = np.arange(12).reshape(3, 4)
    outs = {dihedral(x, k).tobytes() for k in range(8)}
    assert len(outs) == 8
    assert (dihedral(x, 0) == x).all()


def test_augment_keeps_labels_binary_and_sized():
    rng = np.random.default_rng(0)
    img, mask = blob_image(120, 160, seed=1)
    for _ in range(10):
        a, m = augment(img, mask, 64, rng, None, bg_swap=0.5)
        assert a.shape == (64, 64, 3) and m.shape == (64, 64)
        assert set(np.unique(m)) <= {0, 255}


def test_split_is_by_sequence_and_stable():
    names = [f"s{i}" for i in range(40)]
    tr, va = split_sequences(names, 0.2, seed=0)
    assert set(tr) | set(va) == set(names) and not set(tr) & set(va)
    tr2, va2 = split_sequences(names + ["new"], 0.2, seed=0)
    assert set(va) <= set(va2)  # adding sequences never moves old ones


def test_find_sequences_layout(shapes_model):
    seqs = find_sequences(shapes_model["data"])
    assert len(seqs) == 5 and all(len(v) == 6 for v in seqs.values())


def test_excluded_test_sequences_are_neither_trained_nor_validated(shapes_model, tmp_path):
    from dataclasses import replace

    from training.train import train

    cfg = TrainConfig.from_dict(json.loads((shapes_model["run"] / "config.json").read_text()))
    names = sorted(find_sequences(shapes_model["data"]))
    cfg = replace(
        cfg,
        out=str(tmp_path / "run"),
        steps=2,
        epoch_steps=2,
        val_sequences=[names[1]],
        exclude_sequences=[names[0]],
    )
    train(cfg, progress=False)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    used = [n.split("/", 1)[1] for n in split["train"] + split["val"]]
    assert names[0] not in used
    assert [n.split("/", 1)[1] for n in split["val"]] == [names[1]]
    assert len(split["train"]) == len(names) - 2


def test_eval_measures_flicker_and_restarts_temporal_state_per_sequence(shapes_model):
    from training.evaluate import evaluate, samples_of, segcore_predictor

    samples = samples_of(shapes_model["data"])
    plain = segcore_predictor(str(shapes_model["card"]))
    _, pooled = evaluate(plain, samples)
    assert 0.0 <= pooled["flicker"] < 1.0

    temporal = segcore_predictor(str(shapes_model["card"]), temporal=True)
    starts = []
    orig = temporal.new_sequence

    def counting():
        starts.append(len(starts))
        orig()

    temporal.new_sequence = counting
    rows, pooled_t = evaluate(temporal, samples)
    assert len(starts) == len(find_sequences(shapes_model["data"]))
    assert len(rows) == len(samples)
    # smoothing is a refinement of the same masks, not a different segmentation
    assert abs(pooled_t["f1"] - pooled["f1"]) < 0.05


def test_hull_sweep_scores_masks_by_the_hull_they_carve(capsys):
    from segcore.card import MODELS_DIR
    from training import hull_sweep

    seq = ROOT / "tests" / "data" / "recon_turntable"  # 16 frames, masks, true cameras
    if not (MODELS_DIR / "garment.json").exists():
        pytest.skip("no bundled model")
    assert hull_sweep.main([str(seq), "--thresholds", "0.5,0.3", "--voxels", "48", "--gt"]) == 0
    rows = [r.split("|")[1:-1] for r in capsys.readouterr().out.splitlines() if r[:2] == "| "]
    score = {  # label -> mask IoU, FN, FP, hull IoU, seconds (rows[0]: the header)
        r[0].strip().replace(" + plate", ""): [float(x) for x in r[1:]] for r in rows[1:]
    }
    assert set(score) == {"ground truth", "ours, 0.5", "ours, 0.3"}
    iou, fn, fp, hull, _ = score["ground truth"]
    assert (iou, fn, fp) == (1.0, 0.0, 0.0) and hull > 0.85  # the true masks carve the shape
    rows = score
    assert rows["ours, 0.3"][1] <= rows["ours, 0.5"][1]  # a lower threshold misses less
    assert rows["ours, 0.3"][2] >= rows["ours, 0.5"][2]  # and adds more
    # the capture is no garment (a printed box under a ball): the model's masks are poor on
    # it (every frame flagged suspect) and carve a poorer hull than the truth's, but one
    assert 0.0 < rows["ours, 0.5"][3] < hull


def test_camera_keeps_size_and_type_and_changes_the_picture():
    from training.augment import camera, matched_background

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    outs = [camera(img, rng) for _ in range(20)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, img) for o in outs) >= 15
    assert np.array_equal(camera(img, rng, strength=0.0), img)
    mask = np.zeros((64, 80), np.uint8)
    mask[16:48, 20:60] = 255
    img[mask > 0] = (200, 210, 220)
    bg = matched_background(img, mask, rng)
    assert bg.shape == img.shape
    assert np.abs(bg.reshape(-1, 3).mean(0) - (200, 210, 220)).max() < 40


def test_eval_takes_segments_size_and_threshold(shapes_model, capsys, monkeypatch):
    """``training eval --size/--threshold`` run the pipeline as ``segcore segment`` would with
    them; an out-of-range value is one error line, exit code 2."""
    import segcore.pipeline as pipeline
    from segcore.io import read_image
    from training.cli import main
    from training.evaluate import samples_of, segcore_predictor

    card = str(shapes_model["card"])
    bgr = read_image(samples_of(shapes_model["data"])[0].image)
    plain = segcore_predictor(card)(bgr)
    strict = segcore_predictor(card, threshold=0.999)(bgr)
    assert (strict > 0).sum() < (plain > 0).sum()  # a higher threshold keeps fewer pixels

    sizes = []
    segment_frame = pipeline.segment_frame

    def spy(bgr, seg, post, **kw):
        sizes.append(seg.card.preprocess.input_size)
        return segment_frame(bgr, seg, post, **kw)

    monkeypatch.setattr(pipeline, "segment_frame", spy)
    segcore_predictor(card, size=96)(bgr)
    assert sizes == [96]

    rc = main(["eval", "--model", card, "--data", str(shapes_model["data"]), "--size", "8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --size 8 is out of range")
