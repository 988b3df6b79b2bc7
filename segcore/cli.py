"""``segcore`` command line: ``segment`` a folder of frames, ``eval`` masks against labels,
``reconstruct`` cameras, points and a garment mesh from frames + masks."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from . import __version__
from .cli_eval import cmd_eval
from .cli_recon import cmd_reconstruct
from .errors import RECON_INSTALL, InputError, SegcoreError
from .io import keep_freed_memory
from .options import add_plate_argument, add_reconstruct_arguments, add_segment_arguments
from .progress import Progress, StageBar, raise_interrupt

EPILOG = """examples:
  segcore segment shoot/ -o out/              masks + RGBA cut-outs with the bundled model,
                                              out/contact_sheet.png, suspect frames named
  segcore segment --watch shoot/ -o out/      tethered capture: each frame as it arrives
  segcore segment shoot/ -o out/ --formats mask,colmap --skip-existing
  segcore segment shoot/ -o out/ --keep garment --formats rgba,mask,labels
                                              garment only (a multi-class model), label maps
  segcore adapt shoot/ out/ --corrected out/corrected
                                              re-segment after correcting a mask or two
  segcore eval out/masks labels/masks         P / R / F1 / IoU / boundary F at full resolution
  segcore eval out/ truth/ --sheet worst.png  + a picture of the 12 worst frames
  segcore eval out/ data/seq_0001/            + IoU and BF@2px per class: both hold labels/
  segcore reconstruct shoot/ out/masks -o work/  COLMAP model, hull.ply, transforms.json
  segcore segment-many shoots/ -o out/ --ray  every capture folder of shoots/ on Ray
"""


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
        "the class index per pixel, a palette PNG). Every frame gets a confidence from the "
        "network's own output; frames below 0.5 are named as suspect with the reason, and "
        "OUT/contact_sheet.png shows the run (suspect frames first). Exit 0 when every frame "
        "was written (suspect ones too, unless --strict).",
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
    add_segment_arguments(s)
    s.add_argument(
        "--watch",
        action="store_true",
        help="tethered capture: keep watching the folder INPUT and segment each new frame "
        "once the camera has finished writing it (its size stands still for --settle "
        "seconds); same outputs, report and resume as a run over the folder; ends on Ctrl-C "
        "(with the report and the contact sheet) or after --idle seconds without a new frame",
    )
    s.add_argument(
        "--settle",
        type=float,
        default=1.0,
        metavar="S",
        help="--watch: seconds a file's size must stand still before it is taken (default: 1)",
    )
    s.add_argument(
        "--idle",
        type=float,
        default=None,
        metavar="S",
        help="--watch: end after S seconds without a new frame (default: only Ctrl-C)",
    )
    s.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a frame is suspect (its mask looks unreliable: see report.json and "
        "OUT/contact_sheet.png); without it suspect frames are written, named and exit 0",
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress, errors only")

    a = sub.add_parser(
        "adapt",
        help="re-segment a sequence after correcting one or two of its masks by hand",
        description="Fit a small per-sequence model on the corrected masks in --corrected "
        "(named like their frames, 255 = subject) and the confident pixels of the other "
        "frames, then segment every frame of FRAMES into OUT as `segment` does, with that "
        "model deciding where it disagrees with the network. The corrected frames' outputs "
        "hold the corrected masks; the corrections are never written to. The fitted model "
        "is saved as OUT/adapted.json and reused by a rerun with the same corrections.",
    )
    a.add_argument("input", metavar="FRAMES", help="folder of frames (natural order)")
    a.add_argument("output", metavar="OUT", help="output folder (usually segment's)")
    a.add_argument(
        "--corrected",
        metavar="MASKS",
        required=True,
        help="folder of corrected masks, <frame stem>.png (the add-on saves them in OUT/corrected)",
    )
    a.add_argument("--refit", action="store_true", help="fit again, ignoring OUT/adapted.json")
    add_segment_arguments(a)
    a.add_argument("-q", "--quiet", action="store_true", help="no progress, errors only")
    a.set_defaults(recursive=False, watch=False, strict=False)

    m = sub.add_parser(
        "segment-many",
        help="segment many sequences: a local process pool, or a Ray cluster (--ray)",
        description="Segment every sequence of SOURCE into OUT/<sequence>/, each exactly as "
        "`segcore segment` would (the same files, report.json and contact sheet), plus "
        "OUT/summary.json. SOURCE is a folder of capture folders (each holds its frames, or "
        "an images/ folder of them) or a manifest: a text file of folder paths, one a line, "
        "or a JSON list of paths. Workers load the model once each and take frames as they "
        "come; a worker that dies has its frames run again elsewhere. With --ray every node "
        "needs the same segcore installed and the inputs and OUT at the same paths (a "
        "shared file system); see docs/scale.md.",
    )
    m.add_argument("input", metavar="SOURCE", help="folder of capture folders, or a manifest")
    m.add_argument("-o", "--output", metavar="OUT", required=True, help="output folder")
    m.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help='run on Ray (pip install "segcore[cluster]"): no ADDRESS starts Ray on this '
        "machine (or joins $RAY_ADDRESS); auto joins the cluster this machine belongs to; "
        "ray://HEAD:10001 connects to a remote cluster",
    )
    add_segment_arguments(
        m,
        workers_help="worker processes (Ray: actors), each one frame at a time with its own "
        "model (default: this machine's cores; Ray: the cluster's CPUs)",
    )
    m.add_argument("-q", "--quiet", action="store_true", help="no progress, errors only")
    m.set_defaults(recursive=False)

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
    e.add_argument(
        "--json",
        metavar="FILE",
        help="also write the scores as JSON, and the worst-frames sheet beside it "
        "(FILE's name + _worst.png) unless --sheet says where",
    )
    e.add_argument(
        "--sheet",
        metavar="PATH",
        help="write a PNG of the 12 frames with the lowest IoU: the prediction's edge in "
        "green, the truth's in magenta (over the frames when PRED_DIR is a segment output)",
    )
    e.add_argument("--markdown", action="store_true", help="print a markdown table")
    e.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print the pooled scores only (with --markdown: the pooled row as a table)",
    )

    r = sub.add_parser(
        "reconstruct",
        help="structure from motion (pycolmap) and a visual-hull garment mesh",
        description="Register the frames of FRAMES_DIR with pycolmap, features only where "
        "MASKS_DIR's masks are non-zero (segcore's masks/<stem>.png or COLMAP's "
        "<name>.png; a segmentation output folder means its masks/), and carve the "
        "garment's mesh from the silhouettes. Writes WORKSPACE/sparse/0 (COLMAP binary), "
        "hull.ply, transforms.json (nerfstudio) and recon.json. Needs pycolmap and "
        "scikit-image: " + RECON_INSTALL + ".",
    )
    r.add_argument("frames", metavar="FRAMES_DIR", help="folder of frames (natural order)")
    r.add_argument(
        "masks",
        metavar="MASKS_DIR",
        nargs="?",
        help="masks (255 = garment); without it SfM sees the whole frame and no hull is made",
    )
    r.add_argument("-o", "--output", metavar="WORKSPACE", required=True, help="output folder")
    add_reconstruct_arguments(r)
    add_plate_argument(r, "complete the masks (in the workspace)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress, errors only")
    return p


def _report_warning(job) -> str | None:
    """Write ``report.json``; the warning to print when it could not be written."""
    return None if job.write_report() is not None else f"warning: {job.report_error}"


def cmd_segment(args, make_job=None) -> int:
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
    if args.watch:
        return _watch(args, opts)
    job = SequenceJob(args.input, args.output, opts) if make_job is None else make_job(opts)
    for note in [] if args.quiet else job.notes:  # files left out: named, and said why
        print(f"warning: {args.input}: {note}", file=sys.stderr)
    bar = Progress(len(job.frames), "Segmenting", enabled=not args.quiet)
    plate_bars = StageBar(not args.quiet)

    def plate_progress(stage: str, done: int, total: int) -> None:
        if plate_bars.stage is None:
            bar.close()  # the frames are done when the still-background pass starts
        plate_bars(stage, done, total)

    job.plate_progress = plate_progress
    signal.signal(signal.SIGTERM, raise_interrupt)
    results = job.run()
    said: dict[str, int] = {}  # each warning's text: printed once, then counted
    try:
        for r in results:
            if r.status == "failed":
                bar.write(f"error: {r.path}: {r.error}")
            elif r.warnings and not args.quiet:
                new = [w for w in r.warnings if w not in said]
                for w in r.warnings:
                    said[w] = said.get(w, 0) + 1
                if new:
                    bar.write(f"warning: {r.path}: {'; '.join(new)}")
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
        _print_confidence(job, args.quiet)
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
    for w, n in said.items():
        if n > 1:
            print(
                f"warning: the same for {n - 1} more frame{'s' if n > 2 else ''} "
                f"(each named in report.json): {w}",
                file=sys.stderr,
            )
    if not args.quiet and job.plate:
        print(
            f"still background: {job.plate['frames_changed']} masks completed from its plate",
            file=sys.stderr,
        )
    elif not args.quiet and job.plate_why and job.plate_why.startswith("the background moves"):
        print(f"still background: none: {job.plate_why}", file=sys.stderr)  # it was looked for
    if not args.quiet:
        print(
            f"{s['ok']} written, {s['skipped']} skipped, {s['failed']} failed "
            f"in {s['seconds']:.1f} s -> {job.output}",
            file=sys.stderr,
        )
    suspect = _print_confidence(job, args.quiet, args.strict)
    if s["failed"]:
        return 1
    return 1 if suspect and args.strict else 0


SHOW_SUSPECT = 10  # suspect frames named on the terminal at most (all in report.json)


def _watch(args, opts) -> int:
    """``segment --watch``: frames segmented as they arrive, until Ctrl-C (or --idle)."""
    from pathlib import Path

    from .confidence import assess
    from .watch import WatchJob

    job = WatchJob(args.input, args.output, opts, settle=args.settle, idle=args.idle)
    if not args.quiet:
        end = "on Ctrl-C"
        if args.idle:
            end = f"after {args.idle:g} s without a new frame, or on Ctrl-C"
        print(
            f"watching {job.input} -> {job.output} (ends {end}): a frame is taken once its "
            f"size has stood still for {args.settle:g} s",
            file=sys.stderr,
        )
    bars = StageBar(not args.quiet)
    job.plate_progress = bars
    signal.signal(signal.SIGTERM, raise_interrupt)
    results = job.run()
    try:
        for r in results:
            name = Path(r.path).name
            if r.status == "failed":
                print(f"error: {r.path}: {r.error}", file=sys.stderr)
                continue
            if args.quiet:
                continue
            if r.status == "skipped":
                print(f"{name}: kept (done by an earlier run)", file=sys.stderr)
                continue
            own = assess([{"foreground_share": r.foreground_share, **r.signals}])[0]
            print(f"{name}: written in {r.seconds:.1f} s (confidence {own['confidence']:.2f})",
                  file=sys.stderr)  # fmt: skip
            for w in r.warnings:
                print(f"warning: {r.path}: {w}", file=sys.stderr)
            if own["suspect"]:
                print(f"suspect: {r.path}: {'; '.join(own['reasons'])}", file=sys.stderr)
    except KeyboardInterrupt:
        results.close()  # frames in flight finish their writes and are counted
    finally:
        bars.close()
    warning = _report_warning(job)
    s = job.summary()
    if job.fatal:
        print(f"error: {job.fatal} ({s['ok']} frames written)", file=sys.stderr)
    if warning:
        print(warning, file=sys.stderr)
    if not args.quiet:
        how = {"idle": "no new frame", "stop": "stopped", "interrupt": "Ctrl-C"}.get(job.ended_by)
        print(
            f"watch ended ({how or 'stopped'}): {s['ok']} written, {s['skipped']} skipped, "
            f"{s['failed']} failed in {s['seconds']:.1f} s -> {job.output}",
            file=sys.stderr,
        )
        if job.plate:
            print(
                f"still background: {job.plate['frames_changed']} masks completed from its plate",
                file=sys.stderr,
            )
        elif args.plate != "off" and job.ended_by != "idle":
            print(f"still background: {job.plate_note()}", file=sys.stderr)
    suspect = _print_confidence(job, args.quiet, args.strict)
    if job.fatal or s["failed"]:
        return 1
    if s["not_run"]:
        return 130
    return 1 if suspect and args.strict else 0


def _print_confidence(job, quiet: bool, strict: bool = False) -> int:
    """The suspect frames (each with its reasons), the confidence's spread and the run's
    verdict, on stderr; with ``strict`` the verdict is an error. Returns how many frames
    are suspect."""
    c = job.confidence or job.assess()
    if job.sheet_error and not quiet:
        print(f"warning: {job.sheet_error}", file=sys.stderr)
    frames = [r for r in job.results if r.confidence is not None]
    suspect = sorted((r for r in frames if r.suspect), key=lambda r: (r.confidence, r.index))
    if not quiet:
        for r in suspect[:SHOW_SUSPECT]:
            print(
                f"suspect: {r.path} (confidence {r.confidence:.2f}): {'; '.join(r.reasons)}",
                file=sys.stderr,
            )
        if len(suspect) > SHOW_SUSPECT:
            print(
                f"suspect: and {len(suspect) - SHOW_SUSPECT} more frames, listed in "
                f"{job.output / 'report.json'}",
                file=sys.stderr,
            )
        if frames:
            low = min(frames, key=lambda r: (r.confidence, r.index))
            median = sorted(r.confidence for r in frames)[len(frames) // 2]
            print(
                f"confidence: median {median:.2f}, lowest {low.confidence:.2f} "
                f"({low.path.rsplit('/', 1)[-1]})",
                file=sys.stderr,
            )
    if not quiet or (strict and suspect):
        line = job.verdict()
        if strict and suspect:
            line = f"error: {line} (--strict)"
        elif suspect:
            line = f"warning: {line}"
        print(line, file=sys.stderr)
    return c["suspect"]


def cmd_adapt(args) -> int:
    from .adapt import AdaptJob

    if args.skip_existing:
        raise InputError("adapt rewrites every frame's outputs; leave out --skip-existing")

    def make_job(opts):
        job = AdaptJob(args.input, args.output, args.corrected, opts, refit=args.refit)
        if not args.quiet:
            print(f"adapting to {len(job.corrections)} corrected frames…", file=sys.stderr)
        job.fit()
        if not args.quiet:
            info = job.fit_info
            how = "reused" if info.get("reused") else f"fitted in {info['seconds']:.1f} s"
            print(f"sequence model {how} -> {job.output / 'adapted.json'}", file=sys.stderr)
        return job

    return cmd_segment(args, make_job)


def cmd_segment_many(args) -> int:
    from .batch import BatchJob
    from .infer import parse_keep
    from .options import segment_keywords
    from .pipeline import SegmentOptions

    opts = SegmentOptions(**{**segment_keywords(args), "keep": parse_keep(args.keep), "workers": 1})
    job = BatchJob(args.input, args.output, opts, workers=args.workers, ray=args.ray)
    for note in [] if args.quiet else job.notes:
        print(f"warning: {args.input}: {note}", file=sys.stderr)
    for name, why in job.errors.items():
        print(f"error: {name}: {why}", file=sys.stderr)
    bar = Progress(job.frames, "Segmenting", enabled=not args.quiet)
    signal.signal(signal.SIGTERM, raise_interrupt)
    results = job.run()
    code = 0
    try:
        for name, r in results:
            if r.status == "failed":
                bar.write(f"error: {r.path}: {r.error}")
            bar.update(note=f"{name}/{r.path.rsplit('/', 1)[-1]}")
    except KeyboardInterrupt:
        results.close()  # frames in flight are waited for, reports written
        code = 130
    bar.close()
    path = job.write_summary()
    s = job.summary()
    t = s["totals"]
    for row in s["sequences"]:
        if row.get("report") not in (None, "report.json"):
            print(f"warning: {row['report']}", file=sys.stderr)
    if job.fatal:
        print(f"error: {job.fatal}", file=sys.stderr)
    if code == 130:
        print(
            f"interrupted: {t['ok']} frames written, {t['not_run']} not run; rerun with "
            "--skip-existing to finish",
            file=sys.stderr,
        )
        return code
    if not args.quiet:
        print(
            f"{t['sequences'] - t['sequences_not_started']} of {t['sequences']} sequences: "
            f"{t['ok']} frames written, {t['skipped']} skipped, {t['failed']} failed in "
            f"{s['seconds']:.1f} s ({s['frames_per_second'] or 0:.2f} frames/s, {s['workers']} "
            f"{s['backend']} workers) -> {path}",
            file=sys.stderr,
        )
    return 1 if job.fatal or job.errors or t["failed"] or t["not_run"] else 0


COMMANDS = {
    "segment": cmd_segment,
    "eval": cmd_eval,
    "reconstruct": cmd_reconstruct,
    "adapt": cmd_adapt,
    "segment-many": cmd_segment_many,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    keep_freed_memory()
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
