"""The thin glue between Blender and segcore, shared by the operators and the batch script.

No bpy here: :class:`Settings` is a plain dataclass the operator fills from the scene's
properties and the batch script from its arguments; :func:`create_job` validates it by
building a ``segcore.pipeline.SequenceJob`` (raising ``SegcoreError`` with a one-line
message), and :func:`run_job` iterates it, calls back once per frame, writes the report and
returns an :class:`Outcome` with the user-facing summary. segcore is imported lazily, from
the copy vendored into the zip (``vendor/segcore``, a sub-package) when there is one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR_DIR = HERE / "vendor"


def segcore_name() -> str:
    """The import name of segcore for this add-on, without importing it.

    An extension or legacy zip carries its own copy as the sub-package ``vendor.segcore``
    of the add-on's package (``bl_ext.<repo>.garment_segmentation.vendor.segcore``), so it
    cannot clash with another ``segcore``; a checkout uses the ``segcore`` installed in the
    Python that runs it. ``sys.path`` is never changed.
    """
    if __package__ and (VENDOR_DIR / "segcore" / "__init__.py").is_file():
        return f"{__package__}.vendor.segcore"
    return "segcore"


def segcore(module: str = ""):
    """segcore itself, or its sub-module ``module`` (``segcore("errors").InputError``)."""
    import importlib

    name = segcore_name()
    return importlib.import_module(f"{name}.{module}" if module else name)


def options():
    """``segcore.options``: the names, choices and defaults of segcore's options, loaded from
    its file alone (standard library only), so enabling the add-on imports neither segcore
    nor numpy and OpenCV, which may not be installed yet. The imported module when segcore
    is loaded already."""
    name = f"{segcore_name()}.options"
    if name in sys.modules:
        return sys.modules[name]
    if "options" not in _options:
        import importlib.util

        spec = importlib.util.find_spec(segcore_name())
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"{segcore_name()} is not installed", name=segcore_name())
        path = Path(list(spec.submodule_search_locations)[0]) / "options.py"
        loaded = importlib.util.spec_from_file_location("_garment_seg_options", path)
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)
        _options["options"] = module
    return _options["options"]


_options: dict = {}


def format_names() -> tuple[str, ...]:
    """Names of segcore's output formats (``segcore.options.FORMATS``, the keys of
    ``segcore.formats.WRITERS``)."""
    return tuple(options().FORMATS)


@dataclass
class Settings:
    """What the panel (or the batch script's arguments) asks for."""

    input_dir: str
    output_dir: str
    model: str | None = None  # model card / .onnx path or bundled name; None = bundled default
    size: int = 0  # network input long side; 0 = the model card's
    threshold: float = 0.0  # subject probability threshold; 0 = the model card's
    refine: bool | None = None  # edge refinement; None = the model card's
    flip: bool | None = None  # test-time flip averaging; None = the model card's
    edges: str | None = None  # "learned" or "guided" refined edges; None = the model card's
    formats: tuple[str, ...] = ("rgba", "mask")
    skip_existing: bool = False
    overwrite: bool = False
    workers: int = 2
    temporal: bool = False  # smooth masks along the sequence (segcore.temporal)
    plate: str = "auto"  # complete masks from a still background (segcore.plate)
    # classes a multi-class model keeps, comma-separated (KEEP_PRESETS); None = the default
    keep: str | None = None

    def options(self):
        return segcore("pipeline").SegmentOptions(
            model=self.model or None,
            size=self.size or None,
            threshold=self.threshold or None,
            refine=self.refine,
            flip=self.flip,
            edges=self.edges,
            formats=tuple(self.formats),
            skip_existing=self.skip_existing,
            overwrite=self.overwrite,
            workers=max(1, int(self.workers)),
            temporal=bool(self.temporal),
            plate=self.plate,
            keep=tuple(self.keep.split(",")) if self.keep else None,
        )


#: the panel's "Keep" choice -> segcore's --keep (classes of a multi-class model)
KEEP_PRESETS = {
    "GARMENT_FIGURE": "garment,figure",
    "GARMENT": "garment",
    "ALL": "garment,figure,support",
}
_classes_cache: dict = {}


def model_classes(model: str | None) -> tuple[str, ...] | None:
    """The classes the model card of ``model`` lists (None: a binary model, or a card that
    cannot be read, whose error the run reports). Cached by the card's path and mtime: the
    panel asks on every redraw."""
    try:
        card = segcore("card")
        path = card.resolve_model_path(model)
        key = (str(path), path.stat().st_mtime_ns)
        if key not in _classes_cache:
            _classes_cache.clear()
            _classes_cache[key] = card.load_card(path).classes
        return _classes_cache[key]
    except Exception:  # no segcore yet, no card, a bad card: nothing to choose from
        return None


@dataclass
class Outcome:
    """How a run ended, ready to show: ``message`` is one line, ``level`` INFO or WARNING."""

    summary: dict
    message: str
    level: str
    cancelled: bool
    failures: list[tuple[str, str]] = field(default_factory=list)  # (frame path, reason)
    report_path: Path | None = None
    rgba_frames: list[str] = field(default_factory=list)  # RGBA outputs, in frame order
    # frames whose masks look unreliable (segcore.confidence): (frame path, reasons)
    suspect: list[tuple[str, str]] = field(default_factory=list)


def import_segcore():
    """``segcore.pipeline``; raises ImportError naming the missing dependency."""
    return segcore("pipeline")


def create_job(settings: Settings):
    """A validated ``SequenceJob`` (raises ``SegcoreError`` with a one-line message)."""
    pipeline = import_segcore()
    errors = segcore("errors")
    if not settings.input_dir.strip():
        raise errors.InputError("no input folder set; choose the folder that holds the frames")
    if not settings.output_dir.strip():
        raise errors.OutputError("no output folder set; choose where the masks should go")
    return pipeline.SequenceJob(settings.input_dir, settings.output_dir, settings.options())


def run_job(
    job,
    should_stop: Callable[[], bool] | None = None,
    on_result: Callable[[object, int, int], None] | None = None,
) -> Outcome:
    """Segment every frame of ``job``; ``on_result(result, done, total)`` after each one.

    ``should_stop`` is polled after each frame: frames in flight then finish (their writes
    are atomic) and no more start. The report is written however the run ends.
    """
    total = len(job.frames)
    done = 0
    try:
        for res in job.run(should_stop=should_stop):
            done += 1
            if on_result is not None:
                on_result(res, done, total)
    finally:
        report = job.write_report()
    return _outcome(job, report)


def _outcome(job, report: Path) -> Outcome:
    s = job.summary()
    failures = [(r.path, r.error or "unknown error") for r in job.failures()]
    rgba: list[str] = []
    if "rgba" in job.options.formats:
        w = job.writers[list(job.options.formats).index("rgba")]
        for r in sorted(job.results, key=lambda r: r.index):
            if r.status in ("ok", "skipped"):
                rgba.append(str(job.output / w.folder / w.filename(Path(r.path))))
    written = s["ok"] + s["skipped"]
    if job.interrupted:
        msg = (
            f"Cancelled: {s['ok']} of {s['frames']} frames written"
            + (f" ({s['skipped']} already there)" if s["skipped"] else "")
            + "; run again with Skip existing to finish"
        )
        level = "WARNING" if failures else "INFO"
    elif failures:
        names = ", ".join(f"{Path(p).name} ({why})" for p, why in failures[:3])
        more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
        msg = (
            f"{written} of {s['frames']} frames written in {s['seconds']:.1f} s; "
            f"{len(failures)} failed: {names}{more}; see {report}"
        )
        level = "WARNING"
    else:
        per = f", {s['seconds_per_frame']:.2f} s per frame" if s["seconds_per_frame"] else ""
        skipped = f" ({s['skipped']} skipped, already done)" if s["skipped"] else ""
        plate = getattr(job, "plate", None)
        still = (
            f"; {plate['frames_changed']} masks completed from the still background"
            if plate
            else ""
        )
        msg = (
            f"Segmented {s['frames']} frames{skipped} in {s['seconds']:.1f} s{per} "
            f"into {job.output}{still}"
        )
        level = "INFO"
    suspect = [
        (r.path, "; ".join(r.reasons))
        for r in sorted(job.results, key=lambda r: r.index)
        if getattr(r, "suspect", False)
    ]
    if suspect and not job.interrupted:  # the run's verdict: which masks to look at first
        msg += f"; {job.verdict()}"
        level = "WARNING"
    return Outcome(s, msg, level, bool(job.interrupted), failures, report, rgba, suspect)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(done: int, total: int, elapsed: float) -> str:
    """``Frame 3 of 8, 0:12 left`` for the panel's progress bar and the status bar."""
    if done <= 0:
        return f"Frame 0 of {total}"
    left = elapsed / done * (total - done)
    return f"Frame {done} of {total}, {format_duration(left)} left"


def progress_line(res, done: int, total: int) -> str:
    """``Segmenting 3/8 frame_0003.jpg 0.21 s`` for consoles and logs."""
    name = os.path.basename(res.path)
    if res.status == "skipped":
        return f"Skipped {done}/{total} {name} (outputs exist)"
    if res.status == "failed":
        return f"Failed {done}/{total} {name}: {res.error}"
    warn = f" (warning: {'; '.join(res.warnings)})" if res.warnings else ""
    return f"Segmenting {done}/{total} {name} {res.seconds:.2f} s{warn}"


#: the preview's long side at most: a large photo is shrunk before it is segmented, so the
#: preview stays quick and its image small (the run itself always works at full size)
PREVIEW_MAX_SIDE = 1600


def preview_path(settings: Settings, index: int) -> Path:
    """Frame ``index`` of the input folder (raises ``InputError`` naming the range)."""
    InputError = segcore("errors").InputError  # noqa: N806

    if not settings.input_dir.strip():
        raise InputError("no input folder set; choose the folder that holds the frames")
    frames = segcore("io").discover_frames(settings.input_dir)
    if not 0 <= index < len(frames):
        raise InputError(
            f"preview frame {index} does not exist: the folder has {len(frames)} frames "
            f"(0 to {len(frames) - 1})"
        )
    return frames[index]


def preview_frame(settings: Settings, index: int, max_side: int = PREVIEW_MAX_SIDE):
    """Segment frame ``index`` of the input folder: ``(overlay_bgr, frame_path)``.

    A frame longer than ``max_side`` is shrunk first. The overlay is the frame with the mask
    edge drawn on it (``segcore.sheet.overlay``).
    """
    import cv2

    pipeline = import_segcore()
    path = preview_path(settings, index)
    seg, post = pipeline.load_segmenter(settings.options())
    bgr = segcore("io").read_image(path)
    scale = max_side / max(bgr.shape[:2])
    if scale < 1:
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    fm = segcore("frame").segment_frame(bgr, seg, post)
    return segcore("sheet").overlay(bgr, fm.mask), path


def blender_pixels(bgr):
    """A BGR uint8 image as Blender's ``Image.pixels``: float RGBA, bottom row first, flat."""
    import cv2
    import numpy as np

    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)[::-1]
    return np.ascontiguousarray(rgba, dtype=np.float32).ravel() / np.float32(255.0)
