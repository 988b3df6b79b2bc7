"""The scene's segmentation settings (``scene.garment_seg``) and their plain-data reading."""

from __future__ import annotations

import os

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

CARD_SWITCH = {"CARD": None, "ON": True, "OFF": False}


def _choice(name: str, description: str, items):
    """An EnumProperty of ``(ID, label, hint)`` rows, numbered in the order given: a .blend
    file stores the number, so an ID renamed in place (``auto`` to ``AUTO``) still reads the
    files saved before. New rows go at the end."""
    rows = tuple((key, label, hint, "", i) for i, (key, label, hint) in enumerate(items))
    return EnumProperty(name=name, description=description, items=rows, default=rows[0][0])


def _option_choice(name: str, description: str, choices, rows: dict):
    """An EnumProperty of one of segcore's options: its ``choices`` (``segcore.options``,
    whose order numbers them: new choices go at the end there too) as capitalised IDs, each
    with its ``(label, hint)`` from ``rows`` (a choice without one fails at import)."""
    return _choice(name, description, tuple((c.upper(), *rows[c]) for c in choices))


def _card_switch(name: str, description: str, on: str, off: str):
    """An on / off setting whose default is the model card's (``CARD_SWITCH`` reads it)."""
    items = (
        ("CARD", "Model Default", "As the model card says"),
        ("ON", "On", on),
        ("OFF", "Off", off),
    )
    return _choice(name, description, items)


FORMAT_LABELS = {
    "rgba": "RGBA",
    "mask": "Mask",
    "colmap": "COLMAP",
    "meshroom": "Meshroom",
    "realitycapture": "RealityCapture",
    "metashape": "Metashape",
    "openmvs": "OpenMVS",
    "labels": "Labels",
}
FORMAT_HINTS = {
    "rgba": "rgba/<frame>.png: the frame with the mask as alpha",
    "mask": "masks/<frame>.png: 255 = garment, 0 = background",
    "colmap": "colmap_masks/<frame file>.png: COLMAP / pycolmap mask_path convention",
    "labels": "labels/<frame>.png: the class per pixel (0 background, 1 garment, 2 figure, "
    "3 support), viewed in colour; multi-class models only",
}
DEFAULT_FORMATS = runner.options().DEFAULT_FORMATS

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
    model_source: _choice(
        "Model",
        "Which model segments the frames",
        (
            ("DEFAULT", "Default", "The model set in the add-on preferences, else the bundled one"),
            ("FILE", "File", "A model card (.json) or .onnx file"),
        ),
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
    refine: _card_switch(
        "Refine Edges",
        "Guided-filter edge refinement with the full-resolution photo",
        "Refine mask edges with the full-resolution photo",
        "Plain spline-upsampled mask edges",
    )
    flip: _card_switch(
        "Flip Averaging",
        "Also run the network on the mirrored frame and average the two: slightly better "
        "masks for one more inference a frame",
        "Two inferences a frame, averaged",
        "One inference a frame: faster",
    )
    keep: _choice(
        "Keep",
        "What the masks keep, for a model that tells garment, figure and support apart (its "
        "card lists classes); a binary model keeps the garment figure",
        (
            ("GARMENT_FIGURE", "Garment Figure", "Garment and figure (dress form, mannequin)"),
            ("GARMENT", "Garment Only", "The garment alone: textures, a garment-only mesh"),
            (
                "ALL",
                "Garment, Figure and Support",
                "Also the stand, pole and base (helps a turntable solver)",
            ),
        ),
    )
    temporal: BoolProperty(
        name="Smooth Along Sequence",
        description="The frames are a sequence (turntable, camera ring): smooth the masks from "
        "frame to frame along the optical flow, against flicker",
        default=False,
    )
    plate: _choice(
        "Still Background",
        "After the last frame, complete the masks from a turntable's still background: thin "
        "turning parts the network missed added (not a stand's legs or pole), leaks onto the "
        "backdrop removed",
        (
            ("AUTO", "Auto", "When the frames show a still background (a turntable)"),
            ("ON", "On", "Always"),
            ("OFF", "Off", "Keep the network's masks"),
        ),
    )
    use_default_formats: BoolProperty(
        name="Default Formats",
        description="Write the output formats chosen in the add-on preferences",
        default=True,
    )
    formats: PointerProperty(type=GarmentSegFormats)
    existing: _choice(
        "Existing Outputs",
        "What to do when the output folder already holds outputs for some frames",
        (
            ("STOP", "Stop", "Refuse to start, so nothing is replaced by accident"),
            ("SKIP", "Skip Existing", "Keep frames whose outputs exist (resume a cancelled run)"),
            ("OVERWRITE", "Overwrite", "Replace existing outputs"),
        ),
    )
    preview_index: IntProperty(
        name="Preview Frame",
        description="Index of the frame to preview (0 = the first in name order)",
        default=0,
        min=0,
    )
    # Reconstruct (SfM + visual hull of the segmented frames)
    recon_source: _choice(
        "Source",
        "Which frames and masks the reconstruction uses",
        (
            (
                "SEGMENTATION",
                "Segmentation",
                "The Output Folder of a segmentation: its frames (from report.json) and masks",
            ),
            ("FOLDERS", "Folders", "A chosen folder of frames and a folder of masks"),
        ),
    )
    recon_frames_dir: StringProperty(
        name="Frames", description="Folder of photo frames", subtype="DIR_PATH"
    )
    recon_masks_dir: StringProperty(
        name="Masks",
        description="Folder of masks (255 = garment; <frame>.png or <frame file>.png)",
        subtype="DIR_PATH",
    )
    recon_workspace: StringProperty(
        name="Results",
        description="Where sparse/0, hull.ply, transforms.json and recon.json go "
        "(empty: <Output Folder>/reconstruction)",
        subtype="DIR_PATH",
    )
    recon_hull: BoolProperty(
        name="Garment Mesh",
        description="Carve the garment's mesh from the masks (visual hull)",
        default=True,
    )
    recon_voxels: IntProperty(
        name="Voxels",
        description="Visual hull grid resolution along its long side",
        default=runner.options().DEFAULT_VOXELS,
        min=runner.options().VOXELS[0],
        max=runner.options().VOXELS[1],
        soft_min=48,
        soft_max=256,
    )
    recon_matcher: _option_choice(
        "Matcher",
        "Which pairs of frames are matched",
        runner.options().MATCHERS,
        {
            "auto": (
                "Auto",
                "Ring for a moving camera registered from the whole frame, else exhaustive "
                "up to 60 frames, sequential beyond",
            ),
            "exhaustive": ("Exhaustive", "Match every pair of frames"),
            "sequential": ("Sequential", "Match each frame with its neighbours"),
            "ring": (
                "Ring",
                "Match each frame with its nearest neighbours in capture order, the last "
                "with the first (a camera ring in a room that repeats itself)",
            ),
        },
    )
    recon_quality: _option_choice(
        "Features",
        "How features are found in the frames",
        runner.options().QUALITIES,
        {
            "high": ("High", "DSP-SIFT inside the masks: more matches on smooth fabric, slower"),
            "fast": ("Fast", "Plain SIFT: several times faster, for well-textured subjects"),
        },
    )
    recon_features: _option_choice(
        "Feature Area",
        "Where the cameras' features are taken; the masks always carve the garment mesh",
        runner.options().FEATURE_AREAS,
        {
            "auto": (
                "Auto",
                "Inside the masks on a turntable (still background), the whole frame when "
                "the camera moves",
            ),
            "masked": ("Inside Masks", "Only on the garment: its background cannot pin them"),
            "whole": (
                "Whole Frame",
                "Everywhere: the still room registers a moving camera best",
            ),
        },
    )
    recon_mapper: _option_choice(
        "Mapper",
        "Which solver places the cameras",
        runner.options().MAPPERS,
        {
            "auto": (
                "Auto",
                "Turntable when the frames show a still background (camera on a "
                "tripod, garment turning), else Incremental",
            ),
            "incremental": ("Incremental", "COLMAP's incremental mapper"),
            "global": ("Global", "GLOMAP global mapper"),
            "turntable": (
                "Turntable",
                "Fixed camera, garment turning by the same step each "
                "frame (frames in order): calibrated from the silhouettes and feature tracks",
            ),
        },
    )
    recon_focal: FloatProperty(
        name="Focal Length (px)",
        description="The frames' focal length in pixels, for frames without it in their EXIF "
        "(exported or rendered): the lens's focal length in mm / the sensor's width in mm x "
        "the frame's width in pixels. 0 reads it from the frames' EXIF; the Turntable solver "
        "needs one of the two",
        default=0.0,
        min=0.0,
        soft_max=20000.0,
    )
    recon_height: FloatProperty(
        name="Height",
        description="Scale the imported scene so the garment is this tall (scene units); "
        "0 keeps the solver's own scale",
        default=1.7,
        min=0.0,
        soft_max=10.0,
        unit="LENGTH",
    )
    recon_set_camera: BoolProperty(
        name="Set Scene Camera",
        description="Make the first frame's camera the scene camera and set the render "
        "resolution to the frames' size (off: the scene's camera and resolution stay)",
        default=False,
    )


class GarmentSegRun(PropertyGroup):
    """The run in progress (``window_manager.garment_seg_run``): written by the running
    operator on the main thread, read by the panel; never saved into a .blend file."""

    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    progress_text: StringProperty(name="Progress Text", default="")


def addon_preferences(context=None):
    """This add-on's preferences, or None when it is registered without being enabled."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def read_recon_settings(context):
    """The scene's reconstruction settings as a plain ``importer.ReconSettings``."""
    from . import importer

    props = context.scene.garment_seg

    def path(p):
        return bpy.path.abspath(p) if p else ""

    kw = {
        "matcher": props.recon_matcher.lower(),
        "mapper": props.recon_mapper.lower(),
        "hull": props.recon_hull,
        "voxels": props.recon_voxels,
        "quality": props.recon_quality.lower(),
        "features": props.recon_features.lower(),
        "plate": props.plate.lower(),  # the Segment box's Still Background serves both
        "focal_px": props.recon_focal or None,
        "height": props.recon_height,
        "set_camera": props.recon_set_camera,
    }
    workspace = path(props.recon_workspace)
    if props.recon_source == "SEGMENTATION":
        out = path(props.output_dir)
        if not out:
            raise runner.segcore("errors").InputError(
                "no Output Folder set; segment first, or choose Folders"
            )
        return importer.settings_from_segmentation(out, workspace or None, **kw)
    if not workspace and props.output_dir:
        workspace = os.path.join(path(props.output_dir), "reconstruction")
    frames, masks = path(props.recon_frames_dir), path(props.recon_masks_dir)
    return importer.ReconSettings(frames, masks or None, workspace, **kw)


def selected_model(context) -> str | None:
    """The model the scene's settings choose (absolute path), None for the bundled one."""
    props = context.scene.garment_seg
    prefs = addon_preferences(context)
    if props.model_source == "FILE":
        return bpy.path.abspath(props.model_file) if props.model_file else None
    return bpy.path.abspath(prefs.default_model) if prefs and prefs.default_model else None


def read_settings(context) -> runner.Settings:
    """The scene's settings as a plain :class:`runner.Settings` (absolute paths)."""
    props = context.scene.garment_seg
    prefs = addon_preferences(context)
    model = selected_model(context)
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
        refine=CARD_SWITCH[props.refine],
        flip=CARD_SWITCH[props.flip],
        formats=formats,
        skip_existing=props.existing == "SKIP",
        overwrite=props.existing == "OVERWRITE",
        workers=prefs.workers if prefs else 2,
        temporal=props.temporal,
        plate=props.plate.lower(),
        # greyed out for a binary model: its choice does not apply
        keep=runner.KEEP_PRESETS[props.keep] if runner.model_classes(model) else None,
    )
