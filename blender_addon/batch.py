"""Segment a frame folder headless, with the add-on's own runner (the button's code path).

    blender -b -P <add-on folder>/batch.py -- --input DIR --output DIR [--model PATH]
        [--size N] [--threshold T] [--refine | --no-refine] [--flip | --no-flip]
        [--edges learned|guided] [--formats rgba,mask]
        [--keep garment|garment,figure|garment,figure,support]
        [--skip-existing | --overwrite] [--workers N] [--temporal] [--plate auto|on|off]
        [--reconstruct [--workspace DIR] [--matcher M] [--mapper M] [--quality high|fast]
         [--focal PX] [--voxels N] [--no-hull] [--height H] [--set-camera] [--save FILE.blend]]

The segment and reconstruction flags are ``segcore segment``'s and ``segcore reconstruct``'s
(one builder, ``segcore.options``).

The add-on folder of an installed extension is
``<Blender user folder>/extensions/user_default/garment_segmentation``; the add-on's
preferences show the full command.

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


def _addon_package() -> str:
    """The import name of the add-on this file belongs to, loading it if need be.

    An enabled add-on is already imported (an extension as ``bl_ext.<repo>.<id>``): its
    modules are used, so the script runs the very code the buttons run. Otherwise the folder
    is imported as a package under its own name, from its path: ``sys.path`` is not changed.
    """
    if __package__:
        return __package__
    here = Path(__file__).resolve().parent
    for name, mod in list(sys.modules.items()):
        paths = getattr(mod, "__path__", None) or ()
        if any(Path(p).resolve() == here for p in paths if p):
            return name
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        here.name, here / "__init__.py", submodule_search_locations=[str(here)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[here.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[here.name]
        raise
    return here.name


def _import_runner():
    """The add-on's runner, whether this file runs from a checkout or an installed add-on."""
    return importlib.import_module(f"{_addon_package()}.runner")


def _addon_module(runner, name: str):
    """Another module of the add-on the runner belongs to (``importer``, ``preferences``)."""
    return importlib.import_module(runner.__name__.rpartition(".")[0] + "." + name)


def build_parser(options) -> argparse.ArgumentParser:
    """The script's arguments: the segment and reconstruction options are ``segcore
    segment``'s and ``segcore reconstruct``'s (``options``: ``segcore.options``)."""
    p = argparse.ArgumentParser(
        prog="blender -b -P batch.py --",
        description="Segment every frame of a folder into masks and RGBA cut-outs.",
    )
    p.add_argument("--input", required=True, metavar="DIR", help="folder of frames")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    options.add_segment_arguments(p)
    r = p.add_argument_group("reconstruction")
    r.add_argument(
        "--reconstruct",
        action="store_true",
        help="then reconstruct cameras, points and garment mesh and import them",
    )
    r.add_argument("--workspace", metavar="DIR", help="default: OUTPUT/reconstruction")
    options.add_reconstruct_arguments(r)
    r.add_argument(
        "--height",
        type=float,
        default=1.7,
        metavar="H",
        help="the imported garment's height in scene units (0: the solver's scale; default 1.7)",
    )
    r.add_argument(
        "--set-camera",
        action="store_true",
        help="make the first frame's camera the scene camera, with the frames' render size",
    )
    r.add_argument("--save", metavar="FILE.blend", help="save the scene after the import")
    return p


def script_args(argv: list[str]) -> list[str]:
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def main(argv: list[str] | None = None) -> int:
    try:
        runner = _import_runner()
        options = runner.options()
    except ImportError as exc:  # e.g. plain Python without the bpy wheel
        print(f"error: cannot load the add-on ({exc}); run it with Blender", file=sys.stderr)
        return 2
    parser = build_parser(options)
    args = parser.parse_args(script_args(sys.argv if argv is None else argv))
    if args.reconstruct and "mask" not in args.formats:
        parser.error("--reconstruct needs the mask format (add mask to --formats)")
    if args.save and not args.reconstruct:
        parser.error("--save needs --reconstruct")
    try:
        settings = runner.Settings(args.input, args.output, **options.segment_keywords(args))
        try:
            job = runner.create_job(settings)
        except ImportError as exc:
            hint = _addon_module(runner, "preferences").missing_dependency_hint()
            print(f"error: missing dependency ({exc.name or exc}); {hint}", file=sys.stderr)
            return 2
        except Exception as exc:
            if not isinstance(exc, runner.segcore("errors").SegcoreError):
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
        STAGES = runner.segcore("plate").STAGES  # noqa: N806

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

    importer = _addon_module(runner, "importer")
    SegcoreError = runner.segcore("errors").SegcoreError  # noqa: N806

    out = Path(args.output)
    rgba = out / "rgba"
    settings = importer.ReconSettings(
        frames_dir=args.input,
        masks_dir=str(out / "masks"),
        workspace=args.workspace or str(out / "reconstruction"),
        backgrounds_dir=str(rgba) if rgba.is_dir() else None,
        height=args.height,
        set_camera=args.set_camera,
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
    verdict = importer.verdict_report(result, settings)
    if verdict is not None:
        level, line = verdict
        print(f"{'error' if level == 'ERROR' else 'warning'}: {line}", file=sys.stderr)
        return 1 if level == "ERROR" else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
