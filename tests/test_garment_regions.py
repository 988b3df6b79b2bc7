"""The garment made coherent with the frame's colours (segcore.garment_regions)."""

import numpy as np

from segcore.garment_regions import FIGURE, GARMENT, grow_garment
from segcore.infer import keep_probability


def _frame():
    """A dress of one cloth on a form with a purple neck cap and tan legs, and the network's
    split of it: the skirt garment, the bodice taken for the figure (as on dress forms)."""
    h, w = 120, 80
    bgr = np.full((h, w, 3), (40, 120, 40), np.uint8)  # green sweep
    cloth, neck, legs = (200, 215, 205), (170, 90, 150), (90, 140, 190)
    bgr[10:20, 35:45] = neck
    bgr[20:80, 20:60] = cloth
    bgr[80:110, 30:34] = legs
    bgr[80:110, 46:50] = legs
    probs = np.zeros((4, h, w), np.float32)
    probs[0] = 1.0
    probs[:, 20:80, 20:60] = 0.0
    probs[GARMENT, 50:80, 20:60] = 0.97  # the skirt: confident garment
    probs[FIGURE, 50:80, 20:60] = 0.03
    probs[FIGURE, 20:50, 20:60] = 0.8  # the bodice: taken for the figure
    probs[GARMENT, 20:50, 20:60] = 0.2
    for sl in (np.s_[10:20, 35:45], np.s_[80:110, 30:34], np.s_[80:110, 46:50]):
        probs[(0, *sl)] = 0.0
        probs[(FIGURE, *sl)] = 1.0
    return bgr, probs


def test_the_cloth_the_confident_garment_reaches_is_garment_and_the_form_stays_figure():
    bgr, probs = _frame()
    out = grow_garment(bgr, probs)
    cls = out.argmax(axis=0)
    # the bodice, the skirt's cloth, is garment; its rim against the neck cap, where the
    # texture measure sees both colours, stays as the network said
    assert (cls[23:50, 20:60] == GARMENT).all() and (cls[20:23, 20:60] == GARMENT).mean() > 0.5
    assert (cls[10:20, 35:45] == FIGURE).all()  # the neck cap: another colour
    assert (cls[80:110, 30:34] == FIGURE).all()  # the legs
    # the garment figure's probability (the default mask) is the same
    both = (GARMENT, FIGURE)
    assert np.allclose(keep_probability(out, both), keep_probability(probs, both))
    assert np.array_equal(probs, _frame()[1])  # the input is left as it is


def test_nothing_changes_without_confident_garment_or_for_a_binary_model():
    bgr, probs = _frame()
    probs[GARMENT, 50:80, 20:60], probs[FIGURE, 50:80, 20:60] = 0.4, 0.6  # no confident garment
    assert grow_garment(bgr, probs) is probs
    one = np.ones((1, *probs.shape[1:]), np.float32)
    assert grow_garment(bgr, one) is one
