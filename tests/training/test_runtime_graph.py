"""ONNX Runtime's own graph of a model (``training.runtime_graph``): the sub-pixel rewrite of
the deconvolutions computes the same network, the int8 graph draws the same masks as the
reference graph, and segcore runs it where the card names it (OpenCV keeps the reference)."""

import json
import shutil

import numpy as np
import pytest

from segcore.card import MODELS_DIR, load_card
from segcore.edges import load_refiner
from segcore.errors import ModelError
from segcore.infer import Segmenter
from segcore.io import discover_frames, read_image
from segcore.metrics import Scores
from segcore.pipeline import segment_frame

from ..conftest import ROOT

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _run(path, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_subpixel_convolutions_compute_the_deconvolutions(random_model, tmp_path):
    from training.runtime_graph import subpixel_deconvolutions

    model = onnx.load(str(random_model["onnx"]))
    before = sum(n.op_type == "ConvTranspose" for n in model.graph.node)
    assert before > 0
    out = tmp_path / "sub.onnx"
    onnx.save(subpixel_deconvolutions(model), str(out))
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == before
    x = np.random.default_rng(0).normal(size=(1, 3, 256, 320)).astype(np.float32)
    ref, got = _run(random_model["onnx"], x), _run(out, x)
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_the_runtime_graph_takes_any_input_size(random_model, tmp_path):
    """Portrait, 3:2 and a flip pair run through the one graph, as the reference computes
    them at that size."""
    from segcore.backend import OpenCVBackend
    from training.runtime_graph import write_runtime_graph

    card = load_card(random_model["card"])
    out = tmp_path / "any_ort.onnx"
    entry = write_runtime_graph(card.onnx_path, out, card.preprocess, quantize=False)
    assert entry["input"] == "any size"
    ref = OpenCVBackend(card.onnx_path)
    rng = np.random.default_rng(1)
    for shape in ((1, 3, 320, 256), (1, 3, 224, 320)):
        x = rng.normal(size=shape).astype(np.float32)
        want, got = ref.logits(x), _run(out, x)
        assert got.shape[2:] == shape[2:]
        assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())
    pair = rng.normal(size=(2, 3, 256, 320)).astype(np.float32)
    assert _run(out, pair).shape[0] == 2


def _assert_seven_bit_weights(path):
    """Every int8 weight of the graph within +-64: an x86 CPU without VNNI multiplies u8 x s8
    pairs into int16, which two full-range products overflow (masks far off there)."""
    from onnx import numpy_helper

    ws = [
        numpy_helper.to_array(i)
        for i in onnx.load(str(path)).graph.initializer
        if i.data_type == onnx.TensorProto.INT8
    ]
    assert ws, f"{path}: no int8 weights"
    lo, hi = min(int(w.min()) for w in ws), max(int(w.max()) for w in ws)
    assert lo >= -64 and hi <= 64, f"{path}: weights {lo}..{hi} overflow without VNNI"


def _copy_model(src_card, dst):
    card = load_card(src_card)
    for p in {card.onnx_path, src_card, *card.onnx_path.parent.glob(f"{card.name}_edges.onnx")}:
        shutil.copy(p, dst)
    return dst / src_card.name


def test_the_card_names_the_graph_and_segcore_runs_it(random_model, tmp_path):
    from training.runtime_graph import add_runtime_graph

    card_path = _copy_model(random_model["card"], tmp_path)
    out = add_runtime_graph(card_path)
    entry = json.loads(card_path.read_text())["onnx_runtime"]
    assert entry["onnx"] == out.name and entry["int8"] is True
    _assert_seven_bit_weights(out)
    card = load_card(card_path)
    assert card.runtime_onnx == out
    seg = Segmenter(card)
    assert getattr(seg.backend, "path", None) == str(out)  # ONNX Runtime runs it ...
    from segcore.backend import OpenCVBackend

    assert OpenCVBackend(card.onnx_path).path == str(card.onnx_path)  # ... OpenCV the reference


def test_a_runtime_graph_outside_the_card_folder_is_refused(random_model, tmp_path):
    card_path = _copy_model(random_model["card"], tmp_path)
    d = json.loads(card_path.read_text())
    d["onnx_runtime"] = {"onnx": "../elsewhere_ort.onnx"}
    card_path.write_text(json.dumps(d))
    with pytest.raises(ModelError, match="onnx_runtime.onnx"):
        load_card(card_path)


@pytest.mark.skipif(not (MODELS_DIR / "garment.json").exists(), reason="no bundled model")
def test_the_bundled_int8_graph_draws_the_reference_masks():
    """In either orientation, the int8 graph's masks agree with the float reference's to a
    tight IoU, and ONNX Runtime runs both orientations itself."""
    card = load_card()
    assert card.runtime_onnx is not None and card.runtime_onnx.exists()
    _assert_seven_bit_weights(card.runtime_onnx)
    from segcore.backend import OpenCVBackend, OrtBackend

    fast = Segmenter(card, backend=OrtBackend(card.onnx_path, card.runtime_onnx))
    ref = Segmenter(card, backend=OpenCVBackend(card.onnx_path))
    for seg in (fast, ref):
        seg.edges = load_refiner(card)
    scores = Scores()
    frames = [  # a landscape ring and a portrait turntable, as shot
        *discover_frames(ROOT / "examples" / "garment_ring" / "images")[:2],
        *discover_frames(ROOT / "examples" / "garment_turntable" / "images")[:2],
    ]
    assert {read_image(f).shape[0] > read_image(f).shape[1] for f in frames} == {True, False}
    for f in frames:
        img = read_image(f)
        a = segment_frame(img, fast, card.postprocess).mask
        b = segment_frame(img, ref, card.postprocess).mask
        scores.add(a, b)
    assert scores.pooled()["iou"] > 0.99, scores.pooled()
    assert fast.backend._other is None  # no frame went to OpenCV
