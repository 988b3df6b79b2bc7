"""Operators: Segment Sequence (modal in the UI, a plain loop in background mode), Preview
Frame and Cancel.

The modal path keeps Blender responsive: a worker thread iterates the segcore job and puts
each result on a queue; a window-manager timer drains the queue on the main thread, which is
the only thread that touches bpy. Esc (or the Cancel button) asks the job to stop: frames in
flight finish, their atomic writes leave no partial files, and the report is still written.
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

from . import runner
from .properties import read_settings

log = logging.getLogger(__name__)

PREVIEW_IMAGE = "Garment preview"
REDRAW_AREAS = {"VIEW_3D", "IMAGE_EDITOR"}


class _Run:
    """The one segmentation run in progress (module level: one at a time per Blender)."""

    def __init__(self, job):
        self.job = job
        self.total = len(job.frames)
        self.stop = threading.Event()
        self.queue: queue.Queue = queue.Queue()
        self.started = time.monotonic()
        self.thread: threading.Thread | None = None
        self.timer = None
        self.window_manager = None

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self._work, name="garment-seg", daemon=True)
        self.thread.start()

    def _work(self) -> None:  # worker thread: no bpy here
        try:
            outcome = runner.run_job(
                self.job,
                should_stop=self.stop.is_set,
                on_result=lambda res, done, total: self.queue.put(("frame", res, done, total)),
            )
            self.queue.put(("done", outcome))
        except BaseException as exc:  # reported on the main thread
            self.queue.put(("error", exc))


_active: _Run | None = None


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
        return (
            f"Missing or broken dependency ({what}): open Edit › Preferences › Add-ons › "
            "Garment Segmentation and press Install Dependencies"
        )
    try:
        from segcore.errors import SegcoreError
    except ImportError:
        SegcoreError = ()  # noqa: N806
    if SegcoreError and isinstance(exc, SegcoreError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.error("Garment Segmentation: unexpected error", exc_info=exc)
    first = (str(exc).splitlines() or [""])[0]
    return f"Unexpected error: {type(exc).__name__}: {first} (traceback in the system console)"


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


def show_preview(context, pixels, width: int, height: int):
    img = bpy.data.images.get(PREVIEW_IMAGE)
    if img is not None and (tuple(img.size) != (width, height) or img.source != "GENERATED"):
        bpy.data.images.remove(img)
        img = None
    if img is None:
        img = bpy.data.images.new(PREVIEW_IMAGE, width, height, alpha=True)
    img.pixels.foreach_set(pixels)
    img.update()
    space = _image_editor_space(context)
    if space is not None:
        space.image = img
    return img


class GARMENT_SEG_OT_segment_sequence(Operator):
    """Segment every frame of the input folder into masks and RGBA cut-outs (Esc cancels)"""

    bl_idname = "garment_seg.segment_sequence"
    bl_label = "Segment Sequence"
    bl_options = {"REGISTER"}

    _timer = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "garment_seg")

    def _prepare(self, context):
        """A validated job, or None after reporting why not."""
        if is_running():
            self.report({"ERROR"}, "A segmentation run is already active; wait or press Esc")
            return None
        try:
            return runner.create_job(read_settings(context))
        except Exception as exc:
            self.report({"ERROR"}, error_message(exc))
            return None

    def _finish(self, context, outcome) -> set:
        props = context.scene.garment_seg
        props.progress, props.progress_text = 0.0, ""
        for path, why in outcome.failures:
            print(f"error: {path}: {why}", flush=True)
        self.report({outcome.level}, outcome.message)
        try:
            show_sequence(context, outcome.rgba_frames)
        except RuntimeError as exc:  # an unreadable output must not hide the summary
            log.warning("cannot load the RGBA sequence for review: %s", exc)
        return {"CANCELLED"} if outcome.cancelled else {"FINISHED"}

    def execute(self, context):
        """Background mode (and scripts): the same work as a plain loop printing progress."""
        global _active
        job = self._prepare(context)
        if job is None:
            return {"CANCELLED"}
        _active = run = _Run(job)
        print(f"Segmenting {run.total} frames from {job.input} into {job.output}", flush=True)
        try:
            outcome = runner.run_job(
                job,
                should_stop=run.stop.is_set,
                on_result=lambda res, done, total: print(
                    runner.progress_line(res, done, total), flush=True
                ),
            )
        except Exception as exc:
            self.report({"ERROR"}, error_message(exc))
            return {"CANCELLED"}
        finally:
            _active = None
        return self._finish(context, outcome)

    def invoke(self, context, event):
        global _active
        if bpy.app.background or context.window is None:
            return self.execute(context)
        job = self._prepare(context)
        if job is None:
            return {"CANCELLED"}
        run = _Run(job)
        wm = context.window_manager
        run.window_manager = wm
        run.timer = self._timer = wm.event_timer_add(0.2, window=context.window)
        _active = run
        run.start_thread()
        props = context.scene.garment_seg
        props.progress, props.progress_text = 0.0, runner.progress_text(0, run.total, 0.0)
        _set_status(context, f"Segmenting {run.total} frames… (Esc to cancel)")
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        global _active
        run = _active
        if run is None or run.timer is not self._timer:  # stopped by unregister / file load
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            run.stop.set()
            _set_status(context, "Cancelling: finishing the frames in flight…")
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        props = context.scene.garment_seg
        while True:
            try:
                item = run.queue.get_nowait()
            except queue.Empty:
                break
            if item[0] == "frame":
                res, done, total = item[1:]
                print(runner.progress_line(res, done, total), flush=True)
                text = runner.progress_text(done, total, time.monotonic() - run.started)
                props.progress, props.progress_text = done / max(total, 1), text
                if not run.stop.is_set():
                    _set_status(context, f"Segmenting: {text} (Esc to cancel)")
                _redraw(context)
                continue
            # "done" or "error": the worker thread has ended
            _active = None
            context.window_manager.event_timer_remove(run.timer)
            _set_status(context, None)
            _redraw(context)
            if item[0] == "error":
                props.progress, props.progress_text = 0.0, ""
                self.report({"ERROR"}, error_message(item[1]))
                return {"CANCELLED"}
            return self._finish(context, item[1])
        return {"PASS_THROUGH"}


class GARMENT_SEG_OT_cancel(Operator):
    """Stop the running segmentation after the frames in flight (finished frames are kept)"""

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


class GARMENT_SEG_OT_preview_frame(Operator):
    """Segment one frame and show it with the mask edge drawn (image: Garment preview)"""

    bl_idname = "garment_seg.preview_frame"
    bl_label = "Preview Frame"
    bl_options = {"REGISTER"}

    index: IntProperty(
        name="Frame", description="Index of the frame in name order (0 = first)", default=0, min=0
    )

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "garment_seg")

    def execute(self, context):
        try:
            settings = read_settings(context)
            shown, path = runner.preview_frame(settings, self.index)
            pixels = runner.blender_pixels(shown)
        except Exception as exc:
            self.report({"ERROR"}, error_message(exc))
            return {"CANCELLED"}
        height, width = shown.shape[:2]
        show_preview(context, pixels, width, height)
        self.report({"INFO"}, f'Preview of {path.name} (frame {self.index}) in "{PREVIEW_IMAGE}"')
        return {"FINISHED"}


classes = (
    GARMENT_SEG_OT_segment_sequence,
    GARMENT_SEG_OT_cancel,
    GARMENT_SEG_OT_preview_frame,
)
