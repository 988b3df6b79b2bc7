"""Score predicted masks against ground truth at full resolution (``segcore eval``)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FrameError, InputError
from .io import IMAGE_EXTENSIONS, is_hidden, natural_key, read_label
from .metrics import Scores


def mask_files(folder: Path) -> dict[str, Path]:
    """Label files by stem; a folder with a ``masks/`` subfolder means that subfolder."""
    if (folder / "masks").is_dir():
        folder = folder / "masks"
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of masks")
    files = {
        p.stem: p
        for p in folder.iterdir()
        if p.is_file() and not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS
    }
    if not files:
        raise InputError(f"{folder}: holds no mask images")
    return files


def evaluate_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike):
    """Return (per-frame rows, pooled scores, missing stems). Matching is by file stem."""
    pred, gt = mask_files(Path(pred_dir)), mask_files(Path(gt_dir))
    scores = Scores()
    rows = []
    missing = sorted(set(gt) - set(pred), key=natural_key)
    common = sorted(set(gt) & set(pred), key=natural_key)
    if not common:
        raise InputError(
            f"{pred_dir} and {gt_dir} share no mask names; masks are matched by file stem"
        )
    for stem in common:
        p, g = read_label(pred[stem]), read_label(gt[stem])
        if p.shape != g.shape:
            raise FrameError(
                pred[stem],
                f"size {p.shape[1]}x{p.shape[0]} differs from the ground truth's "
                f"{g.shape[1]}x{g.shape[0]}; masks must be at the frame's full resolution",
            )
        rows.append({"frame": stem, **scores.add(p, g)})
    return rows, scores.pooled(), missing


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
