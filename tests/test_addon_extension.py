"""The add-on as a self-contained Blender extension, for real with the bpy wheel: no sys.path
edits, segcore only as a sub-package, no installer in an extension, the preview off the main
thread at a bounded size, run progress on the window manager (never saved into a .blend)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="bpy-user-"))
bpy = pytest.importorskip("bpy")
cv2 = pytest.importorskip("cv2")

from tests.test_addon import RecordingLayout, make_frames  # noqa: E402

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in (ROOT / "blender_addon").glob("*.py") if p.stem != "__init__")


def test_no_module_edits_sys_path(random_model, tmp_path):
    """Enable, import every module, load segcore, segment and disable: sys.path unchanged."""
    make_frames(tmp_path / "frames", n=2)
    code = f"""
import importlib, sys
sys.path.insert(0, {str(ROOT)!r})
import bpy, addon_utils
before = list(sys.path)
assert addon_utils.enable("blender_addon", default_set=True, handle_error=None)
for name in {MODULES!r}:
    importlib.import_module("blender_addon." + name)
from blender_addon import preferences, runner
runner.segcore("pipeline"); runner.format_names(); preferences.dependency_status(refresh=True)
s = bpy.context.scene.garment_seg
s.input_dir, s.output_dir = {str(tmp_path / "frames")!r}, {str(tmp_path / "out")!r}
s.model_source, s.model_file = "FILE", {str(random_model["card"])!r}
assert bpy.ops.garment_seg.segment_sequence() == {{"FINISHED"}}
assert bpy.ops.garment_seg.preview_frame(index=0) == {{"FINISHED"}}
addon_utils.disable("blender_addon", default_set=True)
print("added", [p for p in sys.path if p not in before])
print("removed", [p for p in before if p not in sys.path])
"""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "added []" in run.stdout and "removed []" in run.stdout


def test_segcore_is_found_as_a_sub_package_when_vendored(addon, monkeypatch, tmp_path):
    """With a vendor/segcore beside the modules (as in a zip), the add-on's segcore is
    ``<package>.vendor.segcore``, never the top-level name."""
    from blender_addon import runner

    assert runner.segcore_name() == "segcore"  # a checkout: the installed segcore
    (tmp_path / "segcore").mkdir()
    (tmp_path / "segcore" / "__init__.py").write_text("")
    monkeypatch.setattr(runner, "VENDOR_DIR", tmp_path)
    assert runner.segcore_name() == "blender_addon.vendor.segcore"


def test_extension_offers_no_installer(addon, monkeypatch):
    """Installed as an extension (``bl_ext.…``): no Install Dependencies anywhere, and the
    missing-dependency message names the platform's zip instead."""
    from blender_addon import operators, preferences

    assert preferences.installer() is not None  # a checkout / legacy add-on has it
    monkeypatch.setattr(preferences, "__package__", "bl_ext.user_default.garment_segmentation")
    assert preferences.is_extension() and preferences.installer() is None
    idnames = [getattr(c, "bl_idname", "") for c in preferences.classes()]
    assert not any("install_dependencies" in name for name in idnames)
    msg = operators.error_message(ModuleNotFoundError("No module named 'cv2'", name="cv2"))
    assert "Install Dependencies" not in msg and preferences.platform_name() in msg
    missing = [("cv2", "opencv-python-headless", True, None, "not installed")]
    monkeypatch.setattr(preferences, "dependency_status", lambda refresh=False: missing)
    log = []
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    preferences.draw_preferences(RecordingLayout(log), prefs)
    assert ("operator", "garment_seg.install_dependencies") not in log
    assert any(kind == "label" and text and "zip made for" in text for kind, text in log)


def test_preferences_show_the_installed_batch_script(addon):
    from blender_addon import preferences

    log = []
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    preferences.draw_preferences(RecordingLayout(log), prefs)
    script = preferences.batch_script()
    assert Path(script) == ROOT / "blender_addon" / "batch.py" and Path(script).is_file()
    assert any(kind == "label" and text and f'-P "{script}"' in text for kind, text in log)


def test_preview_runs_in_a_worker_thread_at_bounded_size(addon, random_model, tmp_path):
    """The modal path's preview work (segmenting, the overlay, Blender's float pixels) runs
    in the worker thread; a large frame is shrunk to PREVIEW_MAX_SIDE first."""
    from blender_addon import operators, runner

    big = (1200, 2000)  # height, width: beyond PREVIEW_MAX_SIDE
    make_frames(tmp_path / "frames", n=2, size=big)
    settings = runner.Settings(
        str(tmp_path / "frames"), str(tmp_path / "out"), model=str(random_model["card"])
    )
    threads = []
    real = runner.preview_frame

    def spy(*a, **k):
        threads.append(threading.current_thread())
        return real(*a, **k)

    run = operators._PreviewRun(settings, runner.preview_path(settings, 1), 1)
    try:
        runner.preview_frame = spy
        run.start_thread()
        kind, outcome = run.queue.get(timeout=120)
    finally:
        runner.preview_frame = real
    assert kind == "done", outcome
    assert threads and threads[0] is not threading.main_thread()
    assert threads[0].name == "garment-preview"
    pixels, width, height = outcome
    side = runner.PREVIEW_MAX_SIDE
    assert (width, height) == (side, round(side * big[0] / big[1]))
    assert pixels.dtype == np.float32 and pixels.size == width * height * 4
    assert not (tmp_path / "out").exists()  # a preview writes nothing


def test_preview_operator_bad_index_is_refused_before_any_work(addon, random_model, tmp_path):
    make_frames(tmp_path / "frames", n=2)
    s = bpy.context.scene.garment_seg
    s.input_dir, s.output_dir = str(tmp_path / "frames"), str(tmp_path / "out")
    s.model_source, s.model_file = "FILE", str(random_model["card"])
    with pytest.raises(RuntimeError, match="has 2 frames"):
        bpy.ops.garment_seg.preview_frame(index=5)
    from blender_addon import operators

    assert not operators.is_running()


def test_run_progress_lives_on_the_window_manager(addon, tmp_path):
    from blender_addon import properties

    assert "progress" not in properties.GarmentSegSettings.bl_rna.properties
    assert "progress_text" not in properties.GarmentSegSettings.bl_rna.properties
    wm = bpy.context.window_manager
    wm.garment_seg_run.progress, wm.garment_seg_run.progress_text = 0.5, "Frame 2 of 4 (run)"
    bpy.context.scene.garment_seg.input_dir = "frames-kept-in-the-file"
    path = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=False, copy=True)
    data = path.read_bytes()
    assert b"frames-kept-in-the-file" in data  # the scene's settings are saved...
    assert b"Frame 2 of 4 (run)" not in data  # ...the run's progress is not


def test_segcore_imports_itself_only_relatively():
    """What lets the zip vendor segcore as a sub-package: no module of segcore names the
    top-level ``segcore`` in an import (the add-on reaches it only through runner.segcore)."""
    import ast

    offenders = []
    for folder in ("segcore", "blender_addon"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                if any(n == "segcore" or n.startswith("segcore.") for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_legacy_zip_installs_with_its_installer_and_vendored_segcore(tmp_path):
    """The legacy zip (Install legacy Add-on) keeps Install Dependencies; its segcore is a
    sub-package too, and enabling it leaves sys.path alone."""
    subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "addon", "--no-wheels", "--legacy",
         "--out", str(tmp_path / "dist")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    legacy = tmp_path / "dist" / "garment_segmentation-0.1.0-legacy.zip"
    code = f"""
import sys, bpy, addon_utils
bpy.ops.preferences.addon_install(filepath={str(legacy)!r})
before = list(sys.path)
assert addon_utils.enable("garment_segmentation", default_set=True, handle_error=None)
from garment_segmentation import runner
print("installer", hasattr(bpy.types, "GARMENT_SEG_OT_install_dependencies"))
print("segcore", runner.segcore("pipeline").__name__)
print("path unchanged", sys.path == before)
"""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "installer True" in run.stdout
    assert "segcore garment_segmentation.vendor.segcore.pipeline" in run.stdout
    assert "path unchanged True" in run.stdout
