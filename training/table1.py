"""The paper's Table I on our held-out split: same data, same training budget.

Rows: the FCN-style baseline (single scale, no residuals), the paper's network (multi-scale +
residual), the two ablations (multi-scale off, residual off), and the classical baselines
(OpenCV GrabCut from a rectangle, background keying with Otsu). Each network is trained with
the same TrainConfig except the architecture switches; all are scored at full resolution.

    python -m training table1 --data data/synth --steps 1500 --out runs/table1
    python -m training table1 --data data/train_hr ... --families data/fam_test  # held out
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from .evaluate import (
    MARKDOWN_HEAD,
    evaluate,
    evaluate_families,
    grabcut_predictor,
    markdown_row,
    otsu_predictor,
    segcore_predictor,
)
from .export import export_checkpoint
from .train import TrainConfig, train

PAPER = """Paper (Chen), Table I, on its own garment photos: FCN P 0.8999 / R 0.8097 /
F1 0.8546; proposed network P 0.9565 / R 0.8877 / F1 0.9205."""

VARIANTS = {
    "FCN-style baseline (single scale, no residual)": {"multiscale": False, "residual": False},
    "multi-scale, no residual": {"multiscale": True, "residual": False},
    "single scale, residual": {"multiscale": False, "residual": True},
    "paper's network (multi-scale + residual)": {"multiscale": True, "residual": True},
}


FAMILIES_HEAD = (
    "| model | F1 | IoU | BF@1px | BF@2px | BF@4px | IoU < 0.9 | worst family: IoU, BF@2px |"
    " ms/frame |\n|---|---|---|---|---|---|---|---|---|"
)


def families_row(name: str, result: dict) -> str:
    """A Table I row from :func:`evaluate_families`: means over frames, the worst family."""
    a, w = result["all"], result["worst"]
    return (
        f"| {name} | {a['f1']:.4f} | {a['iou']:.4f} | {a['bf1']:.4f} | {a['bf2']:.4f} | "
        f"{a['bf4']:.4f} | {100 * a['iou_below_0.9']:.0f} % | {w['family']} {w['iou']:.4f}, "
        f"{w['bf2']:.4f} | {1000 * a['seconds']:.0f} |"
    )


def run_table1(
    base: TrainConfig, out: Path, refine: bool = False, families: list[str] | None = None
) -> str:
    """Train every variant of :data:`VARIANTS` with ``base`` (a run that is there is
    reused), export its best checkpoint and score it with the classical baselines: on
    ``families`` (roots of held-out families, means over frames at full resolution and the
    worst family) when given, else on the training run's own validation split."""
    out.mkdir(parents=True, exist_ok=True)
    from .data import find_sequences

    rows = []
    val_samples = None
    for i, (name, switches) in enumerate(VARIANTS.items()):
        run = out / f"variant{i}"
        cfg = replace(base, out=str(run), arch=replace(base.arch, **switches))
        if (
            not (run / "best.pt").exists()
            or json.loads((run / "config.json").read_text()).get("steps") != cfg.steps
        ):
            train(cfg, resume=(run / "last.pt").exists())
        card = export_checkpoint(run / "best.pt", f"variant{i}", run / "export", overwrite=True)
        if families:
            predict = segcore_predictor(str(card), refine, flip=False)
            rows.append(families_row(name, evaluate_families(predict, families)))
            continue
        if val_samples is None:
            split = json.loads((run / "split.json").read_text())
            val_samples = []
            for root in cfg.data:
                seqs = find_sequences(root)
                for full in split["val"]:
                    seq = full.split("/", 1)[1]
                    if full.startswith(Path(root).name + "/") and seq in seqs:
                        val_samples += seqs[seq]
        _, pooled = evaluate(segcore_predictor(str(card), refine, flip=False), val_samples)
        rows.append(markdown_row(name, pooled))
    for name, pred in (
        ("OpenCV GrabCut (rectangle init)", grabcut_predictor()),
        ("background keying (Otsu)", otsu_predictor()),
    ):
        if families:
            rows.append(families_row(name, evaluate_families(pred, families)))
            continue
        _, pooled = evaluate(pred, val_samples)
        rows.append(markdown_row(name, pooled))
    table = (FAMILIES_HEAD if families else MARKDOWN_HEAD) + "\n" + "\n".join(rows)
    (out / "table1.md").write_text(table + "\n\n" + PAPER + "\n")
    return table
