import numpy as np
import pytest

from segcore.preprocess import PreprocessParams, denoise_v, fit_size, prepare


def test_fit_size_long_side_and_padding():
    g = fit_size((3000, 4000), 320, 32)
    assert g.scaled_hw == (240, 320) and g.padded_hw == (256, 320)
    g = fit_size((4000, 3000), 320, 32)
    assert g.scaled_hw == (320, 240) and g.padded_hw == (320, 256)
    g = fit_size((1, 1), 64, 32)
    assert g.scaled_hw == (64, 64) and g.padded_hw == (64, 64)


def test_inverse_mapping_to_frame_coordinates():
    g = fit_size((960, 1280), 320, 32)  # 4x compression
    # network pixel centre 0 covers frame pixels 0..3, whose centre is 1.5
    np.testing.assert_allclose(g.to_frame([[0, 0]]), [[1.5, 1.5]])
    np.testing.assert_allclose(g.to_frame([[319, 239]]), [[1277.5, 957.5]])


def test_denoise_only_smooths_value_channel():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert denoise_v(img, 0) is img
    out = denoise_v(img, 1.5)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.astype(float).std() < img.astype(float).std()


def test_prepare_blob_is_normalised_rgb_padded():
    img = np.zeros((90, 120, 3), np.uint8)
    img[:, :, 2] = 255  # pure red in BGR
    params = PreprocessParams(input_size=100, pad_multiple=32)
    blob, geo = prepare(img, params)
    assert blob.shape == (1, 3, 96, 128) and blob.dtype == np.float32
    assert geo.scaled_hw == (75, 100)
    r = (1 - params.mean[0]) / params.std[0]
    g = (0 - params.mean[1]) / params.std[1]
    np.testing.assert_allclose(blob[0, 0, :75, :100], r, atol=1e-5)
    np.testing.assert_allclose(blob[0, 1, :75, :100], g, atol=1e-5)
    np.testing.assert_allclose(blob[0, 0, 90:, :], r, atol=1e-5)  # replicated padding


def test_prepare_rejects_non_bgr():
    with pytest.raises(ValueError):
        prepare(np.zeros((10, 10), np.uint8), PreprocessParams())
