import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segcore.card import load_card  # noqa: E402
from segcore.errors import ModelError  # noqa: E402
from segcore.infer import Segmenter, TorchBackend  # noqa: E402

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
    card["onnx"] = str(random_model["onnx"])
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="do not match|does not run"):
        Segmenter.load(tmp_path / "m.json")
