"""Operators: Segment Sequence, Preview Frame and Reconstruct (modal in the UI, a plain loop
in background mode) and Cancel.

Segment Sequence, Preview Frame and Reconstruct share one pattern (:class:`_WorkerOperator`);
their progress lives on the window manager (``garment_seg_run``), never in the .blend. The
modal path keeps Blender responsive: a worker thread runs the segcore work and puts its
progress on a queue; a window-manager timer drains the queue on the main thread, which is
the only thread that touches bpy (the preview's image and the reconstruction's import into
the scene happen there, at the end).
Esc (or the Cancel button) asks the work to stop: frames in flight finish, their atomic
writes leave no partial files, and the report is still written; a reconstruction stops at
pycolmap's next cancellation check and imports nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time

import bpy
from bpy.props import IntProperty
from bpy.types import Operator

from . import importer, preferences, runner
from .properties import read_recon_settings, read_settings

log = logging.getLogger(__name__)

PREVIEW_IMAGE = "Garment preview"
REDRAW_AREAS = {"VIEW_3D", "IMAGE_EDITOR"}


class _Worker:
    """The one run in progress (module level: one at a time per Blender). :meth:`work` does
    it, sending progress items through :attr:`emit`: onto the queue when it runs in the
    worker thread, or straight to the operator in the foreground."""

    thread_name = "garment-worker"

    def __init__(self):
        self.stop = threading.Event()
        self.queue: queue.Queue = queue.Queue()
        self.emit = self.queue.put
        self.started = time.monotonic()
        self.thread: threading.Thread | None = None
        self.timer = None
        self.window_manager = None

    def work(self):
        raise NotImplementedError

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
        self.thread.start()

    def _work(self) -> None:  # worker thread: no bpy here
        try:
            self.queue.put(("done", self.work()))
        except BaseException as exc:  # reported on the main thread
            self.queue.put(("error", exc))


class _Run(_Worker):
    """A segmentation run: emits ``("frame", result, done, total)``."""

    thread_name = "garment-seg"

    def __init__(self, job):
        super().__init__()
        self.job = job
        self.total = len(job.frames)
        # the still-background pass after the last frame: ("plate", stage, done, total)
        job.plate_progress = lambda stage, done, total: self.emit(("plate", stage, done, total))

    def work(self):
        return runner.run_job(
            self.job,
            should_stop=self.stop.is_set,
            on_result=lambda res, done, total: self.emit(("frame", res, done, total)),
        )


class _ReconRun(_Worker):
    """A reconstruction run: emits ``("progress", stage, done, total)``; returns
    ``(ReconResult, Mesh or None)``."""

    thread_name = "garment-recon"

    def __init__(self, settings: importer.ReconSettings):
        super().__init__()
        self.settings = settings

    def work(self):
        return importer.run_reconstruction(
            self.settings,
            progress=lambda stage, done, total: self.emit(("progress", stage, done, total)),
            should_stop=self.stop.is_set,
        )


class _PreviewRun(_Worker):
    """One frame segmented for the preview (shrunk to ``runner.PREVIEW_MAX_SIDE``); returns
    ``(pixels, width, height)`` ready for ``Image.pixels``: all the work off the main thread."""

    thread_name = "garment-preview"

    def __init__(self, settings, path, index: int):
        super().__init__()
        self.settings, self.path, self.index = settings, path, index

    def work(self):
        shown, _ = runner.preview_frame(self.settings, self.index)
        height, width = shown.shape[:2]
        return runner.blender_pixels(shown), width, height


_active: _Worker | None = None


def is_running() -> bool:
    return _active is not None


def request_cancel() -> bool:
    """Ask the running job to stop after the frames in flight; False if nothing runs."""
    if _active is None:
        return False
    _active.stop.set()
    return True


def stop_active_run() -> None:
    """Stop and wait for the run in progress (unregister, file load): no thread outlives us."""
    global _active
    run, _active = _active, None
    if run is None:
        return
    run.stop.set()
    if run.thread is not None:
        run.thread.join()
    if run.timer is not None and run.window_manager is not None:
        with contextlib.suppress(ReferenceError, ValueError, RuntimeError):
            run.window_manager.event_timer_remove(run.timer)
    _set_status(bpy.context, None)


def error_message(exc: BaseException) -> str:
    """One line for the user; unexpected errors also go to the console with a traceback."""
    if isinstance(exc, ImportError):
        what = exc.name or (str(exc).splitlines() or ["a dependency"])[0]
        return f"Missing or broken dependency ({what}): {preferences.missing_dependency_hint()}"
    try:
        SegcoreError = runner.segcore("errors").SegcoreError  # noqa: N806
    except ImportError:
        SegcoreError = ()  # noqa: N806
    if SegcoreError and isinstance(exc, SegcoreError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.error("Garment Segmentation: unexpected error", exc_info=exc)
    first = (str(exc).splitlines() or [""])[0]
    return f"Unexpected error: {type(exc).__name__}: {first} (traceback in the system console)"


def clear_progress(context) -> None:
    """Empty the progress bar (``window_manager.garment_seg_run``)."""
    run = getattr(context.window_manager, "garment_seg_run", None)
    if run is not None:
        run.progress, run.progress_text = 0.0, ""


def _set_status(context, text: str | None) -> None:
    workspace = getattr(context, "workspace", None)
    if workspace is not None and not bpy.app.background:
        workspace.status_text_set(text)


def _redraw(context) -> None:
    wm = context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type in REDRAW_AREAS:
                area.tag_redraw()


def _image_editor_space(context):
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen else ():
        if area.type == "IMAGE_EDITOR":
            return area.spaces.active
    return None


def show_sequence(context, frames: list[str]):
    """Load the RGBA outputs as an image sequence and show it in an Image Editor, if any."""
    if not frames:
        return None
    img = bpy.data.images.load(frames[0], check_existing=True)
    number = re.search(r"(\d+)\D*$", os.path.splitext(os.path.basename(frames[0]))[0])
    if len(frames) > 1 and number:
        img.source = "SEQUENCE"
    img.reload()
    space = _image_editor_space(context)
    if space is not None:
        space.image = img
        if img.source == "SEQUENCE":
            space.image_user.frame_start = 1
            space.image_user.frame_duration = len(frames)
            space.image_user.frame_offset = int(number.group(1)) - 1
    return img


def show_preview(context, pixels, width: int, height: int, name: str = PREVIEW_IMAGE):
    """Show float RGBA ``pixels`` as the generated image ``name`` in an Image Editor."""
    img = bpy.data.images.get(name)
    if img is not None and (tuple(img.size) != (width, height) or img.source != "GENERATED"):
        bpy.data.images.remove(img)
        img = None
    if img is None:
        img = bpy.data.images.new(name, width, height, alpha=True)
    img.pixels.foreach_set(pixels)
    img.update()
    space = _image_editor_space(context)
    if space is not None:
        space.image = img
    return img


class _WorkerOperator:
    """What Segment Sequence and Reconstruct share: ``execute`` does the work in the
    foreground (background mode, scripts) printing progress; ``invoke`` runs it in a worker
    thread and ``modal`` drains its queue on a timer. Subclasses say how to create the run,
    describe a progress item and finish."""

    cancelling_text = "Cancelling…"

    _timer = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "garment_seg")

    # -- what subclasses provide
    def _create(self, context) -> _Worker:
        """A validated run (raises a user-facing error otherwise)."""
        raise NotImplementedError

    def _title(self, run) -> str:
        """``Segmenting 8 frames from … into …``: the first console line."""
        raise NotImplementedError

    def _describe(self, run, item) -> tuple[str, float, str]:
        """(console line, fraction done, progress text) of a progress item."""
        raise NotImplementedError

    def _finish(self, context, run, outcome) -> set:
        raise NotImplementedError

    # -- the shared flow
    def _prepare(self, context) -> _Worker | None:
        """A validated run, or None after reporting why not."""
        if is_running():
            self.report({"ERROR"}, "A run is already active; wait or press Esc")
            return None
        try:
            return self._create(context)
        except Exception as exc:
            self.report({"ERROR"}, error_message(exc))
            return None

    def _fail(self, context, exc) -> set:
        clear_progress(context)
        if type(exc).__name__ == "CancelledError":  # segcore's: the user asked to stop
            self.report({"WARNING"}, "Cancelled; nothing was imported")
        else:
            self.report({"ERROR"}, error_message(exc))
        return {"CANCELLED"}

    def execute(self, context):
        """Background mode (and scripts): the same work as a plain loop printing progress."""
        global _active
        run = self._prepare(context)
        if run is None:
            return {"CANCELLED"}
        _active = run
        run.emit = lambda item: print(self._describe(run, item)[0], flush=True)
        print(self._title(run), flush=True)
        try:
            outcome = run.work()
        except Exception as exc:
            return self._fail(context, exc)
        finally:
            _active = None
        return self._finish(context, run, outcome)

    def invoke(self, context, event):
        global _active
        if bpy.app.background or context.window is None:
            return self.execute(context)
        run = self._prepare(context)
        if run is None:
            return {"CANCELLED"}
        wm = context.window_manager
        run.window_manager = wm
        run.timer = self._timer = wm.event_timer_add(0.2, window=context.window)
        _active = run
        run.start_thread()
        clear_progress(context)
        _set_status(context, f"{self._title(run)}… (Esc to cancel)")
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        global _active
        run = _active
        if run is None or run.timer is not self._timer:  # stopped by unregister / file load
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            run.stop.set()
            _set_status(context, self.cancelling_text)
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        props = context.window_manager.garment_seg_run
        while True:
            try:
                item = run.queue.get_nowait()
            except queue.Empty:
                break
            if item[0] not in ("done", "error"):
                line, fraction, text = self._describe(run, item)
                print(line, flush=True)
                props.progress, props.progress_text = fraction, text
                if not run.stop.is_set():
                    _set_status(context, f"{text} (Esc to cancel)")
                _redraw(context)
                continue
            # "done" or "error": the worker thread has ended
            _active = None
            context.window_manager.event_timer_remove(run.timer)
            _set_status(context, None)
            _redraw(context)
            if item[0] == "error":
                return self._fail(context, item[1])
            return self._finish(context, run, item[1])
        return {"PASS_THROUGH"}


class GARMENT_SEG_OT_segment_sequence(_WorkerOperator, Operator):
    """Segment every frame of the input folder into masks and RGBA cut-outs (Esc cancels)"""

    bl_idname = "garment_seg.segment_sequence"
    bl_label = "Segment Sequence"
    bl_options = {"REGISTER"}

    cancelling_text = "Cancelling: finishing the frames in flight…"

    def _create(self, context) -> _Run:
        return _Run(runner.create_job(read_settings(context)))

    def _title(self, run) -> str:
        return f"Segmenting {run.total} frames from {run.job.input} into {run.job.output}"

    def _describe(self, run, item):
        if item[0] == "plate":  # after the last frame: the still background's pass
            stage, done, total = item[1:]
            text = importer.progress_text(stage, done, total)
            return text, done / max(total, 1), text
        res, done, total = item[1:]
        text = runner.progress_text(done, total, time.monotonic() - run.started)
        return runner.progress_line(res, done, total), done / max(total, 1), text

    def _finish(self, context, run, outcome) -> set:
        clear_progress(context)
        for path, why in outcome.failures:
            print(f"error: {path}: {why}", flush=True)
        self.report({outcome.level}, outcome.message)
        try:
            show_sequence(context, outcome.rgba_frames)
        except RuntimeError as exc:  # an unreadable output must not hide the summary
            log.warning("cannot load the RGBA sequence for review: %s", exc)
        return {"CANCELLED"} if outcome.cancelled else {"FINISHED"}


class GARMENT_SEG_OT_cancel(Operator):
    """Stop the running segmentation after the frames in flight (finished frames are kept),
    or the running reconstruction"""

    bl_idname = "garment_seg.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        return is_running()

    def execute(self, context):
        request_cancel()
        _set_status(context, "Cancelling: finishing the frames in flight…")
        return {"FINISHED"}


class GARMENT_SEG_OT_preview_frame(_WorkerOperator, Operator):
    """Segment one frame (shrunk to 1600 pixels at most) in the background and show it with
    the mask edge drawn (image: Garment preview)"""

    bl_idname = "garment_seg.preview_frame"
    bl_label = "Preview Frame"
    bl_options = {"REGISTER"}

    cancelling_text = "Cancelling the preview…"

    index: IntProperty(
        name="Frame", description="Index of the frame in name order (0 = first)", default=0, min=0
    )

    def _create(self, context) -> _PreviewRun:
        settings = read_settings(context)
        return _PreviewRun(settings, runner.preview_path(settings, self.index), self.index)

    def _title(self, run) -> str:
        return f"Previewing {run.path.name} (frame {run.index})"

    def _describe(self, run, item):
        return "", 0.0, ""  # one step: nothing to report on the way

    def _finish(self, context, run, outcome) -> set:
        clear_progress(context)
        pixels, width, height = outcome
        show_preview(context, pixels, width, height)
        self.report(
            {"INFO"}, f'Preview of {run.path.name} (frame {run.index}) in "{PREVIEW_IMAGE}"'
        )
        return {"FINISHED"}


class GARMENT_SEG_OT_reconstruct(_WorkerOperator, Operator):
    """Register the frames with pycolmap (features inside the masks on a turntable, over the
    whole frame when the camera moves), carve the garment mesh from the silhouettes and
    import cameras, points and mesh (Esc cancels)"""

    bl_idname = "garment_seg.reconstruct"
    bl_label = "Reconstruct"
    bl_options = {"REGISTER", "UNDO"}

    cancelling_text = "Cancelling the reconstruction…"

    def _create(self, context) -> _ReconRun:
        return _ReconRun(read_recon_settings(context))

    def _title(self, run) -> str:
        return f"Reconstructing {run.settings.frames_dir} into {run.settings.workspace}"

    def _describe(self, run, item):
        stage, done, total = item[1:]
        text = importer.progress_text(stage, done, total)
        return text, done / max(total, 1), text

    def _finish(self, context, run, outcome) -> set:
        """Import the reconstruction (main thread) and report one summary line."""
        result, mesh = outcome
        clear_progress(context)
        try:
            made = importer.import_reconstruction(context, result, mesh, run.settings)
        except Exception as exc:
            self.report({"ERROR"}, error_message(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, importer.summary_line(result, mesh, made, run.settings))
        verdict = importer.verdict_report(result, run.settings)
        if verdict is not None:  # imported all the same, to look at; said plainly
            self.report({verdict[0]}, verdict[1])
        return {"FINISHED"}


classes = (
    GARMENT_SEG_OT_segment_sequence,
    GARMENT_SEG_OT_cancel,
    GARMENT_SEG_OT_preview_frame,
    GARMENT_SEG_OT_reconstruct,
)
