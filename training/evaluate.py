"""Score any model (or classical baseline) on a data set: a markdown table and a contact sheet
of the worst frames, all at the frames' full resolution."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from segcore.io import read_image, read_label, write_png
from segcore.metrics import Scores, boundary_counts, confusion, flicker, summarize
from segcore.sheet import grid, overlay

from .data import Sample, find_sequences

Predictor = Callable[[np.ndarray], np.ndarray]  # BGR frame -> uint8 mask (255 = subject)


def segcore_predictor(
    model: str | None,
    refine: bool | None = None,
    temporal: bool = False,
    flip: bool | None = None,
    edges: str | None = None,
) -> Predictor:
    """The segcore pipeline as a predictor. ``temporal``: frames are fed in sequence order and
    smoothed along it (:mod:`segcore.temporal`); :func:`evaluate` calls ``new_sequence()`` at
    each sequence's first frame."""
    from segcore.pipeline import SegmentOptions, load_segmenter, segment_frame
    from segcore.temporal import network_gray, smooth_step

    # the card's post-processing with the caller's overrides, as `segcore segment` applies them
    seg, post = load_segmenter(SegmentOptions(model=model, refine=refine, flip=flip, edges=edges))
    if not temporal:
        return lambda bgr: segment_frame(bgr, seg, post).mask

    class TemporalPredictor:
        def __init__(self):
            self.prev = None

        def new_sequence(self):
            self.prev = None

        def __call__(self, bgr):
            def smooth(small_bgr, prob):
                gray = network_gray(small_bgr, prob.shape)
                out = prob if self.prev is None else smooth_step(*self.prev, gray, prob)
                self.prev = (gray, out)
                return out

            return segment_frame(bgr, seg, post, smooth=smooth).mask

    return TemporalPredictor()


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


def evaluate(predict: Predictor, samples: list[Sample]) -> tuple[list[dict], dict]:
    """Per-frame rows (with seconds per frame) and pooled scores.

    Samples come in sequence order; ``pooled["flicker"]`` is the mean over consecutive frame
    pairs of a sequence of ``|IoU(pred, pred') - IoU(gt, gt')|`` (:func:`segcore.metrics.flicker`).
    """
    scores = Scores()
    rows = []
    steps = []
    last = None  # (sequence, pred, gt) of the previous frame
    for s in samples:
        bgr = read_image(s.image)
        gt = read_label(s.mask)
        if (last is None or last[0] != s.sequence) and hasattr(predict, "new_sequence"):
            predict.new_sequence()
        t0 = time.perf_counter()
        pred = predict(bgr)
        dt = time.perf_counter() - t0
        r = scores.add(pred, gt)
        rows.append({"sequence": s.sequence, "frame": s.image.name, "seconds": dt, **r})
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
    predict: Predictor, rows: list[dict], samples: list[Sample], path: Path, n: int = 12
) -> None:
    """Contact sheet of the ``n`` frames with the lowest F1 (prediction green, truth magenta)."""
    by = {(s.sequence, s.image.name): s for s in samples}
    worst = sorted(rows, key=lambda r: r["f1"])[:n]
    tiles, labels = [], []
    for r in worst:
        s = by[(r["sequence"], r["frame"])]
        if hasattr(predict, "new_sequence"):  # re-predicted alone, without its predecessors
            predict.new_sequence()
        bgr = read_image(s.image)
        tiles.append(overlay(bgr, predict(bgr), read_label(s.mask).astype(np.uint8) * 255))
        labels.append(f"{r['sequence'][:18]}/{r['frame']} F1 {r['f1']:.3f}")
    if tiles:
        write_png(path, grid(tiles, cols=4, tile_w=320, labels=labels))


FAMILY_KEYS = ("precision", "recall", "f1", "iou", "bf1", "bf2", "bf4")
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
    return out


def family_row(name: str, m: dict) -> str:
    return (
        f"| {name} | {m['frames']} | "
        + " | ".join(f"{m[k]:.4f}" for k in FAMILY_KEYS)
        + f" | {100 * m['iou_below_0.9']:.0f} % | {1000 * m['seconds']:.0f} |"
    )


def evaluate_families(predict: Predictor, root, out: Path | None = None) -> dict:
    """Per-family means over frames, the mean over families and the worst family (by IoU).

    With ``out``: ``out/<family>_worst.png`` contact sheets and ``out/families.json``."""
    result: dict = {"families": {}}
    all_rows = []
    for name, froot in family_roots(root).items():
        samples = samples_of(froot)
        rows, _ = evaluate(predict, samples)
        for r in rows:
            r["family"] = name
        all_rows += rows
        result["families"][name] = frame_means(rows)
        if out is not None:
            worst_sheet(predict, rows, samples, out / f"{name}_worst.png", n=8)
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
    return "\n".join(lines)
