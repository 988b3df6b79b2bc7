"""Operators: Correct Frame, Save Correction and Adapt to Corrections.

Correct Frame opens frame *Frame* of the input folder in the Image Editor as the image
"Garment correction": the frame with its mask as alpha, so the cut-out shows over the
checkerboard. Paint with the brush blend modes *Add Alpha* (keep) and *Erase Alpha*
(remove), then Save Correction writes the mask to ``OUT/corrected/<frame>.png``. Adapt to
Corrections re-segments the sequence with a model fitted on the saved corrections
(``segcore.adapt``), in the same background run as Segment (progress, Esc cancels).

After a run the box lists the frames whose masks look unreliable (``OUT/report.json``'s
suspect frames, :mod:`review`); Open Suspect Frame opens one the way Correct Frame does.
"""

from __future__ import annotations

import contextlib

import bpy
from bpy.props import StringProperty
from bpy.types import Operator

from . import correction, operators, review
from .properties import read_settings

CORRECTION_IMAGE = "Garment correction"


class _AdaptRun(operators._Run):
    """Fit the sequence's model (emits ``("fit", done, total)``), then segment as _Run."""

    thread_name = "garment-adapt"

    def __init__(self, job):
        super().__init__(job)
        job.fit_progress = lambda stage, done, total: self.emit(("fit", done, total))


SEGMENT = operators.GARMENT_SEG_OT_segment_sequence  # its progress lines and summary


class GARMENT_SEG_OT_adapt_sequence(operators._WorkerOperator, Operator):
    """Fit a model of this sequence on the corrected frames (OUT/corrected) and re-segment
    every frame with it; corrected frames keep their masks (Esc cancels)"""

    bl_idname = "garment_seg.adapt_sequence"
    bl_label = "Adapt to Corrections"
    bl_options = {"REGISTER"}

    cancelling_text = SEGMENT.cancelling_text

    def _create(self, context) -> _AdaptRun:
        return _AdaptRun(correction.create_adapt_job(read_settings(context)))

    def _title(self, run) -> str:
        n = len(run.job.corrections)
        return f"Adapting {run.total} frames of {run.job.input} to {n} corrected frames"

    def _describe(self, run, item):
        if item[0] == "fit":
            done, total = item[1:]
            text = f"Learning from the corrections {done}/{total}"
            return text, done / max(total, 1), text
        return SEGMENT._describe(self, run, item)

    def _finish(self, context, run, outcome) -> set:
        info = run.job.fit_info or {}
        how = "reused" if info.get("reused") else "fitted"
        outcome.message = (
            f"Adapted to {len(run.job.corrections)} corrected frames (model {how}): "
            + outcome.message
        )
        return SEGMENT._finish(self, context, run, outcome)


class GARMENT_SEG_OT_correct_frame(Operator):
    """Open frame Frame with its mask as alpha in the Image Editor ("Garment correction"):
    paint with the brush blend Add Alpha to keep, Erase Alpha to remove, then Save
    Correction"""

    bl_idname = "garment_seg.correct_frame"
    bl_label = "Correct Frame"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "garment_seg")

    def execute(self, context):
        return open_correction(self, context, context.scene.garment_seg.preview_index)


def open_correction(op, context, index: int, why: str = "") -> set:
    """Open frame ``index`` with its mask as alpha as the image "Garment correction" (in an
    Image Editor, if one is open) and report it; ``why``: the frame's suspect reasons."""
    try:
        pixels, width, height, stem = correction.correction_pixels(read_settings(context), index)
    except Exception as exc:
        op.report({"ERROR"}, operators.error_message(exc))
        return {"CANCELLED"}
    img = operators.show_preview(context, pixels, width, height, name=CORRECTION_IMAGE)
    img["garment_stem"] = stem
    space = operators._image_editor_space(context)
    if space is not None and not bpy.app.background:
        with contextlib.suppress(AttributeError, TypeError):
            space.ui_mode = "PAINT"  # Blender's own brushes: Add Alpha, Erase Alpha
    op.report(
        {"INFO"},
        f'Correcting {stem}{f" ({why})" if why else ""} in "{CORRECTION_IMAGE}": paint with '
        "blend Add Alpha (keep) or Erase Alpha (remove), then Save Correction",
    )
    return {"FINISHED"}


class GARMENT_SEG_OT_open_suspect(Operator):
    """Open this suspect frame with its mask as alpha in the Image Editor ("Garment
    correction"), to look at it and correct it"""

    bl_idname = "garment_seg.open_suspect"
    bl_label = "Open Suspect Frame"
    bl_options = {"REGISTER", "INTERNAL"}

    name: StringProperty(name="Frame", description="File name of the frame to open")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "garment_seg")

    def execute(self, context):
        props = context.scene.garment_seg
        try:
            index = review.frame_index(read_settings(context), self.name)
        except Exception as exc:
            self.report({"ERROR"}, operators.error_message(exc))
            return {"CANCELLED"}
        found = review.review(props.output_dir)
        why = next((s.reasons for s in found.suspects if s.name == self.name), "") if found else ""
        props.preview_index = index  # Correct's Frame: Save Correction goes with it
        return open_correction(self, context, index, why)


class GARMENT_SEG_OT_save_correction(Operator):
    """Save the "Garment correction" image's alpha as the frame's corrected mask
    (OUT/corrected/<frame>.png, 255 = subject); no run ever writes to that folder"""

    bl_idname = "garment_seg.save_correction"
    bl_label = "Save Correction"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return bpy.data.images.get(CORRECTION_IMAGE) is not None

    def execute(self, context):
        img = bpy.data.images.get(CORRECTION_IMAGE)
        stem = img.get("garment_stem") if img is not None else None
        if not stem:
            self.report({"ERROR"}, "No frame is being corrected; press Correct Frame first")
            return {"CANCELLED"}
        try:
            import numpy as np

            width, height = img.size
            pixels = np.empty(width * height * 4, np.float32)
            img.pixels.foreach_get(pixels)
            settings = read_settings(context)
            path = correction.save_correction(settings, stem, pixels, width, height)
        except Exception as exc:
            self.report({"ERROR"}, operators.error_message(exc))
            return {"CANCELLED"}
        n = len(correction.saved_corrections(settings))
        self.report({"INFO"}, f"Saved {path} ({n} corrected frames); press Adapt to Corrections")
        return {"FINISHED"}


def draw_correct(layout, context) -> None:
    """The Correct box: correct frame *Frame*, save it, adapt the sequence."""
    props = context.scene.garment_seg
    box = layout.box()
    box.label(text="Correct", icon="BRUSH_DATA")
    row = box.row(align=True)
    row.enabled = not operators.is_running()
    row.operator(GARMENT_SEG_OT_correct_frame.bl_idname, icon="GREASEPENCIL")
    row.operator(GARMENT_SEG_OT_save_correction.bl_idname, icon="FILE_TICK")
    try:
        saved = correction.saved_corrections(read_settings(context))
    except Exception:  # no output folder yet
        saved = []
    _draw_suspects(box, props)
    box.label(text=f"{len(saved)} corrected frames in {props.output_dir or 'OUT'}/corrected")
    sub = box.row()
    sub.enabled = bool(saved) and not operators.is_running()
    sub.operator(GARMENT_SEG_OT_adapt_sequence.bl_idname, icon="FILE_REFRESH")


#: suspect frames listed in the panel at most (the rest: report.json and the contact sheet)
MAX_LISTED = 8


def _draw_suspects(layout, props) -> None:
    """The last run's suspect frames (OUT/report.json), each with a button that opens it."""
    found = review.review(props.output_dir)
    if found is None or not found.suspects:
        return
    col = layout.column(align=True)
    n = len(found.suspects)
    col.label(text=f"{n} of {found.assessed} frames look unreliable:", icon="ERROR")
    for s in found.suspects[:MAX_LISTED]:
        row = col.row(align=True)
        row.enabled = not operators.is_running()
        row.label(text=f"{s.name}: {s.reasons}")
        op = row.operator(GARMENT_SEG_OT_open_suspect.bl_idname, text="", icon="IMAGE_DATA")
        op.name = s.name
    if n > MAX_LISTED:
        col.label(text=f"and {n - MAX_LISTED} more: see contact_sheet.png and report.json")


classes = (
    GARMENT_SEG_OT_adapt_sequence,
    GARMENT_SEG_OT_correct_frame,
    GARMENT_SEG_OT_save_correction,
    GARMENT_SEG_OT_open_suspect,
)
