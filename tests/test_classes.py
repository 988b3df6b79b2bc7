"""Multi-class models: --keep, the labels format and its palette, per-class metrics.

The multi-class model here is a tiny network whose classes follow the colours of a drawn
scene (a red garment over a green figure on a grey pole, on a blue backdrop), so what each
keep set must cut out is known.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segcore.card import load_card
from segcore.config import CLASSES
from segcore.errors import InputError, ModelError
from segcore.infer import Segmenter, keep_probability, parse_keep, sigmoid
from segcore.labels import PALETTE, label_map, nearest_class, read_labels, write_labels
from segcore.metrics import ClassScores, class_scores

torch = pytest.importorskip("torch")

# RGB of the scene's parts, in CLASSES order: backdrop, garment, figure, support
COLOURS = ((60, 90, 170), (200, 40, 40), (70, 170, 80), (140, 140, 140))
H, W = 240, 320


def scene(shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(BGR frame, true class map): figure (a tall block), the garment over its middle, the
    support (a pole and a base) under it; ``shift`` moves the subject sideways."""
    lab = np.zeros((H, W), np.uint8)
    x = 130 + shift
    lab[40:170, x : x + 60] = 2  # figure
    lab[70:150, x - 15 : x + 75] = 1  # garment, wider than the figure
    lab[170:215, x + 25 : x + 35] = 3  # pole
    lab[215:228, x : x + 60] = 3  # base
    rgb = np.array(COLOURS, np.uint8)[lab]
    noise = np.random.default_rng(abs(shift) + 5).integers(-6, 7, rgb.shape)
    bgr = cv2.cvtColor(np.clip(rgb + noise, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    return bgr, lab


class ColourNet(torch.nn.Module):
    """Softmax logits that pick the nearest of ``COLOURS`` (a 1x1 convolution on the
    normalised input), smoothed by a 3x3 box so edges are soft."""

    def __init__(self, cfg, pre, sharpness: float = 12.0):
        super().__init__()
        self.cfg = cfg
        proto = torch.tensor(COLOURS, dtype=torch.float32) / 255  # (4, 3) RGB
        mean, std = torch.tensor(pre.mean), torch.tensor(pre.std)
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.box = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        with torch.no_grad():  # k (2 p.rgb - |p|^2), rgb = x std + mean
            self.conv.weight.copy_((2 * sharpness * proto * std)[..., None, None])
            self.conv.bias.copy_(sharpness * (2 * proto @ mean - (proto**2).sum(1)))
            self.box.weight.fill_(1 / 9)

    def forward(self, x):
        return self.box(self.conv(x))


@pytest.fixture(scope="module")
def classes_model(tmp_path_factory):
    from segcore.card import ModelCard, PostprocessParams
    from segcore.config import NetConfig
    from segcore.export import export_onnx
    from segcore.preprocess import PreprocessParams

    d = tmp_path_factory.mktemp("classes_model")
    cfg = NetConfig(widths=(4, 8, 8), depths=(1, 2, 2), fuse_channels=4, out_channels=4)
    pre = PreprocessParams(input_size=160, pad_multiple=32)
    onnx = export_onnx(ColourNet(cfg, pre), d / "cls.onnx")
    card = ModelCard(
        "cls", cfg, pre, PostprocessParams(), onnx_path=onnx, extra={"classes": list(CLASSES)}
    )
    card.save(d / "cls.json")
    frames = d / "frames"
    frames.mkdir()
    truth = {}
    for i in range(3):
        bgr, lab = scene(shift=12 * i)
        cv2.imwrite(str(frames / f"f{i}.png"), bgr)
        truth[f"f{i}"] = lab
    return {"card": d / "cls.json", "onnx": onnx, "frames": frames, "truth": truth, "dir": d}


def _segment(model, frames, out, keep=None, formats=("mask", "rgba", "labels", "colmap")):
    from segcore.pipeline import SegmentOptions, SequenceJob

    opts = SegmentOptions(model=str(model), keep=keep, formats=formats, workers=1, plate="off")
    job = SequenceJob(frames, out, opts)
    assert all(r.status == "ok" for r in job.run())
    job.write_report()
    return job


def _masks(out, folder="masks"):
    return {p.stem: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (out / folder).iterdir()}


def test_parse_keep_orders_names_and_refuses_unknown_ones():
    assert parse_keep(None) is None
    assert parse_keep("figure, garment") == ("garment", "figure")
    assert parse_keep(["support", "garment", "figure"]) == ("garment", "figure", "support")
    with pytest.raises(InputError, match="unknown class hat; choose from garment, figure"):
        parse_keep("garment,hat")
    with pytest.raises(InputError, match="background is what is cut away"):
        parse_keep("background")
    with pytest.raises(InputError, match="empty"):
        parse_keep(" , ")


def test_binary_card_is_unchanged_bit_for_bit(random_model):
    """A card without classes: the sigmoid of the one logit (flip-averaged), as before."""
    from segcore.preprocess import prepare

    seg = Segmenter(load_card(random_model["card"]))
    assert seg.keep is None and seg.kept_names is None
    img = np.random.default_rng(3).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    for flip in (False, True):
        blob, geo = prepare(img, seg.card.preprocess)
        logits = seg.backend.logits(blob)[0, 0]
        if flip:
            mirrored = seg.backend.logits(np.ascontiguousarray(blob[..., ::-1]))[0, 0]
            logits = 0.5 * (logits + mirrored[:, ::-1])
        p, classes, _ = seg.predict(img, flip=flip)
        assert classes is None
        assert np.array_equal(p, sigmoid(geo.crop(logits)))
        assert np.array_equal(seg.probability(img, flip=flip)[0], p)
    # the default keep, named, is the binary model's subject; any other is refused
    assert Segmenter(load_card(random_model["card"]), keep="garment,figure").keep is None
    with pytest.raises(InputError, match="model card 'rand' has no classes"):
        Segmenter(load_card(random_model["card"]), keep="garment")


def test_binary_card_refuses_labels_and_other_keeps(random_model, classes_model, tmp_path):
    from segcore.pipeline import SegmentOptions, SequenceJob

    frames, card = classes_model["frames"], str(random_model["card"])
    with pytest.raises(InputError, match="--formats labels: the model card 'rand' has no"):
        SequenceJob(frames, tmp_path / "a", SegmentOptions(model=card, formats=("labels",)))
    with pytest.raises(InputError, match="no classes"):
        SequenceJob(frames, tmp_path / "b", SegmentOptions(model=card, keep=("support",)))
    a = _segment(card, frames, tmp_path / "c", formats=("mask",))
    b = _segment(card, frames, tmp_path / "d", keep=("garment", "figure"), formats=("mask",))
    assert a.report()["options"]["keep"] is None and b.report()["options"]["keep"] is None
    ma, mb = _masks(tmp_path / "c"), _masks(tmp_path / "d")
    assert all(np.array_equal(ma[k], mb[k]) for k in ma)


def test_multiclass_probability_is_the_kept_softmax_sum(classes_model):
    card = load_card(classes_model["card"])
    assert card.classes == CLASSES
    bgr, lab = scene()
    seg = Segmenter(card)
    assert seg.kept_names == ("garment", "figure")
    p, probs, geo = seg.predict(bgr, flip=True)
    assert probs.shape == (4, *geo.scaled_hw)
    assert np.allclose(probs.sum(axis=0), 1, atol=1e-5)
    assert np.array_equal(p, keep_probability(probs, (1, 2)))
    small = cv2.resize(lab, geo.scaled_hw[::-1], interpolation=cv2.INTER_NEAREST)
    inner = cv2.erode((small > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert (probs.argmax(0) == small)[inner].mean() > 0.97  # the stand-in model works
    assert np.array_equal(Segmenter(card, keep="garment").probability(bgr)[0], probs_of(card, bgr))


def probs_of(card, bgr):
    return keep_probability(Segmenter(card).predict(bgr)[1], (1,))


def test_classes_that_do_not_match_the_card_or_the_onnx_are_refused(
    classes_model, random_model, tmp_path
):
    import shutil

    shutil.copy(classes_model["onnx"], tmp_path / "cls.onnx")
    shutil.copy(random_model["onnx"], tmp_path / "rand.onnx")
    card = json.loads(classes_model["card"].read_text())
    (tmp_path / "order.json").write_text(json.dumps({**card, "classes": CLASSES[::-1]}))
    with pytest.raises(ModelError, match="are not the ones this segcore knows"):
        Segmenter.load(tmp_path / "order.json")
    binary = json.loads(random_model["card"].read_text())
    (tmp_path / "one.json").write_text(json.dumps({**binary, "classes": list(CLASSES)}))
    with pytest.raises(ModelError, match=r"expected \(1, 4, H, W\)"):
        Segmenter.load(tmp_path / "one.json")


@pytest.fixture(scope="module")
def keep_runs(classes_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("keep_runs")
    runs = {}
    sets = (("g", ("garment",)), ("gf", None), ("gfs", ("garment", "figure", "support")))
    for name, keep in sets:
        _segment(classes_model["card"], classes_model["frames"], d / name, keep=keep)
        runs[name] = d / name
    return runs


def test_keep_sets_nest_and_cut_what_they_name(classes_model, keep_runs):
    g, gf, gfs = (_masks(keep_runs[k]) for k in ("g", "gf", "gfs"))
    for stem, lab in classes_model["truth"].items():
        a, b, c = g[stem] > 0, gf[stem] > 0, gfs[stem] > 0
        assert (a & ~b).sum() <= 0.002 * a.sum() and (b & ~c).sum() <= 0.002 * b.sum()
        inner = {
            k: cv2.erode((lab == k).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
            for k in range(4)
        }
        assert a[inner[1]].all() and not a[inner[2]].any() and not a[inner[3]].any()
        assert b[inner[1]].all() and b[inner[2]].all() and not b[inner[3]].any()
        assert c[inner[1] | inner[2] | inner[3]].all() and not c[inner[0]].any()
        for k, m in ((1, a), ((1, 2), b), ((1, 2, 3), c)):  # IoU with the truth's kept classes
            t = np.isin(lab, k)
            assert (m & t).sum() / (m | t).sum() > 0.95


def test_every_format_follows_keep(keep_runs):
    for run in keep_runs.values():
        masks, colmap = _masks(run), _masks(run, "colmap_masks")
        for stem, m in masks.items():
            rgba = cv2.imread(str(run / "rgba" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(colmap[f"{stem}.png"], m)
            alpha, far = rgba[..., 3], cv2.dilate(m, np.ones((15, 15), np.uint8)) == 0
            assert np.mean((alpha > 127) != (m > 0)) < 1e-3  # soft only along the rim
            assert not alpha[far].any()
    report = json.loads((keep_runs["g"] / "report.json").read_text())
    assert report["options"]["keep"] == ["garment"]
    assert json.loads((keep_runs["gf"] / "report.json").read_text())["options"]["keep"] == [
        "garment",
        "figure",
    ]


def test_labels_agree_with_masks_and_view_in_the_palette(classes_model, keep_runs):
    from PIL import Image

    for name, kept in (("g", {1}), ("gf", {1, 2}), ("gfs", {1, 2, 3})):
        masks = _masks(keep_runs[name])
        for stem, m in masks.items():
            path = keep_runs[name] / "labels" / f"{stem}.png"
            lab = read_labels(path)
            assert np.array_equal(lab > 0, m > 0)
            assert set(np.unique(lab)) <= kept | {0}
            img = Image.open(path)
            assert img.mode == "P" and np.array_equal(np.asarray(img), lab)
            assert img.getpalette()[: 3 * len(PALETTE)] == [v for c in PALETTE for v in c]
            truth = classes_model["truth"][stem]
            for k in kept:
                inner = cv2.erode((truth == k).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
                assert (lab[inner] == k).all()


def test_label_map_takes_the_kept_argmax_inside_the_mask():
    rng = np.random.default_rng(0)
    probs = rng.random((4, 12, 16)).astype(np.float32)
    probs /= probs.sum(0)
    mask = np.zeros((48, 64), np.uint8)
    mask[5:40, 3:60] = 255
    lab = label_map(probs, (1, 3), mask)
    assert set(np.unique(lab)) == {0, 1, 3} and np.array_equal(lab > 0, mask > 0)
    big = cv2.resize(probs[3] - probs[1], (64, 48), interpolation=cv2.INTER_NEAREST)
    assert (lab[10:35, 10:50][big[10:35, 10:50] > 0.2] == 3).mean() > 0.9
    assert (label_map(probs, (2,), mask) == np.where(mask > 0, 2, 0)).all()
    # an added part takes the class of what it hangs on to
    labels = np.zeros((20, 20), np.uint8)
    labels[2:8, 2:8], labels[12:18, 2:8] = 1, 3
    where = np.zeros((20, 20), bool)
    where[2:8, 8:12], where[12:18, 8:12] = True, True
    out = nearest_class(labels, where)
    assert (out[2:8, 8:12] == 1).all() and (out[12:18, 8:12] == 3).all()


def test_label_files_read_back_from_grey_or_palette_pngs_only(tmp_path):
    from segcore.errors import FrameError

    lab = np.random.default_rng(1).integers(0, 4, (30, 40)).astype(np.uint8)
    write_labels(tmp_path / "p.png", lab)
    cv2.imwrite(str(tmp_path / "g.png"), lab)  # the generator's labels/: grey indices
    assert np.array_equal(read_labels(tmp_path / "p.png"), lab)
    assert np.array_equal(read_labels(tmp_path / "g.png"), lab)
    cv2.imwrite(str(tmp_path / "m.png"), lab * 80)
    with pytest.raises(FrameError, match="class indices 0..3"):
        read_labels(tmp_path / "m.png")
    cv2.imwrite(str(tmp_path / "c.png"), np.full((4, 4, 3), 7, np.uint8))
    with pytest.raises(FrameError, match="not in the label palette"):
        read_labels(tmp_path / "c.png")


def test_class_scores_per_class():
    gt = np.zeros((40, 40), np.uint8)
    gt[5:20, 5:35], gt[20:30, 10:30], gt[30:38, 18:22] = 1, 2, 3
    perfect = class_scores(gt, gt)
    assert set(perfect) == {"garment", "figure", "support"}
    assert all(s["iou"] == 1 and s["bf2"] == 1 for s in perfect.values())
    pred = gt.copy()
    pred[30:38, 18:22] = 0  # support not kept
    pred[5:20, 30:35] = 2  # a garment strip called figure
    acc = ClassScores()
    acc.add(pred, gt)
    s = acc.add(gt, gt)
    assert s["support"]["iou"] == 1
    pooled = acc.pooled()
    assert pooled["support"]["iou"] == pytest.approx(0.5)  # one of two frames' support found
    assert pooled["garment"]["iou"] == pytest.approx((450 + 375) / (450 + 450))
    assert pooled["figure"]["iou"] < 1 and pooled["figure"]["bf2"] < 1


def test_cli_keep_labels_and_per_class_eval(classes_model, random_model, tmp_path, capsys):
    from segcore.cli import main

    frames, card = str(classes_model["frames"]), str(classes_model["card"])
    out = tmp_path / "out"
    args = ["segment", frames, "-o", str(out), "--model", card, "-q", "--plate", "off"]
    assert main([*args, "--keep", "garment", "--formats", "mask,labels"]) == 0
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["f0.png", "f1.png", "f2.png"]
    manifest = json.loads((out / ".segment-outputs.json").read_text())
    assert "labels/f0.png" in manifest["files"]
    assert main([*args, "--keep", "garment,hat", "--overwrite"]) == 2
    assert "--keep garment,hat: unknown class hat" in capsys.readouterr().err
    binary = ["segment", frames, "-o", str(tmp_path / "b"), "--model", str(random_model["card"])]
    assert main([*binary, "-q", "--keep", "garment"]) == 2
    assert "model card 'rand' has no classes" in capsys.readouterr().err
    assert main([*binary, "-q", "--formats", "labels"]) == 2
    assert "label maps need a multi-class model" in capsys.readouterr().err

    gt = tmp_path / "gt"  # a data set's layout: masks/ and labels/ (grey indices)
    (gt / "masks").mkdir(parents=True)
    (gt / "labels").mkdir()
    for stem, lab in classes_model["truth"].items():
        cv2.imwrite(str(gt / "masks" / f"{stem}.png"), np.isin(lab, (1,)).astype(np.uint8) * 255)
        cv2.imwrite(str(gt / "labels" / f"{stem}.png"), lab)
    capsys.readouterr()
    assert main(["eval", str(out), str(gt), "--json", str(tmp_path / "s.json")]) == 0
    text = capsys.readouterr().out
    assert "per class" in text and "garment" in text and "BF@2px" in text
    scores = json.loads((tmp_path / "s.json").read_text())["classes"]
    assert scores["pooled"]["garment"]["iou"] > 0.95
    assert scores["pooled"]["figure"]["iou"] == 0  # not kept: nothing predicted
    assert main(["eval", str(out / "masks"), str(gt / "masks"), "-q"]) == 0
    assert "garment:" not in capsys.readouterr().out  # no label folders: masks only
    labels = ["--labels", str(out / "labels"), str(gt / "labels")]
    assert main(["eval", str(out / "masks"), str(gt / "masks"), "-q", *labels]) == 0
    assert "garment: iou=" in capsys.readouterr().out


def test_still_background_pass_sees_the_whole_subject_and_keeps_the_kept(classes_model, tmp_path):
    """On a turntable the figure and the support turn with the garment: the plate is built
    from (and corrects) the whole subject, so --keep garment gets none of them back."""
    frames = tmp_path / "frames"
    frames.mkdir()
    back = np.random.default_rng(9).integers(-6, 7, (H, W, 3))
    truth = {}
    for i in range(8):
        _, lab = scene(shift=6 * i - 20)
        rgb = np.clip(np.array(COLOURS, np.uint8)[lab] + back, 0, 255).astype(np.uint8)
        cv2.imwrite(str(frames / f"t{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        truth[f"t{i}"] = lab
    for keep, classes in ((("garment",), (1,)), (None, (1, 2))):
        from segcore.pipeline import SegmentOptions, SequenceJob

        opts = SegmentOptions(
            model=str(classes_model["card"]), keep=keep, formats=("mask", "labels"), plate="on"
        )
        job = SequenceJob(frames, tmp_path / f"out{len(classes)}", opts)
        assert all(r.status == "ok" for r in job.run())
        assert job.plate is not None  # the pass ran
        for stem, lab in truth.items():
            m = cv2.imread(str(job.output / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED) > 0
            labels = read_labels(job.output / "labels" / f"{stem}.png")
            assert np.array_equal(labels > 0, m)
            t = np.isin(lab, classes)
            assert (m & t).sum() / (m | t).sum() > 0.95, (keep, stem)
