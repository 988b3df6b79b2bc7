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


def _refiner_onnx(tmp_path, levels=1, margin=8, seed=1):
    """A refiner with a non-zero correction, exported as `training edges --export` does."""
    torch = pytest.importorskip("torch")
    from training.edges import EdgeConfig, _cfg_dict, _net, export_edges

    torch.manual_seed(seed)
    net = _net(8, 8, levels=levels).eval()
    with torch.no_grad():
        net.fuse[-1].weight.normal_(0, 0.1)
    cfg = _cfg_dict(
        EdgeConfig(data=[], val=[], out=str(tmp_path), margin=margin, width=8, levels=levels)
    )
    ck = tmp_path / f"edges{levels}.pt"
    torch.save({"model": net.state_dict(), "config": cfg, "step": 1}, ck)
    out = tmp_path / f"edges{levels}.onnx"
    return out, export_edges(str(ck), str(out))


@pytest.mark.parametrize("levels, margin", [(1, 8), (2, 16), (1, 1)])
def test_the_refiner_s_centre_only_graph_computes_the_centre_exactly(tmp_path, levels, margin):
    """The refiner's last layers run on the kept centre and the rim they read only; that
    centre is the whole graph's, and the rest of the window is not computed."""
    from training.runtime_graph import crop_to_cells

    src, entry = _refiner_onnx(tmp_path, levels, margin)
    c, m = entry["cell"], entry["margin"]
    S = c + 2 * m
    out = tmp_path / "centre.onnx"
    onnx.save(crop_to_cells(onnx.load(str(src)), c, m), str(out))
    x = np.random.default_rng(2).uniform(-1, 1, (5, 4, S, S)).astype(np.float32)
    whole, centre = _run(src, x), _run(out, x)
    assert whole.shape == (5, 1, S, S)
    rim = min(2, m)  # two 3x3 convolutions: a two-pixel rim, within the window
    assert centre.shape == (5, 1, c + 2 * rim, c + 2 * rim)
    k = (centre.shape[-1] - c) // 2
    want, got = whole[..., m : m + c, m : m + c], centre[..., k : k + c, k : k + c]
    assert np.abs(want).max() > 0.01  # a real correction, so the comparison means something
    assert np.abs(got - want).max() < 1e-5


def test_the_card_names_the_refiner_graph_and_segcore_runs_it(tmp_path):
    """`training runtime-graph` gives a card's refiner its own graph (centre only, int8 in
    7 bits); segcore's refiner runs it where ONNX Runtime is, and keeps the reference's
    decisions on the bundled example captures."""
    from dataclasses import replace

    from segcore.edges import EdgeRefiner
    from training.runtime_graph import add_refiner_graph

    card_path = _copy_model(MODELS_DIR / "garment.json", tmp_path)
    d = json.loads(card_path.read_text())
    d.pop("onnx_runtime", None)  # the coarse network's reference is enough here
    d["edge_refiner"].pop("onnx_runtime", None)
    card_path.write_text(json.dumps(d))
    out = add_refiner_graph(card_path)
    entry = json.loads(card_path.read_text())["edge_refiner"]["onnx_runtime"]
    assert entry["onnx"] == out.name and entry["int8"] is True and entry["centre_only"]
    assert 0 <= entry["decisions_changed"] < 0.005
    _assert_seven_bit_weights(out)
    fast = load_refiner(load_card(card_path))
    assert fast.spec.onnx_runtime == out and fast.backend.path == str(out)
    ref = EdgeRefiner(replace(fast.spec, onnx_runtime=None))
    assert ref.backend.path == str(fast.spec.onnx)
    card = load_card(card_path)
    seg_fast, seg_ref = Segmenter(card), Segmenter(card)
    seg_fast.edges, seg_ref.edges = fast, ref
    scores = Scores()
    for f in discover_frames(ROOT / "examples" / "garment_ring" / "images")[:3]:
        img = read_image(f)
        a = segment_frame(img, seg_fast, card.postprocess).mask
        b = segment_frame(img, seg_ref, card.postprocess).mask
        scores.add(a, b)
    assert scores.pooled()["iou"] > 0.995, scores.pooled()
    # the card's cells changed since the graph was written: the trained refiner runs
    d = json.loads(card_path.read_text())
    d["edge_refiner"]["cell"] = 24
    card_path.write_text(json.dumps(d))
    other = load_refiner(load_card(card_path))
    assert other.spec.onnx_runtime is None and other.backend.path == str(fast.spec.onnx)
    # a broken runtime graph is written again from the trained refiner
    out.write_bytes(b"not a graph")
    d["edge_refiner"]["cell"] = 32
    card_path.write_text(json.dumps(d))
    with pytest.raises(ModelError):
        load_refiner(load_card(card_path))
    add_refiner_graph(card_path)
    assert load_refiner(load_card(card_path)).backend.path == str(out)
