"""The Blender add-on, for real with the bpy wheel: register, operators, batch script, zip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

# Keep Blender's user configuration out of the home folder (effective if bpy is not loaded yet).
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="bpy-user-"))
bpy = pytest.importorskip("bpy")
cv2 = pytest.importorskip("cv2")
import addon_utils  # noqa: E402  (ships with bpy)

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parent.parent
ADDON = "blender_addon"
BATCH = ROOT / "blender_addon" / "batch.py"
OPERATOR_TYPES = (
    "GARMENT_SEG_OT_segment_sequence",
    "GARMENT_SEG_OT_preview_frame",
    "GARMENT_SEG_OT_cancel",
    "GARMENT_SEG_OT_install_dependencies",
    "GARMENT_SEG_OT_reconstruct",
)
SIZE = (96, 128)  # frame height, width


def make_frames(folder: Path, n: int = 4, size=SIZE) -> list[Path]:
    """Simple seeded shapes: a dark ellipse and a bar on a light, slightly noisy background."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = np.full((h, w, 3), 210, np.uint8)
        img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        cv2.ellipse(img, (w // 2 + i, h // 2), (w // 5, h // 3), 10 * i, 0, 360, (60, 40, 150), -1)
        cv2.rectangle(img, (w // 2 - 4, h // 6), (w // 2 + 4, h // 2), (30, 30, 30), -1)
        p = folder / f"frame_{i + 1:04d}.jpg"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, f"{path} does not decode"
    return img


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".segcore-")]


@pytest.fixture
def scene_settings(addon, random_model, tmp_path):
    """Settings pointing at four fresh frames, an output folder and the random model."""
    make_frames(tmp_path / "frames")
    s = bpy.context.scene.garment_seg
    s.input_dir = str(tmp_path / "frames")
    s.output_dir = str(tmp_path / "out")
    s.model_source = "FILE"
    s.model_file = str(random_model["card"])
    return s


def run_op(op, **kw):
    """Call an operator; an ERROR report comes back as the RuntimeError's one-line text."""
    try:
        return op(**kw), None
    except RuntimeError as exc:
        return None, str(exc)


def test_register_unregister_twice_leaves_nothing():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    handlers_before = len(bpy.app.handlers.load_pre)
    path_before = list(sys.path)
    for _ in range(2):
        assert addon_utils.enable(ADDON, default_set=True, handle_error=None) is not None
        assert hasattr(bpy.types.Scene, "garment_seg")
        assert bpy.context.scene.garment_seg.existing == "STOP"
        assert all(hasattr(bpy.types, t) for t in OPERATOR_TYPES)
        assert hasattr(bpy.types, "VIEW3D_PT_garment_segmentation")
        assert hasattr(bpy.types, "IMAGE_PT_garment_segmentation")
        assert bpy.context.preferences.addons[ADDON].preferences.workers >= 1
        assert len(bpy.app.handlers.load_pre) == handlers_before + 1
        addon_utils.disable(ADDON, default_set=True)
        assert not hasattr(bpy.types.Scene, "garment_seg")
        assert not any(hasattr(bpy.types, t) for t in OPERATOR_TYPES)
        assert not hasattr(bpy.types, "VIEW3D_PT_garment_segmentation")
        assert ADDON not in bpy.context.preferences.addons
        assert len(bpy.app.handlers.load_pre) == handlers_before
        with pytest.raises(KeyError):
            bpy.ops.garment_seg.segment_sequence.get_rna_type()
    assert [p for p in sys.path if p not in path_before] == []


def test_enabling_is_instant_and_formats_follow_segcore():
    """Enabling imports neither segcore nor OpenCV; the format switches mirror WRITERS."""
    code = (
        "import sys, time, bpy, addon_utils\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "t = time.perf_counter()\n"
        f"assert addon_utils.enable({ADDON!r}, default_set=True, handle_error=None)\n"
        "print(round(time.perf_counter() - t, 3))\n"
        "print(sorted(m for m in ('segcore', 'cv2', 'scipy') if m in sys.modules))\n"
        "from blender_addon import properties\n"
        "print(','.join(properties.FORMAT_NAMES))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    seconds, heavy, names = out.stdout.strip().splitlines()[-3:]
    assert heavy == "[]"
    assert float(seconds) < 1.0
    from segcore.formats import WRITERS

    assert names.split(",") == list(WRITERS)


def test_segment_sequence_background_writes_outputs(scene_settings, tmp_path, capfd):
    s = scene_settings
    s.use_default_formats = False
    s.formats.rgba = s.formats.mask = s.formats.colmap = True
    result, error = run_op(bpy.ops.garment_seg.segment_sequence)
    assert error is None and result == {"FINISHED"}

    out = tmp_path / "out"
    stems = [f"frame_{i:04d}" for i in range(1, 5)]
    for stem in stems:
        rgba = read_png(out / "rgba" / f"{stem}.png")
        mask = read_png(out / "masks" / f"{stem}.png")
        assert rgba.shape == (*SIZE, 4) and rgba.dtype == np.uint8
        assert mask.shape == SIZE
        assert set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(rgba[..., 3], mask)  # the mask is the alpha
        frame = cv2.imread(str(tmp_path / "frames" / f"{stem}.jpg"))
        keep = mask > 0
        np.testing.assert_array_equal(rgba[..., :3][keep], frame[keep])
        assert read_png(out / "colmap_masks" / f"{stem}.jpg.png").shape == SIZE
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["ok"] == 4 and report["summary"]["failed"] == 0
    assert temporaries(out) == []

    printed = capfd.readouterr().out
    assert "Segmenting 4/4 frame_0004.jpg" in printed
    assert "Segmented 4 frames" in printed  # the INFO report
    seq = [i for i in bpy.data.images if i.source == "SEQUENCE"]
    assert len(seq) == 1 and Path(bpy.path.abspath(seq[0].filepath)).parent == out / "rgba"


def test_existing_outputs_stop_skip_or_overwrite(scene_settings, tmp_path):
    assert run_op(bpy.ops.garment_seg.segment_sequence) == ({"FINISHED"}, None)
    _, error = run_op(bpy.ops.garment_seg.segment_sequence)
    assert error and "already holds outputs" in error and "Traceback" not in error
    scene_settings.existing = "SKIP"
    assert run_op(bpy.ops.garment_seg.segment_sequence) == ({"FINISHED"}, None)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["skipped"] == 4


def test_cancel_after_first_frame_leaves_only_whole_files(addon, random_model, tmp_path):
    from blender_addon import runner

    make_frames(tmp_path / "frames", n=8)
    settings = runner.Settings(
        str(tmp_path / "frames"), str(tmp_path / "out"), model=str(random_model["card"])
    )
    job = runner.create_job(settings)
    seen = []
    outcome = runner.run_job(
        job, should_stop=lambda: len(seen) >= 1, on_result=lambda r, d, n: seen.append(r)
    )
    assert outcome.cancelled and len(seen) == 1
    written = sorted((tmp_path / "out" / "rgba").glob("*.png"))
    assert 1 <= len(written) < 8  # the frames in flight finished, no more started
    assert outcome.message.startswith(f"Cancelled: {len(written)} of 8 frames written")
    assert temporaries(tmp_path / "out") == []
    for png in [*written, *(tmp_path / "out" / "masks").glob("*.png")]:
        read_png(png)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["interrupted"] is True
    assert report["summary"]["ok"] == len(written)


def test_worker_thread_streams_results_and_stops(addon, random_model, tmp_path):
    """The modal path's worker: results arrive on the queue in order, then "done"."""
    from blender_addon import operators, runner

    make_frames(tmp_path / "frames", n=6)
    settings = runner.Settings(
        str(tmp_path / "frames"), str(tmp_path / "out"), model=str(random_model["card"])
    )
    run = operators._Run(runner.create_job(settings))
    run.start_thread()
    items = []
    while not items or items[-1][0] == "frame":
        items.append(run.queue.get(timeout=60))
        if len(items) == 2:
            run.stop.set()  # what Esc and the Cancel button do
    run.thread.join(timeout=60)
    assert not run.thread.is_alive()
    frames = [it for it in items if it[0] == "frame"]
    assert [f[2] for f in frames] == list(range(1, len(frames) + 1)) and len(frames) < 6
    assert items[-1][0] == "done" and items[-1][1].cancelled
    assert temporaries(tmp_path / "out") == []


class RecordingLayout:
    """Stands in for a UILayout to check what the draw code asks Blender to show: every
    property it draws exists on the real (bpy) data, every operator is registered."""

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split", "grid_flow"):
            return lambda *a, **k: RecordingLayout(self.log)
        if name in ("label", "separator", "progress"):
            return lambda *a, **k: self.log.append((name, k.get("text")))
        raise AttributeError(name)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)

    def prop(self, data, name, **kw):
        assert data.bl_rna.properties.get(name) is not None, name
        self.log.append(("prop", name))

    def operator(self, idname, **kw):
        group, op = idname.split(".")
        getattr(getattr(bpy.ops, group), op).get_rna_type()
        self.log.append(("operator", idname))
        return type("Props", (), {})()


def test_panel_and_preferences_draw_real_properties(scene_settings, monkeypatch):
    from blender_addon import operators, panels, preferences

    log = []
    panels.draw_garment_panel(RecordingLayout(log), bpy.context)
    drawn = {name for kind, name in log if kind in ("prop", "operator")}
    assert {"input_dir", "output_dir", "model_file", "existing"} <= drawn
    scene_settings.use_default_formats = False
    log.clear()
    panels.draw_garment_panel(RecordingLayout(log), bpy.context)
    assert {"rgba", "mask", "colmap"} <= {name for kind, name in log if kind == "prop"}
    assert "garment_seg.segment_sequence" in drawn and "garment_seg.preview_frame" in drawn

    monkeypatch.setattr(operators, "_active", object())  # while a run is active
    run = bpy.context.window_manager.garment_seg_run
    run.progress, run.progress_text = 0.5, "Frame 2 of 4, 0:01 left"
    log.clear()
    panels.draw_garment_panel(RecordingLayout(log), bpy.context)
    assert ("progress", "Frame 2 of 4, 0:01 left") in log
    assert ("operator", "garment_seg.cancel") in log

    prefs = bpy.context.preferences.addons[ADDON].preferences
    log.clear()
    preferences.draw_preferences(RecordingLayout(log), prefs)
    labels = [text for kind, text in log if kind == "label" and text]
    assert any(t.startswith("cv2 ") for t in labels) and any(t.startswith("scipy ") for t in labels)
    assert ("operator", "garment_seg.install_dependencies") in log


def test_refuses_to_start_while_a_run_is_active(scene_settings, monkeypatch):
    from blender_addon import operators

    monkeypatch.setattr(operators, "_active", object())
    assert bpy.ops.garment_seg.cancel.poll()
    _, error = run_op(bpy.ops.garment_seg.segment_sequence)
    assert error and "already active" in error


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "no such file or folder"),
        ("empty", "is empty"),
        ("inside", "inside it"),
        ("unset", "no input folder set"),
        ("bad_model", "model card not found"),
        ("corrupt_model", "not valid JSON"),
    ],
)
def test_bad_setup_reports_one_line_error(scene_settings, tmp_path, case, expected):
    s = scene_settings
    if case == "missing":
        s.input_dir = str(tmp_path / "nowhere")
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        s.input_dir = str(tmp_path / "empty")
    elif case == "inside":
        s.output_dir = str(tmp_path / "frames" / "out")
    elif case == "unset":
        s.input_dir = ""
    elif case == "bad_model":
        s.model_file = str(tmp_path / "nope.json")
    else:
        (tmp_path / "broken.json").write_text("{not json")
        s.model_file = str(tmp_path / "broken.json")
    result, error = run_op(bpy.ops.garment_seg.segment_sequence)
    assert result is None, "an ERROR report is expected"
    assert error.startswith("Error: ") and expected in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "rgba").exists() or not any((tmp_path / "out").rglob("*.png"))


@pytest.mark.parametrize(
    "exc, expected",
    [
        (ModuleNotFoundError("No module named 'cv2'", name="cv2"), "Install Dependencies"),
        (ValueError("boom"), "Unexpected error: ValueError: boom"),
    ],
)
def test_dependency_and_unexpected_errors_are_reported(scene_settings, monkeypatch, exc, expected):
    from blender_addon import runner

    def fail(settings):
        raise exc

    monkeypatch.setattr(runner, "create_job", fail)
    result, error = run_op(bpy.ops.garment_seg.segment_sequence)
    assert result is None and expected in error and "Traceback" not in error


def test_preview_frame_shows_the_overlay(scene_settings):
    from blender_addon import runner
    from blender_addon.properties import read_settings

    assert run_op(bpy.ops.garment_seg.preview_frame, index=1) == ({"FINISHED"}, None)
    img = bpy.data.images["Garment preview"]
    h, w = SIZE
    assert tuple(img.size) == (w, h)
    pixels = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(pixels)
    pixels = pixels.reshape(h, w, 4)
    expected, path = runner.preview_frame(read_settings(bpy.context), 1)
    assert path.name == "frame_0002.jpg"
    # Blender stores the bottom row first, RGB(A); OpenCV the top row first, BGR.
    np.testing.assert_allclose(pixels[::-1, :, :3], expected[..., ::-1] / 255.0, atol=1e-3)
    assert np.all(pixels[..., 3] == 1.0)

    _, error = run_op(bpy.ops.garment_seg.preview_frame, index=9)
    assert error and "has 4 frames" in error


def _batch(*args, cwd, timeout=120):
    return subprocess.run(
        [sys.executable, str(BATCH), "--", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def test_batch_script_exit_codes(random_model, tmp_path):
    frames = tmp_path / "frames"
    make_frames(frames)
    card = random_model["card"]
    ok = _batch("--input", frames, "--output", tmp_path / "out", "--model", card, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "Segmenting 4/4 frame_0004.jpg" in ok.stdout
    assert len(list((tmp_path / "out" / "rgba").glob("*.png"))) == 4

    (frames / "frame_0003.jpg").write_bytes(b"this is not a JPEG")
    bad = _batch(
        "--input", frames, "--output", tmp_path / "out2", "--model", card,
        "--formats", "mask", "--no-refine", cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 1
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "frame_0003.jpg" in errors[0]
    assert len(list((tmp_path / "out2" / "masks").glob("*.png"))) == 3
    assert not (tmp_path / "out2" / "rgba").exists()

    usage = _batch("--input", tmp_path / "nowhere", "--output", tmp_path / "o3", cwd=tmp_path)
    assert usage.returncode == 2
    assert usage.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in usage.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_batch_script_sigterm_finishes_in_flight_frames(random_model, tmp_path):
    import signal

    frames = tmp_path / "frames"
    make_frames(frames, n=40, size=(720, 960))
    card = random_model["card"]
    cmd = [sys.executable, str(BATCH), "--", "--input", str(frames), "--output",
           str(tmp_path / "out"), "--model", str(card), "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("Segmenting 1/40"):
                proc.send_signal(signal.SIGTERM)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["interrupted"] is True and report["summary"]["ok"] < 40
    assert temporaries(tmp_path / "out") == []
    for png in (tmp_path / "out").rglob("*.png"):
        read_png(png)


# --- the extension zip ---


def build_zip(out: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "addon", "--out", str(out), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def expected_entries() -> set[str]:
    """An extension zip's files: no installer.py (extensions install nothing)."""
    names = {"blender_manifest.toml", "README.md", "vendor/__init__.py"}
    names |= {p.name for p in (ROOT / "blender_addon").glob("*.py") if p.name != "installer.py"}
    seg = ROOT / "segcore"
    names |= {
        f"vendor/segcore/{p.relative_to(seg).as_posix()}"
        for p in seg.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    names |= {  # not ONNX Runtime's own graphs: Blender has no ONNX Runtime
        f"vendor/segcore/models/{p.name}"
        for p in (seg / "models").glob("*.onnx")
        if not p.name.endswith("_ort.onnx")
    }
    names |= {f"vendor/segcore/models/{p.name}" for p in (seg / "models").glob("*.json")}
    if (ROOT / "LICENSE").exists() or (ROOT / "blender_addon" / "LICENSE").exists():
        names.add("LICENSE")
    return names


def blender_validate(path: Path) -> subprocess.CompletedProcess:
    """Blender's own manifest validator (``blender --command extension validate``)."""
    cli = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core/bl_pkg/cli/blender_ext.py"
    return subprocess.run(
        [sys.executable, str(cli), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_manifest(z: zipfile.ZipFile) -> dict:
    manifest = tomllib.loads(z.read("blender_manifest.toml").decode("utf-8"))
    for key in ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                "blender_version_min", "license", "permissions"):  # fmt: skip
        assert manifest.get(key), key
    assert manifest["id"] == "garment_segmentation" and manifest["type"] == "add-on"
    assert "files" in manifest["permissions"]
    assert "network" not in manifest["permissions"]  # self-contained: wheels, no pip
    from blender_addon import bl_info

    assert manifest["version"] == ".".join(map(str, bl_info["version"]))
    wheels = sorted(n for n in z.namelist() if n.startswith("wheels/"))
    assert sorted(w.removeprefix("./") for w in manifest.get("wheels", [])) == wheels
    return manifest


def test_zip_holds_the_allow_list_and_installs_as_an_extension(random_model, tmp_path):
    proc = build_zip(tmp_path / "dist", "--no-wheels")
    path = tmp_path / "dist" / "garment_segmentation-0.1.0.zip"
    assert f"built {path}" in proc.stdout
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        names = set(z.namelist())
        assert names == expected_entries()
        assert not any("__pycache__" in n or n.endswith((".pt", ".pyc")) for n in names)
        manifest = check_manifest(z)
    assert "wheels" not in manifest
    check = blender_validate(path)
    assert check.returncode == 0 and "Success" in check.stdout, check.stdout + check.stderr

    # Install it into a fresh Blender (its own user folder) and run the operator from it, with
    # a decoy top-level `segcore` first on sys.path: the extension must use its own copy.
    make_frames(tmp_path / "frames", n=2)
    decoy = tmp_path / "decoy" / "segcore"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the decoy segcore was imported')\n")
    pkg = "bl_ext.user_default.garment_segmentation"
    code = f"""
import sys
sys.path.insert(0, {str(decoy.parent)!r})
import bpy
assert bpy.ops.extensions.package_install_files(
    filepath={str(path)!r}, repo="user_default", enable_on_install=True) == {{"FINISHED"}}
assert {pkg!r} in bpy.context.preferences.addons
before = list(sys.path)
s = bpy.context.scene.garment_seg
s.input_dir, s.output_dir = {str(tmp_path / "frames")!r}, {str(tmp_path / "out")!r}
s.model_source, s.model_file = "FILE", {str(random_model["card"])!r}
assert bpy.ops.garment_seg.segment_sequence() == {{"FINISHED"}}
assert bpy.ops.garment_seg.preview_frame(index=1) == {{"FINISHED"}}
assert sys.path == before, set(sys.path) ^ set(before)
assert "segcore" not in sys.modules
assert not hasattr(bpy.ops.garment_seg, "install_dependencies") or not hasattr(
    bpy.types, "GARMENT_SEG_OT_install_dependencies")
print("segcore from", sys.modules[{pkg + ".vendor.segcore"!r}].__file__)
from {pkg}.operators import error_message
print("hint:", error_message(ModuleNotFoundError("No module named 'cv2'", name="cv2")))
"""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"))
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    installed = tmp_path / "blender-user" / "extensions" / "user_default" / "garment_segmentation"
    assert f"segcore from {installed / 'vendor' / 'segcore' / '__init__.py'}" in run.stdout
    hint = next(ln for ln in run.stdout.splitlines() if ln.startswith("hint:"))
    assert "Install Dependencies" not in hint and "install the Garment Segmentation zip" in hint
    assert len(list((tmp_path / "out" / "rgba").glob("*.png"))) == 2

    # the installed extension's own headless script, run by its path (the decoy still first)
    batch = subprocess.run(
        [sys.executable, str(installed / "batch.py"), "--", "--input", str(tmp_path / "frames"),
         "--output", str(tmp_path / "out-batch"), "--model", str(random_model["card"])],
        capture_output=True, text=True, timeout=120,
        env=dict(env, PYTHONPATH=str(decoy.parent)),
    )  # fmt: skip
    assert batch.returncode == 0, batch.stdout + batch.stderr
    assert len(list((tmp_path / "out-batch" / "rgba").glob("*.png"))) == 2


WHEEL_TAGS = {
    "linux-x64": "manylinux_2_17_x86_64",
    "windows-x64": "win_amd64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_10_13_x86_64",
}


def fake_wheels(monkeypatch, tmp_path):
    """build.addon_wheels without downloads: two tiny files named like real wheels for each
    platform, the OpenCV one shared by both Pythons (abi3) as on PyPI."""
    import build

    def wheels(platform, python, refresh=False):
        py = "cp" + python.replace(".", "")
        tag = WHEEL_TAGS[platform]
        names = (
            f"opencv_python_headless-4.11.0.86-cp37-abi3-{tag}.whl",
            f"scipy-1.15.3-{py}-{py}-{tag}.whl",
        )
        (tmp_path / "wheels").mkdir(exist_ok=True)
        for name in names:
            (tmp_path / "wheels" / name).write_bytes(b"PK\x05\x06" + bytes(18))
        return [tmp_path / "wheels" / name for name in names]

    monkeypatch.setattr(build, "addon_wheels", wheels)
    return build


def build_args(build, out: Path, **kw):
    """The arguments of `python build.py addon --out OUT` with ``kw`` changed."""
    parser = build.argparse.ArgumentParser()
    build.add_addon_arguments(parser)
    args = parser.parse_args(["--out", str(out), "--platforms", "linux-x64,windows-x64"])
    vars(args).update(kw)
    return args


def test_one_zip_per_platform_by_default_all_on_request(monkeypatch, tmp_path):
    build = fake_wheels(monkeypatch, tmp_path)
    out = tmp_path / "dist"
    assert build.build_addon(build_args(build, out, legacy=True)) == 0
    for platform, tag in (("linux-x64", "manylinux"), ("windows-x64", "win_amd64")):
        name = f"garment_segmentation-0.1.0-{platform.replace('-', '_')}.zip"
        with zipfile.ZipFile(out / name) as z:
            manifest = check_manifest(z)
            assert manifest["platforms"] == [platform]
            wheels = [n for n in z.namelist() if n.startswith("wheels/")]
            assert len(wheels) == 3 and all(tag in w for w in wheels)  # 1 abi3 + 2 scipy
            assert "installer.py" not in z.namelist()
    assert not (out / "garment_segmentation-0.1.0.zip").exists()
    with zipfile.ZipFile(out / "garment_segmentation-0.1.0-legacy.zip") as z:
        names = set(z.namelist())
    assert "garment_segmentation/__init__.py" in names
    assert "garment_segmentation/installer.py" in names  # Install Dependencies: legacy only
    assert "garment_segmentation/vendor/__init__.py" in names
    assert all(n.startswith("garment_segmentation/") for n in names)
    assert "garment_segmentation/blender_manifest.toml" not in names
    assert not any(n.endswith(".whl") for n in names)

    assert build.build_addon(build_args(build, out, all_platforms=True)) == 0
    with zipfile.ZipFile(out / "garment_segmentation-0.1.0.zip") as z:
        manifest = check_manifest(z)
        assert manifest["platforms"] == ["linux-x64", "windows-x64"]
        assert len([n for n in z.namelist() if n.startswith("wheels/")]) == 6


def test_build_refuses_a_network_permission(monkeypatch, tmp_path):
    import build

    src = (ROOT / "blender_addon" / "blender_manifest.toml").read_text()
    (tmp_path / "blender_manifest.toml").write_text(src + 'network = "Download things"\n')
    monkeypatch.setattr(build, "ADDON_DIR", tmp_path)
    with pytest.raises(build.AddonBuildError, match="no network permission"):
        build.addon_manifest_text(["linux-x64"], [])


@pytest.mark.slow
@pytest.mark.skipif(
    not (sys.platform == "linux" and sys.version_info[:2] == (3, 11)), reason="linux-x64, 3.11"
)
def test_zip_with_local_wheels(tmp_path):
    """Downloads (or reuses from build/wheels/) the OpenCV and SciPy wheels for this system."""
    build_zip(tmp_path, "--platforms", "linux-x64", "--python", "3.11")
    path = tmp_path / "garment_segmentation-0.1.0-linux_x64.zip"
    with zipfile.ZipFile(path) as z:
        manifest = check_manifest(z)
        wheels = [n for n in z.namelist() if n.startswith("wheels/")]
    assert manifest["platforms"] == ["linux-x64"]
    assert {w.split("/")[1].split("-")[0] for w in wheels} == {"opencv_python_headless", "scipy"}
    assert all("manylinux" in w for w in wheels)
    assert blender_validate(path).returncode == 0
    # Blender installs the listed wheels with the extension: no pip, no network permission
    user = tmp_path / "blender-user"
    code = f"""
import bpy
assert bpy.ops.extensions.package_install_files(
    filepath={str(path)!r}, repo="user_default", enable_on_install=True) == {{"FINISHED"}}
"""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user))
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    site = user / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    assert (site / "cv2").is_dir() and (site / "scipy").is_dir()
