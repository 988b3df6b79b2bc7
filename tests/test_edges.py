"""The learned edge refiner (segcore.edges): cell geometry, the model card entry, the
pipeline's learned path, and the training CLI on a tiny data set."""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest

from segcore.card import MODELS_DIR
from segcore.edges import RefinerSpec, active_cells, build_inputs, coarse_logit, window
from segcore.errors import ModelError, SegcoreError


def test_active_cells_cover_every_band_pixel_and_nothing_else():
    rng = np.random.default_rng(0)
    band = rng.uniform(size=(30, 40)) < 0.05
    H, W, cell = 300, 400, 32
    rows = np.minimum(((np.arange(H) + 0.5) * (30 / H)).astype(int), 29)
    cols = np.minimum(((np.arange(W) + 0.5) * (40 / W)).astype(int), 39)
    full = band[rows[:, None], cols[None, :]]
    corners = {tuple(c) for c in active_cells(band, rows, cols, cell)}
    for y in range(0, H, cell):
        for x in range(0, W, cell):
            assert ((y, x) in corners) == bool(full[y : y + cell, x : x + cell].any())


def test_active_cells_of_a_full_resolution_band():
    """A large frame's second stage passes a band of the frame's own size (rows and columns
    map to themselves), here a strided view, not a contiguous array."""
    rng = np.random.default_rng(1)
    band = (rng.uniform(size=(260, 330)) < 0.002)[::2, ::3]  # 130 x 110, not contiguous
    H, W, cell = band.shape[0], band.shape[1], 16
    corners = {tuple(c) for c in active_cells(band, np.arange(H), np.arange(W), cell)}
    for y in range(0, H, cell):
        for x in range(0, W, cell):
            assert ((y, x) in corners) == bool(band[y : y + cell, x : x + cell].any())
    assert corners  # the band has pixels


def test_window_reflects_outside_the_frame():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    w = window(img, -2, 7, 5)
    assert w.shape == (5, 5)
    assert np.array_equal(w[2:, :3], img[0:3, 7:10])
    assert np.array_equal(w[0], img[2, [7, 8, 9, 8, 7]])  # row -2 mirrors row 2, col 10 col 8


def test_build_inputs_holds_rgb_and_the_coarse_logit():
    bgr = np.zeros((64, 64, 3), np.uint8)
    bgr[..., 2] = 255  # red
    p = np.full((64, 64), 0.9, np.float32)
    blob = build_inputs(
        bgr, lambda a, b, c, d: coarse_logit(p[a:b, c:d]), np.array([[0, 32]]), 16, 4
    )
    assert blob.shape == (1, 4, 24, 24)
    assert np.allclose(blob[0, 0], 1.0) and np.allclose(blob[0, 1:3], 0.0)
    assert np.allclose(blob[0, 3], coarse_logit(np.float32(0.9)))


@pytest.mark.parametrize(
    "entry, field",
    [
        ("x", "edge_refiner"),
        ({"onnx": "../x.onnx"}, "edge_refiner.onnx"),
        ({"onnx": "e.onnx", "cell": 4}, "edge_refiner.cell"),
        ({"onnx": "e.onnx", "margin": True}, "edge_refiner.margin"),
        ({"onnx": "e.onnx", "guide": "bilateral"}, "edge_refiner.guide"),
        ({"onnx": "e.onnx", "onnx_runtime": "e_ort.onnx"}, "edge_refiner.onnx_runtime"),
        ({"onnx": "e.onnx", "onnx_runtime": {"onnx": "../e.onnx"}}, "onnx_runtime.onnx"),
    ],
)
def test_bad_card_entries_name_the_field(tmp_path, entry, field):
    with pytest.raises(ModelError, match=field.replace(".", r"\.")):
        RefinerSpec.from_card(tmp_path, entry)


@pytest.fixture(scope="module")
def zero_refiner_card(tmp_path_factory):
    """The bundled model with an untrained refiner (its correction is zero at start)."""
    torch = pytest.importorskip("torch")
    from training.edges import _net

    d = tmp_path_factory.mktemp("edges")
    shutil.copy(MODELS_DIR / "garment.onnx", d / "garment.onnx")
    card = json.loads((MODELS_DIR / "garment.json").read_text())
    torch.manual_seed(0)
    net = _net(8).eval()
    x = torch.zeros(1, 4, 48, 48)
    torch.onnx.export(
        net,
        x,
        str(d / "garment_edges.onnx"),
        input_names=["input"],
        output_names=["logit"],
        opset_version=13,
        dynamic_axes={"input": {0: "n"}, "logit": {0: "n"}},
        dynamo=False,
    )
    card["edge_refiner"] = {"onnx": "garment_edges.onnx", "cell": 32, "margin": 8}
    (d / "garment.json").write_text(json.dumps(card))
    return d / "garment.json"


def _frame():
    from tests.conftest import blob_image

    bgr, _ = blob_image(480, 640, seed=3)
    return bgr


def test_zero_correction_refiner_gives_the_spline_edges(zero_refiner_card):
    from segcore.pipeline import SegmentOptions, load_segmenter, segment_frame

    bgr = _frame()
    seg, post = load_segmenter(SegmentOptions(model=str(zero_refiner_card)))
    assert seg.edges is not None
    # the refiner's own decisions: the outline smoothing after it is another step
    learned = segment_frame(bgr, seg, replace(post, outline_sigma=0.0))
    seg2, post2 = load_segmenter(SegmentOptions(model=str(zero_refiner_card), refine=False))
    spline = segment_frame(bgr, seg2, post2)
    # an untrained refiner returns the coarse logit: the spline's decision, except where the
    # spline's probability is clipped near 0 or 1 (never at the threshold)
    assert np.mean(learned.mask != spline.mask) < 1e-4
    assert np.abs(learned.alpha.astype(int) - spline.alpha.astype(int)).max() <= 2


def test_edges_option_chooses_the_filter_and_refuses_a_card_without_refiner(zero_refiner_card):
    from segcore.pipeline import SegmentOptions, load_segmenter

    seg, _ = load_segmenter(SegmentOptions(model=str(zero_refiner_card), edges="guided"))
    assert seg.edges is None
    card = json.loads(zero_refiner_card.read_text())
    card.pop("edge_refiner")
    plain = zero_refiner_card.parent / "plain.json"
    plain.write_text(json.dumps({**card, "onnx": "garment.onnx"}))
    with pytest.raises(SegcoreError, match="no edge refiner"):
        load_segmenter(SegmentOptions(model=str(plain), edges="learned"))


def test_training_cli_learns_and_exports_a_refiner(tmp_path):
    pytest.importorskip("torch")
    from tests.conftest import blob_image
    from training.cli import main

    for split, n in (("train", 3), ("val", 1)):
        seq = tmp_path / split / "seq_a"
        (seq / "images").mkdir(parents=True)
        (seq / "masks").mkdir()
        for i in range(n):
            bgr, mask = blob_image(240, 320, seed=10 + i + (5 if split == "val" else 0))
            cv2.imwrite(str(seq / "images" / f"{i}.png"), bgr)
            cv2.imwrite(str(seq / "masks" / f"{i}.png"), mask)
    run = tmp_path / "run"
    args = ["edges", "--data", str(tmp_path / "train"), "--val", str(tmp_path / "val")]
    small = ["--steps", "30", "--batch", "8", "--width", "8", "--guide", "guided"]
    assert main([*args, "--out", str(run), *small]) == 0
    import torch

    last = torch.load(run / "last.pt", weights_only=False)
    assert last["step"] == 30 and last["history"][-1]["step"] == 30
    assert np.isfinite(last["history"][-1]["val_loss"]) and (run / "best.pt").exists()
    assert [p.name for p in (run / "steps").iterdir()] == ["step_000030.pt"]  # the last is kept
    d = tmp_path / "model"
    d.mkdir()
    shutil.copy(MODELS_DIR / "garment.onnx", d / "garment.onnx")
    shutil.copy(MODELS_DIR / "garment.json", d / "garment.json")
    shutil.copy(MODELS_DIR / "garment_edges.onnx", d / "garment_edges.onnx")
    # --choose: the kept checkpoints and the card's own refiner, scored on whole frames
    choose = ["edges", "--choose", "--val", str(tmp_path / "val"), "--out", str(run)]
    assert main([*choose, "--model", str(d / "garment.json")]) == 0
    choice = json.loads((run / "choice.json").read_text())
    assert [r["candidate"] for r in choice["rows"]] == ["the card's refiner", "step_000030.pt"]
    assert choice["chosen"] == "step_000030.pt" and (run / "chosen.pt").exists()
    assert all(0.0 <= r["bf2"] <= 1.0 and r["frames"] == 1 for r in choice["rows"])
    if importlib.util.find_spec("onnxruntime"):  # scored as the command line runs it
        cand = json.loads((run / "candidates" / "step_000030" / "garment.json").read_text())
        assert cand["edge_refiner"]["onnx_runtime"]["onnx"] == "garment_edges_ort.onnx"
    (run / "best.pt").unlink()  # --export takes the chosen checkpoint
    assert main(["edges", "--out", str(run), "--export", str(d / "garment.json")]) == 0
    card = json.loads((d / "garment.json").read_text())
    assert card["edge_refiner"]["onnx"] == "garment_edges.onnx"
    assert card["edge_refiner"]["guide"] == "guided"
    runtime = card["edge_refiner"]["onnx_runtime"]  # ONNX Runtime's graph of the new refiner
    assert runtime["onnx"] == "garment_edges_ort.onnx" and (d / runtime["onnx"]).exists()
    from segcore.pipeline import SegmentOptions, load_segmenter, segment_frame

    seg, post = load_segmenter(SegmentOptions(model=str(d / "garment.json")))
    fm = segment_frame(_frame(), seg, post)
    assert fm.mask.shape == (480, 640) and set(np.unique(fm.mask)) <= {0, 255}


def test_a_frame_far_larger_than_the_refiners_is_refined_in_two_stages(zero_refiner_card):
    """Above CASCADE_FROM x CASCADE_SIZE the frame is segmented reduced first; the refiner
    then redraws that outline at full size (an untrained one keeps it: its prior)."""
    import cv2

    from segcore import frame
    from segcore.pipeline import SegmentOptions, load_segmenter, segment_frame
    from tests.conftest import blob_image

    bgr, _ = blob_image(2000, 2700, seed=5)
    assert max(bgr.shape[:2]) > frame.CASCADE_FROM * frame.CASCADE_SIZE
    seg, post = load_segmenter(SegmentOptions(model=str(zero_refiner_card)))
    assert post.outline_sigma > 0  # the card's smoothing: not in either stage of a large frame
    two = segment_frame(bgr, seg, post)
    k = frame.CASCADE_SIZE / 2700
    reduced = cv2.resize(bgr, (round(2700 * k), round(2000 * k)), interpolation=cv2.INTER_AREA)
    first = segment_frame(reduced, seg, replace(post, outline_sigma=0.0), rim_colours=False)
    expected = cv2.resize(first.alpha, (2700, 2000), interpolation=cv2.INTER_LINEAR) > 127
    assert two.mask.shape == two.alpha.shape == (2000, 2700)
    assert np.mean((two.mask > 0) != expected) < 1e-4
    assert np.array_equal(two.small, first.small)  # the network ran once, on the reduced frame
    assert two.rim  # the cut-out's rim colours are still defringed


def test_a_two_level_refiner_with_a_wider_margin_exports_and_runs(tmp_path):
    torch = pytest.importorskip("torch")
    from segcore.edges import EdgeRefiner, RefinerSpec
    from training.edges import EdgeConfig, _cfg_dict, _net, export_edges, train_edges

    torch.manual_seed(1)
    net = _net(8, 8, levels=2).eval()
    with torch.no_grad():  # a non-zero correction, so the export is really compared
        net.fuse[-1].weight.normal_(0, 0.1)
    cfg = _cfg_dict(EdgeConfig(data=[], val=[], out=str(tmp_path), margin=16, width=8, levels=2))
    ck = tmp_path / "two.pt"
    torch.save({"model": net.state_dict(), "config": cfg, "step": 1}, ck)
    entry = export_edges(str(ck), str(tmp_path / "two.onnx"))
    assert entry["margin"] == 16 and entry["cell"] == 32
    refiner = EdgeRefiner(RefinerSpec(tmp_path / "two.onnx", margin=16))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 4, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert np.abs(refiner.logits(x) - want).max() < 1e-3
    # a window that does not halve twice is refused before any work
    with pytest.raises(ValueError, match="multiple of 4"):
        train_edges(EdgeConfig(data=[], val=[], out=str(tmp_path / "r"), margin=9, levels=2))


def test_coarse_priors_of_data_sets_that_share_sequence_names_stay_apart(tmp_path):
    """Every ``synth`` run numbers its sequences from seq_00000: a training set and a
    validation set (or two training sets) hold frames of the same sequence name and stem,
    and each must get its own coarse probability from the run's cache."""
    from tests.conftest import blob_image
    from training.data import find_sequences
    from training.edges import coarse_cache

    for split, seed in (("a", 3), ("b", 9)):
        seq = tmp_path / split / "seq_00000_ring"
        (seq / "images").mkdir(parents=True)
        (seq / "masks").mkdir()
        bgr, mask = blob_image(240, 320, seed=seed)
        cv2.imwrite(str(seq / "images" / "0000.png"), bgr)
        cv2.imwrite(str(seq / "masks" / "0000.png"), mask)
    samples = [find_sequences(tmp_path / s)["seq_00000_ring"][0] for s in ("a", "b")]
    cache = tmp_path / "coarse"
    first = coarse_cache(samples, None, cache)
    assert len(list(cache.iterdir())) == 2
    assert not np.array_equal(first[0], first[1])  # two frames, two priors
    again = coarse_cache(samples[::-1], None, cache)  # read back from the cache
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[1], first[0])
    # the same model exported again under its name (a new network or card): run again
    d = tmp_path / "model"
    d.mkdir()
    for name in ("garment.json", "garment.onnx"):
        shutil.copy(MODELS_DIR / name, d / name)
    card = json.loads((d / "garment.json").read_text())
    card.pop("onnx_runtime", None)
    card.pop("edge_refiner", None)
    (d / "garment.json").write_text(json.dumps(card))
    own = tmp_path / "own"
    coarse_cache(samples[:1], str(d / "garment.json"), own)
    card["postprocess"]["threshold"] = 0.6
    (d / "garment.json").write_text(json.dumps(card))
    coarse_cache(samples[:1], str(d / "garment.json"), own)
    assert len(list(own.iterdir())) == 2
