"""The "Garment" sidebar tab, in the 3D Viewport and (the same panel) in the Image Editor."""

from __future__ import annotations

from bpy.types import Panel

from . import correct, operators, runner
from .properties import FORMAT_NAMES, addon_preferences, selected_formats, selected_model


def _draw_formats(layout, props, context, classes: bool) -> None:
    row = layout.row(heading="Formats")
    row.prop(props, "use_default_formats", text="Preferences")
    if props.use_default_formats:
        prefs = addon_preferences(context)
        names = selected_formats(prefs.formats) if prefs else ("rgba", "mask")
        sub = layout.row()
        sub.alignment = "RIGHT"
        sub.label(text=", ".join(names) or "(none chosen)")
        return
    grid = layout.grid_flow(columns=2, even_columns=True, align=True)
    for name in FORMAT_NAMES:
        cell = grid.row(align=True)
        cell.enabled = classes or name != "labels"  # label maps: multi-class models only
        cell.prop(props.formats, name, toggle=True)


def _draw_reconstruct(layout, props) -> None:
    """SfM + visual hull of the segmented frames, imported as cameras, points and mesh."""
    box = layout.box()
    box.label(text="Reconstruct", icon="CAMERA_DATA")
    col = box.column()
    col.prop(props, "recon_source", expand=True)
    if props.recon_source == "FOLDERS":
        col.prop(props, "recon_frames_dir")
        col.prop(props, "recon_masks_dir")
    col.prop(props, "recon_workspace")
    col.prop(props, "recon_quality")
    col.prop(props, "recon_features")
    col.prop(props, "recon_matcher")
    col.prop(props, "recon_mapper")
    col.prop(props, "recon_focal")
    col.prop(props, "recon_hull")
    sub = col.column()
    sub.active = props.recon_hull
    sub.prop(props, "recon_voxels")
    col.prop(props, "recon_height")
    col.prop(props, "recon_set_camera")
    if not operators.is_running():
        box.operator(
            operators.GARMENT_SEG_OT_reconstruct.bl_idname,
            icon="OUTLINER_OB_MESH",
            text="Reconstruct",
        )


def draw_garment_panel(layout, context) -> None:
    props = context.scene.garment_seg
    layout.use_property_split = True
    layout.use_property_decorate = False

    col = layout.column()
    col.prop(props, "input_dir")
    col.prop(props, "output_dir")

    col = layout.column()
    col.prop(props, "model_source", expand=True)
    if props.model_source == "FILE":
        col.prop(props, "model_file", text="File")
    col.prop(props, "size", text="Input Size (0 = Model)")
    col.prop(props, "threshold", text="Threshold (0 = Model)")
    col.prop(props, "refine")
    col.prop(props, "flip")
    classes = runner.model_classes(selected_model(context)) is not None
    row = col.row()
    row.enabled = classes  # greyed for a binary model (no classes in its card)
    row.prop(props, "keep")
    col.prop(props, "temporal")
    col.prop(props, "plate")
    _draw_formats(col, props, context, classes)
    col.prop(props, "existing")

    layout.separator()
    if operators.is_running():
        run = context.window_manager.garment_seg_run
        if hasattr(layout, "progress"):  # UILayout.progress: Blender 4.0+
            layout.progress(factor=run.progress, type="BAR", text=run.progress_text)
        else:
            layout.label(text=run.progress_text)
        layout.operator(operators.GARMENT_SEG_OT_cancel.bl_idname, icon="CANCEL")
    else:
        layout.operator(
            operators.GARMENT_SEG_OT_segment_sequence.bl_idname, icon="PLAY", text="Segment"
        )

    row = layout.row(align=True)
    row.use_property_split = False
    row.prop(props, "preview_index", text="Frame")
    row.enabled = not operators.is_running()
    op = row.operator(operators.GARMENT_SEG_OT_preview_frame.bl_idname, icon="HIDE_OFF")
    op.index = props.preview_index
    correct.draw_correct(layout, context)

    layout.separator()
    _draw_reconstruct(layout, props)


class _GarmentPanel:
    bl_label = "Garment Segmentation"
    bl_region_type = "UI"
    bl_category = "Garment"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "garment_seg")

    def draw(self, context):
        draw_garment_panel(self.layout, context)


class VIEW3D_PT_garment_segmentation(_GarmentPanel, Panel):
    bl_space_type = "VIEW_3D"


class IMAGE_PT_garment_segmentation(_GarmentPanel, Panel):
    bl_space_type = "IMAGE_EDITOR"


classes = (VIEW3D_PT_garment_segmentation, IMAGE_PT_garment_segmentation)
