import numpy as np
import pytest

from segcore.mask import clean_mask, cutout, foreground_share, threshold


def test_threshold_is_strict_and_binary():
    p = np.array([[0.2, 0.5, 0.51, 0.9]], np.float32)
    assert threshold(p, 0.5).tolist() == [[0, 0, 255, 255]]
    with pytest.raises(ValueError):
        threshold(p, 1.5)


def test_clean_removes_specks_fills_pinholes_keeps_real_openings():
    m = np.zeros((200, 200), np.uint8)
    m[20:180, 40:160] = 255  # torso
    m[60:140, 70:90] = 0  # a real opening (arm gap): 1600 px = 4 % of the frame
    m[100:102, 120:122] = 0  # a pinhole: 4 px
    m[5:7, 5:7] = 255  # a speck: 4 px
    out = clean_mask(m, min_blob_share=0.001, max_hole_share=0.001)
    assert out[5, 5] == 0  # speck removed
    assert out[100, 120] == 255  # pinhole filled
    assert out[100, 80] == 0  # the opening stays open
    assert foreground_share(out) == pytest.approx((160 * 120 - 1600) / 40000)


def test_hole_touching_border_is_not_filled():
    m = np.full((50, 50), 255, np.uint8)
    m[0:3, 20:23] = 0  # background notch at the frame edge
    out = clean_mask(m, 0, 0.01)
    assert out[0, 21] == 0


def test_cutout_puts_mask_in_alpha():
    bgr = np.full((4, 5, 3), 7, np.uint8)
    a = np.zeros((4, 5), np.uint8)
    a[1, 2] = 255
    rgba = cutout(bgr, a)
    assert rgba.shape == (4, 5, 4)
    assert (rgba[:, :, :3] == 7).all() and rgba[1, 2, 3] == 255 and rgba[0, 0, 3] == 0
    with pytest.raises(ValueError):
        cutout(bgr, np.zeros((3, 3), np.uint8))
