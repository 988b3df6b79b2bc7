"""The scene's segmentation settings (``scene.garment_seg``) and their plain-data reading."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup

from . import runner

FORMAT_LABELS = {
    "rgba": "RGBA",
    "mask": "Mask",
    "colmap": "COLMAP",
    "meshroom": "Meshroom",
    "realitycapture": "RealityCapture",
    "metashape": "Metashape",
    "openmvs": "OpenMVS",
}
FORMAT_HINTS = {
    "rgba": "rgba/<frame>.png: the frame with the mask as alpha",
    "mask": "masks/<frame>.png: 255 = garment, 0 = background",
    "colmap": "colmap_masks/<frame file>.png: COLMAP / pycolmap mask_path convention",
}
DEFAULT_FORMATS = ("rgba", "mask")

# One boolean per segcore output format, so formats added to segcore.formats.WRITERS appear
# without touching the add-on.
FORMAT_NAMES = runner.format_names()
GarmentSegFormats = type(
    "GarmentSegFormats",
    (PropertyGroup,),
    {
        "__doc__": "One switch per segcore output format",
        "__annotations__": {
            name: BoolProperty(
                name=FORMAT_LABELS.get(name, name.replace("_", " ").title()),
                description=FORMAT_HINTS.get(name, f"Write the {name} output"),
                default=name in DEFAULT_FORMATS,
            )
            for name in FORMAT_NAMES
        },
    },
)


def selected_formats(group) -> tuple[str, ...]:
    return tuple(name for name in FORMAT_NAMES if getattr(group, name, False))


class GarmentSegSettings(PropertyGroup):
    input_dir: StringProperty(
        name="Input Folder",
        description="Folder of photo frames (jpg, png, tif), processed in natural name order",
        subtype="DIR_PATH",
    )
    output_dir: StringProperty(
        name="Output Folder",
        description="Where masks/, rgba/ and report.json go; must not be inside the input folder",
        subtype="DIR_PATH",
    )
    model_source: EnumProperty(
        name="Model",
        items=(
            ("DEFAULT", "Default", "The model set in the add-on preferences, else the bundled one"),
            ("FILE", "File", "A model card (.json) or .onnx file"),
        ),
        default="DEFAULT",
    )
    model_file: StringProperty(
        name="Model File",
        description="Model card (.json) or .onnx file exported by `python -m training export`",
        subtype="FILE_PATH",
    )
    size: IntProperty(
        name="Input Size",
        description="Network input long side in pixels; 0 uses the model card's size",
        default=0,
        min=0,
        soft_max=2048,
    )
    threshold: FloatProperty(
        name="Threshold",
        description="Garment probability above which a pixel is kept; 0 uses the model card's",
        default=0.0,
        min=0.0,
        max=0.99,
        step=1,
        precision=2,
    )
    refine: EnumProperty(
        name="Refine Edges",
        description="Guided-filter edge refinement with the full-resolution photo",
        items=(
            ("CARD", "Model Default", "As the model card says"),
            ("ON", "On", "Refine mask edges with the full-resolution photo"),
            ("OFF", "Off", "Plain spline-upsampled mask edges"),
        ),
        default="CARD",
    )
    use_default_formats: BoolProperty(
        name="Default Formats",
        description="Write the output formats chosen in the add-on preferences",
        default=True,
    )
    formats: PointerProperty(type=GarmentSegFormats)
    existing: EnumProperty(
        name="Existing Outputs",
        description="What to do when the output folder already holds outputs for some frames",
        items=(
            ("STOP", "Stop", "Refuse to start, so nothing is replaced by accident"),
            ("SKIP", "Skip Existing", "Keep frames whose outputs exist (resume a cancelled run)"),
            ("OVERWRITE", "Overwrite", "Replace existing outputs"),
        ),
        default="STOP",
    )
    preview_index: IntProperty(
        name="Preview Frame",
        description="Index of the frame to preview (0 = the first in name order)",
        default=0,
        min=0,
    )
    # Runtime progress, written by the running operator on the main thread.
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    progress_text: StringProperty(name="Progress Text", default="")


def addon_preferences(context=None):
    """This add-on's preferences, or None when it is registered without being enabled."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def read_settings(context) -> runner.Settings:
    """The scene's settings as a plain :class:`runner.Settings` (absolute paths)."""
    props = context.scene.garment_seg
    prefs = addon_preferences(context)
    if props.model_source == "FILE":
        model = bpy.path.abspath(props.model_file) if props.model_file else None
    else:
        model = bpy.path.abspath(prefs.default_model) if prefs and prefs.default_model else None
    if props.use_default_formats:
        formats = selected_formats(prefs.formats) if prefs else DEFAULT_FORMATS
    else:
        formats = selected_formats(props.formats)
    return runner.Settings(
        input_dir=bpy.path.abspath(props.input_dir) if props.input_dir else "",
        output_dir=bpy.path.abspath(props.output_dir) if props.output_dir else "",
        model=model,
        size=props.size,
        threshold=props.threshold,
        refine={"CARD": None, "ON": True, "OFF": False}[props.refine],
        formats=formats,
        skip_existing=props.existing == "SKIP",
        overwrite=props.existing == "OVERWRITE",
        workers=prefs.workers if prefs else 2,
    )
