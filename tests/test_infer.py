import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segcore.backend import TorchBackend  # noqa: E402
from segcore.card import load_card  # noqa: E402
from segcore.errors import ModelError  # noqa: E402
from segcore.infer import Segmenter  # noqa: E402

from .conftest import blob_image  # noqa: E402


def _both(random_model):
    card = load_card(random_model["card"])
    return Segmenter(card), Segmenter(card, backend=TorchBackend(random_model["model"]))


@pytest.mark.parametrize("shape", [(96, 128), (128, 96), (37, 250), (480, 640)])
def test_opencv_and_torch_backends_agree_on_random_frames(random_model, shape):
    cv, tc = _both(random_model)
    img = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    p1, g1 = cv.probability(img)
    p2, g2 = tc.probability(img)
    assert g1 == g2 and p1.shape == g1.scaled_hw
    assert np.abs(p1 - p2).max() < 1e-4


def test_backends_agree_on_real_photo(random_model):
    skimage_data = pytest.importorskip("skimage.data")
    import cv2

    img = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    cv, tc = _both(random_model)
    assert np.abs(cv.probability(img)[0] - tc.probability(img)[0]).max() < 1e-4
    img2, _ = blob_image()
    assert np.abs(cv.probability(img2)[0] - tc.probability(img2)[0]).max() < 1e-4


def test_flip_averaging_commutes_with_mirroring_the_frame(random_model):
    """Flip averaging sees the frame and its mirror image, so mirroring the frame mirrors its
    output exactly (the frame fills the padded input's width); one pass of a net does not."""
    cv, _ = _both(random_model)
    side = cv.card.preprocess.input_size
    img = np.random.default_rng(2).integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(img[:, ::-1])
    p, geo = cv.probability(img, flip=True)
    assert geo.padded_hw[1] == geo.scaled_hw[1] == side
    assert np.abs(p[:, ::-1] - cv.probability(mirrored, flip=True)[0]).max() < 1e-5
    single = np.abs(cv.probability(img)[0][:, ::-1] - cv.probability(mirrored)[0]).max()
    assert single > 1e-3  # a random net is not symmetric: the check above means something
    assert np.abs(p - cv.probability(img)[0]).max() > 1e-3


def test_flip_is_a_card_default_the_user_can_override(random_model):
    from dataclasses import replace

    from segcore.card import PostprocessParams
    from segcore.pipeline import SegmentOptions, load_segmenter

    assert PostprocessParams.from_dict({"refine": True}).flip  # older cards: on
    assert not PostprocessParams.from_dict(replace(PostprocessParams(), flip=False).to_dict()).flip
    card = str(random_model["card"])
    assert load_segmenter(SegmentOptions(model=card))[1].flip
    assert not load_segmenter(SegmentOptions(model=card, flip=False))[1].flip


def test_missing_and_corrupt_models_fail_before_any_frame(random_model, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Segmenter.load(tmp_path / "nope.json")
    card = json.loads(random_model["card"].read_text())
    (tmp_path / "c.json").write_text(json.dumps({**card, "onnx": "c.onnx"}))
    (tmp_path / "c.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="cannot load"):
        Segmenter.load(tmp_path / "c.json")
    (tmp_path / "v.json").write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(ModelError, match="format_version"):
        Segmenter.load(tmp_path / "v.json")


def test_card_that_does_not_match_onnx_is_refused(random_model, tmp_path):
    card = json.loads(random_model["card"].read_text())
    card["arch"]["in_channels"] = 4
    card["onnx"] = "m.onnx"  # beside the card: a card names no file outside its folder
    (tmp_path / "m.onnx").write_bytes(random_model["onnx"].read_bytes())
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="do not match|does not run"):
        Segmenter.load(tmp_path / "m.json")


@pytest.mark.parametrize("shape", [(96, 128), (128, 96), (480, 640)])
def test_onnxruntime_and_opencv_backends_agree(random_model, shape, monkeypatch):
    """ONNX Runtime runs the exported input size, OpenCV any other (a portrait frame): the
    two give the same probabilities either way."""
    pytest.importorskip("onnxruntime")
    from segcore.backend import OpenCVBackend, OrtBackend

    card = load_card(random_model["card"])
    cv = Segmenter(card, backend=OpenCVBackend(card.onnx_path))
    ort = Segmenter(card, backend=OrtBackend(card.onnx_path))
    img = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    for flip in (False, True):
        assert (
            np.abs(cv.probability(img, flip=flip)[0] - ort.probability(img, flip=flip)[0]).max()
            < 1e-4
        )


def test_the_backend_is_chosen_by_the_environment(random_model, monkeypatch):
    from segcore.backend import OpenCVBackend, onnx_backend

    path = load_card(random_model["card"]).onnx_path
    monkeypatch.setenv("SEGCORE_BACKEND", "opencv")
    assert isinstance(onnx_backend(path), OpenCVBackend)
    monkeypatch.setenv("SEGCORE_BACKEND", "tensorrt")
    with pytest.raises(ModelError, match="SEGCORE_BACKEND='tensorrt': choose one of"):
        onnx_backend(path)
    monkeypatch.delenv("SEGCORE_BACKEND")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        assert isinstance(onnx_backend(path), OpenCVBackend)  # auto: what there is
    else:
        assert onnx_backend(path).name == "onnxruntime"
