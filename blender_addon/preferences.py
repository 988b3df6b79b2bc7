"""Add-on preferences: defaults, worker threads, and the dependency status / installer.

OpenCV and SciPy are not part of Blender. The extension zip carries them as wheels; a legacy
install (or a zip built with ``--no-wheels``) can fetch them with *Install Dependencies*,
which runs Blender's own Python ``-m pip install --target <user dir>/site-packages`` (no
admin rights, no restart) and puts that folder on ``sys.path``.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys

import bpy
from bpy.props import IntProperty, PointerProperty, StringProperty
from bpy.types import AddonPreferences, Operator

from .properties import FORMAT_NAMES, GarmentSegFormats

log = logging.getLogger(__name__)

# Keep in step with ADDON_WHEELS in build.py. numpy is Blender's own and never installed
# (--no-deps), so the add-on cannot shadow it with an incompatible build.
REQUIREMENTS = ("opencv-python-headless>=4.11,<4.12", "scipy>=1.11,<1.16")
# (import name, what to install, needed)
DEPENDENCIES = (
    ("numpy", "numpy (ships with Blender)", True),
    ("cv2", "opencv-python-headless", True),
    ("scipy", "scipy", True),
    ("pycolmap", "pycolmap (optional: reconstruction)", False),
    ("skimage", "scikit-image (optional: garment mesh)", False),
)

_status_cache: list[tuple[str, str, bool, str | None, str | None]] | None = None
_install = None  # the running Install Dependencies process, if any


def dependency_dir(create: bool = False) -> str:
    """The add-on's own site-packages folder in the user's Blender configuration."""
    try:  # Blender 4.2+ extension
        return bpy.utils.extension_path_user(__package__, path="site-packages", create=create)
    except (AttributeError, ValueError):  # a legacy add-on
        path = os.path.join(
            bpy.utils.user_resource("SCRIPTS"), "garment_segmentation", "site-packages"
        )
        if create:
            os.makedirs(path, exist_ok=True)
        return path


def add_dependency_path() -> None:
    """Put the installed dependencies on ``sys.path`` (after Blender's own packages)."""
    path = dependency_dir()
    if os.path.isdir(path) and path not in sys.path:
        sys.path.append(path)
        importlib.invalidate_caches()


def remove_dependency_path() -> None:
    path = dependency_dir()
    while path in sys.path:
        sys.path.remove(path)


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


def _pip_command(target: str) -> list[str] | None:
    """Blender's Python running pip (its own, or the wheel bundled with ensurepip)."""
    import importlib.util

    if importlib.util.find_spec("pip") is not None:
        pip = [sys.executable, "-m", "pip"]
    else:
        try:
            import ensurepip

            bundled = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")
            wheel = next(f for f in sorted(os.listdir(bundled)) if f.startswith("pip-"))
        except (ImportError, OSError, StopIteration):
            return None
        pip = [sys.executable, os.path.join(bundled, wheel, "pip")]  # pip runs from its wheel
    return [
        *pip,
        "install",
        "--upgrade",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        target,
        *REQUIREMENTS,
    ]


class GARMENT_SEG_OT_install_dependencies(Operator):
    """Download OpenCV and SciPy into the add-on's user folder with Blender's own pip"""

    bl_idname = "garment_seg.install_dependencies"
    bl_label = "Install Dependencies"
    bl_options = {"INTERNAL"}

    _timer = None

    def invoke(self, context, event):
        return self.execute(context)

    def execute(self, context):
        global _install
        if _install is not None:
            self.report({"ERROR"}, "Dependencies are already being installed; please wait")
            return {"CANCELLED"}
        if not getattr(bpy.app, "online_access", True):
            self.report(
                {"ERROR"},
                "Online access is off: allow it in Preferences › System › Network, or install "
                "the extension zip that bundles the dependencies",
            )
            return {"CANCELLED"}
        target = dependency_dir(create=True)
        cmd = _pip_command(target)
        if cmd is None:
            self.report({"ERROR"}, "This Blender's Python has no pip (nor ensurepip)")
            return {"CANCELLED"}
        log_path = os.path.join(os.path.dirname(target), "pip-install.log")
        print("Garment Segmentation: installing dependencies:", " ".join(cmd), flush=True)
        logf = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed when pip ends
        try:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        except OSError as exc:
            logf.close()
            self.report({"ERROR"}, f"Cannot run pip: {exc}")
            return {"CANCELLED"}
        _install = (proc, logf, log_path, target)
        if bpy.app.background or context.window is None:
            proc.wait()
            return self._finish(context)
        context.workspace.status_text_set("Installing OpenCV and SciPy…")
        self._timer = context.window_manager.event_timer_add(0.5, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "TIMER" and _install is not None and _install[0].poll() is not None:
            context.window_manager.event_timer_remove(self._timer)
            context.workspace.status_text_set(None)
            return self._finish(context)
        return {"PASS_THROUGH"}

    def _finish(self, context):
        global _install
        proc, logf, log_path, target = _install
        _install = None
        logf.close()
        if proc.returncode != 0:
            try:
                with open(log_path, encoding="utf-8", errors="replace") as f:
                    last = [ln.strip() for ln in f if ln.strip()][-1:]
            except OSError:
                last = []
            reason = last[0][:160] if last else f"exit code {proc.returncode}"
            self.report({"ERROR"}, f"pip failed: {reason} (full log: {log_path})")
            return {"CANCELLED"}
        add_dependency_path()
        rows = dependency_status(refresh=True)
        missing = [mod for mod, _pkg, needed, version, _err in rows if needed and not version]
        if missing:
            self.report(
                {"ERROR"},
                f"Installed into {target}, but {', '.join(missing)} still fail to import; "
                f"see the status in the preferences",
            )
            return {"CANCELLED"}
        self.report({"INFO"}, f"Dependencies installed into {target}")
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        return {"FINISHED"}


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
    """The preferences: defaults, worker threads and the dependency box."""
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
    box.label(text=f"Installs into {dependency_dir()}")
    row = box.row()
    row.enabled = _install is None
    row.operator(GARMENT_SEG_OT_install_dependencies.bl_idname, icon="IMPORT")


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


classes = (
    GARMENT_SEG_OT_install_dependencies,
    GARMENT_SEG_OT_refresh_dependencies,
    GarmentSegPreferences,
)
