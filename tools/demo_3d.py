"""``python build.py demo --3d``: segment the bundled turntable, reconstruct it, judge it.

Runs what a user runs on ``examples/garment_turntable`` (24 rendered frames; the focal
length is in their EXIF):

    segcore segment examples/garment_turntable/images -o out/demo3d/segment --overwrite
    segcore reconstruct examples/garment_turntable/images out/demo3d/segment/masks \\
        -o out/demo3d/reconstruction

then compares the result with the renderer's truth (the example's ``cameras.json`` and
``masks/``): frames registered, each camera's rotation error after a similarity alignment
(median and max, degrees; ``tools/bench_recon.py``), and the mesh's fit: its silhouettes
through the solved cameras against the masks it was carved from (``hull_check.png``) and
against the renderer's masks. Pictures: ``segment/contact_sheet.png`` (the masks) and
``reconstruction/hull_check.png`` (the mesh's outline over the frames, the cameras).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "garment_turntable"


def parse_args(argv=None) -> argparse.Namespace:
    from segcore.options import DEFAULT_VOXELS, QUALITIES, VOXELS

    p = argparse.ArgumentParser(
        prog="python build.py demo --3d",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--input",
        type=Path,
        default=EXAMPLE,
        help="a turntable folder with images/ (and, to judge against, masks/ and cameras.json) "
        "(default: the bundled turntable)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "out" / "demo3d", help="output folder")
    p.add_argument("--model", default=None, help="segmentation model (default: the bundled one)")
    p.add_argument(
        "--voxels",
        type=int,
        default=DEFAULT_VOXELS,
        help=f"visual hull resolution, {VOXELS[0]} to {VOXELS[1]} (default: {DEFAULT_VOXELS})",
    )
    p.add_argument(
        "--quality",
        choices=QUALITIES,
        default="high",
        help="features for the solver: high (default) or fast",
    )
    args = p.parse_args(argv)
    images = args.input / "images"
    if not images.is_dir():
        p.error(f"{images}: no such folder; give a turntable folder with images/ (--input DIR)")
    return args


def segment_argv(args) -> list[str]:
    argv = ["segment", str(args.input / "images"), "-o", str(args.out / "segment"), "--overwrite"]
    return argv + (["--model", args.model] if args.model else [])


def reconstruct_argv(args) -> list[str]:
    images, masks = args.input / "images", args.out / "segment" / "masks"
    return [
        "reconstruct", str(images), str(masks), "-o", str(args.out / "reconstruction"),
        "--voxels", str(args.voxels), "--quality", args.quality,
    ]  # fmt: skip


def against_truth(seq: Path, ws: Path) -> dict:
    """Registered frames, rotation error and the mesh's fit, against the renderer's truth
    where ``seq`` has it (``cameras.json``, ``masks/``)."""
    from segcore.recon import load_result, read_ply
    from tools.bench_recon import hull_iou_own, pose_errors

    result = load_result(ws)
    summary = json.loads((ws / "recon.json").read_text())["summary"]
    opts = result.options or {}
    # the turntable solver's notes say which focal length it used and where it came from
    notes = [n for n in opts.get("turntable") or [] if n.startswith("focal: ")]
    out = {
        "frames": len(result.frames),
        "registered": len(result.poses),
        "focal": notes[0].removeprefix("focal: ") if notes else None,
        "mapper": opts.get("mapper"),
        "mesh_fit_masks": (summary.get("hull") or {}).get("check", {}).get("mean_iou"),
    }
    cams = seq / "cameras.json"
    if cams.is_file():
        errors = pose_errors(result, json.loads(cams.read_text()))
        out.update(rot_median_deg=errors["rot_median_deg"], rot_max_deg=errors["rot_max_deg"])
    if (seq / "masks").is_dir() and (ws / "hull.ply").is_file():
        out["mesh_fit_truth"] = hull_iou_own(read_ply(ws / "hull.ply"), result, seq / "masks")
    return out


def verdict_lines(v: dict) -> list[str]:
    lines = [f"registered: {v['registered']} of {v['frames']} frames ({v['mapper']} solver)"]
    if v.get("focal"):
        lines.append(f"focal length: {v['focal']}")
    if "rot_median_deg" in v:
        lines.append(
            f"rotation error against the true cameras: median {v['rot_median_deg']:.2f}°, "
            f"max {v['rot_max_deg']:.2f}°"
        )
    if v.get("mesh_fit_masks") is not None:
        fit = f"mesh fit: IoU {v['mesh_fit_masks']:.3f} against the masks it was carved from"
        if v.get("mesh_fit_truth") is not None:
            fit += f", {v['mesh_fit_truth']:.3f} against the renderer's masks"
        lines.append(fit + " (silhouettes through the solved cameras)")
    return lines


def clear_previous_workspace(ws: Path) -> None:
    """The demo's own workspace from an earlier run goes first, so every run starts fresh
    (a folder without reconstruct's manifest is left for reconstruct to refuse)."""
    if (ws / ".reconstruct-outputs.json").is_file():
        shutil.rmtree(ws)


def main(argv=None) -> int:
    args = parse_args(argv)
    from segcore.cli import main as segcore_main

    timings = {}
    for name, step in (("segment", segment_argv(args)), ("reconstruct", reconstruct_argv(args))):
        if name == "reconstruct":
            clear_previous_workspace(args.out / "reconstruction")
        print("$ segcore " + " ".join(step), flush=True)
        t = time.perf_counter()
        code = segcore_main(step)
        timings[name] = time.perf_counter() - t
        if code != 0:
            print(f"error: segcore {name} exited with {code} (see above)", file=sys.stderr)
            return code
    ws = args.out / "reconstruction"
    print()
    for line in verdict_lines(against_truth(args.input, ws)):
        print(line)
    print(f"time: segment {timings['segment']:.0f} s, reconstruct {timings['reconstruct']:.0f} s")
    print(
        f"pictures: {args.out / 'segment' / 'contact_sheet.png'} (masks), "
        f"{ws / 'hull_check.png'} (the mesh's outline over the frames); "
        f"mesh {ws / 'hull.ply'}, cameras {ws / 'sparse' / '0'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
