"""``python -m training adapt-eval``: what one or two corrected frames do for a sequence.

    python -m training adapt-eval data/adapt [ROOT ...] --out runs/adapt [--model garment]

For each sequence under the ROOTs (``<sequence>/{images,masks}``, or ``<family>/<sequence>``):
segment it (``segcore segment``); then, for every sequence or only the ``--worst N`` by mean
IoU, pick the frames an artist would correct first (the worst by IoU; the second at least a
quarter of the sequence away from the first), put their ground-truth masks in a
``corrected/`` folder, run ``segcore adapt`` with one and with two corrections, and score
the frames corrected in neither run against the ground truth (mean IoU and BF@2px over
frames, at full resolution). Prints a markdown table with the time of adapt + re-segment
per sequence and a summary (mean gains, the largest loss of any sequence), and writes
OUT/adapt_eval.json.

``--keep garment`` does the same for the garment alone: the model keeps that class, the
truth and the corrections are the label maps' garment pixels (``<sequence>/labels``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from segcore.adapt import AdaptJob
from segcore.config import CLASSES
from segcore.evaluate import mask_files
from segcore.infer import parse_keep
from segcore.io import read_image, read_label, write_png
from segcore.metrics import Scores
from segcore.pipeline import SegmentOptions, SequenceJob
from segcore.sheet import grid, overlay


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("roots", nargs="+", metavar="ROOT", help="data set roots, or roots of families")
    p.add_argument("--out", default="runs/adapt", help="work folder (default runs/adapt)")
    p.add_argument("--model", default=None, help="model card or bundled name (default: garment)")
    p.add_argument("--plate", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sequences", nargs="+", metavar="NAME", help="only these sequences")
    p.add_argument(
        "--worst",
        type=int,
        metavar="N",
        help="adapt only the N sequences the model segments worst (mean IoU over all frames)",
    )
    p.add_argument(
        "--keep",
        metavar="LIST",
        help="classes the model keeps, e.g. garment; the truth and the corrections are the "
        "same classes of each sequence's label maps (default: the garment figure's masks)",
    )
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


def truth_masks(seq: Path, work: Path, keep: tuple[str, ...] | None) -> dict[str, Path]:
    """The sequence's true masks: its ``masks/`` (the garment figure), or with ``keep`` the
    kept classes of its label maps, written as masks (255 = kept) to ``work/truth``."""
    if keep is None:
        return mask_files(seq)
    from .data import read_classes

    labels = mask_files(seq, "labels")
    ids = [CLASSES.index(n) for n in keep]
    (work / "truth").mkdir(parents=True, exist_ok=True)
    out = {}
    for stem, path in labels.items():
        out[stem] = work / "truth" / f"{stem}.png"
        write_png(out[stem], np.isin(read_classes(path), ids).astype(np.uint8) * 255)
    return out


def segment_sequence(seq: Path, work: Path, opts: SegmentOptions) -> dict:
    """Segment ``seq`` into ``work/segment`` and score every frame."""
    if work.exists():
        shutil.rmtree(work)
    work.parent.mkdir(parents=True, exist_ok=True)
    base = SequenceJob(seq / "images", work / "segment", opts)
    t_seg = _drain(base)
    stems = [p.stem for p in base.frames]
    return {
        "sequence": seq.name,
        "family": seq.parent.name,
        "frames": len(stems),
        "segment_s": round(t_seg, 1),
        "keep": list(opts.keep) if opts.keep else None,
        "all": score(work / "segment", truth_masks(seq, work, opts.keep), stems),
    }


def adapt_sequence(seq: Path, work: Path, opts: SegmentOptions, row: dict) -> dict:
    """Correct one, then two frames of a segmented sequence (``row``) and score the rest."""
    truth = truth_masks(seq, work, opts.keep)
    ious = row["all"]["frames"]
    stems = list(ious)
    runs = (1, 2) if len(stems) >= 3 else (1,)  # two corrections leave a frame to score
    chosen = pick(ious)[: runs[-1]]
    rest = [s for s in stems if s not in chosen]
    row = {**row, "corrected": chosen, "before": score(work / "segment", truth, rest)}
    for n in runs:
        corr = work / f"corrected{n}"
        if corr.exists():
            shutil.rmtree(corr)
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


def summary(rows: list[dict]) -> str:
    """Mean gains of one and two corrections, and the largest loss of any sequence."""
    if not rows:
        return "no sequence adapted"
    lines = []
    for n in (1, 2):
        have = [r for r in rows if f"after{n}" in r]
        if not have:
            continue
        d_iou = [r[f"after{n}"]["iou"] - r["before"]["iou"] for r in have]
        d_bf = [r[f"after{n}"]["bf2"] - r["before"]["bf2"] for r in have]
        worst = min(range(len(have)), key=lambda i: d_iou[i])
        loss = min(0.0, d_iou[worst])
        where = f" ({have[worst]['family']}/{have[worst]['sequence']})" if loss < 0 else ""
        plural = "s" if len(have) != 1 else ""
        lines.append(
            f"{n} corrected: mean IoU {np.mean(d_iou):+.4f}, BF@2px {np.mean(d_bf):+.4f} over "
            f"{len(have)} sequence{plural}; largest IoU loss {loss:+.4f}{where}"
        )
    both = [r for r in rows if "after2" in r]
    if both:
        better = sum(r["after2"]["iou"] >= r["after1"]["iou"] for r in both)
        lines.append(f"two corrections at least as good as one (IoU): {better} of {len(both)}")
    return "\n".join(lines)


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


def picture(rows: list[dict], out: Path, path: Path) -> None:
    """The correct -> adapt loop on the sequence whose uncorrected frames gain most."""
    import cv2

    best = max(rows, key=lambda r: r["after1"]["iou"] - r["before"]["iou"])
    seq, work = Path(best["path"]), out / best["name"]
    frames = {p.stem: p for p in (seq / "images").iterdir()}
    fixed = best["corrected"][0]
    gain = {s: v - best["before"]["frames"][s] for s, v in best["after1"]["frames"].items()}
    other = max(gain, key=gain.get)
    truth = truth_masks(seq, work, best.get("keep") and tuple(best["keep"]))
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keep = parse_keep(args.keep)
    opts = SegmentOptions(model=args.model, plate=args.plate, workers=args.workers,
                          formats=("mask",), keep=keep)  # fmt: skip
    chosen = [
        (seq, _name(seq, Path(root)))
        for root in args.roots
        for seq in sequences(Path(root))
        if not args.sequences or seq.name in args.sequences
    ]
    seen: dict[str | Path, Path] = {}  # by name and by the folder itself
    for seq, name in chosen:
        other = seen.get(name) or seen.get(seq.resolve())
        if other is not None:
            raise SystemExit(
                f"{seq} and {other}: the same sequence name, or the same sequence, under two "
                "roots; give roots that do not overlap"
            )
        seen[name] = seen[seq.resolve()] = seq
        if keep and not (seq / "labels").is_dir():
            raise SystemExit(
                f"{seq}: no labels/ folder to take the {','.join(keep)} truth from; "
                "--keep needs each sequence's label maps"
            )
    segmented = []
    for seq, name in chosen:
        row = segment_sequence(seq, out / name, opts)
        segmented.append({**row, "name": name, "path": str(seq)})
        print(f"segmented {name}: IoU {segmented[-1]['all']['iou']:.4f}", flush=True)
    order = sorted(range(len(chosen)), key=lambda i: segmented[i]["all"]["iou"])
    picked = sorted(order[: args.worst] if args.worst else order)
    rows = []
    for i in picked:
        seq, name = chosen[i]
        rows.append(adapt_sequence(seq, out / name, opts, segmented[i]))
        print(table(rows[-1:]).splitlines()[2], flush=True)
    (out / "adapt_eval.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    if args.picture and rows:
        picture(rows, out, Path(args.picture))
    print(table(rows))
    print(summary(rows))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training adapt-eval", description=__doc__.split("\n")[0]
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
