"""The network as a faster graph for ONNX Runtime: ``<name>_ort.onnx`` beside the card.

The card's own ONNX (``<name>.onnx``) stays the reference: OpenCV's DNN runs it (inside
Blender) and every other graph is derived from it. ONNX Runtime, where it is installed,
runs the derived graph, which computes the same network faster on a CPU in two ways:

1. **Deconvolutions as sub-pixel convolutions** (exact). A stride-2 deconvolution with a
   4x4 kernel and padding 1 gives each of the four output phases (even/odd row, even/odd
   column) from a 2x2 neighbourhood of its input. So it is four 2x2 convolutions, each
   padded on the side its phase reaches, concatenated and interleaved by ``DepthToSpace``.
   ONNX Runtime runs convolutions in its blocked layout and deconvolutions not; on the
   garment network this alone takes a pass from 54 to 49 ms on one core, to 1e-5.
2. **Int8 weights and activations where it costs nothing measurable** (static quantization,
   per-channel weights, calibrated on the bundled example captures and their mirror
   images). The weights use 7 bits: x86 CPUs without VNNI multiply uint8 activations by
   int8 weights with an instruction that adds each pair of products in 16 bits, which two
   full-range products overflow (on such a CPU 8-bit weights cost the test families 0.026
   IoU and 7 % more failed frames; ``docs/results.md``). The layers at the network's input
   resolution stay in float: the full-resolution branch, the fusion deconvolutions and the
   head, where the outline is drawn and where int8 was both slower (narrow layers) and
   coarser. A pass: 34 ms on one core with VNNI; without VNNI int8 is no faster than float.

The derived graph takes any input size (its batch, height and width are named, not fixed):
the network is convolutions, pooling and additions only, so the same weights and int8
scales serve a portrait frame, a 3:2 one and the flip pair alike. The reference graph keeps
the size it was exported at (OpenCV's DNN reshapes it to any other).

Needs ``onnx`` and ``onnxruntime`` (the training install); segcore only reads the result.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from segcore.io import atomic_write_bytes

log = logging.getLogger(__name__)

SUFFIX = "_ort.onnx"  # <name>_ort.onnx beside <name>.onnx
# layers kept in float: GarmentNet's full-resolution branch, its fusion and its head
FLOAT_LAYERS = ("/branches.0/", "/fuse_up", "/head/")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WEIGHT_BITS = 7  # int8 weights within +-64: no 16-bit overflow on CPUs without VNNI


def subpixel_deconvolutions(model):
    """``model`` (an ``onnx.ModelProto``, changed in place and returned) with every
    ConvTranspose of kernel 4, stride 2, padding 1 (no groups, no dilation) replaced by four
    2x2 convolutions, a Concat and a DepthToSpace that compute the same output."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, done = [], 0
    for n in g.node:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        if not (
            n.op_type == "ConvTranspose"
            and list(a.get("kernel_shape", [])) == [4, 4]
            and list(a.get("strides", [])) == [2, 2]
            and list(a.get("pads", [])) == [1, 1, 1, 1]
            and a.get("group", 1) == 1
            and list(a.get("dilations", [1, 1])) == [1, 1]
            and not a.get("output_padding")
            and n.input[1] in inits
        ):
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])  # (cin, cout, 4, 4)
        bias = list(n.input[2:3])
        phases = []
        for r in range(2):  # output row parity
            for c in range(2):  # output column parity
                # output row 2m + r takes input rows m - 1 + r + u (u = 0, 1) through kernel
                # row 3 - 2u (r = 0) or 2 - 2u (r = 1); columns alike
                k = np.empty((w.shape[1], w.shape[0], 2, 2), np.float32)
                for u in range(2):
                    for v in range(2):
                        k[:, :, u, v] = w[:, :, 3 - r - 2 * u, 3 - c - 2 * v].T
                wname = f"{n.name or n.output[0]}/phase{r}{c}/weight"
                g.initializer.append(numpy_helper.from_array(k, wname))
                out = f"{n.output[0]}/phase{r}{c}"
                nodes.append(
                    helper.make_node(
                        "Conv",
                        [n.input[0], wname, *bias],
                        [out],
                        name=out,
                        kernel_shape=[2, 2],
                        pads=[1 - r, 1 - c, r, c],  # top, left, bottom, right
                    )
                )
                phases.append(out)
        cat = f"{n.output[0]}/phases"
        nodes.append(helper.make_node("Concat", phases, [cat], name=cat, axis=1))
        nodes.append(
            helper.make_node(
                "DepthToSpace", [cat], [n.output[0]], name=f"{cat}/interleave", blocksize=2
            )
        )
        g.initializer.remove(inits.pop(n.input[1]))
        done += 1
    del g.node[:]
    g.node.extend(nodes)
    log.debug("%d deconvolutions as sub-pixel convolutions", done)
    return model


def any_input_size(model):
    """``model`` (an ``onnx.ModelProto``, changed in place and returned) with the batch,
    height and width of its inputs and outputs named instead of fixed, and the fixed-size
    shapes that shape inference recorded for its intermediate tensors dropped. Only for a
    fully convolutional graph (no op whose output size is written into the graph)."""
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for d, name in zip(dims, ("batch", None, "height", "width")):
            if name is not None:
                d.Clear()
                d.dim_param = name
    del model.graph.value_info[:]
    return model


def calibration_blobs(preprocess, hw: tuple[int, int], frames: list[Path] | None = None):
    """Network inputs for calibrating int8: each frame (default: the bundled example
    captures') and its mirror image, turned to the graph's orientation, preprocessed as
    segcore does."""
    import cv2

    from segcore.infer import prepare
    from segcore.io import discover_frames

    preprocess = replace(preprocess, input_size=max(hw))  # the size the graph was fixed at
    if frames is None:
        frames = [p for d in sorted(EXAMPLES.glob("*/images")) for p in discover_frames(d)]
    blobs = []
    for p in frames:
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if im is None:
            continue
        if (im.shape[0] > im.shape[1]) != (hw[0] > hw[1]):
            im = cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE)
        blob, _ = prepare(im, preprocess)
        if blob.shape[2:] != tuple(hw):
            continue
        blobs += [blob, np.ascontiguousarray(blob[..., ::-1])]
    return blobs


def write_runtime_graph(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    preprocess,
    quantize: bool = True,
    frames: list[Path] | None = None,
) -> dict:
    """Write ``out_path``: ``onnx_path`` for ONNX Runtime (module docstring), atomically.
    Returns the card's ``onnx_runtime`` entry. Without calibration frames (or with
    ``quantize=False``) the graph stays in float, sub-pixel convolutions only."""
    import onnx

    model = subpixel_deconvolutions(onnx.load(str(onnx_path)))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    hw = (dims[2].dim_value, dims[3].dim_value)
    blobs = calibration_blobs(preprocess, hw, frames) if quantize else []
    entry = {"onnx": Path(out_path).name, "deconvolutions": "sub-pixel", "int8": False}
    with tempfile.TemporaryDirectory(prefix="segcore-ort-") as tmp:
        plain = Path(tmp) / "float.onnx"
        onnx.save(model, str(plain))
        src = plain
        if blobs:
            src = Path(tmp) / "int8.onnx"
            _quantize(plain, src, blobs, Path(tmp), FLOAT_LAYERS)
            entry.update(
                int8=True,
                float_layers=list(FLOAT_LAYERS),
                weight_bits=WEIGHT_BITS,
                calibration=f"{len(blobs) // 2} frames and their mirror images"
                + (" (the bundled example captures)" if frames is None else ""),
            )
        final = any_input_size(onnx.load(str(src)))
        entry["input"] = "any size"
        atomic_write_bytes(out_path, final.SerializeToString())
    return entry


def _quantize(
    src: Path, dst: Path, blobs: list, tmp: Path, float_layers, symbolic_shapes: bool = True
) -> None:
    """Static int8 quantization of ``src`` into ``dst`` (QDQ, per-channel weights in
    ``WEIGHT_BITS``), calibrated on ``blobs``; nodes whose name holds one of
    ``float_layers`` stay in float. ``symbolic_shapes=False`` for a graph whose shapes
    ONNX Runtime's symbolic inference cannot follow (the refiner's Resize)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    name = onnx.load(str(src)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(blobs)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {name: b}

    pre = tmp / "pre.onnx"
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=not symbolic_shapes)
    kept = [
        n.name for n in onnx.load(str(pre)).graph.node if any(k in n.name for k in float_layers)
    ]
    quantize_static(
        str(pre),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=WEIGHT_BITS < 8,
        nodes_to_exclude=kept,
    )


def add_runtime_graph(card_path: str | os.PathLike, quantize: bool = True) -> Path:
    """(Re)write the runtime graph of the model whose card is ``card_path`` and name it in
    the card (``"onnx_runtime"``); returns the graph's path."""
    from segcore.card import load_card, runtime_onnx_path

    card_path = Path(card_path)
    card = load_card(card_path)
    out = card_path.parent / f"{card.name}{SUFFIX}"
    entry = write_runtime_graph(card.onnx_path, out, card.preprocess, quantize)
    runtime_onnx_path(card_path.parent, entry)  # the entry is one the card accepts
    d = json.loads(card_path.read_text(encoding="utf-8"))
    d["onnx_runtime"] = entry
    atomic_write_bytes(card_path, (json.dumps(d, indent=2) + "\n").encode())
    return out


# ---------------------------------------------------------------------------------------
# The edge refiner's graph for ONNX Runtime: ``<name>_edges_ort.onnx``
# ---------------------------------------------------------------------------------------

REFINER_SUFFIX = "_edges_ort.onnx"  # <name>_edges_ort.onnx beside <name>_edges.onnx
# the refiner's first convolution reads the frame's colours and the prior's logit: in float
REFINER_FLOAT_LAYERS = ("/stem/",)
CROP_CHECK_TOL = 1e-4  # the cropped graph's centre against the whole one's, max abs logit
CHECK_WINDOWS = 256  # windows the checks run on (the first of the calibration windows)


def _conv_reach(node) -> int:
    """How many pixels beyond its output a convolution reads on each side."""
    from onnx import helper

    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    k = list(a.get("kernel_shape", [1, 1]))
    d = list(a.get("dilations", [1, 1]))
    return max((ki - 1) // 2 * di for ki, di in zip(k, d))


def crop_to_cells(model, cell: int, margin: int):
    """``model`` (the refiner's ``onnx.ModelProto``, changed in place and returned) computing
    only what the pipeline keeps: the refiner reads a window of ``cell + 2 * margin`` pixels
    and only its centre ``cell`` x ``cell`` is used, but its last layers (the fusion of the
    full- and half-resolution features, two 3x3 convolutions at the window's resolution, a
    third of its work) run on the whole window. Here the fused features are sliced to the
    centre plus the pixels those layers read around it, and the prior's logit, which the
    graph adds at the end, alike: the output is the centre with that rim, and its centre is
    the whole graph's exactly (:func:`write_refiner_graph` checks it).

    The fusion is found as the graph's last ``Concat``; the layers after it must be
    convolutions and point-wise operations up to the final ``Add`` with the prior."""
    from onnx import helper, numpy_helper

    g = model.graph
    cats = [n for n in g.node if n.op_type == "Concat"]
    out = g.output[0].name
    final = [n for n in g.node if out in n.output]
    if not cats or not final or final[0].op_type != "Add":
        raise ValueError("not an edge refiner graph: no fusion Concat or final Add")
    cat, add = cats[-1], final[0]
    by_output = {o: n for n in g.node for o in n.output}
    # walk back from the final Add to the Concat: the fusion branch; its convolutions' reach
    reach, branch_input = 0, None
    for start in add.input:
        node, chain = by_output.get(start), []
        while node is not None and node is not cat:
            chain.append(node)
            node = by_output.get(node.input[0])
        if node is cat:
            if any(n.op_type not in ("Conv", "Relu") for n in chain):
                raise ValueError("the refiner's fusion branch is not convolutions and ReLUs")
            reach = sum(_conv_reach(n) for n in chain if n.op_type == "Conv")
            branch_input = start
    if branch_input is None:
        raise ValueError("not an edge refiner graph: the final Add does not follow the fusion")
    prior_input = next(i for i in add.input if i != branch_input)
    S = cell + 2 * margin
    # where the margin is narrower than the reach, the whole window is read, as before
    a, b = max(0, margin - reach), min(S, S - margin + reach)
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array([a, a], np.int64), "centre/starts"),
            numpy_helper.from_array(np.array([b, b], np.int64), "centre/ends"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "centre/axes"),
        ]
    )
    crop = ["centre/starts", "centre/ends", "centre/axes"]
    fused, prior = f"{cat.output[0]}/centre", f"{prior_input}/centre"
    nodes = []
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == cat.output[0]:
                n.input[i] = fused
            elif n is add and name == prior_input:
                n.input[i] = prior
        nodes.append(n)
        if n is cat:
            nodes.append(helper.make_node("Slice", [cat.output[0], *crop], [fused], name=fused))
        if prior_input in n.output:
            nodes.append(helper.make_node("Slice", [prior_input, *crop], [prior], name=prior))
    if prior_input in [i.name for i in g.input]:
        nodes.insert(0, helper.make_node("Slice", [prior_input, *crop], [prior], name=prior))
    del g.node[:]
    g.node.extend(nodes)
    for d in g.output[0].type.tensor_type.shape.dim[2:]:
        d.Clear()
        d.dim_value = b - a
    del g.value_info[:]
    return model


def refiner_windows(card, spec, frames: list[Path] | None = None) -> list[np.ndarray]:
    """The refiner's inputs, batch by batch, as the shipped pipeline makes them on each frame
    (default: the bundled example captures') with ``card``'s network and the refiner of
    ``spec`` as trained (a runtime graph the card names may be the one being rewritten)."""
    import cv2

    from segcore.edges import EdgeRefiner
    from segcore.frame import segment_frame
    from segcore.infer import Segmenter
    from segcore.io import discover_frames

    if frames is None:
        frames = [p for d in sorted(EXAMPLES.glob("*/images")) for p in discover_frames(d)]
    seg, post = Segmenter(card), card.postprocess
    seg.edges = EdgeRefiner(replace(spec, onnx_runtime=None))
    seen: list[np.ndarray] = []
    inner = seg.edges.logits

    def capture(blob):
        seen.append(blob.copy())
        return inner(blob)

    seg.edges.logits = capture
    for p in frames:
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if im is not None:
            segment_frame(im, seg, post, rim_colours=False)
    return seen


def write_refiner_graph(card_path: str | os.PathLike, quantize: bool = True) -> dict:
    """Write ``<name>_edges_ort.onnx`` beside the card: its edge refiner computing only the
    centre the pipeline keeps (:func:`crop_to_cells`, exact) and, unless ``quantize`` is
    False, in int8 below its first layer (calibrated on the refiner's windows of the bundled
    example captures; 7-bit weights as the coarse network's). Returns the ``onnx_runtime``
    entry of the card's ``edge_refiner``."""
    import onnx
    import onnxruntime as ort

    from segcore.card import load_card
    from segcore.edges import RefinerSpec

    card_path = Path(card_path)
    card = load_card(card_path)
    spec = RefinerSpec.from_card(card_path.parent, card.extra["edge_refiner"])
    src, cell, margin = spec.onnx, spec.cell, spec.margin
    out_path = card_path.parent / f"{card.name}{REFINER_SUFFIX}"
    windows = refiner_windows(card, spec)
    S = cell + 2 * margin
    if windows:
        sample = np.concatenate(windows)[:CHECK_WINDOWS]
    else:  # no example captures here: the exactness check on random windows
        rng = np.random.default_rng(0)
        sample = rng.uniform(-1, 1, (16, 4, S, S)).astype(np.float32)

    def run(path, x):
        o = ort.SessionOptions()
        o.log_severity_level = 3
        s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        return s.run(None, {s.get_inputs()[0].name: x})[0]

    def centre_of(logits):
        k = (logits.shape[-1] - cell) // 2
        return logits[..., k : k + cell, k : k + cell]

    entry = {
        "onnx": out_path.name,
        "centre_only": True,
        "cell": cell,  # the window it was written for: another one runs the trained graph
        "margin": margin,
        "int8": False,
    }
    with tempfile.TemporaryDirectory(prefix="segcore-ort-") as tmp:
        cropped = Path(tmp) / "centre.onnx"
        onnx.save(crop_to_cells(onnx.load(str(src)), cell, margin), str(cropped))
        whole = centre_of(run(src, sample))  # the rewrite is exact: checked before writing
        err = float(np.abs(whole - centre_of(run(cropped, sample))).max())
        if err > CROP_CHECK_TOL:
            raise ValueError(f"{src}: the centre-only graph differs by {err:g}; not written")
        final = cropped
        if quantize and windows:
            final = Path(tmp) / "int8.onnx"
            _quantize(cropped, final, windows, Path(tmp), REFINER_FLOAT_LAYERS, False)
            q = centre_of(run(final, sample))
            entry.update(
                int8=True,
                float_layers=list(REFINER_FLOAT_LAYERS),
                weight_bits=WEIGHT_BITS,
                calibration=f"{sum(len(b) for b in windows)} windows of the bundled example "
                f"captures; decisions_changed: over the centres of the first {len(sample)}",
                decisions_changed=round(float(((q > 0) != (whole > 0)).mean()), 5),
            )
        atomic_write_bytes(out_path, Path(final).read_bytes())
    return entry


def add_refiner_graph(card_path: str | os.PathLike, quantize: bool = True) -> Path:
    """(Re)write the runtime graph of the card's edge refiner and name it in the card's
    ``edge_refiner`` entry (``"onnx_runtime"``); returns the graph's path."""
    card_path = Path(card_path)
    entry = write_refiner_graph(card_path, quantize)
    d = json.loads(card_path.read_text(encoding="utf-8"))
    d["edge_refiner"] = {**d["edge_refiner"], "onnx_runtime": entry}
    atomic_write_bytes(card_path, (json.dumps(d, indent=2) + "\n").encode())
    return card_path.parent / entry["onnx"]
