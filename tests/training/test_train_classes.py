"""Multi-class training pieces: class maps through loading and augmentation, the subject
logit of class logits, and a one-channel checkpoint initialising a class head."""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from segcore.config import CLASSES, NetConfig  # noqa: E402
from training.augment import augment, retexture  # noqa: E402
from training.data import Sample, load_pair, resize_classes  # noqa: E402
from training.train import (  # noqa: E402
    CONTACT_PX,
    TrainConfig,
    class_loss_weights,
    contact_zone,
    edge_weights,
    load_weights,
    make_model,
    subject_logit,
)


def _scene(h=96, w=128):
    lab = np.zeros((h, w), np.uint8)
    lab[20:70, 40:90] = 1  # garment
    lab[10:20, 55:75] = 2  # figure (neck)
    lab[70:90, 62:68] = 3  # stand
    img = np.full((h, w, 3), 40, np.uint8)
    img[lab == 1] = (30, 30, 200)
    img[lab == 2] = (200, 200, 200)
    img[lab == 3] = (90, 90, 90)
    return img, lab


def test_resize_classes_keeps_the_majority_class():
    _, lab = _scene()
    small = resize_classes(lab, (64, 48), cv2.INTER_AREA)
    assert small.shape == (48, 64)
    assert set(np.unique(small)) == {0, 1, 2, 3}
    assert small[22, 32] == 1 and small[0, 0] == 0


def test_load_pair_derives_the_mask_from_the_class_map(tmp_path):
    img, lab = _scene()
    cv2.imwrite(str(tmp_path / "i.png"), img)
    cv2.imwrite(str(tmp_path / "l.png"), lab)
    cv2.imwrite(str(tmp_path / "m.png"), np.where(lab > 0, 255, 0).astype(np.uint8))  # stand in
    _, m, cl = load_pair(
        Sample("s", tmp_path / "i.png", tmp_path / "m.png", tmp_path / "l.png"), 64
    )
    assert cl.shape == m.shape == (48, 64)
    assert ((m > 0) == ((cl == 1) | (cl == 2))).all()


def test_augment_moves_the_class_map_with_the_image():
    img, lab = _scene()
    mask = np.where((lab == 1) | (lab == 2), 255, 0).astype(np.uint8)
    rng = np.random.default_rng(0)
    for i in range(20):
        swap = 0.0 if i % 2 else 1.0  # a swapped background may take the garment's colour
        x, m, cl = augment(img, mask, 64, rng, None, swap, (0.6, 1.2), labels=lab)
        assert x.shape == (64, 64, 3) and cl.shape == m.shape == (64, 64)
        assert ((m > 0) == ((cl == 1) | (cl == 2))).all()
        # the garment's red survives colour jitter well enough to find it where the label says
        if not swap and (cl == 1).sum() > 50 and (cl == 0).sum() > 50:
            red = x[..., 2].astype(int) - x[..., 0].astype(int)
            assert red[cl == 1].mean() > red[cl == 0].mean()


def test_retexture_redraws_only_the_garment_and_the_figure_and_keeps_their_shading():
    img, lab = _scene()
    img[20:45, 40:90] = (15, 15, 100)  # the garment's upper half in shadow
    photo = np.random.default_rng(1).integers(0, 256, (200, 300, 3)).astype(np.uint8)
    changed_garment = changed_figure = 0
    for seed in range(30):
        out = retexture(img, lab, np.random.default_rng(seed), [photo], garment=1.0, figure=0.5)
        assert out.shape == img.shape and out.dtype == np.uint8
        inner = cv2.erode((lab > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        far = inner & (lab == 0)
        far = cv2.erode(far.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert (out[far] == img[far]).all()  # background and support untouched
        assert (out[75:90, 62:68] == img[75:90, 62:68]).all()  # the stand, away from it
        g = np.abs(out[25:65, 45:85].astype(int) - img[25:65, 45:85]).mean()
        changed_garment += g > 2
        f = np.abs(out[12:18, 58:72].astype(int) - img[12:18, 58:72]).mean()
        changed_figure += f > 2
        # the shading survives: the shadowed half stays darker than the lit half
        grey = out.astype(np.float32).mean(axis=2)
        assert grey[25:40, 45:85].mean() < grey[50:65, 45:85].mean() + 1
    assert changed_garment >= 27  # plain colours can land near the old one
    assert 5 <= changed_figure <= 25
    # deterministic for a seed; nothing drawn without a class map's classes
    a = retexture(img, lab, np.random.default_rng(7), [photo])
    assert (a == retexture(img, lab, np.random.default_rng(7), [photo])).all()
    assert (retexture(img, np.zeros_like(lab), np.random.default_rng(7), [photo]) == img).all()


def test_class_loss_weights_favour_rare_classes_and_keep_the_mean_at_one():
    _, lab = _scene()
    share = np.bincount(lab.ravel(), minlength=4) / lab.size
    w = class_loss_weights([lab, None], 0.5)
    assert w.shape == (len(CLASSES),)
    assert np.isclose((share * w).sum(), 1.0)
    assert w[3] > w[2] > w[1] > w[0]  # stand < figure < garment < background in pixels
    assert np.allclose(class_loss_weights([lab], 0.0), 1.0)  # power 0: unweighted
    no_support = np.where(lab == 3, 0, lab).astype(np.uint8)
    assert class_loss_weights([no_support], 0.5)[3] == 0  # absent class: no weight


def test_the_contact_weight_lies_where_the_figure_meets_its_support():
    lab = np.zeros((60, 60), np.uint8)
    lab[5:30, 20:40] = 1  # garment
    lab[30:40, 24:36] = 2  # legs and feet
    lab[40:50, 10:50] = 3  # the base they stand on
    zone = contact_zone(lab)
    assert zone[39, 30] and zone[40, 30]  # a foot's sole and the base under it
    assert zone[40 - CONTACT_PX, 30] and not zone[40 - CONTACT_PX - 1, 30]
    assert not zone[lab == 1].any() and not zone[lab == 0].any()
    assert not zone[45, 12]  # the base's far end touches no figure
    assert not contact_zone(np.where(lab == 3, 0, lab)).any()  # no support: no zone
    mask = np.where((lab == 1) | (lab == 2), 255, 0).astype(np.uint8)[None]
    w = edge_weights(mask, 2.0, lab[None], 4.0)
    assert np.isclose(w.mean(), 1.0)
    assert w[0, 38, 30] > 2 * w[0, 20, 30]  # the feet outweigh the garment's inside
    assert np.array_equal(edge_weights(mask, 2.0, lab[None], 0.0), edge_weights(mask, 2.0))


def test_subject_logit_is_garment_or_figure_against_the_rest():
    logits = torch.randn(2, len(CLASSES), 5, 7)
    p = torch.softmax(logits, dim=1)
    fg = torch.sigmoid(subject_logit(logits))
    assert torch.allclose(fg[:, 0], p[:, 1] + p[:, 2], atol=1e-5)
    one = torch.randn(2, 1, 5, 7)
    assert subject_logit(one) is one


def test_a_binary_checkpoint_initialises_a_class_head_with_the_same_subject_logit(tmp_path):
    arch = NetConfig()
    binary = make_model(TrainConfig(arch=arch)).eval()
    torch.save({"model": binary.state_dict()}, tmp_path / "b.pt")
    multi = make_model(TrainConfig(arch=NetConfig(out_channels=len(CLASSES)))).eval()
    load_weights(multi, str(tmp_path / "b.pt"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(subject_logit(multi(x)), binary(x), atol=1e-4)


def test_evaluation_scores_the_kept_classes_against_the_label_maps(tmp_path):
    from training.evaluate import class_figures, ground_truth

    img, lab = _scene()
    cv2.imwrite(str(tmp_path / "l.png"), lab)
    cv2.imwrite(str(tmp_path / "m.png"), np.where((lab == 1) | (lab == 2), 255, 0).astype(np.uint8))
    s = Sample("s", tmp_path / "i.png", tmp_path / "m.png", tmp_path / "l.png")
    gt, gt_labels = ground_truth(s, (1,))
    assert (gt == (lab == 1)).all() and (gt_labels == lab).all()
    gt, _ = ground_truth(s, None)  # a binary model: garment + figure
    assert (gt == ((lab == 1) | (lab == 2))).all()
    pred = np.where(lab > 0, 255, 0).astype(np.uint8)  # the stand kept by mistake
    f = class_figures(pred, None, lab)
    assert f["support_share"] == pytest.approx((lab == 3).sum() / (lab > 0).sum())
    f = class_figures(pred, np.where(lab == 3, 0, lab), lab, keep_ids=(1, 2))
    assert f["garment_iou"] == 1.0 and f["figure_iou"] == 1.0 and "support_iou" not in f


def test_feet_missed_is_the_figure_left_out_at_the_base_of_the_subject():
    from training.evaluate import base_figure_missed, class_figures

    lab = np.zeros((100, 60), np.uint8)
    lab[10:70, 20:40] = 1  # the garment, rows 10-69
    lab[70:90, 24:36] = 2  # legs and feet, rows 70-89 (the lowest eighth: rows 80-89)
    lab[90:95, 15:45] = 3  # the disc under them
    full = np.where((lab == 1) | (lab == 2), 255, 0).astype(np.uint8)
    assert base_figure_missed(full > 0, lab) == 0.0
    cut = full.copy()
    cut[85:] = 0  # the feet's lower half taken for the disc
    assert base_figure_missed(cut > 0, lab) == pytest.approx(0.5, abs=0.05)
    assert class_figures(cut, None, lab)["feet_missed"] == pytest.approx(0.5, abs=0.05)
    assert "feet_missed" not in class_figures(cut, None, lab, keep_ids=(1,))  # garment only
    dress = np.where(lab == 2, 0, lab)  # no figure at the base (a dress form's hem)
    assert base_figure_missed(full > 0, dress) is None
    assert "feet_missed" not in class_figures(full, None, dress)


def test_the_family_table_shows_feet_missed_where_a_family_has_feet():
    from training.evaluate import families_markdown, frame_means

    base = dict(precision=1, recall=1, f1=1, iou=1, bf1=1, bf2=1, bf4=1, seconds=0.1)
    feet = [dict(base, support_share=0.001, feet_missed=0.25)] * 2
    hems = [dict(base, support_share=0.002)] * 2  # dress forms: no figure at the base
    fams = {"mannequins": frame_means(feet), "dress_forms": frame_means(hems)}
    result = {"families": fams, "all": frame_means(feet + hems)}
    result["worst"] = {"family": "mannequins", **fams["mannequins"]}
    table = families_markdown(result)
    assert "| family | support in mask | feet missed |" in table
    assert "| mannequins | 0.10 % | 25.00 % |" in table
    assert "| dress_forms | 0.20 % | – |" in table
    assert "| **all frames** | 0.15 % | 25.00 % |" in table


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--contact-weight", "4"], "--contact-weight 4.0 needs a multi-class model"),
        (["--classes", "--contact-weight", "-1"], "--contact-weight -1.0: must be a number, 0 or"),
        (["--classes", "--class-weight", "nan"], "--class-weight nan: must be a number, 0 or more"),
        (["--retexture", "1.5"], "--retexture 1.5: a share of crops, 0 to 1"),
    ],
)
def test_training_weights_out_of_range_are_refused_before_any_work(flags, message):
    """A weight the loss would ignore (the contact weight on a binary model) or misuse (a
    negative one) stops the command at once, with the flag named."""
    from training.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--data", "d", *flags])
    with pytest.raises(SystemExit, match=re.escape(message)):
        config_from_args(args)
    ok = build_parser().parse_args(["train", "--data", "d", "--classes", "--contact-weight", "4"])
    assert config_from_args(ok).contact_weight == 4.0
