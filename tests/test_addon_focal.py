"""The add-on's Focal Length for frames without EXIF, with the bpy wheel: the panel shows it,
the settings and the batch script carry it to the turntable solver."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="bpy-user-"))
bpy = pytest.importorskip("bpy")

from tests.test_addon_suspects import Layout  # noqa: E402

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parent.parent
TURNTABLE = ROOT / "tests" / "data" / "recon_turntable"  # 400x300, its lens in EXIF


class Solved(Exception):
    """Stands in for the solve: the test only needs the focal length it was given."""


def test_the_panel_shows_the_focal_length_and_the_settings_carry_it(addon):
    from blender_addon import panels
    from blender_addon.properties import read_recon_settings

    layout = Layout()
    panels._draw_reconstruct(layout, bpy.context.scene.garment_seg)
    assert "recon_focal" in layout.props
    s = bpy.context.scene.garment_seg
    s.recon_source, s.recon_frames_dir, s.recon_workspace = "FOLDERS", "/f", "/w"
    assert read_recon_settings(bpy.context).options()["focal_px"] is None  # 0: from EXIF
    s.recon_focal = 1450.0
    assert read_recon_settings(bpy.context).options()["focal_px"] == pytest.approx(1450.0)
    assert read_recon_settings(bpy.context).options()["plate"] == "auto"
    s.plate = "OFF"  # Still Background reaches the reconstruction too
    assert read_recon_settings(bpy.context).options()["plate"] == "off"


def test_frames_without_exif_need_the_focal_length_and_it_reaches_the_solver(
    addon, tmp_path, monkeypatch
):
    pytest.importorskip("pycolmap")
    if not (TURNTABLE / "cameras.json").exists():
        pytest.skip("tests/data/recon_turntable is missing")
    import segcore.recon.turntable.colmap as solver

    frames = tmp_path / "frames"
    frames.mkdir()
    for p in sorted((TURNTABLE / "images").glob("*.jpg")):
        data = p.read_bytes()
        if data[2:4] == b"\xff\xe1":  # drop the APP1 (EXIF) segment: an exported frame
            (length,) = struct.unpack(">H", data[4:6])
            data = data[:2] + data[4 + length :]
        (frames / p.name).write_bytes(data)
    s = bpy.context.scene.garment_seg
    s.recon_source = "FOLDERS"
    s.recon_frames_dir, s.recon_masks_dir = str(frames), str(TURNTABLE / "masks")
    s.recon_workspace = str(tmp_path / "ws")
    s.recon_mapper = "TURNTABLE"
    with pytest.raises(RuntimeError, match="no focal length in its EXIF"):
        bpy.ops.garment_seg.reconstruct()

    seen = []

    def fake(grays, masks, K, report, silhouettes=None, still=True):
        seen.append(K[0, 0])
        raise Solved

    monkeypatch.setattr(solver, "solve_turntable", fake)
    s.recon_focal = 266.7
    with pytest.raises(RuntimeError, match="Solved"):
        bpy.ops.garment_seg.reconstruct()
    assert seen == [pytest.approx(266.7)]


def test_batch_takes_the_focal_length():
    out = subprocess.run(
        [sys.executable, str(ROOT / "blender_addon" / "batch.py"), "--", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "--focal PX" in out.stdout
