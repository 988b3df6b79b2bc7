import numpy as np
import pytest

from segcore.metrics import (
    BoundaryCounts,
    Counts,
    Scores,
    boundary,
    boundary_counts,
    boundary_f,
    confusion,
    f1,
    iou,
    precision,
    recall,
)


def test_counts_hand_computed():
    pred = np.array([[1, 1, 0, 0]], bool)
    gt = np.array([[1, 0, 1, 0]], bool)
    c = confusion(pred, gt)
    assert c == Counts(tp=1, fp=1, fn=1, tn=1)
    assert precision(c) == 0.5 and recall(c) == 0.5 and f1(c) == 0.5
    assert iou(c) == pytest.approx(1 / 3)


def test_empty_cases():
    z = np.zeros((3, 3), bool)
    c = confusion(z, z)
    assert f1(c) == 1.0 and iou(c) == 1.0
    c = confusion(z, ~z)
    assert f1(c) == 0.0 and precision(c) == 0.0 and recall(c) == 0.0


def test_uint8_masks_accepted_and_sizes_checked():
    a = np.zeros((4, 4), np.uint8)
    a[1:3, 1:3] = 255
    assert confusion(a, a > 0).tp == 4
    with pytest.raises(ValueError):
        confusion(a, np.zeros((3, 4), bool))


def test_boundary_of_square():
    m = np.zeros((10, 10), bool)
    m[2:8, 2:8] = True
    b = boundary(m)
    assert b.sum() == 20  # perimeter of a 6x6 square
    assert not b[4, 4] and b[2, 4]


def test_boundary_f_tolerances():
    gt = np.zeros((100, 100), bool)
    gt[20:80, 20:80] = True
    shifted = np.zeros_like(gt)
    shifted[22:82, 20:80] = True  # 2 px down
    bc = boundary_counts(shifted, gt)
    assert boundary_f(bc[1]) < boundary_f(bc[2])
    assert boundary_f(bc[4]) == 1.0
    assert boundary_f(boundary_counts(gt, gt)[1]) == 1.0
    # top and bottom edges are 2 px off: at 1 px only the vertical sides match
    assert 0.3 < boundary_f(bc[1]) < 0.8


def test_boundary_f_empty():
    assert boundary_f(BoundaryCounts(0, 0, 0, 0)) == 1.0
    assert boundary_f(BoundaryCounts(0, 10, 0, 0)) == 0.0


def test_scores_pool_counts_not_means():
    s = Scores()
    big = np.ones((10, 10), bool)
    s.add(big, big)  # 100 tp
    small_p = np.zeros((10, 10), bool)
    small_p[0, 0] = True
    s.add(small_p, np.zeros((10, 10), bool))  # 1 fp
    assert s.pooled()["precision"] == pytest.approx(100 / 101)
    assert s.n == 2
