"""Measure the confidence flag (``segcore.confidence``) on data: ``python -m training confidence``.

Each sequence of the data sets is segmented as ``segcore segment`` would (a
:class:`segcore.pipeline.SequenceJob` into a temporary folder, the model card's defaults), its
``report.json`` read for every frame's signals and flag, and the written masks scored
against the truth (IoU at full resolution). Printed: each signal's spread over the good
frames (IoU >= ``--bad-iou``, 0.9) and the bad ones, the limit that would flag no good frame
(x ``--margin``), and the flag's precision and recall for the bad frames with the limits in
force (``segcore.confidence.LIMITS``, or ``--limits``). ``--photos`` adds the real photos of
people that ship with installed packages (scikit-image's astronaut and camera,
matplotlib's Grace Hopper), run as one folder: each must be flagged.

Tune on validation families only; run the test families with the limits fixed, to report.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np

from segcore.confidence import LIMITS

# a signal's value in the units of its limit (segcore.confidence.assess)
SIGNALS = {
    "uncertain": lambda s: s.get("uncertain"),
    "flip": lambda s: None if s.get("flip_iou") is None else 1.0 - s["flip_iou"],
    "foreground": lambda s: (
        None
        if s.get("foreground_ratio") is None
        else abs(math.log2(max(s["foreground_ratio"], 1e-6)))
    ),
    "temporal": lambda s: s.get("temporal"),
}


def _sequences(roots: list[str]) -> list[tuple[str, Path]]:
    """(name, folder) of every sequence under the roots (ROOT/<family>/<seq> or ROOT/<seq>)."""
    from .data import find_sequences

    out = []
    for root in roots:
        root = Path(root)
        if (root / "images").is_dir():  # one sequence
            out.append((root.name, root))
            continue
        fams = [p for p in sorted(root.iterdir()) if p.is_dir() and not (p / "images").is_dir()]
        fams = [f for f in fams if any((q / "images").is_dir() for q in f.iterdir() if q.is_dir())]
        for fam in fams or [root]:
            for name in find_sequences(fam):
                out.append((f"{fam.name}/{name}", fam / name))
    return out


def run_sequence(images: Path, work: Path, model: str | None, limits: dict):
    """Segment ``images`` into ``work`` as `segcore segment` does: (the report's frames,
    the job)."""
    import segcore.confidence as conf
    from segcore.pipeline import SegmentOptions, SequenceJob

    saved = dict(conf.LIMITS)
    conf.LIMITS.update(limits)
    try:
        job = SequenceJob(images, work, SegmentOptions(model=model, formats=("mask",)))
        for _ in job.run():
            pass
        job.write_report()
    finally:
        conf.LIMITS.clear()
        conf.LIMITS.update(saved)
    return json.loads((work / "report.json").read_text())["frames"], job


def measure(
    roots: list[str],
    model: str | None = None,
    photos: bool = False,
    bad_iou: float = 0.9,
    limits: dict | None = None,
    keep_dir: Path | None = None,
) -> list[dict]:
    """One row per frame: set, sequence, frame, IoU (None for a photo), the flag, its
    confidence, reasons and signal values (in the units of their limits)."""
    from segcore.io import read_label, write_png

    from .data import find_sequences
    from .evaluate import ground_truth

    lim = {**LIMITS, **(limits or {})}
    rows = []
    tmp = tempfile.TemporaryDirectory(prefix="segcore-confidence-")
    base = Path(keep_dir) if keep_dir else Path(tmp.name)
    try:
        for k, (name, seq) in enumerate(_sequences(roots)):
            work = base / f"{k:03d}_{name.replace('/', '_')}"
            frames, job = run_sequence(seq / "images", work, model, lim)
            samples = {s.image.name: s for s in find_sequences(seq)[seq.name]}
            keep = job.segmenter.keep
            for f in frames:
                s = samples.get(Path(f["path"]).name)
                iou = iou_ns = None
                if s is not None and f["status"] == "ok":
                    pred = read_label(work / "masks" / f"{Path(f['path']).stem}.png")
                    gt, labels = ground_truth(s, keep)
                    iou = _iou(pred, gt)
                    # the stand and its base (support) neither counted for nor against: a
                    # binary model trained to keep stands is judged on what it can see
                    if labels is not None and (keep is None or 3 not in keep):
                        iou_ns = _iou(pred, gt, labels != 3)
                rows.append(_row("data", name, f, iou, iou_ns))
        if photos:
            from .realphotos import package_people_photos

            folder = base / "photos_in"
            folder.mkdir(parents=True, exist_ok=True)
            for n, (label, img) in enumerate(package_people_photos()):
                write_png(folder / f"{n}_{label.split()[-1].split('.')[0]}.png", img)
            if any(folder.iterdir()):
                frames, _ = run_sequence(folder, base / "photos_out", model, lim)
                rows += [_row("photo", "photos", f, None) for f in frames]
    finally:
        tmp.cleanup()
    for r in rows:
        r["bad"] = r["iou"] is not None and r["iou"] < bad_iou
        ns = r.get("iou_support_neutral")
        r["bad_support_neutral"] = r["bad"] if ns is None else ns < bad_iou
    return rows


def _iou(pred, gt, where=None) -> float:
    if where is not None:
        pred, gt = pred & where, gt & where
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else 1.0


def _row(kind: str, seq: str, f: dict, iou: float | None, iou_ns: float | None = None) -> dict:
    signals = f.get("signals") or {}
    return {
        "set": kind,
        "sequence": seq,
        "frame": Path(f["path"]).name,
        "iou": iou,
        "iou_support_neutral": iou_ns,
        "suspect": bool(f.get("suspect")),
        "confidence": f.get("confidence"),
        "reasons": f.get("reasons", []),
        **{k: get(signals) for k, get in SIGNALS.items()},
    }


def summary(rows: list[dict], margin: float = 1.1, bad_key: str = "bad") -> dict:
    """Per signal: its spread over good and bad frames and the limit that flags no good
    frame (its largest value on a good frame x ``margin``); the flag's precision and
    recall for the bad frames; which photos it flags. ``bad_key``: which failures count,
    ``bad`` (IoU against the data's masks) or ``bad_support_neutral`` (the stand's pixels
    left out of the IoU)."""
    data = [r for r in rows if r["set"] == "data" and r["iou"] is not None]
    good = [r for r in data if not r[bad_key]]
    bad = [r for r in data if r[bad_key]]
    out: dict = {"frames": len(data), "bad": len(bad), "failures": bad_key, "signals": {}}
    for k in SIGNALS:
        g = [r[k] for r in good if r[k] is not None]
        b = [r[k] for r in bad if r[k] is not None]
        p = [r[k] for r in rows if r["set"] == "photo" and r[k] is not None]
        out["signals"][k] = {
            "good": _spread(g),
            "bad": _spread(b),
            "photos": _spread(p),
            "no_false_alarm_limit": round(max(g) * margin, 4) if g else None,
        }
    flagged = [r for r in data if r["suspect"]]
    hit = [r for r in flagged if r[bad_key]]
    out["flagged"] = len(flagged)
    out["precision"] = round(len(hit) / len(flagged), 3) if flagged else None
    out["recall"] = round(len(hit) / len(bad), 3) if bad else None
    photos = [r for r in rows if r["set"] == "photo"]
    out["photos"] = {r["frame"]: r["suspect"] for r in photos}
    return out


def _spread(v: list[float]) -> dict | None:
    if not v:
        return None
    a = np.asarray(v, float)
    return {
        "n": len(v),
        "median": round(float(np.median(a)), 4),
        "p90": round(float(np.percentile(a, 90)), 4),
        "max": round(float(a.max()), 4),
        "min": round(float(a.min()), 4),
    }


def format_summary(s: dict, limits: dict, bad_iou: float) -> str:
    what = "IoU" if s["failures"] == "bad" else "IoU without the stand's pixels"
    lines = [
        f"failures = frames with {what} < {bad_iou}",
        f"{s['frames']} frames, {s['bad']} failures; flagged {s['flagged']}: "
        f"precision {s['precision']}, recall {s['recall']}",
        "",
        "| signal | limit | good: median / p90 / max | bad: median / max | photos: min "
        "| limit flagging no good frame |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in s["signals"].items():

        def f(d, keys):
            return " / ".join(f"{d[x]:.3f}" for x in keys) if d else "–"

        lines.append(
            f"| {k} | {limits[k]:g} | {f(v['good'], ('median', 'p90', 'max'))} | "
            f"{f(v['bad'], ('median', 'max'))} | {f(v['photos'], ('min',))} | "
            f"{v['no_false_alarm_limit']} |"
        )
    if s["photos"]:
        flagged = sum(s["photos"].values())
        lines.append("")
        lines.append(
            f"real photos flagged: {flagged} of {len(s['photos'])} "
            + ", ".join(f"{k}: {'suspect' if v else 'NOT flagged'}" for k, v in s["photos"].items())
        )
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument(
        "--families",
        nargs="+",
        metavar="ROOT",
        default=[],
        help="data sets: ROOT/<family>/<sequence>/{images,masks} or ROOT/<sequence>/...; "
        "tune on validation families, report on test families",
    )
    p.add_argument("--model", default=None, help="model card or bundled name (default: garment)")
    p.add_argument(
        "--photos",
        action="store_true",
        help="also run the real photos of people shipped by scikit-image and matplotlib "
        "(each must be flagged)",
    )
    p.add_argument(
        "--bad-iou", type=float, default=0.9, help="a frame below this IoU is a failure (0.9)"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=1.1,
        help="the suggested limit is the largest value on a good frame times this (1.1)",
    )
    p.add_argument(
        "--limits",
        metavar="JSON",
        help="limits to try instead of segcore.confidence.LIMITS, e.g. '{\"uncertain\": 1.2}'",
    )
    p.add_argument("--json", metavar="FILE", help="also write every frame's row and the summary")
    p.add_argument("--keep", metavar="DIR", help="keep the segmented outputs in DIR")


def run(args) -> int:
    from segcore.io import atomic_write_bytes

    limits = {**LIMITS, **(json.loads(args.limits) if args.limits else {})}
    if not args.families and not args.photos:
        print("error: nothing to measure; pass --families ROOT and/or --photos")
        return 2
    rows = measure(
        args.families, args.model, args.photos, args.bad_iou, limits, args.keep and Path(args.keep)
    )
    s = summary(rows, args.margin)
    s_ns = summary(rows, args.margin, "bad_support_neutral")
    for r in rows:
        if r["suspect"] or r["bad"] or r["bad_support_neutral"]:
            iou = "photo" if r["iou"] is None else f"IoU {r['iou']:.3f}"
            if r.get("iou_support_neutral") is not None:
                iou += f", {r['iou_support_neutral']:.3f} without the stand"
            flag = "SUSPECT" if r["suspect"] else "missed "
            print(f"{flag} {r['sequence']}/{r['frame']} ({iou}): {'; '.join(r['reasons'])}")
    print(format_summary(s, limits, args.bad_iou))
    print()
    print(format_summary(s_ns, limits, args.bad_iou))
    if args.json:
        data = {"limits": limits, "summary": s, "summary_support_neutral": s_ns, "frames": rows}
        atomic_write_bytes(args.json, (json.dumps(data, indent=1) + "\n").encode())
    return 0
