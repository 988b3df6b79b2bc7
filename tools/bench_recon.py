"""``python build.py bench recon``: does segmentation make SfM work? Measured on renders.

For each rendered sequence with ground-truth cameras (``<seq>/images``, ``masks``,
``cameras.json``: turntables with a static background, and rings) the reconstruction runs
three times: (a) without masks, (b) with our masks (``SequenceJob`` with the bundled model,
when it exists), (c) with the ground-truth masks. Reported per run:

- frames registered (of all frames);
- rotation error against the ground truth: the two camera sets are aligned by a similarity
  (Umeyama on the camera centres), then each camera's rotation is compared (median and
  max, degrees); also the alignment-free median relative rotation error over all
  frame pairs;
- the visual hull's silhouettes reprojected into the ground-truth cameras against the
  ground-truth masks (IoU, mean over frames), with (b) and (c) masks; the alignment also
  matches a point on each camera's optical axis, so the hull is compared where the cameras
  look; and the same IoU in the reconstruction's own cameras (no alignment).

Prints a markdown table (``--out FILE`` also writes it with the method and the command that
reproduces it; docs/recon.md quotes it). Example::

    python build.py bench recon                       # the sequences in data/recon
    python build.py bench recon --data DIR --limit 3 --voxels 96 --out bench.md
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from segcore.plate import MODES as PLATE_MODES
from segcore.recon import DEFAULT_VOXELS
from segcore.recon.run import even_ring

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path("data") / "recon"  # relative to the repository
MODEL = ROOT / "segcore" / "models" / "garment.onnx"


# --------------------------------------------------------------------------- metrics


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum |dst - (s R src + t)|^2 (Umeyama 1991)."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    s_fix = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s_fix[2, 2] = -1
    r = u @ s_fix @ vt
    var = (xs**2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ s_fix) / var) if var > 0 else 1.0
    t = mu_d - scale * r @ mu_s
    return scale, r, t


def rotation_angle_deg(r: np.ndarray) -> float:
    c = (np.trace(r) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def gt_cameras(cameras_json: dict) -> dict[str, dict]:
    """``cameras.json`` (training/synth/cameras.py) frames by image name, as arrays."""
    return {
        f["image"]: {"K": np.array(f["K"]), "R": np.array(f["R"]), "t": np.array(f["t"])}
        for f in cameras_json["frames"]
    }


def align_to_gt(result, gt: dict[str, dict], look: bool = False):
    """Similarity from the reconstruction's world to the ground truth's, or None.

    Umeyama on the camera centres; with ``look``, also one point per camera on its optical
    axis at the distance of the cameras' common focus: that pins the alignment where the
    cameras look (the garment), not only where they stand, so a hull is compared in place.
    (On a turntable the centres lie on one circle and leave the region the cameras look at
    to the rotation's lever arm.)
    """
    common = [p for p in result.poses if p.name in gt]
    if len(common) < 3:
        return None
    src = np.array([p.center for p in common])
    dst = np.array([-gt[p.name]["R"].T @ gt[p.name]["t"] for p in common])
    if np.linalg.matrix_rank(src - src.mean(0), tol=1e-9) < 2:
        return None
    s, r, t = umeyama(src, dst)
    if not look:
        return s, r, t
    from segcore.recon.camera import camera_focus

    look_src = np.array([np.asarray(p.R)[2] for p in common])
    look_dst = np.array([gt[p.name]["R"][2] for p in common])
    d = float(np.median(np.linalg.norm(src - camera_focus(src, look_src), axis=1)))
    if not np.isfinite(d) or d <= 0:
        return s, r, t
    return umeyama(np.vstack([src, src + d * look_src]), np.vstack([dst, dst + s * d * look_dst]))


def pose_errors(result, cameras_json: dict) -> dict:
    """Registered share and rotation errors (degrees) against ground-truth cameras."""
    gt = gt_cameras(cameras_json)
    poses = [p for p in result.poses if p.name in gt] if result is not None else []
    out = {
        "frames": len(gt),
        "registered": len(poses),
        "rot_median_deg": float("nan"),
        "rot_max_deg": float("nan"),
        "rel_rot_median_deg": float("nan"),
        "center_err_median": float("nan"),
    }
    if len(poses) >= 2:
        rel = []
        for i in range(len(poses)):
            for j in range(i + 1, len(poses)):
                a, b = poses[i], poses[j]
                r_est = a.R @ b.R.T
                r_gt = gt[a.name]["R"] @ gt[b.name]["R"].T
                rel.append(rotation_angle_deg(r_est @ r_gt.T))
        out["rel_rot_median_deg"] = float(np.median(rel))
    sim = align_to_gt(result, gt) if result is not None else None
    if sim is None:
        return out
    s, ra, ta = sim
    errs, cerr = [], []
    for p in poses:
        r_w = p.R @ ra.T  # the estimated camera in the ground-truth world
        errs.append(rotation_angle_deg(r_w @ gt[p.name]["R"].T))
        c = s * ra @ p.center + ta
        cerr.append(np.linalg.norm(c - (-gt[p.name]["R"].T @ gt[p.name]["t"])))
    out["rot_median_deg"] = float(np.median(errs))
    out["rot_max_deg"] = float(np.max(errs))
    out["center_err_median"] = float(np.median(cerr))
    out["similarity"] = {"scale": s, "R": ra.tolist(), "t": ta.tolist()}
    s, ra, ta = align_to_gt(result, gt, look=True)
    out["similarity_look"] = {"scale": s, "R": ra.tolist(), "t": ta.tolist()}
    return out


def gt_views(cameras_json: dict) -> dict:
    """``cameras.json``'s frames as :class:`segcore.recon.View` s (no masks), by image name."""
    from segcore.recon import View

    w, h = int(cameras_json["width"]), int(cameras_json["height"])
    return {
        f["image"]: View(np.array(f["K"]), np.array(f["R"]), np.array(f["t"]), w, h)
        for f in cameras_json["frames"]
    }


def hull_iou(mesh, sim, cameras_json: dict, masks_dir: Path) -> float:
    """Mean IoU of the hull's silhouettes in every ground-truth camera vs the GT masks."""
    s, r, t = sim
    moved = type(mesh)(s * mesh.vertices @ r.T + t, mesh.faces)
    return _silhouette_iou(moved, gt_views(cameras_json), masks_dir)


def hull_iou_own(mesh, result, masks_dir: Path) -> float:
    """Mean IoU of the hull's silhouettes in the reconstruction's own cameras vs the GT
    masks: no alignment, the hull sits where its cameras put it."""
    from segcore.recon import views_from_result

    views = {v.name: v for v in views_from_result(result, with_images=False)}
    return _silhouette_iou(mesh, views, masks_dir)


def _silhouette_iou(mesh, views: dict, masks_dir: Path) -> float:
    from segcore.io import read_label
    from segcore.recon.check import render_silhouette

    ious = []
    for name, v in views.items():
        gt = read_label(masks_dir / (Path(name).stem + ".png"))
        sil = render_silhouette(mesh, v)
        union = (sil | gt).sum()
        ious.append((sil & gt).sum() / union if union else 1.0)
    return float(np.mean(ious)) if ious else float("nan")


def discover_sequences(root: Path, kinds: tuple[str, ...], min_frames: int = 12) -> list[Path]:
    """The rendered sequences under ``root``: ``root/<sequence>`` or, for a root of families,
    ``root/<family>/<sequence>``."""
    out = []
    folders = sorted(root.iterdir()) if root.is_dir() else []
    if folders and not any((d / "cameras.json").is_file() for d in folders):
        folders = [s for d in folders if d.is_dir() for s in sorted(d.iterdir())]
    for d in folders:
        cams = d / "cameras.json"
        if not cams.is_file() or not (d / "masks").is_dir():
            continue
        data = json.loads(cams.read_text())
        if data.get("kind") in kinds and len(data["frames"]) >= min_frames:
            out.append(d)
    return out


def run_one(
    seq: Path,
    masks: Path | None,
    ws: Path,
    voxels: int,
    hull: bool,
    quality: str = "high",
    focal_prior: bool = True,
    mapper: str = "auto",
    plate: str = "auto",
) -> dict:
    """One reconstruction of ``seq`` with ``masks`` as ``segcore reconstruct`` runs it (SfM,
    hull, verdict); metrics against the GT, the verdict and the time per stage."""
    from segcore.errors import SegcoreError
    from segcore.recon import ReconstructionError, run_reconstruction

    cams = json.loads((seq / "cameras.json").read_text())
    shutil.rmtree(ws, ignore_errors=True)
    t0 = time.perf_counter()
    error = mesh = None
    try:
        focal = cams["frames"][0]["K"][0][0] if focal_prior else None  # the renders' "EXIF"
        result, mesh = run_reconstruction(
            seq / "images",
            masks,
            ws,
            quality=quality,
            focal_px=focal,
            mapper=mapper,
            plate=plate,
            hull=hull and masks is not None,
            voxels=voxels,
        )
    except ReconstructionError as exc:
        result, error = exc.result, str(exc)
    except SegcoreError as exc:  # e.g. a hull carved to nothing: a failed row, not a crash
        result, error = None, str(exc)
    row = pose_errors(result, cams)
    row["seconds"] = time.perf_counter() - t0
    row["reproj_px"] = result.mean_reprojection_error if result is not None else float("nan")
    row["error"] = error
    row["mapper"] = (result.options or {}).get("mapper", mapper) if result is not None else mapper
    if result is not None and even_ring(result.options):  # SfM first, then circular
        row["mapper"] = "incremental, then circular"
    if result is not None:
        row["verdict"] = (result.verdict or {}).get("status", "–")
    else:
        row["verdict"] = "failed" if error else "–"
    row["stages"] = dict(result.timings) if result is not None else {}
    opts = (result.options or {}) if result is not None else {}
    row["where"], row["matcher"] = opts.get("features", "?"), opts.get("matcher", "?")
    if opts.get("view_pairs"):  # matched again between frames looking the same way
        row["matcher"] += " + view"
    row["hull_iou"] = row["hull_iou_own"] = float("nan")
    if mesh is not None and "similarity" in row:
        try:
            sim = (
                row["similarity_look"]["scale"],
                np.array(row["similarity_look"]["R"]),
                np.array(row["similarity_look"]["t"]),
            )
            row["hull_iou"] = hull_iou(mesh, sim, cams, seq / "masks")
            row["hull_iou_own"] = hull_iou_own(mesh, result, seq / "masks")
        except Exception as exc:  # a failed hull is a result, not a crash of the benchmark
            row["error"] = f"hull: {exc}"
    if result is not None and (result.options or {}).get("plate_changes"):
        row["mask_iou_used"] = mask_iou(ws / "masks", seq / "masks")  # as completed by the plate
    row.pop("similarity", None)
    row.pop("similarity_look", None)
    return row


def segment_with_model(seq: Path, out: Path, plate: str = "auto") -> Path | None:
    """Our masks for ``seq`` with the bundled model (None when there is no model), as
    ``segment``'s defaults give them (completed from a still background with the network's
    classes; the reconstruction then leaves them as they are), or with ``plate="off"`` the
    network's own, which the reconstruction's plate completes (the table shows the masks'
    IoU before and after)."""
    if not MODEL.exists():
        return None
    from segcore.pipeline import SegmentOptions, SequenceJob

    shutil.rmtree(out, ignore_errors=True)
    job = SequenceJob(
        seq / "images",
        out,
        SegmentOptions(model=str(MODEL), formats=("mask",), workers=2, plate=plate),
    )
    for _ in job.run():
        pass
    job.write_report(sheet=False)  # as `segcore segment` leaves it: the reconstruction reads it
    return out / "masks"


def mask_iou(pred_dir: Path, gt_dir: Path) -> float:
    """Pooled IoU of the masks in ``pred_dir`` against the ground truth (same stems; COLMAP's
    ``<stem>.<ext>.png`` names too)."""
    from segcore.io import read_label

    inter = union = 0
    for gt_path in sorted(gt_dir.glob("*.png")):
        own = pred_dir / gt_path.name
        if not own.exists():
            own = next(pred_dir.glob(f"{gt_path.stem}.*.png"), own)
        pred, gt = read_label(own), read_label(gt_path)
        inter += int((pred & gt).sum())
        union += int((pred | gt).sum())
    return inter / union if union else 1.0


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)


def _mask_cell(r: dict) -> str:
    """The masks' IoU; "a → b" where the still background's plate completed them (b: used)."""
    cell = _f(r.get("mask_iou"), "{:.3f}")
    if r.get("mask_iou_used") is not None and r.get("mask_iou") is not None:
        cell += " → " + _f(r["mask_iou_used"], "{:.3f}")
    return cell


STAGES = {  # recon.json's timings: what the bench's stage column calls them
    "prepare": "prep",
    "features": "feat",
    "matching": "match",
    "mapping": "map",
    "view pairs": "views",
    "circular": "circular",
    "turntable": "solve",
    "refine": "refine",
    "hull": "hull",
}


def _stages(r: dict) -> str:
    """Seconds per stage: ``prep 4 + feat 45 + match 3 + map 3 + hull 34``."""
    st = r.get("stages") or {}
    return " + ".join(f"{short} {st[k]:.0f}" for k, short in STAGES.items() if k in st) or "–"


def table(rows: list[dict]) -> str:
    head = (
        "| sequence | kind | masks | features | registered | rot. err. median / max (°)"
        " | rel. rot. median (°) | reproj. (px) | mask IoU | hull IoU | hull IoU, own cameras"
        " | verdict | time (s) | per stage (s) |\n" + "|---" * 14 + "|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['sequence']} | {r['kind']} | {r['masks']} | {r.get('quality', '–')} "
            f"| {r['registered']}/{r['frames']} "
            f"| {_f(r['rot_median_deg'])} / {_f(r['rot_max_deg'])} "
            f"| {_f(r['rel_rot_median_deg'])} | {_f(r['reproj_px'])} "
            f"| {_mask_cell(r)} | {_f(r['hull_iou'], '{:.3f}')} "
            f"| {_f(r.get('hull_iou_own'), '{:.3f}')} | {r.get('verdict', '–')} "
            f"| {r['seconds']:.0f} | {_stages(r)} |"
        )
    return head + "\n".join(lines) + "\n"


def summarise(rows: list[dict]) -> list[str]:
    out = []
    for kind in sorted({r["kind"] for r in rows}):
        for masks in ("none", "ours", "ground truth"):
            sel = [r for r in rows if r["kind"] == kind and r["masks"] == masks]
            if not sel:
                continue
            reg = sum(r["registered"] for r in sel) / max(1, sum(r["frames"] for r in sel))
            rot = [r["rot_median_deg"] for r in sel if np.isfinite(r["rot_median_deg"])]
            iou = [r["hull_iou"] for r in sel if np.isfinite(r["hull_iou"])]
            out.append(
                f"- {kind}, masks {masks}: {100 * reg:.0f} % of frames registered; median "
                f"rotation error {_f(float(np.median(rot)) if rot else None)}° "
                f"({len(rot)} of {len(sel)} sequences reconstructed)"
                + (f"; hull IoU {np.mean(iou):.3f}" if iou else "")
            )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python build.py bench recon",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        type=Path,
        default=ROOT / DEFAULT_DATA,
        help=f"folder of rendered sequences (default: {DEFAULT_DATA} in the repository)",
    )
    p.add_argument("--kinds", default="turntable,ring")
    p.add_argument("--limit", type=int, default=3, help="sequences per kind")
    p.add_argument("--only", default="", help="comma-separated sequence names")
    p.add_argument("--voxels", type=int, default=DEFAULT_VOXELS)
    p.add_argument("--quality", choices=("high", "fast"), default="high", help="SIFT features")
    p.add_argument(
        "--no-focal-prior",
        dest="focal_prior",
        action="store_false",
        help="estimate the focal length (default: the true one, as EXIF would give it)",
    )
    p.add_argument("--masks", default="none,ours,gt", help="which runs: none, ours, gt")
    p.add_argument(
        "--mapper",
        default="auto",
        choices=("incremental", "global", "turntable", "auto"),
        help="SfM mapper; auto: segcore's own choice, as a user gets it (the turntable solver "
        "where the masked frames show a still background, incremental otherwise)",
    )
    p.add_argument(
        "--plate",
        choices=PLATE_MODES,
        default="auto",
        help="masks completed from a still background (segcore.plate; default: auto)",
    )
    p.add_argument(
        "--segment-plate",
        choices=("off", "auto"),
        default="auto",
        help="our masks with segment's own still-background pass (auto, default: as "
        "segment's defaults give them) or without it (off: the reconstruction's plate "
        "completes them)",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "segcore-recon")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    data = args.data
    if not data.is_dir():
        print(f"error: {data}: no such data folder; give one with --data DIR", file=sys.stderr)
        return 2
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    seqs = discover_sequences(data, kinds)
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        seqs = [s for s in seqs if s.name in names or s.relative_to(data).as_posix() in names]
    else:
        seqs = [s for k in kinds for s in seqs if s.name.endswith(k)][: args.limit * len(kinds)]
        per = {k: [s for s in seqs if s.name.endswith(k)][: args.limit] for k in kinds}
        seqs = [s for k in kinds for s in per[k]]
    if not seqs:
        print(f"error: no sequences with >= 12 frames and cameras.json in {data}", file=sys.stderr)
        return 2
    runs = [m.strip() for m in args.masks.split(",")]
    notes = []
    if "ours" in runs and not MODEL.exists():
        notes.append(f"(b) skipped: no bundled model at {MODEL.relative_to(ROOT)}")
        runs.remove("ours")
    rows = []
    for seq in seqs:
        kind = json.loads((seq / "cameras.json").read_text())["kind"]
        name = seq.relative_to(data).as_posix()  # family/sequence under a root of families
        for run in runs:
            ws = args.workdir / name / run
            if run == "none":
                masks, label = None, "none"
            elif run == "gt":
                masks, label = seq / "masks", "ground truth"
            else:
                seg = args.workdir / name / "seg"
                masks, label = segment_with_model(seq, seg, args.segment_plate), "ours"
            mapper = args.mapper
            if mapper == "turntable" and masks is None:
                mapper = "incremental"  # the circular solver needs silhouettes
            row = run_one(
                seq,
                masks,
                ws,
                args.voxels,
                run != "none",
                args.quality,
                args.focal_prior,
                mapper,
                args.plate,
            )
            features = args.quality + ("" if args.focal_prior else ", no focal")
            used = row.pop("mapper", mapper)
            if used != "incremental":
                features += f", {used}" + (" (auto)" if mapper == "auto" else "")
            else:  # where the features were taken, and how pairs were matched
                features += f", {row.pop('where', '?')}, {row.pop('matcher', '?')} pairs"
            row.update(sequence=name, kind=kind, masks=label, quality=features)
            if masks is not None:
                row["mask_iou"] = mask_iou(masks, seq / "masks")
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
            if row["error"]:
                print(f"  ({row['error'][:160]})", file=sys.stderr, flush=True)
    md = table(rows)
    summary = summarise(rows)
    print(md + "\n".join(summary))
    if args.out is not None:
        _write_doc(args, data, seqs, md, summary, notes, rows)
    return 0


def _write_doc(args, data, seqs, md, summary, notes, rows) -> None:
    import platform

    import pycolmap

    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if data.resolve().is_relative_to(ROOT):  # the command as run from the repository
        data = data.resolve().relative_to(ROOT)
    text = [
        "# Reconstruction benchmark",
        "",
        "Does segmentation make structure from motion work on a turntable? Rendered sequences "
        "with ground-truth cameras (`python -m training.synth.cli`), "
        "reconstructed by `segcore.recon` (pycolmap "
        f"{getattr(pycolmap, '__version__', '?')}, CPU) without masks, with our masks and "
        "with the ground-truth masks. Rotation error: the camera sets are aligned by a "
        "similarity (Umeyama on the camera centres), then each camera's rotation is compared "
        "with the ground truth; the relative error compares every pair of frames and needs "
        "no alignment. Hull IoU: the visual hull (`segcore.recon.carve`, "
        f"{args.voxels} voxels), moved into the ground-truth world by a similarity that "
        "also matches a point on each camera's optical axis (so it is compared where the "
        "cameras look), rendered into every ground-truth camera and compared with the "
        "ground-truth masks; 'own cameras': rendered into the reconstruction's cameras, "
        "no alignment. Mask IoU 'a → b': the masks as given (a; ours: the network's) and as "
        "the reconstruction used them after the still background's plate completed them "
        "(b; `--plate`, `segcore.plate`).",
        "",
        f"Reproduce: `python build.py bench recon --data {data} --only "
        f"{','.join(s.name for s in seqs)} --voxels {args.voxels} --masks {args.masks} "
        f"--quality {args.quality} --mapper {args.mapper} --plate {args.plate}"
        f"{f' --segment-plate {args.segment_plate}' if args.segment_plate != 'auto' else ''}"
        f"{'' if args.focal_prior else ' --no-focal-prior'}`",
        "",
        md,
        *summary,
        "",
        *[f"Note: {n}" for n in notes],
        f"Machine: {platform.machine()}, {platform.system()}, "
        f"{len(rows)} runs, {sum(r['seconds'] for r in rows) / 60:.0f} min in total.",
        "",
    ]
    out.write_text("\n".join(text), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
