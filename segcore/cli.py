"""``segcore`` command line: ``segment`` a folder of frames, ``eval`` masks against labels,
``reconstruct`` cameras, points and a garment mesh from frames + masks."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from . import __version__
from .card import DEFAULT_MODEL
from .errors import OutputError, SegcoreError
from .formats import WRITERS
from .hull import DEFAULT_VOXELS
from .plate import MODES as PLATE_MODES
from .progress import Progress

EPILOG = """examples:
  segcore segment shoot/ -o out/              masks + RGBA cut-outs with the bundled model
  segcore segment shoot/ -o out/ --formats mask,colmap --skip-existing
  segcore segment shoot/ -o out/ --keep garment --formats rgba,mask,labels
                                              garment only (a multi-class model), label maps
  segcore eval out/masks labels/masks         P / R / F1 / IoU / boundary F at full resolution
  segcore eval out/ data/seq_0001/            + IoU and BF@2px per class: both hold labels/
  segcore reconstruct shoot/ out/masks -o work/  COLMAP model, hull.ply, transforms.json
"""


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in WRITERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {', '.join(bad) or '(empty)'}; choose from {', '.join(WRITERS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segcore",
        description="Cut the garment figure out of every frame of a photo sequence, at full "
        "resolution, ready for photogrammetry.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"segcore {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser(
        "segment",
        help="segment a folder of frames (or one image)",
        description="Segment every frame of INPUT. Writes OUT/masks/<stem>.png (255 = subject), "
        "OUT/rgba/<stem>.png (the frame with the mask as alpha) and OUT/report.json. "
        "Defaults come from the model card. A multi-class model (its card lists classes) "
        "keeps the classes of --keep and can write OUT/labels/<stem>.png (--formats ...,labels: "
        "the class index per pixel, a palette PNG). Exit 0 when every frame was written.",
    )
    s.add_argument("input", metavar="INPUT", help="folder of frames (natural order) or an image")
    s.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="also segment the frames in INPUT's subfolders (ordered by path; outputs keep "
        "flat names, so two frames with one name stem are refused)",
    )
    s.add_argument("-o", "--output", metavar="OUT", required=True, help="output folder")
    s.add_argument(
        "--model",
        metavar="PATH",
        default=None,
        help=f"model card (.json) or .onnx file, or a bundled name (default: {DEFAULT_MODEL})",
    )
    s.add_argument(
        "--size",
        type=int,
        metavar="N",
        help="network input long side, pixels (default: the model card's)",
    )
    s.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="subject probability threshold in (0, 1) (default: the card's)",
    )
    s.add_argument(
        "--refine",
        dest="refine",
        action="store_true",
        default=None,
        help="refine edges with the full-resolution photo (default: the card's)",
    )
    s.add_argument(
        "--no-refine", dest="refine", action="store_false", help="plain spline-upsampled mask edges"
    )
    s.add_argument(
        "--flip",
        dest="flip",
        action="store_true",
        default=None,
        help="also run the network on the mirrored frame and average (default: the card's)",
    )
    s.add_argument(
        "--no-flip",
        dest="flip",
        action="store_false",
        help="one inference a frame: faster, slightly less accurate",
    )
    s.add_argument(
        "--edges",
        choices=("learned", "guided"),
        default=None,
        help="how refined edges are drawn: the model's learned edge refiner, or the guided "
        "filter (default: learned when the model card has a refiner)",
    )
    s.add_argument(
        "--keep",
        metavar="LIST",
        default=None,
        help="classes a multi-class model keeps, comma-separated: garment,figure (default: the "
        "garment figure; support, the stand and its base, is background), garment (the "
        "garment alone) or garment,figure,support; every output follows it. A binary model "
        "(no classes in its card) keeps the garment figure",
    )
    s.add_argument(
        "--formats",
        type=_formats,
        default=("rgba", "mask"),
        metavar="LIST",
        help=f"comma-separated outputs: {','.join(WRITERS)} (default: rgba,mask)",
    )
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep frames whose outputs already exist (resume an interrupted run)",
    )
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument(
        "--workers", type=int, default=2, metavar="N", help="frames processed at once (default: 2)"
    )
    s.add_argument(
        "--temporal",
        action="store_true",
        help="the frames are a sequence (turntable, camera ring): smooth the masks from frame "
        "to frame along the optical flow, against flicker (frames in name order)",
    )
    _plate_option(s, "after the last frame, complete the masks")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress, errors only")

    e = sub.add_parser(
        "eval",
        help="score predicted masks against ground-truth masks",
        description="Compare PRED_DIR's masks with GT_DIR's (matched by file stem; a folder "
        "with a masks/ subfolder means that subfolder). Prints precision, recall, F1, IoU "
        "and boundary F at 1, 2 and 4 px, per frame and pooled, at full resolution. Label "
        "maps (class index per pixel) are scored per class too, IoU and BF@2px for garment, "
        "figure and support: when PRED_DIR and GT_DIR both hold a labels/ subfolder, or with "
        "--labels.",
    )
    e.add_argument("pred", metavar="PRED_DIR")
    e.add_argument("gt", metavar="GT_DIR")
    e.add_argument(
        "--labels",
        nargs=2,
        metavar=("PRED_LABELS", "GT_LABELS"),
        help="score these label-map folders per class (default: PRED_DIR/labels and "
        "GT_DIR/labels when both exist)",
    )
    e.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    e.add_argument("--markdown", action="store_true", help="print a markdown table")
    e.add_argument("-q", "--quiet", action="store_true", help="print the pooled line only")

    r = sub.add_parser(
        "reconstruct",
        help="structure from motion (pycolmap) and a visual-hull garment mesh",
        description="Register the frames of FRAMES_DIR with pycolmap, features only where "
        "MASKS_DIR's masks are non-zero (segcore's masks/<stem>.png or COLMAP's "
        "<name>.png; a segmentation output folder means its masks/), and carve the "
        "garment's mesh from the silhouettes. Writes WORKSPACE/sparse/0 (COLMAP binary), "
        "hull.ply, transforms.json (nerfstudio) and recon.json. Needs pycolmap and "
        "scikit-image (pip install segcore[recon]).",
    )
    r.add_argument("frames", metavar="FRAMES_DIR", help="folder of frames (natural order)")
    r.add_argument(
        "masks",
        metavar="MASKS_DIR",
        nargs="?",
        help="masks (255 = garment); without it SfM sees the whole frame and no hull is made",
    )
    r.add_argument("-o", "--output", metavar="WORKSPACE", required=True, help="output folder")
    r.add_argument(
        "--matcher",
        choices=("auto", "exhaustive", "sequential"),
        default="auto",
        help="feature matching: exhaustive up to 60 frames, sequential beyond (default: auto)",
    )
    r.add_argument(
        "--mapper",
        choices=("auto", "incremental", "global", "turntable"),
        default="auto",
        help="incremental (COLMAP) or global (GLOMAP) mapping, or turntable: frames in capture "
        "order, one axis, the same step between frames, calibrated from the masks' silhouettes "
        "and feature tracks; auto: turntable when the masked frames show a still background, "
        "else incremental (default: auto)",
    )
    r.add_argument(
        "--quality",
        choices=("high", "fast"),
        default="high",
        help="high: DSP-SIFT with affine shapes and guided matching, for smooth fabric; "
        "fast: plain SIFT (default: high)",
    )
    r.add_argument(
        "--hull",
        dest="hull",
        action="store_true",
        default=True,
        help="carve the garment mesh from the masks (default)",
    )
    r.add_argument("--no-hull", dest="hull", action="store_false", help="cameras and points only")
    r.add_argument(
        "--focal",
        type=float,
        metavar="PX",
        help="known focal length in pixels, for frames without EXIF (rendered or exported); "
        "default: EXIF, else estimated",
    )
    _plate_option(r, "complete the masks (in the workspace)")
    r.add_argument(
        "--voxels",
        type=int,
        default=DEFAULT_VOXELS,
        metavar="N",
        help=f"hull grid, long side (default: {DEFAULT_VOXELS})",
    )
    r.add_argument("-q", "--quiet", action="store_true", help="no progress, errors only")
    return p


# hull-to-mask IoU (hull_check.png) under which `reconstruct` warns: on the benchmark's
# turntables 0.92-0.98 with the model's masks and right cameras, 0.90 on a failed solve;
# thin parts' mask errors weigh as much as the cameras, so only a gross misfit warns
POOR_FIT = 0.85


def _plate_option(parser, what: str) -> None:
    parser.add_argument(
        "--plate",
        choices=PLATE_MODES,
        default="auto",
        help=f"{what} from a turntable's still background: thin turning parts the network "
        "missed (a stand's legs) added, leaks onto the backdrop removed; auto: only when the "
        "frames show a still background (default: auto)",
    )


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _report_warning(job) -> str | None:
    """Write ``report.json``; the warning to print when it could not be written."""
    return None if job.write_report() is not None else f"warning: {job.report_error}"


def cmd_segment(args) -> int:
    from .infer import parse_keep
    from .pipeline import SegmentOptions, SequenceJob

    opts = SegmentOptions(
        model=args.model,
        size=args.size,
        threshold=args.threshold,
        refine=args.refine,
        flip=args.flip,
        edges=args.edges,
        formats=args.formats,
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
        workers=args.workers,
        temporal=args.temporal,
        plate=args.plate,
        keep=parse_keep(args.keep),
        recursive=args.recursive,
    )
    job = SequenceJob(args.input, args.output, opts)
    for note in [] if args.quiet else job.notes:  # files left out: named, and said why
        print(f"warning: {args.input}: {note}", file=sys.stderr)
    bar = Progress(len(job.frames), "Segmenting", enabled=not args.quiet)
    plate_bars = _StageBar(not args.quiet)

    def plate_progress(stage: str, done: int, total: int) -> None:
        if plate_bars.stage is None:
            bar.close()  # the frames are done when the still-background pass starts
        plate_bars(stage, done, total)

    job.plate_progress = plate_progress
    signal.signal(signal.SIGTERM, _raise_interrupt)
    results = job.run()
    try:
        for r in results:
            if r.status == "failed":
                bar.write(f"error: {r.path}: {r.error}")
            elif r.warnings and not args.quiet:
                bar.write(f"warning: {r.path}: {'; '.join(r.warnings)}")
            bar.update(note=f"{r.path.rsplit('/', 1)[-1]}")
    except KeyboardInterrupt:
        results.close()  # frames in flight finish their writes and are counted
        (bar if plate_bars.stage is None else plate_bars).close()
        warning = _report_warning(job)
        s = job.summary()
        plate = job.plate or {}
        masks = f", {plate['frames_completed']} masks completed" if plate.get("stopped") else ""
        print(
            f"interrupted: {s['ok']} frames written{masks}, {s['not_run']} not run; "
            "rerun with --skip-existing to finish",
            file=sys.stderr,
        )
        if warning:
            print(warning, file=sys.stderr)
        return 130
    (bar if plate_bars.stage is None else plate_bars).close()
    warning = _report_warning(job)
    s = job.summary()
    if job.fatal:
        print(
            f"error: {job.fatal} ({s['ok']} frames written, {s['not_run']} not run)",
            file=sys.stderr,
        )
    if warning:
        print(warning, file=sys.stderr)
    if job.fatal:
        return 1
    if not args.quiet and job.plate:
        print(
            f"still background: {job.plate['frames_changed']} masks completed from its plate",
            file=sys.stderr,
        )
    if not args.quiet:
        print(
            f"{s['ok']} written, {s['skipped']} skipped, {s['failed']} failed "
            f"in {s['seconds']:.1f} s -> {job.output}",
            file=sys.stderr,
        )
    return 1 if s["failed"] else 0


def _check_file_target(path: str, option: str) -> None:
    """:class:`OutputError` unless ``path`` can be a new or replaced file (its folder exists
    and it is not a folder itself)."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: is a folder; {option} needs a file name, e.g. {p / 'scores.json'}")
    if not p.parent.is_dir():
        raise OutputError(
            f"{p.parent}: no such folder for {option} {p}; create it or choose another path"
        )


def cmd_eval(args) -> int:
    from .evaluate import (
        evaluate_folders,
        evaluate_label_folders,
        format_class_table,
        format_table,
        has_labels,
    )

    if args.json:
        _check_file_target(args.json, "--json")  # before the scoring, not after
    notes: list[str] = []
    rows, pooled, missing = evaluate_folders(args.pred, args.gt, notes)
    labels = args.labels
    if labels is None and has_labels(args.pred) and has_labels(args.gt):
        labels = (args.pred, args.gt)
    classes = evaluate_label_folders(*labels) if labels else None
    if args.quiet:
        print(" ".join(f"{k}={v:.4f}" for k, v in pooled.items()))
        for name, s in (classes[1] if classes else {}).items():
            print(f"{name}: iou={s['iou']:.4f} bf2={s['bf2']:.4f}")
    else:
        print(format_table(rows, pooled, markdown=args.markdown))
        if classes:
            print(f"\nper class (label maps, pooled over {len(classes[0])} frames):")
            print(format_class_table(classes[1], markdown=args.markdown))
    for note in notes:  # masks read in an odd way (values 0 and 1, nothing above half)
        print(f"warning: {note}", file=sys.stderr)
    for what, gone in (("masks", missing), ("label maps", classes[2] if classes else [])):
        if gone:
            print(
                f"warning: {len(gone)} ground-truth {what} have no prediction (first: {gone[0]})",
                file=sys.stderr,
            )
    if args.json:
        from .io import atomic_write_bytes

        data = {"frames": rows, "pooled": pooled, "missing": missing, "warnings": notes}
        if classes:
            data["classes"] = dict(zip(("frames", "pooled", "missing"), classes))
        try:
            atomic_write_bytes(args.json, json.dumps(data, indent=2).encode())
        except OSError as exc:
            raise OutputError(f"{args.json}: cannot write --json ({exc.strerror or exc})") from None
    return 1 if missing or (classes and classes[2]) else 0


class _StageBar:
    """One progress bar per reconstruction stage (features, matching, mapping, or the
    turntable solver's stages; the hull)."""

    def __init__(self, enabled: bool):
        self.enabled, self.stage, self.bar = enabled, None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from .reconstruct import STAGE_LABELS

        if stage not in STAGE_LABELS or stage == "prepare":
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = Progress(total, STAGE_LABELS[stage], enabled=self.enabled)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def cmd_reconstruct(args) -> int:
    from pathlib import Path

    from .reconstruct import run_reconstruction

    bars = _StageBar(not args.quiet)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result, mesh = run_reconstruction(
            args.frames,
            args.masks,
            args.output,
            matcher=args.matcher,
            mapper=args.mapper,
            hull=args.hull,
            voxels=args.voxels,
            progress=bars,
            quality=args.quality,
            focal_px=args.focal,
            plate=args.plate,
        )
    finally:
        bars.close()
    if not args.quiet:
        if args.hull and mesh is None:
            print(
                "note: no MASKS_DIR, so no visual hull (it is carved from the masks)",
                file=sys.stderr,
            )
        check = (mesh.info or {}).get("check") if mesh is not None else None
        if check and check["mean_iou"] < POOR_FIT:
            print(
                f"warning: the garment mesh fits the masks poorly (IoU {check['mean_iou']:.2f}); "
                f"look at {Path(args.output) / check['image']}: a mask that misses or adds a "
                "part, or cameras that are off",
                file=sys.stderr,
            )
        opts = result.options or {}
        if opts.get("mapper_asked") == "auto":
            why = (
                "the background stands still: a turntable"
                if opts["mapper"] == "turntable"
                else "no still background, or no masks"
            )
            print(f"mapper: {opts['mapper']} ({why})", file=sys.stderr)
        seconds = sum(v for k, v in result.timings.items() if k != "total")  # + the hull
        print(
            f"{result.summary_line(mesh)}, {seconds:.1f} s -> {Path(args.output)}", file=sys.stderr
        )
    return 0


COMMANDS = {"segment": cmd_segment, "eval": cmd_eval, "reconstruct": cmd_reconstruct}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except SegcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
