"""Install Dependencies: the legacy add-on's way to get OpenCV and SciPy (legacy zip only).

A Blender extension brings its dependencies as wheels listed in its manifest and never
installs anything itself, so the extension zip leaves this file out. A legacy install has no
wheels: *Install Dependencies* runs Blender's own Python ``-m pip install --target`` into the
user's ``scripts/modules`` folder, which Blender itself keeps on the module search path (no
admin rights, no restart). Blender's numpy is never replaced (``--no-deps``).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile

import bpy
from bpy.types import Operator

from .preferences import dependency_status

# Keep in step with ADDON_WHEELS in build.py.
REQUIREMENTS = ("opencv-python-headless>=4.11,<4.12", "scipy>=1.11,<1.16")
_install = None  # the running Install Dependencies process, if any


def dependency_dir(create: bool = False) -> str:
    """Blender's user ``scripts/modules`` folder: on the module search path by Blender's rule."""
    return bpy.utils.user_resource("SCRIPTS", path="modules", create=create)


def is_installing() -> bool:
    return _install is not None


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
    """Download OpenCV and SciPy into Blender's user modules folder with Blender's own pip"""

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
        log_path = os.path.join(tempfile.gettempdir(), "garment-segmentation-pip.log")
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
        if target not in sys.path:  # a folder created just now: let Blender add it
            bpy.utils.refresh_script_paths()
        importlib.invalidate_caches()
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


classes = (GARMENT_SEG_OT_install_dependencies,)
