"""``python -m training adapt-eval``: what one or two corrected frames do for a sequence.

    python -m training adapt-eval data/adapt --out runs/adapt [--model garment] [--plate off]

For each sequence under ROOT (``<sequence>/{images,masks}``, or ``<family>/<sequence>``):
segment it (``segcore segment``), pick the frames an artist would correct first (the worst
by IoU; the second at least a quarter of the sequence away from the first), put their
ground-truth masks in a ``corrected/`` folder, run ``segcore adapt`` with one and with two
corrections, and score the frames corrected in neither run against the ground truth (mean
IoU and BF@2px over frames, at full resolution). Prints a markdown table with the time of
adapt + re-segment per sequence, and writes OUT/adapt_eval.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from segcore.adapt import AdaptJob
from segcore.evaluate import mask_files
from segcore.io import read_image, read_label
from segcore.metrics import Scores
from segcore.pipeline import SegmentOptions, SequenceJob
from segcore.sheet import grid, overlay


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", metavar="ROOT", help="a data set root, or a root of families")
    p.add_argument("--out", default="runs/adapt", help="work folder (default runs/adapt)")
    p.add_argument("--model", default=None, help="model card or bundled name (default: garment)")
    p.add_argument("--plate", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sequences", nargs="+", metavar="NAME", help="only these sequences")
    p.add_argument(
        "--picture",
        metavar="PNG",
        help="also draw the sequence that gains most: the corrected frame, then an uncorrected "
        "frame before and after (mask edge green, truth magenta)",
    )


def sequences(root: Path) -> list[Path]:
    if (root / "images").is_dir():
        return [root]
    found = sorted(p.parent for p in root.glob("*/images") if (p.parent / "masks").is_dir())
    return found or sorted(
        p.parent for p in root.glob("*/*/images") if (p.parent / "masks").is_dir()
    )


def _name(seq: Path, root: Path) -> str:
    """The sequence's work folder under OUT: its path under ROOT (family/sequence)."""
    return seq.name if seq == root else seq.relative_to(root).as_posix()


def _drain(job) -> float:
    t0 = time.perf_counter()
    for _ in job.run():
        pass
    job.write_report()
    return time.perf_counter() - t0


def score(pred_dir: Path, truth: dict[str, Path], stems: list[str]) -> dict:
    """Mean over frames of IoU and BF@2px, and the per-frame IoU."""
    pred = mask_files(pred_dir)
    per = {}
    for s in stems:
        sc = Scores()
        per[s] = sc.add(read_label(pred[s]), read_label(truth[s]))
    return {
        "iou": float(np.mean([r["iou"] for r in per.values()])),
        "bf2": float(np.mean([r["bf2"] for r in per.values()])),
        "frames": {s: round(r["iou"], 4) for s, r in per.items()},
    }


def pick(ious: dict[str, float]) -> list[str]:
    """The worst frame, then the worst at least a quarter of the sequence away from it."""
    stems = list(ious)
    first = min(stems, key=ious.get)
    k = stems.index(first)
    gap = max(1, len(stems) // 4)
    far = [s for i, s in enumerate(stems) if min(abs(i - k), len(stems) - abs(i - k)) >= gap]
    second = min(far or [s for s in stems if s != first], key=ious.get)
    return [first, second]


def evaluate_sequence(seq: Path, work: Path, opts: SegmentOptions) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.parent.mkdir(parents=True, exist_ok=True)
    truth = mask_files(seq)
    base = SequenceJob(seq / "images", work / "segment", opts)
    t_seg = _drain(base)
    stems = [p.stem for p in base.frames]
    before = score(work / "segment", truth, stems)
    runs = (1, 2) if len(stems) >= 3 else (1,)  # two corrections leave a frame to score
    chosen = pick(before["frames"])[: runs[-1]]
    rest = [s for s in stems if s not in chosen]
    row = {
        "sequence": seq.name,
        "family": seq.parent.name,
        "frames": len(stems),
        "corrected": chosen,
        "segment_s": round(t_seg, 1),
        "before": score(work / "segment", truth, rest),
    }
    for n in runs:
        corr = work / f"corrected{n}"
        corr.mkdir()
        for s in chosen[:n]:
            shutil.copyfile(truth[s], corr / f"{s}.png")
        t0, c0 = time.perf_counter(), time.process_time()
        job = AdaptJob(seq / "images", work / f"adapt{n}", corr, opts)
        _drain(job)
        row[f"adapt{n}_s"] = round(time.perf_counter() - t0, 1)
        row[f"adapt{n}_cpu_s"] = round(time.process_time() - c0, 1)  # on a shared machine
        row[f"after{n}"] = score(work / f"adapt{n}", truth, rest)
        row[f"fit{n}"] = job.fit_info
    return row


def table(rows: list[dict]) -> str:
    head = (
        "| sequence | frames | IoU before | one | two | BF@2px before | one | two "
        "| adapt s (one, two) | segment s |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    nan = {"iou": float("nan"), "bf2": float("nan")}
    for r in rows:
        b, a1, a2 = r["before"], r["after1"], r.get("after2", nan)
        lines.append(
            f"| {r['family']}/{r['sequence']} | {r['frames']} | {b['iou']:.4f} | {a1['iou']:.4f} "
            f"| {a2['iou']:.4f} | {b['bf2']:.4f} | {a1['bf2']:.4f} | {a2['bf2']:.4f} "
            f"| {r['adapt1_s']}, {r.get('adapt2_s', '-')} | {r['segment_s']} |"
        )
    if rows:
        keys = ("before", "after1", "after2")
        m = {k: np.mean([r.get(k, nan)["iou"] for r in rows]) for k in keys}
        bf = {k: np.mean([r.get(k, nan)["bf2"] for r in rows]) for k in keys}
        lines.append(
            f"| **mean** | | {m['before']:.4f} | {m['after1']:.4f} | {m['after2']:.4f} "
            f"| {bf['before']:.4f} | {bf['after1']:.4f} | {bf['after2']:.4f} | | |"
        )
    return head + "\n".join(lines)


def picture(rows: list[dict], root: Path, out: Path, path: Path) -> None:
    """The correct -> adapt loop on the sequence whose uncorrected frames gain most."""
    import cv2

    best = max(rows, key=lambda r: r["after1"]["iou"] - r["before"]["iou"])
    seq = next(
        s for s in sequences(root) if s.name == best["sequence"] and s.parent.name == best["family"]
    )
    work, frames = out / _name(seq, root), {p.stem: p for p in (seq / "images").iterdir()}
    fixed = best["corrected"][0]
    gain = {s: v - best["before"]["frames"][s] for s, v in best["after1"]["frames"].items()}
    other = max(gain, key=gain.get)
    truth = mask_files(seq)
    u8 = lambda m: m.astype(np.uint8) * 255  # noqa: E731

    def tile(stem: str, mask: Path, gt: bool = True) -> np.ndarray:
        truth_mask = u8(read_label(truth[stem])) if gt else None
        return overlay(read_image(frames[stem]), u8(read_label(mask)), truth_mask)

    before, after = best["before"]["frames"][other], best["after1"]["frames"][other]
    tiles = [
        tile(fixed, work / "corrected1" / f"{fixed}.png", gt=False),
        tile(other, work / "segment" / "masks" / f"{other}.png"),
        tile(other, work / "adapt1" / "masks" / f"{other}.png"),
    ]
    labels = [
        f"{fixed}: corrected by hand",
        f"{other}: segment, IoU {before:.3f}",
        f"{other}: adapt, IoU {after:.3f}",
    ]
    cv2.imwrite(
        str(path), grid(tiles, 3, tile_w=420, labels=labels), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )


def run(args) -> int:
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    opts = SegmentOptions(model=args.model, plate=args.plate, workers=args.workers,
                          formats=("mask",))  # fmt: skip
    rows = []
    for seq in sequences(root):
        if args.sequences and seq.name not in args.sequences:
            continue
        rows.append(evaluate_sequence(seq, out / _name(seq, root), opts))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    (out / "adapt_eval.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    if args.picture and rows:
        picture(rows, root, out, Path(args.picture))
    print(table(rows))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training adapt-eval", description=__doc__.split("\n")[0]
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
