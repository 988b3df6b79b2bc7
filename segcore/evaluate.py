"""Score predicted masks against ground truth at full resolution (``segcore eval``), and a
multi-class model's label maps per class (garment, figure, support)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FrameError, InputError
from .io import IMAGE_EXTENSIONS, by_stem, is_hidden, natural_key, read_label
from .labels import read_labels
from .metrics import ClassScores, Scores


def mask_files(folder: Path, sub: str = "masks") -> dict[str, Path]:
    """Label files by stem; a folder with a ``masks/`` (``sub``) subfolder means that one."""
    if (folder / sub).is_dir():
        folder = folder / sub
    what = "masks" if sub == "masks" else "label maps"
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of {what}")
    found = [
        p
        for p in folder.iterdir()
        if p.is_file() and not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    files = by_stem(sorted(found), "both would be scored as one frame")
    if not files:
        raise InputError(f"{folder}: holds no {what}")
    return files


def _score(pred_dir, gt_dir, sub: str, read, scores):
    """(per-frame rows, missing stems): ``scores.add`` on each pair matched by file stem."""
    pred, gt = mask_files(Path(pred_dir), sub), mask_files(Path(gt_dir), sub)
    rows = []
    missing = sorted(set(gt) - set(pred), key=natural_key)
    common = sorted(set(gt) & set(pred), key=natural_key)
    if not common:
        raise InputError(
            f"{pred_dir} and {gt_dir} share no file names; {sub} are matched by file stem"
        )
    for stem in common:
        p, g = read(pred[stem]), read(gt[stem])
        if p.shape != g.shape:
            raise FrameError(
                pred[stem],
                f"size {p.shape[1]}x{p.shape[0]} differs from the ground truth's "
                f"{g.shape[1]}x{g.shape[0]}; {sub} must be at the frame's full resolution",
            )
        rows.append({"frame": stem, **scores.add(p, g)})
    return rows, missing


def evaluate_folders(
    pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, notes: list[str] | None = None
):
    """Return (per-frame rows, pooled scores, missing stems). Matching is by file stem.

    ``notes`` receives one line per kind of mask read in an odd way (:func:`read_label`:
    values 0 and 1, or nothing above half), naming the first such file and how many."""
    scores = Scores()
    odd: dict[str, list[Path]] = {}

    def read(path: Path):
        said: list[str] = []
        mask = read_label(path, said)
        for text in said:
            odd.setdefault(text, []).append(path)
        return mask

    rows, missing = _score(pred_dir, gt_dir, "masks", read, scores)
    if notes is not None:
        for text, paths in odd.items():
            more = f" (and {len(paths) - 1} more masks)" if len(paths) > 1 else ""
            notes.append(f"{paths[0]}{more}: {text}")
    return rows, scores.pooled(), missing


def evaluate_label_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike):
    """Label maps per class: (per-frame rows {"frame", class: figures}, pooled {class:
    figures}, missing stems). A folder with a ``labels/`` subfolder means that subfolder."""
    scores = ClassScores()
    rows, missing = _score(pred_dir, gt_dir, "labels", read_labels, scores)
    return rows, scores.pooled(), missing


def has_labels(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a ``labels/`` subfolder (a segment output or a data set)."""
    return (Path(folder) / "labels").is_dir()


def format_class_table(pooled: dict[str, dict], markdown: bool = False) -> str:
    """The pooled per-class IoU and BF@2px (boundary F at 2 px) as a table."""
    head = ["class", "IoU", "BF@2px"]
    rows = [[name, f"{s['iou']:.4f}", f"{s['bf2']:.4f}"] for name, s in pooled.items()]
    if markdown:
        return "\n".join(
            ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows]
        )
    lines = [f"{head[0]:<8} {head[1]:>7} {head[2]:>7}"]
    lines += [f"{r[0]:<8} {r[1]:>7} {r[2]:>7}" for r in rows]
    return "\n".join(lines)


def format_table(rows: list[dict], pooled: dict, markdown: bool = False) -> str:
    cols = ["precision", "recall", "f1", "iou", "bf1", "bf2", "bf4"]
    head = ["frame", "P", "R", "F1", "IoU", "BF@1px", "BF@2px", "BF@4px"]
    lines = []
    allrows = [*rows, {"frame": "pooled", **pooled}]
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in allrows:
            lines.append(
                "| " + " | ".join([str(r["frame"])] + [f"{r[c]:.4f}" for c in cols]) + " |"
            )
    else:
        w = max(8, *(len(str(r["frame"])) for r in allrows))
        lines.append(f"{head[0]:<{w}} " + " ".join(f"{h:>7}" for h in head[1:]))
        for r in allrows:
            lines.append(f"{r['frame']!s:<{w}} " + " ".join(f"{r[c]:7.4f}" for c in cols))
    return "\n".join(lines)


WORST = 12  # frames on eval's worst-frames sheet


def frames_by_stem(pred_dir: str | os.PathLike) -> dict[str, Path]:
    """The frames a `segcore segment` output was made from (its ``report.json``, in
    PRED_DIR or, for PRED_DIR = OUT/masks, its parent), by stem; {} without one."""
    import json

    pred = Path(pred_dir)
    for report in (pred / "report.json", pred.parent / "report.json"):
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
            paths = [Path(f["path"]) for f in data.get("frames", []) if "path" in f]
            return {p.stem: p for p in paths if p.is_file()}
        except (OSError, ValueError, AttributeError, TypeError, KeyError):
            continue
    return {}


def worst_sheet(pred_dir, gt_dir, rows: list[dict], n: int = WORST):
    """The ``n`` frames with the lowest IoU: the prediction's edge in green, the truth's in
    magenta, over the frame when PRED_DIR is a `segcore segment` output whose frames are
    still there, else over an error map (grey: both, red: predicted only, blue: missed).
    BGR uint8, or None without rows."""
    import cv2
    import numpy as np

    from .sheet import EDGE_BGR, TRUTH_BGR, grid, overlay, thumbnail, titled

    if not rows:
        return None
    pred, gt = mask_files(Path(pred_dir)), mask_files(Path(gt_dir))
    frames = frames_by_stem(pred_dir)
    worst = sorted(rows, key=lambda r: (r["iou"], r["f1"]))[:n]
    tiles, labels = [], []
    for r in worst:
        p, g = read_label(pred[r["frame"]]), read_label(gt[r["frame"]])
        H, W = p.shape
        w = min(W, 320)
        size = (w, max(1, round(H * w / W)))
        small = [cv2.resize(m.astype(np.uint8) * np.uint8(255), size, interpolation=cv2.INTER_AREA)
                 for m in (p, g)]  # fmt: skip
        base = None
        if r["frame"] in frames:
            try:
                small_frame = thumbnail(frames[r["frame"]], w)
                base = cv2.resize(small_frame, size, interpolation=cv2.INTER_AREA)
            except Exception:  # gone or unreadable since: the error map instead
                base = None
        if base is None:
            ps, gs = small[0] > 127, small[1] > 127
            base = np.full((*ps.shape, 3), 30, np.uint8)
            base[ps & gs] = (170, 170, 170)
            base[ps & ~gs] = (60, 60, 220)
            base[~ps & gs] = (220, 120, 40)
        tiles.append(overlay(base, small[0], small[1]))
        labels.append(f"{r['frame']}  IoU {r['iou']:.3f}  F1 {r['f1']:.3f}")
    lines = [
        f"{Path(pred_dir)} against {Path(gt_dir)}: the {len(worst)} frames with the lowest IoU "
        f"of {len(rows)}, worst first",
    ]
    legend = [(EDGE_BGR, "prediction's edge"), (TRUTH_BGR, "truth's edge")]
    if len(frames) < len(worst):
        legend += [((170, 170, 170), "both"), ((60, 60, 220), "predicted only"),
                   ((220, 120, 40), "missed")]  # fmt: skip
    return titled(grid(tiles, cols=min(4, len(tiles)), tile_w=320, labels=labels), lines, legend)
