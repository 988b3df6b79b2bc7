"""Property-based tests: any image shape, dtype, channel count and mask content goes through
preprocess -> infer -> upsample -> mask to a valid output or a clean, named error; random and
mutated bytes never crash the decoder."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from segcore.card import MODELS_DIR, PostprocessParams
from segcore.errors import FrameError, ModelError
from segcore.io import decode_image, read_label
from segcore.mask import clean_mask, threshold
from segcore.metrics import boundary_counts, confusion
from segcore.pipeline import segment_frame
from segcore.upsample import spline_upsample

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def images(draw):
    h = draw(st.integers(1, 90))
    w = draw(st.integers(1, 90))
    ch = draw(st.sampled_from([1, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    seed = draw(st.integers(0, 2**31 - 1))
    hi = 256 if dtype == np.uint8 else 65536
    img = np.random.default_rng(seed).integers(0, hi, (h, w, ch)).astype(dtype)
    return img[:, :, 0] if ch == 1 else img


@FUZZ
@given(img=images(), refine=st.booleans(), t=st.floats(0.05, 0.95))
def test_any_image_gives_a_valid_mask(random_model, img, refine, t):
    from segcore.infer import Segmenter

    seg = Segmenter.load(random_model["card"])
    # whatever the file held, decoding yields 8-bit BGR: go through the real codec path
    ok, buf = cv2.imencode(".png", img)
    assert ok
    bgr = decode_image(buf.tobytes())
    fm = segment_frame(bgr, seg, PostprocessParams(threshold=t, refine=refine))
    assert fm.mask.shape == img.shape[:2] and fm.mask.dtype == np.uint8
    assert set(np.unique(fm.mask)) <= {0, 255}
    assert fm.alpha.shape == img.shape[:2]
    rgba = fm.rgba(bgr)
    assert rgba.shape == (*img.shape[:2], 4)


@FUZZ
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    H=st.integers(1, 300),
    W=st.integers(1, 300),
    seed=st.integers(0, 1000),
)
def test_upsample_any_size(h, w, H, W, seed):
    p = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    out = spline_upsample(p, (H, W))
    assert out.shape == (H, W) and np.isfinite(out).all()
    assert out.min() > -0.6 and out.max() < 1.6  # cubic overshoot is bounded


@FUZZ
@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.integers(1, 60),
    w=st.integers(1, 60),
    blob=st.floats(0, 0.05),
    hole=st.floats(0, 0.05),
)
def test_mask_cleanup_and_metrics_any_content(seed, h, w, blob, hole):
    rng = np.random.default_rng(seed)
    prob = rng.random((h, w)).astype(np.float32)
    m = clean_mask(threshold(prob, 0.5), blob, hole)
    assert m.shape == (h, w) and set(np.unique(m)) <= {0, 255}
    gt = rng.random((h, w)) > 0.5
    c = confusion(m, gt)
    assert c.tp + c.fp + c.fn + c.tn == h * w
    for bc in boundary_counts(m, gt).values():
        assert 0 <= bc.pred_matched <= bc.pred_total and 0 <= bc.gt_matched <= bc.gt_total


def _seed_files() -> list[bytes]:
    img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return [cv2.imencode(ext, img)[1].tobytes() for ext in (".jpg", ".png", ".tif", ".bmp")]


SEEDS = _seed_files()


@settings(max_examples=300, deadline=None)
@given(
    which=st.integers(0, len(SEEDS) - 1),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=12),
    cut=st.floats(0.05, 1.0),
)
def test_decoder_on_mutated_bytes(which, edits, cut):
    data = bytearray(SEEDS[which])
    for pos, val in edits:
        data[int(pos * (len(data) - 1))] = val
    data = bytes(data[: max(1, int(len(data) * cut))])
    try:
        img = decode_image(data, "fuzz.bin")
    except FrameError as exc:
        assert "fuzz.bin" in str(exc)
        return
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=2000))
def test_decoder_on_random_bytes(data):
    try:
        img = decode_image(data, "random.bin")
    except FrameError:
        return
    assert img.ndim == 3 and img.dtype == np.uint8


def test_label_reader_rejects_garbage(tmp_path):
    p = tmp_path / "l.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(FrameError):
        read_label(p)


# --- model cards -------------------------------------------------------------------------

_CARD = json.loads((MODELS_DIR / "garment.json").read_text())


def _card_fields(d: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields segcore reads, and of their sections."""
    out = []
    for k, v in d.items():
        name = f"{prefix}{k}"
        if prefix or k in ("name", "onnx", "arch", "preprocess", "postprocess", "edge_refiner"):
            out.append(name)
            if isinstance(v, dict) and not prefix:
                out += _card_fields(v, f"{name}.")
    return out + ["classes", "preprocess.color_order"]


CARD_FIELDS = _card_fields(_CARD)

# values of every JSON type, near the valid ones and far from them
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-2, 600)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(-2, 20)
    | st.text(max_size=12)
    | st.sampled_from(
        ["../../../etc/passwd", "/etc/passwd", "m.onnx", "sub/m.onnx", "a/../../m.onnx", "RGB"]
        + ["false", "true", "", "guided", "spline", "background", "\0.onnx"]
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def _load_or_clear_error(tmp_path, d) -> object:
    """The card loads (and then each value it gives works on a frame), or ModelError."""
    from segcore.card import load_card
    from segcore.edges import RefinerSpec
    from segcore.preprocess import prepare

    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(d))  # NaN / Infinity as Python writes and reads them
    try:
        card = load_card(path)
    except ModelError as exc:
        msg = str(exc)
        assert msg.startswith(f"{path}: ") and "\n" not in msg
        event("refused")
        return None
    event("loaded")
    pre = replace(card.preprocess, input_size=min(card.preprocess.input_size, 128))
    frame = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    blob, geo = prepare(frame, pre)
    assert np.isfinite(blob).all() and blob.shape[2] % pre.pad_multiple == 0
    post = card.postprocess
    assert 0 < post.threshold < 1 and 0 <= post.min_blob_share < 1
    assert isinstance(post.refine, bool) and isinstance(post.flip, bool)
    p = np.random.default_rng(1).random((20, 30)).astype(np.float32)
    clean_mask(threshold(p, post.threshold), post.min_blob_share, post.max_hole_share)
    assert card.onnx_path.resolve().is_relative_to(tmp_path.resolve())
    if "edge_refiner" in card.extra:
        spec = RefinerSpec.from_card(card.onnx_path.parent, card.extra["edge_refiner"])
        assert spec.onnx.resolve().is_relative_to(tmp_path.resolve())
    return card


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(CARD_FIELDS), st.booleans(), json_values),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_model_cards_load_or_name_the_field(tmp_path_factory, edits):
    d = copy.deepcopy(_CARD)
    for field, delete, value in edits:
        *parents, key = field.split(".")
        node = d
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if delete:
            node.pop(key, None)
        else:
            node[key] = value
    _load_or_clear_error(tmp_path_factory.mktemp("card"), d)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.fixed_dictionaries(
        {"format_version": st.just(1)},
        optional={
            k: json_values
            for k in ("name", "onnx", "arch", "preprocess", "postprocess", "edge_refiner")
        }
        | {"classes": json_values, "notes": json_values},
    )
)
def test_random_model_cards_load_or_name_the_field(tmp_path_factory, d):
    _load_or_clear_error(tmp_path_factory.mktemp("card"), d)
