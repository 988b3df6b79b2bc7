"""``python build.py demo``: segment the bundled example capture and score it.

Writes ``out/demo/`` (masks, RGBA cut-outs, report.json, contact_sheet.png) and prints
precision, recall, F1, IoU and boundary F against the example's hand-checked masks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segcore.card import load_card
from segcore.errors import SegcoreError
from segcore.evaluate import evaluate_folders, format_table
from segcore.io import read_image, read_label, write_png
from segcore.labels import read_labels
from segcore.pipeline import SegmentOptions, SequenceJob
from segcore.progress import Progress
from segcore.sheet import grid, overlay, tint_classes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "garment_ring"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python build.py demo", description=__doc__)
    p.add_argument(
        "--input",
        type=Path,
        default=EXAMPLE,
        help="a sequence folder with images/ and masks/ (default: the bundled example)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)

    card = load_card(args.model)
    train = card.extra.get("training", {})
    print(
        f"model: {card.name} ({card.onnx_path.name}, input {card.preprocess.input_size} px"
        + (
            f", trained {train.get('steps')} steps on {', '.join(map(str, train.get('data', [])))}"
            if train
            else ""
        )
        + ")"
    )
    try:
        # a multi-class model also writes its classes, which the contact sheet shows in colour
        formats = ("rgba", "mask", "labels") if card.classes else ("rgba", "mask")
        job = SequenceJob(
            args.input / "images",
            args.out,
            SegmentOptions(model=args.model, overwrite=True, formats=formats),
        )
    except SegcoreError as exc:  # e.g. an OUT left by a demo from before output manifests
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = Progress(len(job.frames), "Segmenting")
    for r in job.run():
        if r.status == "failed":
            bar.write(f"error: {r.path}: {r.error}")
        bar.update()
    bar.close()
    job.write_report()
    s = job.summary()
    rows, pooled, _ = evaluate_folders(args.out / "masks", args.input / "masks")
    print(format_table(rows, pooled))
    tiles = []
    for f in job.frames:
        gt_path = args.input / "masks" / f"{f.stem}.png"
        pred = read_label(args.out / "masks" / f"{f.stem}.png").astype("uint8") * 255
        gt = read_label(gt_path).astype("uint8") * 255 if gt_path.exists() else None
        img = read_image(f)
        labels = args.out / "labels" / f"{f.stem}.png"
        if card.classes and labels.exists():
            img = tint_classes(img, read_labels(labels))
        tiles.append(overlay(img, pred, gt))
    sheet_path = args.out / "contact_sheet.png"
    write_png(sheet_path, grid(tiles, cols=4, tile_w=320, labels=[f.name for f in job.frames]))
    per = s["seconds_per_frame"] or 0.0
    print(
        f"\n{s['ok']} frames, {1000 * per:.0f} ms per frame (one worker's time; "
        f"{s['seconds']:.2f} s wall for the sequence)"
    )
    print(
        f"pooled: P {pooled['precision']:.4f}  R {pooled['recall']:.4f}  F1 {pooled['f1']:.4f}  "
        f"IoU {pooled['iou']:.4f}  BF@2px {pooled['bf2']:.4f}"
    )
    print(
        f"wrote {args.out}/masks, rgba, report.json and {sheet_path} "
        "(green: our mask edge, magenta: ground truth"
        + ("; tinted red: garment, blue: figure" if card.classes else "")
        + ")"
    )
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
