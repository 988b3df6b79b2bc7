"""reconstruct's focal length: --focal, else the frames' EXIF; the turntable solver refuses to
guess one."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from segcore.errors import InputError
from segcore.exif import exif_focal

ROOT = Path(__file__).resolve().parents[2]
TURNTABLE = ROOT / "tests" / "data" / "recon_turntable"  # 400x300, a 24 mm lens on 36 mm
TRUE_FOCAL = 24.0 / 36.0 * 400


class Solved(Exception):
    """Stands in for the solve: the test only needs the focal it was given."""


def frames(tmp_path: Path, exif: bool) -> Path:
    out = tmp_path / ("exif" if exif else "plain")
    out.mkdir()
    for p in sorted((TURNTABLE / "images").glob("*.jpg")):
        data = p.read_bytes()
        if not exif and data[2:4] == b"\xff\xe1":  # drop the APP1 (EXIF) segment
            (length,) = struct.unpack(">H", data[4:6])
            data = data[:2] + data[4 + length :]
        (out / p.name).write_bytes(data)
    return out


@pytest.fixture
def solver_focal(monkeypatch):
    """The focal length reconstruct hands the turntable solver (the solve itself skipped)."""
    pytest.importorskip("pycolmap")
    if not (TURNTABLE / "cameras.json").exists():
        pytest.skip("tests/data/recon_turntable is missing")
    import segcore.recon.turntable.colmap as solver

    seen = []

    def fake(grays, masks, K, report, silhouettes=None, still=True):
        seen.append(K[0, 0])
        raise Solved

    monkeypatch.setattr(solver, "solve_turntable", fake)
    return seen


def test_the_turntable_solver_takes_the_focal_from_exif(tmp_path, solver_focal):
    from segcore.recon import reconstruct

    images = frames(tmp_path, exif=True)
    assert exif_focal(images / "0000.jpg") is not None
    with pytest.raises(Solved):
        reconstruct(images, TURNTABLE / "masks", tmp_path / "ws", mapper="turntable")
    assert solver_focal[-1] == pytest.approx(TRUE_FOCAL, rel=1e-4)
    with pytest.raises(Solved):  # --focal wins over EXIF
        reconstruct(images, TURNTABLE / "masks", tmp_path / "ws", mapper="turntable", focal_px=300)
    assert solver_focal[-1] == 300


def test_no_exif_and_no_focal_is_a_one_line_error_for_the_turntable_solver(
    tmp_path, solver_focal, capsys
):
    from segcore.cli import main
    from segcore.recon import reconstruct

    images = frames(tmp_path, exif=False)
    assert exif_focal(images / "0000.jpg") is None
    with pytest.raises(InputError, match=r"0000\.jpg: no focal length in its EXIF.*--focal PX"):
        reconstruct(images, TURNTABLE / "masks", tmp_path / "ws", mapper="turntable")
    assert solver_focal == []  # refused before the solve
    # the CLI: exit 2 with that line (auto takes the solver: the background stands still)
    code = main(["reconstruct", str(images), str(TURNTABLE / "masks"), "-o", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and "no focal length in its EXIF" in err and "Traceback" not in err
    shutil.rmtree(tmp_path / "w", ignore_errors=True)
