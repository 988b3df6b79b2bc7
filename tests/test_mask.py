import numpy as np
import pytest

from segcore.card import PostprocessParams
from segcore.mask import clean_mask, cutout, decide, foreground_share, threshold


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


def test_small_pieces_far_from_the_subject_go_and_near_ones_stay():
    m = np.zeros((240, 320), np.uint8)
    m[40:200, 140:200] = 255  # the subject: 9600 px
    m[100:130, 10:40] = 255  # a blob of the wall far to the left: 900 px, 100 px away
    m[120:140, 204:214] = 255  # a hand just off the sleeve: 4 px away
    out = clean_mask(m, 0.0, 0.0, satellite_share=0.1, satellite_gap=0.05)  # gap: 16 px
    assert not out[100:130, 10:40].any()
    assert out[120:140, 204:214].all() and out[40:200, 140:200].all()
    big = m.copy()
    big[100:160, 10:60] = 255  # 3000 px: a third of the subject, not a stray piece
    assert clean_mask(big, 0.0, 0.0, satellite_share=0.1, satellite_gap=0.05)[100:160, 10:60].all()
    assert np.array_equal(clean_mask(m, 0.0, 0.0), m)  # off by default
    legs = np.zeros((240, 320), np.uint8)
    legs[20:140, 120:220] = 255  # torso
    legs[144:200, 150:170] = 255  # a leg, 4 px below it
    legs[204:214, 145:175] = 255  # its foot, 4 px below the leg, far from the torso
    assert np.array_equal(clean_mask(legs, 0.0, 0.0, satellite_share=0.1), legs)
    wall = np.zeros((240, 320), np.uint8)
    wall[0:240, 0:120] = 255  # a large false piece, the largest
    wall[100:160, 250:290] = 255  # the garment, far from it and a tenth its size
    assert np.array_equal(clean_mask(wall, 0.0, 0.0, satellite_share=0.25), wall)


def test_decide_takes_the_card_s_clean_up_limits_in_order():
    prob = np.zeros((240, 320), np.float32)
    prob[40:200, 140:200] = 0.9
    prob[100:130, 10:40] = 0.9
    post = PostprocessParams(satellite_share=0.1)
    coarse, p, _ = decide(prob, 0.5, *post.cleaning)
    assert not coarse[100:130, 10:40].any() and (p[100:130, 10:40] == 0).all()
    assert PostprocessParams.from_dict(post.to_dict()) == post
    assert PostprocessParams().satellite_share == 0  # cards without the field: off


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
