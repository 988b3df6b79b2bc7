"""The shipped model: loads from its card, matches its torch weights, and segments the bundled
example capture (a held-out sequence: its seed was never used for training data)."""

import numpy as np
import pytest

from segcore.card import MODELS_DIR, load_card
from segcore.infer import Segmenter
from segcore.io import discover_frames, read_image, read_label
from segcore.metrics import Scores
from segcore.pipeline import segment_frame

from .conftest import ROOT

pytestmark = pytest.mark.skipif(
    not (MODELS_DIR / "garment.json").exists(), reason="no bundled model yet"
)

EXAMPLE = ROOT / "examples" / "garment_ring"


def test_card_is_complete():
    card = load_card()
    assert card.name == "garment"
    assert card.onnx_path.exists()
    for key in ("training", "metrics"):
        assert key in card.extra, key
    assert card.extra["metrics"]["heldout"]["f1"] > 0.5
    assert card.extra["parameters"] <= 3_000_000


def _example_scores(post=None) -> dict:
    from dataclasses import replace

    seg = Segmenter.load()
    post = replace(seg.card.postprocess, **(post or {}))
    scores = Scores()
    for f in discover_frames(EXAMPLE / "images"):
        fm = segment_frame(read_image(f), seg, post)
        scores.add(fm.mask, read_label(EXAMPLE / "masks" / f"{f.stem}.png"))
    return scores.pooled()


def test_example_capture_scores_above_the_bar():
    pooled = _example_scores()
    # measured when the model was exported; a regression in preprocessing, export or
    # post-processing drops it well below this bar
    assert pooled["f1"] > BAR_F1, pooled


def test_refinement_sharpens_the_example_edges():
    plain, refined = _example_scores({"refine": False}), _example_scores({"refine": True})
    assert refined["bf1"] > plain["bf1"] + BAR_BF1_GAIN, (plain, refined)
    assert refined["bf2"] >= plain["bf2"] - BF2_NOISE, (plain, refined)
    assert refined["f1"] >= plain["f1"] - 1e-3, (plain, refined)


def test_onnx_matches_torch_weights_on_a_real_frame():
    torch = pytest.importorskip("torch")
    from segcore.backend import TorchBackend, onnx_backend
    from training.train import TrainConfig, make_model

    ck = torch.load(MODELS_DIR / "garment.pt", map_location="cpu", weights_only=False)
    model = make_model(TrainConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["model"])
    card = load_card()
    img = read_image(discover_frames(EXAMPLE / "images")[0])
    p1, _ = Segmenter(card, backend=onnx_backend(card.onnx_path)).probability(img)  # reference
    p2, _ = Segmenter(card, backend=TorchBackend(model)).probability(img)
    assert np.abs(p1 - p2).max() < 1e-4


# v4 measured 0.9673 at export, 0.9699 with radius 4 and flip averaging (pooled over the 8
# frames; v2 0.9605, v1 0.946)
BAR_F1 = 0.94
# BF@1px of refinement over spline upsampling alone: v2 +0.028 on the example (BF@2px
# +0.001 here, +0.029 on the 8 test sequences); v1 gained +0.06 BF@2px on the example; v11,
# whose spline-upsampled edges on this green sweep are already close (BF@1px 0.9403), +0.009
# with F1 0.9895 -> 0.9908 and IoU 0.9793 -> 0.9817 (on the 54 held-out family frames BF@1px
# 0.6240 -> 0.8485); a broken refinement loses BF@1px
BAR_BF1_GAIN = 0.005
# BF@2px on 8 frames moves by a few thousandths either way: v4 refined with an 8-pixel
# window 0.9173 against 0.9193 unrefined on the example (+0.023 on the 48 test frames); with
# the 4-pixel window and flip averaging 0.9281 against 0.9256 (BF@1px +0.021); v10 with
# the refiner fitted to v10 0.9817 against 0.9872 (BF@1px +0.020, IoU +0.003, F1 +0.0015;
# on the 54 held-out family frames 0.8825 against 0.8745 with v9's); a broken refinement
# loses far more
BF2_NOISE = 1e-2


def test_the_report_names_the_graphs_that_ran(monkeypatch):
    """ONNX Runtime runs the card's faster graphs (the network's and the refiner's); OpenCV's
    DNN, as in Blender, the trained ones; `report.json` says which."""
    from segcore.pipeline import SegmentOptions, load_segmenter
    from segcore.run_report import networks

    pytest.importorskip("onnxruntime")
    fast = networks(load_segmenter(SegmentOptions())[0])
    assert fast == {
        "coarse": {"runtime": "onnxruntime", "graph": "garment_ort.onnx"},
        "edge_refiner": {"runtime": "onnxruntime", "graph": "garment_edges_ort.onnx"},
    }
    monkeypatch.setenv("SEGCORE_BACKEND", "opencv")
    trained = networks(load_segmenter(SegmentOptions())[0])
    assert trained == {
        "coarse": {"runtime": "opencv", "graph": "garment.onnx"},
        "edge_refiner": {"runtime": "opencv", "graph": "garment_edges.onnx"},
    }
    guided = networks(load_segmenter(SegmentOptions(edges="guided"))[0])
    assert guided["edge_refiner"] is None
