"""``python -m training eval --families ROOT [ROOT ...]``: a table per family, the mean over
frames and the worst family; renders of the same families with other seeds pool."""

from __future__ import annotations

import cv2
import numpy as np

from segcore.io import read_label
from training.evaluate import evaluate_families
from training.shapes import make_shapes_dataset


def test_families_pool_over_roots_and_the_worst_family_is_named(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_shapes_dataset(a / "plaid", sequences=1, frames=2, size=(48, 64), seed=1)
    make_shapes_dataset(b / "plaid", sequences=1, frames=2, size=(48, 64), seed=2)
    make_shapes_dataset(a / "coat", sequences=1, frames=3, size=(48, 64), seed=3)
    masks = {}  # every frame's truth, by its pixels: the predictor looks it up
    for m in sorted(tmp_path.rglob("masks/*.png")):
        img = sorted((m.parent.parent / "images").glob(m.stem + ".*"))[0]
        masks[cv2.imread(str(img)).tobytes()] = (read_label(m), "coat" in str(m))

    def predict(bgr):
        truth, coat = masks[bgr.tobytes()]
        return np.zeros_like(truth) if coat else truth  # every coat frame missed

    result = evaluate_families(predict, [a, b])
    fams = result["families"]
    assert fams["plaid"]["frames"] == 4 and fams["coat"]["frames"] == 3  # pooled over a and b
    assert fams["plaid"]["iou"] == 1.0 and fams["coat"]["iou"] == 0.0
    assert result["worst"]["family"] == "coat" and result["all"]["frames"] == 7
    sequences = {r["sequence"] for r in result["frames"] if r["family"] == "plaid"}
    assert len(sequences) == 2 and all(s.split("/")[0] in ("a", "b") for s in sequences)
    one = evaluate_families(predict, a)  # one root as before
    assert one["families"]["plaid"]["frames"] == 2


def test_aspect_scores_the_middle_of_every_frame_with_its_truth(tmp_path):
    """``eval --aspect 3:4``: frame and truth are cut alike, so a perfect predictor stays
    perfect, and the predictor sees the portrait crop."""
    from training.evaluate import centre_crop

    img = np.arange(48 * 64).reshape(48, 64)
    assert centre_crop(img, (3, 4)).shape == (48, 36)
    assert centre_crop(img, (3, 2)).shape == (43, 64)
    assert centre_crop(img, None) is img
    assert (centre_crop(img, (3, 4)) == img[:, 14:50]).all()
    make_shapes_dataset(tmp_path / "fam" / "plaid", sequences=1, frames=2, size=(48, 64), seed=1)
    truths = {}
    for m in sorted(tmp_path.rglob("masks/*.png")):
        img = sorted((m.parent.parent / "images").glob(m.stem + ".*"))[0]
        frame = centre_crop(cv2.imread(str(img)), (3, 4))
        truths[frame.tobytes()] = centre_crop(read_label(m), (3, 4))
    shapes = []

    def predict(bgr):
        shapes.append(bgr.shape[:2])
        return truths[bgr.tobytes()]

    result = evaluate_families(predict, tmp_path / "fam", aspect=(3, 4))
    assert shapes == [(48, 36)] * 2 and result["all"]["iou"] == 1.0


def test_oracle_band_puts_the_truth_near_the_outline_only(tmp_path):
    """``eval --oracle-band PX``: a mask 3 px off the truth is made right by a 4 px band and
    left as it is far from its outline (a missed blob stays missed)."""
    from training.evaluate import truth_near_outline

    gt = np.zeros((80, 80), np.uint8)
    gt[20:60, 20:60] = 255
    gt[5:9, 70:74] = 255  # a blob the prediction misses entirely
    pred = np.zeros_like(gt)
    pred[23:63, 23:63] = 255  # the square 3 px off
    fixed = truth_near_outline(pred, gt, 4)
    assert (fixed[20:60, 20:60] == 255).all() and fixed[60:63, 23:63].max() == 0
    assert fixed[5:9, 70:74].max() == 0  # far from the outline: not the refiner's to find
    assert (truth_near_outline(pred, gt, 0.5)[30:50, 30:50] == 255).all()
    make_shapes_dataset(tmp_path / "fam" / "plaid", sequences=1, frames=2, size=(48, 64), seed=1)

    def speck(bgr):  # a mask with an outline, nothing like the truth
        m = np.zeros(bgr.shape[:2], np.uint8)
        m[:2, :2] = 255
        return m

    result = evaluate_families(speck, tmp_path / "fam", oracle_px=1000)
    assert result["all"]["iou"] == 1.0  # a band covering the frame: the truth everywhere
