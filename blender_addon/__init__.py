"""Garment Segmentation: cut the garment out of every frame of a photo sequence, in Blender.

A thin layer over segcore: the sidebar tab "Garment" (3D Viewport and Image Editor) reads
its settings into a plain dataclass and runs segcore's SequenceJob through ``runner``, the
same function the headless ``batch.py`` calls. segcore, numpy and OpenCV are imported only
when an operator runs, so enabling the add-on is instant.
"""

from __future__ import annotations

import bpy

from . import correct, operators, panels, preferences, properties

# Read by Blender's legacy add-on installer; 4.2+ extensions read blender_manifest.toml.
bl_info = {
    "name": "Garment Segmentation",
    "author": "Garment Segmentation developers",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "3D Viewport / Image Editor › Sidebar › Garment",
    "description": "Cut the garment out of every frame of a photo sequence for photogrammetry",
    "category": "Import-Export",
}

_registered: tuple = ()


@bpy.app.handlers.persistent
def _stop_before_load(*_args):
    """A file load removes modal handlers: finish the run in progress cleanly first."""
    operators.stop_active_run()


def register():
    global _registered
    _registered = (
        properties.GarmentSegFormats,
        properties.GarmentSegSettings,
        properties.GarmentSegRun,
        *preferences.classes(),
        *operators.classes,
        *correct.classes,
        *panels.classes,
    )
    for cls in _registered:
        bpy.utils.register_class(cls)
    bpy.types.Scene.garment_seg = bpy.props.PointerProperty(type=properties.GarmentSegSettings)
    # the run in progress: window-manager data is never saved into the .blend file
    bpy.types.WindowManager.garment_seg_run = bpy.props.PointerProperty(
        type=properties.GarmentSegRun
    )
    bpy.app.handlers.load_pre.append(_stop_before_load)


def unregister():
    operators.stop_active_run()
    for handler in list(bpy.app.handlers.load_pre):
        if getattr(handler, "__name__", "") == _stop_before_load.__name__ and (
            getattr(handler, "__module__", "") == __name__
        ):
            bpy.app.handlers.load_pre.remove(handler)
    del bpy.types.WindowManager.garment_seg_run
    del bpy.types.Scene.garment_seg
    for cls in reversed(_registered):
        bpy.utils.unregister_class(cls)
