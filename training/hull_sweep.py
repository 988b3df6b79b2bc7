"""How the mask threshold moves the visual hull, with the cameras held at the truth.

    python -m training.hull_sweep data/recon/seq_00023_turntable --thresholds 0.5,0.3

For one rendered turntable (``images/``, ``masks/``, ``cameras.json`` from
``training.synth``), the bundled model's masks are decided at each threshold, completed
from the still background's plate as a reconstruction workspace completes its hull masks
(``--hull-level``), and a visual hull is carved from them with the **ground-truth
cameras** (so only the masks differ). Printed per row: mask IoU, the subject's missed (FN)
and added (FP) shares, and the hull's silhouettes against the ground-truth masks (IoU,
mean over frames), as ``bench recon`` scores it.
``--sizes`` runs the network at other input sizes; ``--moving`` adds rows where the lower
threshold only applies to pixels that change between frames (grey standard deviation above
each value). docs/recon.md ("Measured figures") gives the figures and commands.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from segcore.io import read_image, read_label
from segcore.pipeline import SegmentOptions, load_segmenter, segment_frame
from segcore.plate import ADD_LEVEL, HULL_ADD_LEVEL, still_plate
from segcore.recon import DEFAULT_VOXELS, hull_from_views
from tools.bench_recon import _silhouette_iou, gt_views


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.hull_sweep", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("sequence", type=Path, help="a rendered sequence folder")
    p.add_argument("--thresholds", type=_floats, default=[0.5, 0.4, 0.3])
    p.add_argument("--moving", type=_floats, default=[], help="grey std limits, e.g. 4,6,10")
    p.add_argument(
        "--sizes", type=_floats, default=[], help="network input sizes (default: the card's)"
    )
    p.add_argument(
        "--hull-level",
        type=float,
        default=HULL_ADD_LEVEL,
        help=f"Lab distance from the plate for the hull masks' added parts (default "
        f"{HULL_ADD_LEVEL:g} as in a workspace; {ADD_LEVEL:g}: the masks' own, no hull masks)",
    )
    p.add_argument("--voxels", type=int, default=DEFAULT_VOXELS)
    p.add_argument("--model", default=None, help="bundled name or card (default: garment)")
    p.add_argument("--gt", action="store_true", help="also the ground-truth masks' row")
    args = p.parse_args(argv)
    seq = args.sequence
    truth = gt_views(json.loads((seq / "cameras.json").read_text()))
    names = list(truth)
    imgs = [read_image(seq / "images" / n) for n in names]
    gts = [read_label(seq / "masks" / (Path(n).stem + ".png")) for n in names]

    def score(label: str, masks: list[np.ndarray]) -> None:
        t0 = time.perf_counter()
        views = [replace(truth[n], mask=m) for n, m in zip(names, masks)]
        mesh = hull_from_views(views, voxels=args.voxels)
        hull = _silhouette_iou(mesh, truth, seq / "masks")
        iou = np.mean([(m & g).sum() / (m | g).sum() for m, g in zip(masks, gts)])
        fn = np.mean([(g & ~m).sum() / g.sum() for m, g in zip(masks, gts)])
        fp = np.mean([(m & ~g).sum() / g.sum() for m, g in zip(masks, gts)])
        s = time.perf_counter() - t0
        print(f"| {label} | {iou:.4f} | {fn:.4f} | {fp:.4f} | {hull:.4f} | {s:.0f} |", flush=True)

    print(f"{seq.name}, {len(names)} frames, {args.voxels} voxels, ground-truth cameras\n")
    print("| masks | mask IoU | FN | FP | hull IoU | s |\n|---|---|---|---|---|---|")
    if args.gt:
        score("ground truth", gts)
    decided = {}
    for size in args.sizes or [None]:  # None: the card's input size
        seg, post = load_segmenter(SegmentOptions(model=args.model, size=size and int(size)))
        for thr in sorted(set(args.thresholds) | {post.threshold}, reverse=True):
            masks = [segment_frame(b, seg, replace(post, threshold=thr)).mask > 0 for b in imgs]
            plate = still_plate(len(imgs), lambda k, m=masks: (imgs[k], m[k]))
            if plate is not None:  # the hull's masks, as a reconstruction workspace makes them
                masks = [plate.correct_pair(b, m, args.hull_level)[1] for b, m in zip(imgs, masks)]
            decided[thr] = masks
            if thr in args.thresholds:
                label = f"ours, {thr}" + (" + plate" if plate is not None else "")
                score(label + (f", input {int(size)} px" if args.sizes else ""), masks)
    if args.moving:
        std = np.stack([cv2.cvtColor(b, cv2.COLOR_BGR2GRAY) for b in imgs]).std(axis=0)
        for thr in (t for t in args.thresholds if t < post.threshold):
            for lim in args.moving:
                moving = std > lim
                masks = [a | (b & moving) for a, b in zip(decided[post.threshold], decided[thr])]
                score(f"ours, {post.threshold}, {thr} where grey std > {lim}", masks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
