"""``segcore reconstruct``: cameras, points and a garment mesh from frames + masks, with
progress per stage and the verdict said plainly (the command line's part; the work is
:mod:`segcore.recon`, imported when the command runs: it needs pycolmap)."""

from __future__ import annotations

import signal
import sys

from .progress import StageBar, raise_interrupt


def cmd_reconstruct(args) -> int:
    from pathlib import Path

    from .recon import run_reconstruction
    from .recon.run import even_ring

    bars = StageBar(not args.quiet)
    signal.signal(signal.SIGTERM, raise_interrupt)
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
            focal_px=args.focal_px,
            plate=args.plate,
            features=args.features,
        )
    finally:
        bars.close()
    if not args.quiet:
        if args.hull and args.masks is None:
            print(
                "note: no MASKS_DIR, so no visual hull (it is carved from the masks)",
                file=sys.stderr,
            )
        opts = result.options or {}
        if opts.get("mapper_asked") == "auto":
            if even_ring(opts):
                why = opts["ring_circular"]
            elif opts["mapper"] == "turntable":
                why = "the background stands still: a turntable"
            else:
                why = "no still background, or no masks"
            print(f"mapper: {opts['mapper']} ({why})", file=sys.stderr)
        if opts.get("features") and opts["mapper"] != "turntable":
            print(f"features: {opts['features']}", file=sys.stderr)
        seconds = sum(v for k, v in result.timings.items() if k != "total")  # + the hull
        print(
            f"{result.summary_line(mesh)}, {seconds:.1f} s -> {Path(args.output)}", file=sys.stderr
        )
    return _report_verdict(result, Path(args.output), args.quiet)


def _report_verdict(result, workspace, quiet: bool) -> int:
    """Say whether the reconstruction can be trusted (``recon.json``'s ``verdict``); exit 1
    when it failed (printed with ``-q`` too: it is an error)."""
    from .recon.result import HULL_CHECK
    from .recon.verdict import verdict_line

    verdict = result.verdict or {}
    status = verdict.get("status", "ok")
    look = f"; look at {workspace / HULL_CHECK}" if (workspace / HULL_CHECK).is_file() else ""
    if status == "failed":
        print(f"error: reconstruction {verdict_line(verdict)}{look}", file=sys.stderr)
        return 1
    if status == "doubtful" and not quiet:
        print(f"warning: reconstruction {verdict_line(verdict)}{look}", file=sys.stderr)
    return 0
