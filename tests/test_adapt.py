"""segcore adapt: a corrected frame teaches the rest of its sequence (segcore.adapt)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from segcore.adapt import HEAD_FILE, AdaptJob, check_correction
from segcore.errors import InputError
from segcore.io import read_label
from segcore.pipeline import SegmentOptions, SequenceJob
from tests.test_classes import classes_model  # noqa: F401  (a multi-class card)

ROOT = Path(__file__).resolve().parent.parent
RENDERED = ROOT / "tests" / "data" / "recon_turntable"  # a rendered turntable, true masks
FRAMES = 8


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.fixture
def sequence(tmp_path):
    """Eight rendered frames (every other one of the turntable) and their true masks."""
    if not RENDERED.is_dir():
        pytest.skip("tests/data/recon_turntable is missing")
    images, truth = tmp_path / "images", tmp_path / "truth"
    images.mkdir()
    truth.mkdir()
    for k, src in enumerate(sorted((RENDERED / "images").glob("*.jpg"))[::2][:FRAMES]):
        shutil.copyfile(src, images / f"{k:04d}.jpg")
        shutil.copyfile(RENDERED / "masks" / f"{src.stem}.png", truth / f"{k:04d}.png")
    return images, truth


def _opts(model, **kw) -> SegmentOptions:
    return SegmentOptions(model=str(model), formats=("mask", "rgba"), workers=2, **kw)


def _mean_iou(out: Path, truth: Path, stems) -> float:
    return float(
        np.mean(
            [
                _iou(read_label(out / "masks" / f"{s}.png"), read_label(truth / f"{s}.png"))
                for s in stems
            ]
        )  # fmt: skip
    )


def test_one_corrected_frame_improves_the_others_and_is_kept(sequence, random_model, tmp_path):
    """An untrained network is poor on a rendered sequence; the ground truth of one frame,
    as the correction, lifts the other frames; the corrected mask stays byte for byte."""
    images, truth = sequence
    out = tmp_path / "out"
    opts = _opts(random_model["card"], plate="off")
    for _ in SequenceJob(images, out, opts).run():
        pass
    others = [f"{k:04d}" for k in range(FRAMES) if k != 3]
    before = _mean_iou(out, truth, others)
    corrected = out / "corrected"
    corrected.mkdir()
    shutil.copyfile(truth / "0003.png", corrected / "0003.png")
    sha = _sha(corrected / "0003.png")

    job = AdaptJob(images, out, corrected, opts)
    results = list(job.run())
    job.write_report()
    assert [r.status for r in results] == ["ok"] * FRAMES
    after = _mean_iou(out, truth, others)
    assert after > before + 0.05, (before, after)
    assert _sha(corrected / "0003.png") == sha  # the artist's file untouched
    assert _sha(out / "masks" / "0003.png") == sha  # and the output is that file
    rgba = cv2.imread(str(out / "rgba" / "0003.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(rgba[..., 3] > 127, read_label(truth / "0003.png"))
    report = json.loads((out / "report.json").read_text())
    assert report["adapt"]["corrected"] == {"0003.jpg": str(corrected / "0003.png")}
    card = json.loads((out / HEAD_FILE).read_text())
    assert card["base_model"]["name"] == "rand" and "0003.jpg" in card["corrected"]
    manifest = json.loads((out / ".segment-outputs.json").read_text())["files"]
    assert HEAD_FILE in manifest and not any(k.startswith("corrected") for k in manifest)

    # a rerun reuses the fitted head and still never writes to the corrections
    again = AdaptJob(images, out, corrected, opts)
    list(again.run())
    assert again.fit_info["reused"] is True
    assert _sha(corrected / "0003.png") == sha == _sha(out / "masks" / "0003.png")
    assert abs(_mean_iou(out, truth, others) - after) < 1e-9


def test_corrections_that_teach_nothing_are_named(sequence, random_model, tmp_path):
    """No correction, an empty one, one named after no frame, corrections kept in an output
    folder: each refused before any frame, with one line that says what to do."""
    images, truth = sequence
    out, corrected = tmp_path / "out", tmp_path / "corrected"
    opts = _opts(random_model["card"], plate="off")
    corrected.mkdir()
    with pytest.raises(InputError, match="holds no corrected masks"):
        AdaptJob(images, out, corrected, opts)

    empty = np.zeros(read_label(truth / "0001.png").shape, np.uint8)
    cv2.imwrite(str(corrected / "0001.png"), empty)
    job = AdaptJob(images, out, corrected, opts)
    with pytest.raises(InputError, match="0001.png: the correction is empty"):
        job.fit()
    assert not (out / "masks").exists() or not any((out / "masks").iterdir())

    (corrected / "0001.png").unlink()
    shutil.copyfile(truth / "0001.png", corrected / "frame_99.png")
    with pytest.raises(InputError, match="no frame named 'frame_99'"):
        AdaptJob(images, out, corrected, opts)

    (corrected / "frame_99.png").unlink()
    (out / "masks").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(truth / "0001.png", out / "masks" / "0001.png")
    with pytest.raises(InputError, match="in an output folder that adapt rewrites"):
        AdaptJob(images, out, out / "masks", opts)


def test_a_contradictory_correction_is_named(tmp_path):
    """A correction that is the network's mask inside out, or of another size, is refused
    with a message that says what to do."""
    truth = np.zeros((120, 160), bool)
    truth[20:100, 50:110] = True
    network = cv2.resize(truth.astype(np.uint8), (80, 60), interpolation=cv2.INTER_AREA) > 0
    path = tmp_path / "0004.png"
    check_correction(path, truth, truth.shape, network)  # agrees: fine
    with pytest.raises(InputError, match="inside out"):
        check_correction(path, ~truth, truth.shape, network)
    with pytest.raises(InputError, match="its frame 160x120"):
        check_correction(path, truth[:60], truth.shape, network)
    with pytest.raises(InputError, match="whole frame"):
        check_correction(path, np.ones_like(truth), truth.shape, network)


def test_a_multi_class_card_adapts_with_its_label_maps(classes_model, tmp_path):  # noqa: F811
    """A multi-class card: the adapted frames' label maps agree with their masks, and the
    corrected frame's label map is 0 exactly where the artist's mask is."""
    from segcore.labels import read_labels

    frames, out, corrected = classes_model["frames"], tmp_path / "out", tmp_path / "corrected"
    opts = SegmentOptions(model=str(classes_model["card"]), formats=("mask", "labels"),
                          plate="off")  # fmt: skip
    corrected.mkdir()
    mask = np.isin(classes_model["truth"]["f1"], (1, 2))
    mask[100:110, :] = False  # the artist cuts a band out
    cv2.imwrite(str(corrected / "f1.png"), np.where(mask, 255, 0).astype(np.uint8))
    job = AdaptJob(frames, out, corrected, opts)
    assert [r.status for r in job.run()] == ["ok"] * 3
    for stem in ("f0", "f1", "f2"):
        m, lab = (
            read_label(out / "masks" / f"{stem}.png"),
            read_labels(out / "labels" / f"{stem}.png"),
        )
        assert np.array_equal(lab > 0, m) and set(np.unique(lab)) <= {0, 1, 2}
    assert np.array_equal(read_label(out / "masks" / "f1.png"), mask)


def test_the_head_moves_regions_not_one_pixel_slivers_of_the_outline():
    """Where the head redraws the outline one network pixel away it is its coarse grid, not a
    correction: the network's probability stays there; a region it removes is removed."""
    from segcore.adapt_head import Head

    prob = np.full((40, 40), 0.02, np.float32)
    prob[8:32, 8:32] = 0.98  # the network: a square
    wanted = np.full(prob.shape, -6.0, np.float32)
    wanted[8:32, 9:32] = 6.0  # the head: one column thinner on the left ...
    wanted[20:30, 20:30] = -6.0  # ... and a 10 x 10 hole

    class Drawn(Head):
        def logit(self, x):
            return wanted.ravel()

    zeros = np.zeros(1, np.float32)
    head = Drawn(zeros, zeros + 1, zeros, 0.0, zeros[None], zeros, zeros)
    small = np.zeros((40, 40, 3), np.uint8)
    p = head.probability(small, prob, 0.5)
    assert np.array_equal(p[:, 8], prob[:, 8])  # the sliver: the network's own values
    assert (p[22:28, 22:28] < 0.5).all()  # the hole: the head's
    assert (p[10:18, 10:30] > 0.5).all() and (p[:, :8] < 0.5).all()


def test_the_garment_alone_learned_from_one_corrected_frame(tmp_path):
    """The bundled model keeping the garment alone calls part of the bundled turntable's dress
    figure; the garment of one frame, as the correction, fixes the other frames."""
    from training.data import read_classes

    example = ROOT / "examples" / "garment_turntable"
    images, truth = tmp_path / "images", {}
    images.mkdir()
    for src in sorted((example / "images").glob("*.jpg"))[::3]:
        shutil.copyfile(src, images / src.name)
        truth[src.stem] = read_classes(example / "labels" / f"{src.stem}.png") == 1
    out, corrected = tmp_path / "out", tmp_path / "corrected"
    opts = SegmentOptions(formats=("mask",), keep=("garment",), plate="off", workers=2)
    for _ in SequenceJob(images, out, opts).run():
        pass
    iou = {s: _iou(read_label(out / "masks" / f"{s}.png"), t) for s, t in truth.items()}
    worst = min(iou, key=iou.get)
    corrected.mkdir()
    cv2.imwrite(str(corrected / f"{worst}.png"), truth[worst].astype(np.uint8) * 255)
    job = AdaptJob(images, out, corrected, opts)
    assert [r.status for r in job.run()] == ["ok"] * len(truth)
    others = [s for s in truth if s != worst]
    before = np.mean([iou[s] for s in others])
    after = np.mean([_iou(read_label(out / "masks" / f"{s}.png"), truth[s]) for s in others])
    assert after > before + 0.03, (before, after)
    assert np.array_equal(read_label(out / "masks" / f"{worst}.png"), truth[worst])
    assert json.loads((out / HEAD_FILE).read_text())["base_model"]["keep"] == ["garment"]


def test_corrections_painted_as_other_classes_are_refused(sequence, random_model, tmp_path):
    """Corrections note what they keep (the add-on's Save Correction): a run keeping other
    classes, or a correction of other classes saved beside them, is refused in one line;
    the note is read in any order and case, and saving one frame again is no conflict."""
    from segcore.adapt import KEEP_FILE, record_keep

    images, truth = sequence
    corrected, out = tmp_path / "corrected", tmp_path / "out"
    opts = _opts(random_model["card"], plate="off")  # a binary model: the garment figure
    record_keep(corrected, ("garment",), "0002")
    with pytest.raises(InputError, match="holds no corrected masks"):
        AdaptJob(images, out, corrected, opts)
    shutil.copyfile(truth / "0002.png", corrected / "0002.png")
    refused = r"keep garment, the run garment,figure; adapt with Keep garment, with the multi"
    with pytest.raises(InputError, match=refused + r".*\(--keep garment\)"):
        AdaptJob(images, out, corrected, opts)
    record_keep(corrected, ("figure", "garment"), "0002")  # the same frame saved again: fine
    assert (corrected / KEEP_FILE).read_text() == "garment,figure\n"
    AdaptJob(images, out, corrected, opts)
    with pytest.raises(
        InputError, match="keep.txt: the corrections there keep garment,figure, this one garment;"
    ):
        record_keep(corrected, ("garment",), "0005")
    (corrected / KEEP_FILE).write_text("Figure, garment\n")  # by hand: any order, any case
    AdaptJob(images, out, corrected, opts)
    (corrected / KEEP_FILE).write_text("garment,stand\n")
    with pytest.raises(InputError, match="keep.txt: --keep .*stand"):
        AdaptJob(images, out, corrected, opts)
    (corrected / KEEP_FILE).unlink()  # masks made by hand say nothing: trusted
    shutil.copyfile(truth / "0005.png", corrected / "0005.TIF")  # any image counts as one
    record_keep(corrected, None, "0005")
    with pytest.raises(InputError, match="this one garment"):
        record_keep(corrected, ("garment",), "0007")
