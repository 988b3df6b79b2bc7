import numpy as np
import pytest

from segcore.card import PostprocessParams
from segcore.mask import (
    _fill_small,
    clean_edges,
    clean_mask,
    cutout,
    decide,
    foreground_share,
    smooth_outline,
    threshold,
)


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


@pytest.mark.parametrize("seed", range(6))
def test_clean_edges_in_the_subject_s_box_equals_the_whole_frame_s(seed):
    """Labelled only in the subject's box, specks and holes go as they would if the whole
    frame were labelled: background open to the box's edge stays, pieces at the frame's
    edge too."""
    rng = np.random.default_rng(seed)
    H, W = 120, 160
    m = np.zeros((H, W), np.uint8)
    y0, x0 = rng.integers(0, 40), rng.integers(0, 60)
    m[y0 : y0 + 70, x0 : x0 + 90] = 255
    noise = rng.random((H, W)) < 0.04  # specks and pinholes, some at the box's edges
    m[noise] = 255 - m[noise]
    if seed % 2:
        m[:, :3] = 255  # a piece along the frame's edge: the box reaches it
    m[y0 + 10 : y0 + 20, x0 : x0 + 5] = 0  # a notch open to the box's edge: not a hole
    alpha = (m // 2).astype(np.uint8)
    ref_m, ref_a = m.copy(), alpha.copy()
    limit = 0.001 * H * W
    _fill_small(ref_m, limit, subject=True, alpha=ref_a)
    _fill_small(ref_m, limit, subject=False, alpha=ref_a)
    clean_edges(m, alpha, 0.001)
    assert np.array_equal(m, ref_m)
    assert np.array_equal(alpha, ref_a)
    empty = np.zeros((H, W), np.uint8)
    clean_edges(empty, empty.copy(), 0.001)  # nothing to label: nothing happens
    assert not empty.any()


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


def _square(h=200, w=300):
    m = np.zeros((h, w), np.uint8)
    m[40:160, 60:240] = 255
    return m


def test_smooth_outline_evens_out_a_ragged_edge_and_keeps_mask_and_alpha_agreeing():
    clean = _square()
    ragged = clean.copy()
    ragged[39, 60:240:4] = 255  # one-pixel bumps along the top
    ragged[159, 62:240:4] = 0  # one-pixel notches along the bottom
    ragged[80:120, 239] = 0  # a notch a pixel deep and 40 long: more than noise, kept
    alpha = ragged.copy()
    mask = ragged.copy()
    smooth_outline(mask, alpha, 1.5)
    assert not mask[39].any() and mask[159, 64:236].all()  # bumps and notches gone
    assert not mask[82:118, 239].any() and mask[45:78, 239].all()
    assert np.array_equal(mask[30:170, 64:236], clean[30:170, 64:236])  # a straight edge
    assert np.array_equal(alpha > 127, mask > 0)  # the alpha still agrees with the mask


def test_smooth_outline_keeps_detail_a_few_pixels_wide_and_nothing_changes_at_zero():
    m = _square()
    m[20:40, 150:156] = 255  # a strap 6 pixels wide above the subject
    mask, alpha = m.copy(), m.copy()
    smooth_outline(mask, alpha, 1.5)
    assert mask[22:40, 151:155].all()
    assert abs(int(np.count_nonzero(mask)) - int(np.count_nonzero(m))) < 0.01 * np.count_nonzero(m)
    for sigma in (0.0, -1.0):
        same, a = m.copy(), m.copy()
        smooth_outline(same, a, sigma)
        assert np.array_equal(same, m) and np.array_equal(a, m)
    empty = np.zeros_like(m)
    smooth_outline(empty, empty.copy(), 1.5)  # nothing to smooth: nothing happens
    assert not empty.any()


def test_smooth_outline_at_the_frame_border_keeps_the_border():
    m = np.zeros((100, 120), np.uint8)
    m[30:100, 0:50] = 255  # a subject cut by the frame's left and bottom borders
    mask, alpha = m.copy(), m.copy()
    smooth_outline(mask, alpha, 1.5)
    assert mask[99, 0:49].all() and mask[31:100, 0].all()
