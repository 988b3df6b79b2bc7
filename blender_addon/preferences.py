"""Add-on preferences: defaults, worker threads, the dependency status and the headless
script's path.

OpenCV and SciPy are not part of Blender. The extension zip carries them as wheels listed in
its manifest, which Blender installs with the extension; the extension itself installs
nothing and never touches ``sys.path``. Only the legacy add-on zip has ``installer.py`` (the
*Install Dependencies* button), since a legacy install brings no wheels.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from bpy.props import IntProperty, PointerProperty, StringProperty
from bpy.types import AddonPreferences, Operator

from .properties import FORMAT_NAMES, GarmentSegFormats

log = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))

# (import name, what to install, needed)
DEPENDENCIES = (
    ("numpy", "numpy (ships with Blender)", True),
    ("cv2", "opencv-python-headless", True),
    ("scipy", "scipy", True),
    ("pycolmap", "pycolmap (optional: reconstruction)", False),
    ("skimage", "scikit-image (optional: garment mesh)", False),
)

_status_cache: list[tuple[str, str, bool, str | None, str | None]] | None = None


def is_extension() -> bool:
    """Installed as a Blender 4.2+ extension (its package lives under ``bl_ext``)."""
    return __package__.startswith("bl_ext.")


def installer():
    """The legacy build's ``installer`` module (Install Dependencies), else None: an
    extension never installs packages, whatever files it holds."""
    if is_extension() or not os.path.isfile(os.path.join(HERE, "installer.py")):
        return None
    return importlib.import_module(f"{__package__}.installer")


def missing_dependency_hint() -> str:
    """What to do about a missing OpenCV or SciPy, for this kind of install."""
    if installer() is not None:
        return (
            "open Edit › Preferences › Add-ons › Garment Segmentation and press "
            "Install Dependencies"
        )
    return (
        f"this extension zip carries no OpenCV / SciPy wheels for {platform_name()}; "
        f"install the Garment Segmentation zip made for {platform_name()}"
    )


def platform_name() -> str:
    """Blender's name for this platform (``linux-x64``, ``windows-x64``, ``macos-arm64``…)."""
    import platform

    system = {"darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(machine, machine)
    return f"{system}-{arch}"


def batch_script() -> str:
    """The headless script of this installed add-on (``blender -b -P <it> -- …``)."""
    return os.path.join(HERE, "batch.py")


def dependency_status(refresh: bool = False):
    """``[(module, package, needed, version or None, error or None)]``, cached."""
    global _status_cache
    if _status_cache is None or refresh:
        rows = []
        for mod, package, needed in DEPENDENCIES:
            try:
                m = importlib.import_module(mod)
                rows.append((mod, package, needed, str(getattr(m, "__version__", "?")), None))
            except Exception as exc:  # missing, or a broken binary (e.g. numpy ABI mismatch)
                err = "not installed" if isinstance(exc, ModuleNotFoundError) else str(exc)
                rows.append((mod, package, needed, None, err.splitlines()[0][:120] if err else ""))
        _status_cache = rows
    return _status_cache


class GARMENT_SEG_OT_refresh_dependencies(Operator):
    """Check again which dependencies import"""

    bl_idname = "garment_seg.refresh_dependencies"
    bl_label = "Refresh"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        importlib.invalidate_caches()
        dependency_status(refresh=True)
        return {"FINISHED"}


def draw_preferences(layout, prefs) -> None:
    """The preferences: defaults, worker threads, the dependency box and the headless
    command with this add-on's own batch script."""
    layout.use_property_split = True
    layout.prop(prefs, "default_model")
    col = layout.column(heading="Default Formats")
    grid = col.grid_flow(columns=2, even_columns=True, align=True)
    for name in FORMAT_NAMES:
        grid.prop(prefs.formats, name, toggle=True)
    layout.prop(prefs, "workers")

    box = layout.box()
    box.use_property_split = False
    header = box.row()
    header.label(text="Dependencies", icon="PACKAGE")
    header.operator(GARMENT_SEG_OT_refresh_dependencies.bl_idname, icon="FILE_REFRESH")
    for mod, package, needed, version, err in dependency_status():
        row = box.row()
        if version:
            row.label(text=f"{mod} {version}", icon="CHECKMARK")
        else:
            row.label(text=f"{mod}: {err} — {package}", icon="ERROR" if needed else "INFO")
    inst = installer()
    if inst is not None:
        box.label(text=f"Installs into {inst.dependency_dir()}")
        row = box.row()
        row.enabled = not inst.is_installing()
        row.operator(inst.GARMENT_SEG_OT_install_dependencies.bl_idname, icon="IMPORT")
    elif any(needed and not version for _m, _p, needed, version, _e in dependency_status()):
        hint = missing_dependency_hint()
        box.label(text=hint[:1].upper() + hint[1:])

    box = layout.box()
    box.use_property_split = False
    box.label(text="Headless (no window)", icon="CONSOLE")
    box.label(text=f'blender -b -P "{batch_script()}" -- --input DIR --output DIR')


class GarmentSegPreferences(AddonPreferences):
    bl_idname = __package__

    default_model: StringProperty(
        name="Default Model",
        description="Model card (.json) or .onnx file used when a scene's model is Default; "
        "empty = the bundled garment model",
        subtype="FILE_PATH",
    )
    formats: PointerProperty(type=GarmentSegFormats)
    workers: IntProperty(
        name="Worker Threads",
        description="Frames processed at once (decode, inference and encode overlap)",
        default=2,
        min=1,
        max=32,
    )

    def draw(self, context):
        draw_preferences(self.layout, self)


def classes() -> tuple:
    """The classes to register: the installer's operator only in a legacy build."""
    inst = installer()
    return (
        *(inst.classes if inst is not None else ()),
        GARMENT_SEG_OT_refresh_dependencies,
        GarmentSegPreferences,
    )
