"""The demo's contact sheet tints each class in its viewing colour (segcore.labels.PALETTE)."""

import numpy as np

from segcore.labels import PALETTE
from segcore.sheet import tint_classes


def test_each_class_is_blended_towards_its_colour_and_the_background_is_left_alone():
    bgr = np.full((4, 6, 3), 100, np.uint8)
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 2:4], labels[:, 4:] = 1, 2  # garment, figure
    out = tint_classes(bgr, labels, strength=0.5)
    assert np.array_equal(out[:, :2], bgr[:, :2])  # background untouched
    for k, cols in ((1, slice(2, 4)), (2, slice(4, 6))):
        r, g, b = PALETTE[k]
        want = ((100 + np.array((b, g, r))) / 2).astype(np.uint8)  # BGR, half way
        assert np.all(np.abs(out[:, cols].astype(int) - want) <= 1)
    assert np.array_equal(bgr, np.full((4, 6, 3), 100, np.uint8))  # the input kept
