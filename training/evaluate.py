"""Score any model (or classical baseline) on a data set: a markdown table and a contact sheet
of the worst frames, all at the frames' full resolution."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from segcore.config import CLASSES
from segcore.io import read_image, read_label, write_png
from segcore.metrics import Scores, boundary_counts, class_scores, confusion, flicker, summarize
from segcore.sheet import grid, overlay

from .data import Sample, find_sequences, read_classes

Predictor = Callable[[np.ndarray], np.ndarray]  # BGR frame -> uint8 mask (255 = subject)


def segcore_predictor(
    model: str | None,
    refine: bool | None = None,
    temporal: bool = False,
    flip: bool | None = None,
    edges: str | None = None,
    keep: tuple[str, ...] | None = None,
    size: int | None = None,
    threshold: float | None = None,
    garment_regions: bool = True,
) -> Predictor:
    """The segcore pipeline as a predictor (``size``, ``threshold``: `segcore segment`'s
    --size and --threshold). ``temporal``: frames are fed in sequence order and
    smoothed along it (:mod:`segcore.temporal`); :func:`evaluate` calls ``new_sequence()`` at
    each sequence's first frame. A multi-class model's predictor keeps the classes ``keep``
    (names; default the card's) and exposes them (``keep_ids``) and the last frame's label map
    (``last_labels``), so :func:`evaluate` scores the kept classes against label maps.
    ``garment_regions=False``: the network's garment / figure split as it is
    (:mod:`segcore.garment_regions`)."""
    from segcore.pipeline import SegmentOptions, load_segmenter, segment_frame
    from segcore.temporal import network_gray, smooth_step

    # the card's post-processing with the caller's overrides, as `segcore segment` applies them
    seg, post = load_segmenter(
        SegmentOptions(
            model=model,
            refine=refine,
            flip=flip,
            edges=edges,
            keep=keep,
            size=size,
            threshold=threshold,
        )
    )
    seg.garment_regions = garment_regions

    class SegcorePredictor:
        keep_ids = seg.keep  # None for a binary model

        def __init__(self):
            self.prev = None
            self.last_labels = None

        def new_sequence(self):
            self.prev = None

        def __call__(self, bgr):
            def smooth(small_bgr, prob):
                gray = network_gray(small_bgr, prob.shape)
                out = prob if self.prev is None else smooth_step(*self.prev, gray, prob)
                self.prev = (gray, out)
                return out

            res = segment_frame(bgr, seg, post, smooth=smooth if temporal else None)
            self.last_labels = res.labels() if self.keep_ids is not None else None
            return res.mask

    return SegcorePredictor()


def grabcut_predictor(margin: float = 0.05, iters: int = 3) -> Predictor:
    """OpenCV GrabCut from a rectangle (the frame minus a margin), run at <= 640 px."""

    def predict(bgr: np.ndarray) -> np.ndarray:
        H, W = bgr.shape[:2]
        k = min(1.0, 640 / max(H, W))
        small = cv2.resize(bgr, (round(W * k), round(H * k)), interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        rect = (
            int(w * margin),
            int(h * margin),
            int(w * (1 - 2 * margin)),
            int(h * (1 - 2 * margin)),
        )
        m = np.zeros((h, w), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(small, m, rect, bgd, fgd, iters, cv2.GC_INIT_WITH_RECT)
        fg = np.where((m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
        return cv2.resize(fg, (W, H), interpolation=cv2.INTER_NEAREST)

    return predict


def otsu_predictor() -> Predictor:
    """Background keying: Otsu on the distance to the border colour (studio sweep style)."""

    def predict(bgr: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
        border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
        d = np.linalg.norm(lab - np.median(border, axis=0), axis=2)
        d8 = cv2.normalize(d, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        _, m = cv2.threshold(d8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        return m

    return predict


def samples_of(root: str | Path, sequences: list[str] | None = None) -> list[Sample]:
    seqs = find_sequences(root)
    names = [n for n in seqs if not sequences or n in sequences]
    return [s for n in names for s in seqs[n]]


def ground_truth(s: Sample, keep_ids: tuple[int, ...] | None):
    """(truth mask for the kept classes, class map or None). With a class map and kept class
    indices the truth is those classes; otherwise the sample's mask (garment + figure)."""
    if s.labels is None:
        return read_label(s.mask), None
    labels = read_classes(s.labels)
    if keep_ids is None:
        return read_label(s.mask), labels
    return np.isin(labels, keep_ids), labels


def centre_crop(img: np.ndarray, aspect: tuple[int, int] | None) -> np.ndarray:
    """The middle of ``img`` with width : height = ``aspect`` (the whole image when None or
    when it already has that shape): a landscape render scored as a portrait or 3:2 frame."""
    if aspect is None:
        return img
    H, W = img.shape[:2]
    w, h = min(W, round(H * aspect[0] / aspect[1])), min(H, round(W * aspect[1] / aspect[0]))
    y, x = (H - h) // 2, (W - w) // 2
    return img[y : y + h, x : x + w]


def load_sample(s: Sample, keep_ids, aspect: tuple[int, int] | None = None):
    """(frame, truth mask, class map or None) of a sample, cropped by :func:`centre_crop`."""
    gt, gt_labels = ground_truth(s, keep_ids)
    bgr = centre_crop(read_image(s.image), aspect)
    gt = centre_crop(gt, aspect)
    return bgr, gt, None if gt_labels is None else centre_crop(gt_labels, aspect)


GARMENT, FIGURE, SUPPORT = (CLASSES.index(c) for c in ("garment", "figure", "support"))
BASE_SHARE = 0.125  # the lowest eighth of the subject's height: feet, hems, the base's rim


def base_figure_missed(pred: np.ndarray, gt_labels: np.ndarray) -> float | None:
    """The share of the figure's pixels in the lowest eighth of the true subject (garment +
    figure) that the mask leaves out: a mannequin's or a body's feet, which stand on the
    support and which a model can take for it. None when no figure is there."""
    subject = (gt_labels == GARMENT) | (gt_labels == FIGURE)
    rows = np.flatnonzero(subject.any(axis=1))
    if rows.size == 0:
        return None
    cut = int(np.ceil(rows[-1] - BASE_SHARE * (rows[-1] - rows[0])))
    figure = gt_labels[cut:] == FIGURE
    n = int(figure.sum())
    return None if n == 0 else float((figure & (pred[cut:] == 0)).sum() / n)


def class_figures(pred: np.ndarray, pred_labels, gt_labels: np.ndarray, keep_ids=()) -> dict:
    """Per-frame class figures: ``support_share`` (share of the predicted subject that is
    support in truth), ``feet_missed`` (:func:`base_figure_missed`, when the truth has a
    figure there and the mask keeps the figure: ``keep_ids`` holds it or is empty) and,
    given a predicted label map, IoU and BF@2px of each kept class."""
    fg = pred > 0
    out = {"support_share": float((fg & (gt_labels == SUPPORT)).sum() / max(1, fg.sum()))}
    feet = base_figure_missed(fg, gt_labels) if not keep_ids or FIGURE in keep_ids else None
    if feet is not None:
        out["feet_missed"] = feet
    if pred_labels is not None:
        for name, f in class_scores(pred_labels, gt_labels).items():
            if CLASSES.index(name) in keep_ids:
                out[f"{name}_iou"], out[f"{name}_bf2"] = f["iou"], f["bf2"]
    return out


def truth_near_outline(pred: np.ndarray, gt: np.ndarray, px: float) -> np.ndarray:
    """``pred`` with the truth in place within ``px`` pixels of its outline: what a perfect
    edge refiner working in a band that wide would give (``eval --oracle-band``)."""
    p = np.asarray(pred) > 0
    outline = cv2.morphologyEx(p.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    near = cv2.distanceTransform((outline == 0).astype(np.uint8), cv2.DIST_L2, 3) <= px
    return np.where(near, np.asarray(gt) > 0, p).astype(np.uint8) * 255


def evaluate(
    predict: Predictor,
    samples: list[Sample],
    aspect: tuple[int, int] | None = None,
    oracle_px: float | None = None,
) -> tuple[list[dict], dict]:
    """Per-frame rows (with seconds per frame) and pooled scores; with ``aspect`` (W, H)
    every frame and its truth are cropped to that shape first (:func:`centre_crop`); with
    ``oracle_px`` each mask is scored with the truth in place near its outline
    (:func:`truth_near_outline`).

    Samples come in sequence order; ``pooled["flicker"]`` is the mean over consecutive frame
    pairs of a sequence of ``|IoU(pred, pred') - IoU(gt, gt')|`` (:func:`segcore.metrics.flicker`).
    Samples with class maps add :func:`class_figures` to their rows.
    """
    scores = Scores()
    rows = []
    steps = []
    last = None  # (sequence, pred, gt) of the previous frame
    keep_ids = getattr(predict, "keep_ids", None)
    for s in samples:
        bgr, gt, gt_labels = load_sample(s, keep_ids, aspect)
        if (last is None or last[0] != s.sequence) and hasattr(predict, "new_sequence"):
            predict.new_sequence()
        t0 = time.perf_counter()
        pred = predict(bgr)
        dt = time.perf_counter() - t0
        if oracle_px:
            pred = truth_near_outline(pred, gt, oracle_px)
        r = scores.add(pred, gt)
        row = {"sequence": s.sequence, "frame": s.image.name, "seconds": dt, **r}
        if gt_labels is not None:
            row.update(
                class_figures(
                    pred, getattr(predict, "last_labels", None), gt_labels, keep_ids or ()
                )
            )
        rows.append(row)
        if last is not None and last[0] == s.sequence and last[1].shape == pred.shape:
            steps.append(flicker([last[1], pred], [last[2], gt]))
        last = (s.sequence, pred, gt)
    pooled = scores.pooled()
    pooled["seconds"] = float(np.mean([r["seconds"] for r in rows])) if rows else 0.0
    pooled["flicker"] = float(np.mean(steps)) if steps else 0.0
    return rows, pooled


def frame_scores(pred, gt) -> dict:
    return summarize(confusion(pred, gt), boundary_counts(pred, gt))


def markdown_row(name: str, pooled: dict) -> str:
    keys = ("precision", "recall", "f1", "iou", "bf1", "bf2", "bf4")
    return (
        f"| {name} | "
        + " | ".join(f"{pooled[k]:.4f}" for k in keys)
        + f" | {1000 * pooled['seconds']:.0f} |"
    )


MARKDOWN_HEAD = (
    "| model | P | R | F1 | IoU | BF@1px | BF@2px | BF@4px | ms/frame |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def worst_sheet(
    predict: Predictor,
    rows: list[dict],
    samples: list[Sample],
    path: Path,
    n: int = 12,
    aspect: tuple[int, int] | None = None,
) -> None:
    """Contact sheet of the ``n`` frames with the lowest F1 (prediction green, truth magenta)."""
    by = {(s.sequence, s.image.name): s for s in samples}
    worst = sorted(rows, key=lambda r: r["f1"])[:n]
    tiles, labels = [], []
    for r in worst:
        s = by[(r["sequence"], r["frame"])]
        if hasattr(predict, "new_sequence"):  # re-predicted alone, without its predecessors
            predict.new_sequence()
        bgr, gt, _ = load_sample(s, getattr(predict, "keep_ids", None), aspect)
        tiles.append(overlay(bgr, predict(bgr), gt.astype(np.uint8) * 255))
        labels.append(f"{r['sequence'][:18]}/{r['frame']} F1 {r['f1']:.3f}")
    if tiles:
        write_png(path, grid(tiles, cols=4, tile_w=320, labels=labels))


FAMILY_KEYS = ("precision", "recall", "f1", "iou", "bf1", "bf2", "bf4")
CLASS_KEYS = ("support_share", "feet_missed") + tuple(
    f"{c}_{k}" for c in CLASSES[1:] for k in ("iou", "bf2")
)
FAMILY_HEAD = (
    "| family | frames | P | R | F1 | IoU | BF@1px | BF@2px | BF@4px | IoU < 0.9 | ms/frame |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def family_roots(root: str | Path) -> dict[str, Path]:
    """``ROOT/<family>/<sequence>/...``: the family folders (a single data set counts as one)."""
    root = Path(root)
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not (p / "images").is_dir())
    fams = {
        p.name: p for p in subs if any(q.is_dir() and (q / "images").is_dir() for q in p.iterdir())
    }
    if not fams:
        find_sequences(root)  # raises the usual message when there is nothing
        fams = {root.name: root}
    return fams


def frame_means(rows: list[dict]) -> dict:
    """Means over frames (each frame counts once, whatever its size) and the failure share."""
    out = {k: float(np.mean([r[k] for r in rows])) for k in FAMILY_KEYS}
    out["frames"] = len(rows)
    out["iou_below_0.9"] = float(np.mean([r["iou"] < 0.9 for r in rows]))
    out["seconds"] = float(np.mean([r["seconds"] for r in rows]))
    for k in CLASS_KEYS:  # class figures: means over the frames that have them
        vals = [r[k] for r in rows if k in r]
        if vals:
            out[k] = float(np.mean(vals))
    return out


def family_row(name: str, m: dict) -> str:
    return (
        f"| {name} | {m['frames']} | "
        + " | ".join(f"{m[k]:.4f}" for k in FAMILY_KEYS)
        + f" | {100 * m['iou_below_0.9']:.0f} % | {1000 * m['seconds']:.0f} |"
    )


def evaluate_families(
    predict: Predictor,
    root,
    out: Path | None = None,
    aspect: tuple[int, int] | None = None,
    oracle_px: float | None = None,
) -> dict:
    """Per-family means over frames, the mean over families and the worst family (by IoU).
    ``root``: one ``ROOT/<family>/<sequence>`` folder or a list of them (renders of the same
    families with other seeds: a family's frames are pooled over the roots).

    With ``out``: ``out/<family>_worst.png`` contact sheets and ``out/families.json``;
    ``aspect``, ``oracle_px``: as :func:`evaluate`'s (the sheets show the masks as predicted)."""
    result: dict = {"families": {}}
    all_rows = []
    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    pooled: dict[str, list[Sample]] = {}
    for r in roots:
        for name, froot in family_roots(r).items():
            samples = samples_of(froot)
            if len(roots) > 1:  # a sequence is named by its root too: two seeds share names
                samples = [replace(s, sequence=f"{r.name}/{s.sequence}") for s in samples]
            pooled.setdefault(name, []).extend(samples)
    for name, samples in pooled.items():
        rows, _ = evaluate(predict, samples, aspect, oracle_px)
        for r in rows:
            r["family"] = name
        all_rows += rows
        result["families"][name] = frame_means(rows)
        if out is not None:
            worst_sheet(predict, rows, samples, out / f"{name}_worst.png", n=8, aspect=aspect)
    fams = result["families"]
    result["all"] = frame_means(all_rows)
    worst = min(fams, key=lambda f: fams[f]["iou"])
    result["worst"] = {"family": worst, **fams[worst]}
    result["frames"] = all_rows
    return result


def families_markdown(result: dict) -> str:
    lines = [FAMILY_HEAD]
    lines += [family_row(n, m) for n, m in result["families"].items()]
    lines.append(family_row("**all frames**", result["all"]))
    lines.append(family_row(f"**worst: {result['worst']['family']}**", result["worst"]))
    keys = [k for k in CLASS_KEYS if k in result["all"]]
    if keys:  # class figures (frames with class maps)
        names = {"support_share": "support in mask", "feet_missed": "feet missed"}
        shares = set(names)  # shown as percentages
        lines += [
            "",
            "| family | " + " | ".join(names.get(k, k.replace("_", " ")) for k in keys) + " |",
        ]
        lines.append("|---" * (len(keys) + 1) + "|")
        for n, m in [*result["families"].items(), ("**all frames**", result["all"])]:
            cells = [
                "–" if k not in m else f"{100 * m[k]:.2f} %" if k in shares else f"{m[k]:.4f}"
                for k in keys
            ]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
