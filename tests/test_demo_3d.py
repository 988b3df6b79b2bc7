"""``python build.py demo --3d``: the bundled turntable, what build.py installs for it, and the
demo's arguments (the full run takes minutes: its figures are in the README)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from segcore.exif import exif_focal
from tools import demo_3d

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "garment_turntable"


@pytest.fixture
def build(monkeypatch, tmp_path):
    """build.py as a module, its installs and commands recorded instead of run, its .venv a
    fresh folder."""
    spec = importlib.util.spec_from_file_location("build_under_test", ROOT / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []
    monkeypatch.setattr(module, "VENV", tmp_path / "venv")
    monkeypatch.setattr(module, "vpython", lambda: tmp_path / "venv" / "bin" / "python")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    monkeypatch.setattr(module, "run", lambda cmd, **kw: calls.append([str(c) for c in cmd]) or 0)
    return module, calls


def test_the_bundled_turntable_is_small_and_its_focal_is_in_exif():
    cams = json.loads((EXAMPLE / "cameras.json").read_text())
    assert cams["kind"] == "turntable" and len(cams["frames"]) >= 16
    total = sum(p.stat().st_size for p in EXAMPLE.rglob("*") if p.is_file())
    assert total <= 5e6, f"{total / 1e6:.1f} MB"
    for f in cams["frames"]:  # the focal reconstruct reads is the renderer's own
        assert exif_focal(EXAMPLE / "images" / f["image"]).pixels == pytest.approx(
            f["K"][0][0], rel=1e-5
        )
        assert (EXAMPLE / "masks" / (Path(f["image"]).stem + ".png")).is_file()


def test_demo_3d_installs_the_reconstruction_dependencies_and_runs_the_3d_demo(build, monkeypatch):
    module, calls = build
    monkeypatch.setattr(sys, "argv", ["build.py", "demo", "--3d", "--voxels", "64"])
    assert module.main() == 0
    pip, editable, demo = calls
    assert pip[-2:] == ["-r", str(ROOT / "requirements-recon.txt")]
    assert "-e" in editable
    assert demo[-4:] == ["-m", "tools.demo_3d", "--voxels", "64"]
    assert "--3d" not in demo
    reqs = (ROOT / "requirements-recon.txt").read_text()
    assert "-r requirements.txt" in reqs and "pycolmap" in reqs and "scikit-image" in reqs
    # installed once: the next run only runs the demo
    calls.clear()
    assert module.main() == 0
    assert len(calls) == 1 and "tools.demo_3d" in calls[0]


def test_the_2d_demo_installs_only_the_runtime_and_a_dev_setup_serves_both(build, monkeypatch):
    module, calls = build
    monkeypatch.setattr(sys, "argv", ["build.py", "demo"])
    assert module.main() == 0
    assert calls[0][-2:] == ["-r", str(ROOT / "requirements.txt")] and "tools.demo" in calls[-1]
    calls.clear()
    (module.VENV / ".setup-dev").write_text(module._stamp("dev"))  # `build.py setup --dev`
    monkeypatch.setattr(sys, "argv", ["build.py", "demo", "--3d"])
    assert module.main() == 0
    assert len(calls) == 1 and "tools.demo_3d" in calls[0]  # nothing installed


def test_demo_3d_arguments(tmp_path, capsys):
    args = demo_3d.parse_args(["--out", str(tmp_path), "--voxels", "96", "--quality", "fast"])
    assert args.input == EXAMPLE
    seg = demo_3d.segment_argv(args)
    assert seg[:2] == ["segment", str(EXAMPLE / "images")] and "--overwrite" in seg
    rec = demo_3d.reconstruct_argv(args)
    assert rec[:3] == ["reconstruct", str(EXAMPLE / "images"), str(tmp_path / "segment" / "masks")]
    assert rec[rec.index("--voxels") + 1] == "96" and rec[rec.index("--quality") + 1] == "fast"
    assert "--focal" not in rec  # the focal comes from the frames' EXIF
    with pytest.raises(SystemExit) as e:
        demo_3d.parse_args(["--input", str(tmp_path / "nowhere")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "nowhere/images: no such folder" in err and "Traceback" not in err


def test_the_verdict_lines_name_every_figure():
    lines = demo_3d.verdict_lines(
        {"frames": 24, "registered": 24, "mapper": "turntable",
         "focal": "669.4 px (EXIF FocalLength and FocalPlaneXResolution)",
         "rot_median_deg": 0.2, "rot_max_deg": 0.31, "mesh_fit_masks": 0.97,
         "mesh_fit_truth": 0.96}
    )  # fmt: skip
    text = "\n".join(lines)
    assert "registered: 24 of 24 frames (turntable solver)" in text
    assert "669.4 px (EXIF FocalLength" in text
    assert "median 0.20°, max 0.31°" in text
    assert "IoU 0.970 against the masks it was carved from, 0.960 against the renderer's" in text


def test_a_second_run_replaces_the_demo_workspace_and_nothing_else(tmp_path):
    ws = tmp_path / "reconstruction"
    (ws / "sparse").mkdir(parents=True)
    (ws / ".reconstruct-outputs.json").write_text("{}")
    (ws / "hull.ply").write_text("from the last run")
    demo_3d.clear_previous_workspace(ws)
    assert not ws.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    demo_3d.clear_previous_workspace(mine)  # not a reconstruct workspace: left alone
    assert (mine / "notes.txt").read_text() == "a user's file"
