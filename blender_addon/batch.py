"""Segment a frame folder headless, with the add-on's own runner (the button's code path).

    blender -b -P blender_addon/batch.py -- --input DIR --output DIR [--model PATH]
        [--size N] [--threshold T] [--refine | --no-refine] [--flip | --no-flip]
        [--formats rgba,mask] [--keep garment|garment,figure|garment,figure,support]
        [--skip-existing | --overwrite] [--workers N] [--temporal] [--plate auto|on|off]
        [--reconstruct [--workspace DIR] [--voxels N] [--no-hull] [--save FILE.blend]]

``--reconstruct``: after segmenting, run SfM + visual hull on the input frames and the
written masks (into ``--workspace``, default ``OUTPUT/reconstruction``), import cameras,
points and garment mesh into the scene (the Reconstruct button's code path), and with
``--save`` save the scene as a .blend file.

Also runs under plain Python with the bpy wheel (``python blender_addon/batch.py -- ...``).
Prints one progress line per frame; exits 0 when every frame was written, 1 with one
``error: <file>: <reason>`` line per failed frame, 2 for a usage or setup error (bad folder,
model, missing dependency) and 130 when interrupted (SIGINT/SIGTERM: frames in flight
finish, the report is written, rerun with --skip-existing to finish).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from pathlib import Path


def _import_runner():
    """The add-on's runner, whether this file runs from a checkout or an installed add-on."""
    here = Path(__file__).resolve().parent
    if __package__:
        return importlib.import_module(f"{__package__}.runner")
    if str(here.parent) not in sys.path:
        sys.path.insert(0, str(here.parent))  # makes the add-on's folder importable by name
    return importlib.import_module(f"{here.name}.runner")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blender -b -P batch.py --",
        description="Segment every frame of a folder into masks and RGBA cut-outs.",
    )
    p.add_argument("--input", required=True, metavar="DIR", help="folder of frames")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--model", metavar="PATH", help="model card (.json) or .onnx (default: bundled)")
    p.add_argument("--size", type=int, default=0, metavar="N", help="network input long side")
    p.add_argument("--threshold", type=float, default=0.0, metavar="T", help="in (0, 1)")
    p.add_argument("--refine", dest="refine", action="store_true", default=None)
    p.add_argument("--no-refine", dest="refine", action="store_false")
    p.add_argument("--flip", dest="flip", action="store_true", default=None)
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument(
        "--formats", default="rgba,mask", metavar="LIST", help="comma-separated output formats"
    )
    p.add_argument(
        "--keep",
        metavar="LIST",
        help="classes a multi-class model keeps: garment,figure (default), garment, or "
        "garment,figure,support",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--skip-existing", action="store_true", help="resume: keep finished frames")
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="frames at once")
    p.add_argument(
        "--temporal", action="store_true", help="smooth masks along the sequence (anti-flicker)"
    )
    p.add_argument(
        "--plate",
        choices=("auto", "on", "off"),
        default="auto",
        help="complete the masks from a turntable's still background (default: auto)",
    )
    r = p.add_argument_group("reconstruction")
    r.add_argument(
        "--reconstruct",
        action="store_true",
        help="then reconstruct cameras, points and garment mesh and import them",
    )
    r.add_argument("--workspace", metavar="DIR", help="default: OUTPUT/reconstruction")
    r.add_argument("--voxels", type=int, default=224, metavar="N", help="visual hull grid")
    r.add_argument("--no-hull", dest="hull", action="store_false", help="no garment mesh")
    r.add_argument("--matcher", default="auto", choices=("auto", "exhaustive", "sequential"))
    r.add_argument(
        "--mapper", default="auto", choices=("auto", "incremental", "global", "turntable")
    )
    r.add_argument("--quality", default="high", choices=("high", "fast"), help="features")
    r.add_argument("--save", metavar="FILE.blend", help="save the scene after the import")
    return p


def script_args(argv: list[str]) -> list[str]:
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(script_args(sys.argv if argv is None else argv))
    formats = [f.strip() for f in args.formats.split(",")]
    if args.reconstruct and "mask" not in formats:
        parser.error("--reconstruct needs the mask format (add mask to --formats)")
    if args.save and not args.reconstruct:
        parser.error("--save needs --reconstruct")
    try:
        try:
            runner = _import_runner()
        except ImportError as exc:  # e.g. plain Python without the bpy wheel
            print(f"error: cannot load the add-on ({exc}); run it with Blender", file=sys.stderr)
            return 2
        _add_blender_dependency_path(runner)
        settings = runner.Settings(
            input_dir=args.input,
            output_dir=args.output,
            model=args.model,
            size=args.size,
            threshold=args.threshold,
            refine=args.refine,
            flip=args.flip,
            formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
            skip_existing=args.skip_existing,
            overwrite=args.overwrite,
            workers=args.workers,
            temporal=args.temporal,
            plate=args.plate,
            keep=args.keep,
        )
        try:
            job = runner.create_job(settings)
        except ImportError as exc:
            print(
                f"error: missing dependency ({exc.name or exc}); install opencv-python-headless "
                "and scipy into Blender's Python, or use the add-on's Install Dependencies",
                file=sys.stderr,
            )
            return 2
        except Exception as exc:
            from segcore.errors import SegcoreError

            if not isinstance(exc, SegcoreError):
                raise
            print(f"error: {exc}", file=sys.stderr)
            return 2

        stop = {"requested": False}

        def on_signal(signum, frame):
            stop["requested"] = True
            print("stopping after the frames in flight…", file=sys.stderr, flush=True)
            signal.signal(signum, signal.default_int_handler)  # a second one stops hard

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        print(f"Segmenting {len(job.frames)} frames from {job.input} into {job.output}")
        from segcore.plate import STAGES

        def plate_progress(stage: str, done: int, total: int) -> None:
            if done == total:  # the still-background pass after the last frame
                print(f"{STAGES.get(stage, stage)} {done}/{total}", flush=True)

        job.plate_progress = plate_progress
        outcome = runner.run_job(
            job,
            should_stop=lambda: stop["requested"],
            on_result=lambda res, done, total: print(
                runner.progress_line(res, done, total), flush=True
            ),
        )
        for path, why in outcome.failures:
            print(f"error: {path}: {why}", file=sys.stderr)
        print(outcome.message, file=sys.stderr if outcome.failures else sys.stdout, flush=True)
        if outcome.cancelled:
            return 130
        if outcome.failures:
            return 1
        if args.reconstruct:
            return _reconstruct(runner, args, stop)
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _reconstruct(runner, args, stop) -> int:
    """SfM + hull on the input frames and the masks just written, imported into the scene."""
    import bpy

    importer = importlib.import_module(runner.__name__.rpartition(".")[0] + ".importer")
    from segcore.errors import SegcoreError

    out = Path(args.output)
    rgba = out / "rgba"
    settings = importer.ReconSettings(
        frames_dir=args.input,
        masks_dir=str(out / "masks"),
        workspace=args.workspace or str(out / "reconstruction"),
        backgrounds_dir=str(rgba) if rgba.is_dir() else None,
        **{k: getattr(args, k) for k in importer.ReconSettings.KEYS},
    )
    print(f"Reconstructing into {settings.workspace}", flush=True)
    try:
        result, mesh = importer.run_reconstruction(
            settings,
            progress=lambda stage, done, total: print(
                importer.progress_text(stage, done, total), flush=True
            ),
            should_stop=lambda: stop["requested"],
        )
    except SegcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 130 if stop["requested"] else 1
    made = importer.import_reconstruction(bpy.context, result, mesh, settings)
    print(importer.summary_line(result, mesh, made, settings), flush=True)
    if args.save:
        path = str(Path(args.save).resolve())
        bpy.ops.wm.save_as_mainfile(filepath=path)
        print(f"Saved {path}", flush=True)
    return 0


def _add_blender_dependency_path(runner) -> None:
    """Under Blender, also find what the add-on's Install Dependencies put in place."""
    try:
        import bpy  # noqa: F401

        prefs = importlib.import_module(runner.__name__.rpartition(".")[0] + ".preferences")
        prefs.add_dependency_path()
    except Exception:  # plain Python without bpy, or an unusual install: not needed then
        pass


if __name__ == "__main__":
    sys.exit(main())
