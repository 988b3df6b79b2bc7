"""The reliability matrix (docs/reliability.md): every bad input and fault gives a clear
message, loses nothing, and never stops the other frames."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from segcore.cli import main
from segcore.errors import OutputError

from .conftest import ROOT, blob_image


def _frame(seed=0, h=96, w=128):
    return blob_image(h, w, seed=seed)[0]


def _run(args, capsys=None):
    code = main(args)
    err = capsys.readouterr().err if capsys else ""
    return code, err


@pytest.fixture()
def seg(random_model, tmp_path):
    """segment(folder_or_file, *extra) -> (exit code, stderr, out folder)."""

    def run(inp, *extra, out=None, capsys=None):
        out = out or tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        code = main(
            [
                "segment",
                str(inp),
                "-o",
                str(out),
                "--model",
                str(random_model["card"]),
                "-q",
                *extra,
            ]
        )
        err = capsys.readouterr().err if capsys else ""
        return code, err, out

    return run


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _no_temporaries(out: Path) -> bool:
    return not [p for p in out.rglob(".segcore-*")]


# --- inputs ------------------------------------------------------------------------------


def test_empty_folder(seg, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    code, err, out = seg(tmp_path / "in", capsys=capsys)
    assert code == 2 and "empty" in err and not out.exists()


def test_folder_without_images(seg, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    (d / "scan.pdf").write_bytes(b"%PDF")
    code, err, _ = seg(d, capsys=capsys)
    assert code == 2 and "no images" in err


@pytest.mark.parametrize("kind", ["zero_byte", "truncated_jpeg", "garbage"])
def test_unreadable_frame_is_named_and_skipped(seg, tmp_path, capsys, kind):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.jpg"), _frame(1))
    data = cv2.imencode(".jpg", _frame(2))[1].tobytes()
    bad = {"zero_byte": b"", "truncated_jpeg": data[: len(data) // 2], "garbage": os.urandom(3000)}[
        kind
    ]
    (d / "b.jpg").write_bytes(bad)
    cv2.imwrite(str(d / "c.jpg"), _frame(3))
    code, err, out = seg(d, capsys=capsys)
    assert code == 1
    assert "b.jpg" in err
    assert (out / "masks" / "a.png").exists() and (out / "masks" / "c.png").exists()
    assert not (out / "masks" / "b.png").exists()
    rep = _report(out)
    assert [f["status"] for f in rep["frames"]] == ["ok", "failed", "ok"]
    if kind == "truncated_jpeg":
        assert "truncated" in rep["frames"][1]["error"]
    assert (d / "b.jpg").read_bytes() == bad  # input untouched


def _exif_rotated_jpeg(img: np.ndarray, orientation: int) -> bytes:
    data = cv2.imencode(".jpg", img)[1].tobytes()
    tiff = (
        b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01"
        + bytes([0, orientation, 0, 0])
        + b"\x00\x00\x00\x00"
    )
    app1 = b"\xff\xe1" + (len(tiff) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
    return data[:2] + app1 + data[2:]


def test_odd_formats_all_segment(seg, tmp_path, capsys):
    from PIL import Image

    d = tmp_path / "in"
    d.mkdir()
    f = _frame(4)
    cv2.imwrite(str(d / "png_named.jpg"), f, [])  # extension lies: .jpg holding... a JPEG
    (d / "png_named.jpg").write_bytes(cv2.imencode(".png", f)[1].tobytes())  # now a PNG
    Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).convert("CMYK").save(d / "cmyk.jpg")
    cv2.imwrite(str(d / "sixteen_png.png"), f.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "sixteen_tif.tif"), f.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "grey.png"), cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "rgba.png"), np.dstack([f, np.full(f.shape[:2], 77, np.uint8)]))
    (d / "rotated.jpg").write_bytes(_exif_rotated_jpeg(f, 6))
    cv2.imwrite(str(d / "tiny1.png"), f[:1, :1])
    cv2.imwrite(str(d / "tiny16.png"), f[:16, :16])
    cv2.imwrite(str(d / "big.png"), cv2.resize(f, (300, 200)))  # mixed sizes
    code, err, out = seg(d, capsys=capsys)
    assert code == 0, err
    expect = {
        "png_named": (96, 128),
        "cmyk": (96, 128),
        "sixteen_png": (96, 128),
        "sixteen_tif": (96, 128),
        "grey": (96, 128),
        "rgba": (96, 128),
        "rotated": (128, 96),
        "tiny1": (1, 1),
        "tiny16": (16, 16),
        "big": (200, 300),
    }
    rep = {Path(r["path"]).stem: r for r in _report(out)["frames"]}
    for stem, hw in expect.items():
        m = cv2.imread(str(out / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert m.shape == hw, stem
        rgba = cv2.imread(str(out / "rgba" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert rgba.shape == (*hw, 4), stem
    assert any("alpha" in w for w in rep["rgba"]["warnings"])


def test_duplicate_stems_are_refused(seg, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), _frame())
    cv2.imwrite(str(d / "a.jpg"), _frame())
    code, err, _ = seg(d, capsys=capsys)
    assert code == 2 and "same name stem" in err


def test_awkward_names_symlinks_hidden(seg, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("with space.jpg", "ünïcødé 漢字.jpg", "-leading-dash.jpg"):
        cv2.imwrite(str(tmp_path / "x.jpg"), _frame(7))
        (d / name).write_bytes((tmp_path / "x.jpg").read_bytes())
    (d / "link.jpg").symlink_to(d / "with space.jpg")
    (d / "broken.jpg").symlink_to(d / "missing.jpg")
    (d / ".DS_Store").write_bytes(b"\x00\x01")
    (d / "._with space.jpg").write_bytes(b"\x00\x05\x16\x07")
    code, err, out = seg(d, capsys=capsys)
    assert code == 0, err
    names = sorted(p.name for p in (out / "masks").iterdir())
    assert names == sorted(["with space.png", "ünïcødé 漢字.png", "-leading-dash.png", "link.png"])


# --- outputs -----------------------------------------------------------------------------


@pytest.fixture()
def frames(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(6):
        cv2.imwrite(str(d / f"f{i}.jpg"), _frame(i))
    return d


def test_folders_deleted_mid_run(random_model, frames, tmp_path):
    import shutil

    from segcore.pipeline import SegmentOptions, SequenceJob

    # the output folder vanishes (a network drive unmounted): the run stops, it does not
    # fail every remaining frame one by one
    out = tmp_path / "gone"
    job = SequenceJob(frames, out, SegmentOptions(model=str(random_model["card"]), workers=1))
    results = []
    for r in job.run():
        results.append(r)
        if len(results) == 2:
            shutil.rmtree(out)
    assert job.fatal and "disappeared" in job.fatal
    assert results[0].status == "ok" and results[2].status == "failed"
    assert len(results) < len(job.frames)
    # the input folder vanishes: each remaining frame is named as unreadable
    src = tmp_path / "src"
    shutil.copytree(frames, src)
    job = SequenceJob(
        src, tmp_path / "o2", SegmentOptions(model=str(random_model["card"]), workers=1)
    )
    results = []
    for r in job.run():
        results.append(r)
        if len(results) == 1:
            shutil.rmtree(src)
    # the frame queued behind the first may have been read before the folder went
    statuses = [r.status for r in results]
    assert len(statuses) == len(job.frames) and statuses[0] == "ok"
    assert set(statuses[2:]) == {"failed"} and statuses[1] in ("ok", "failed")
    assert all("cannot read" in r.error for r in results if r.status == "failed")


def test_unwritable_output_is_refused_before_any_frame(seg, frames, capsys):
    code, err, _ = seg(frames, out=Path("/proc/segcore-cannot-write-here"), capsys=capsys)
    assert code == 2 and "cannot write" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_output_folder(seg, frames, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    code, err, _ = seg(frames, out=out, capsys=capsys)
    assert code == 2 and "cannot write" in err


def test_full_disk_stops_with_message_and_no_partial_files(seg, frames, tmp_path, capsys):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        big = frames.parent / "big"
        big.mkdir()
        for i in range(8):
            cv2.imwrite(str(big / f"b{i}.png"), cv2.resize(_frame(i), (640, 480)))
        code, err, out = seg(big, out=mnt / "out", capsys=capsys)
        assert code == 1
        assert "No space left" in err and "--skip-existing" in err
        assert _no_temporaries(mnt)
        for p in (mnt / "out").rglob("*.png"):
            assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None  # all whole
    finally:
        subprocess.run(["umount", str(mnt)])


def _default_sigint() -> None:
    # a shell's background job ignores SIGINT and its children inherit that (Python then
    # installs no KeyboardInterrupt handler): give the child the terminal's default back
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "segcore", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
        **kw,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_matches_uninterrupted(random_model, tmp_path, sig):
    d = tmp_path / "frames"
    d.mkdir()
    # enough frames that the run cannot finish before the signal lands (the faster PNG
    # writer made 40 frames race it)
    n = 160
    for i in range(n):
        cv2.imwrite(str(d / f"f{i:03d}.jpg"), cv2.resize(_frame(i), (640, 480)))
    model = ["--model", str(random_model["card"]), "-q", "--workers", "1"]
    ref = tmp_path / "ref"
    assert _cli(["segment", str(d), "-o", str(ref), *model]).wait() == 0
    out = tmp_path / "out"
    p = _cli(["segment", str(d), "-o", str(out), *model])
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "rgba").glob("*.png"))) < 3:
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["summary"]["interrupted"] and rep["summary"]["not_run"] > 0
    assert _no_temporaries(out)
    done = len(list((out / "masks").glob("*.png")))
    assert 0 < done < n
    r = _cli(["segment", str(d), "-o", str(out), *model, "--skip-existing"])
    assert r.wait() == 0
    for sub in ("masks", "rgba"):
        for f in (ref / sub).iterdir():
            assert (out / sub / f.name).read_bytes() == f.read_bytes(), f.name


def test_two_runs_into_one_folder_do_not_corrupt(random_model, frames, tmp_path):
    out = tmp_path / "shared"
    args = [
        "segment",
        str(frames),
        "-o",
        str(out),
        "--model",
        str(random_model["card"]),
        "-q",
        "--overwrite",
    ]
    procs = [_cli(args), _cli(args)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0, 0]
    assert _no_temporaries(out)
    for p in out.rglob("*.png"):
        assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None
    json.loads((out / "report.json").read_text())


def test_bad_model_touches_no_frame(frames, tmp_path, capsys):
    (tmp_path / "m.json").write_text("{not json")
    out = tmp_path / "o"
    code = main(["segment", str(frames), "-o", str(out), "--model", str(tmp_path / "m.json")])
    assert code == 2 and "not valid JSON" in capsys.readouterr().err
    assert not (out / "masks").exists()


# --- bounded memory ----------------------------------------------------------------------


@pytest.mark.slow
def test_100_megapixel_frame_in_bounded_memory(random_model, tmp_path):
    d = tmp_path / "huge"
    d.mkdir()
    big = cv2.resize(_frame(9), (12000, 8400), interpolation=cv2.INTER_LINEAR)  # 100.8 MP
    cv2.imwrite(str(d / "huge.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    decoded_mb = big.nbytes / 2**20
    del big
    code = (
        "from tools.bench import peak_rss_mb\n"
        "from segcore.cli import main\n"
        f"c = main(['segment', {str(d)!r}, '-o', {str(tmp_path / 'o')!r}, '--model', "
        f"{str(random_model['card'])!r}, '-q', '--formats', 'mask'])\n"
        "peak = peak_rss_mb()\n"
        "print(c, peak)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    c, peak = r.stdout.split()
    assert c == "0", r.stderr
    assert float(peak) < 3.2 * decoded_mb + 400, (peak, decoded_mb)


def test_peak_memory_of_a_child_is_its_own(tmp_path):
    """``ru_maxrss`` survives exec, so a child of a big parent would report the parent's
    peak; ``peak_rss_mb`` reads the child's own high-water mark (what the benchmark and
    the 100-MP test measure)."""
    ballast = np.ones(400 * 2**20, np.uint8)  # touched: 400 MB resident in this process
    code = "from tools.bench import peak_rss_mb; print(peak_rss_mb())"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 300, (r.stdout, ballast.nbytes)


# --- data loss: a command changes only what it wrote, never an input ----------------------


def _tree(root: Path) -> dict:
    """Every entry under ``root``: relative path -> file bytes (None for a folder)."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def _colmap_project(root: Path, subfolder: bool) -> Path:
    """``root/images`` (frames and a user's other files) and ``root/masks`` (COLMAP names)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "images" / f"f_{i}.jpg"), _frame(i, 30, 40))
        cv2.imwrite(str(root / "masks" / f"f_{i}.jpg.png"), np.full((30, 40), 255, np.uint8))
    (root / "images" / "notes.txt").write_text("shoot notes")
    (root / "images" / "IMG_0001.CR2").write_bytes(b"raw sensor data")
    (root / "images" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    if subfolder:
        (root / "images" / "rejects").mkdir()
        (root / "images" / "rejects" / "r.jpg").write_bytes(b"x")
    return root


@pytest.mark.parametrize("subfolder", [False, True], ids=["files", "subfolder"])
def test_reconstruct_into_the_frames_project_deletes_nothing(tmp_path, capsys, subfolder):
    proj = _colmap_project(tmp_path / "proj", subfolder)
    before = _tree(proj)
    code, err = _run(
        ["reconstruct", str(proj / "images"), str(proj / "masks"), "-o", str(proj), "-q"], capsys
    )
    assert code == 2 and "Traceback" not in err
    assert "images" in err and "choose another workspace" in err
    assert len(err.strip().splitlines()) == 1
    assert _tree(proj) == before  # nothing deleted, nothing added


def test_reconstruct_without_masks_keeps_the_segmentation_masks(seg, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f_{i}.jpg"), _frame(i, 30, 40))
    code, _, out = seg(frames, "--formats", "mask", out=tmp_path / "out", capsys=capsys)
    assert code == 0
    before = _tree(out)
    code, err = _run(["reconstruct", str(frames), "-o", str(out), "-q"], capsys)
    assert code == 2 and "did not write" in err and "masks" in err
    assert _tree(out) == before


def test_reconstruct_reruns_in_its_own_workspace_and_prunes_only_its_frames(tmp_path):
    from segcore.recon import prepare_workspace

    frames, ws = tmp_path / "frames", tmp_path / "ws"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"f_{i}.jpg"), _frame(i, 30, 40))
    prepare_workspace(frames, None, ws)
    (frames / "f_3.jpg").unlink()  # a frame dropped from the shoot
    prepare_workspace(frames, None, ws)  # the workspace's own files: replaced and pruned
    assert sorted(p.name for p in (ws / "images").iterdir()) == ["f_0.jpg", "f_1.jpg", "f_2.jpg"]
    (ws / "images" / "keep.txt").write_text("a user's file")
    with pytest.raises(OutputError, match=r"keep.txt.*did not write"):
        prepare_workspace(frames, None, ws)
    assert (ws / "images" / "keep.txt").read_text() == "a user's file"


def test_segment_refuses_an_input_that_is_one_of_its_output_folders(seg, tmp_path, capsys):
    inout = tmp_path / "inout"
    (inout / "rgba").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(inout / "rgba" / f"p_{i}.png"), _frame(i))
    before = _tree(inout)
    code, err, _ = seg(inout / "rgba", "--overwrite", out=inout, capsys=capsys)
    assert code == 2 and "rgba" in err and "input" in err
    assert _tree(inout) == before
    inout2 = tmp_path / "inout2"
    (inout2 / "masks").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(inout2 / "masks" / f"p_{i}.jpg"), _frame(i))
    before = _tree(inout2)
    code, err, _ = seg(inout2 / "masks", out=inout2, capsys=capsys)
    assert code == 2 and "masks" in err
    assert _tree(inout2) == before


def test_segment_overwrites_only_outputs_it_wrote(seg, frames, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "f0.png").write_bytes(b"a user's own mask")
    code, err, _ = seg(frames, "--overwrite", out=out, capsys=capsys)
    assert code == 2 and "f0.png" in err and "did not write" in err
    assert (out / "masks" / "f0.png").read_bytes() == b"a user's own mask"
    (out / "masks" / "f0.png").unlink()
    assert seg(frames, out=out)[0] == 0
    assert seg(frames, "--overwrite", out=out)[0] == 0  # its own outputs: replaced


def _bind(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    r = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot bind-mount here: {r.stderr.decode().strip()}")


def test_output_inside_the_input_through_a_bind_mount_is_refused(seg, frames, tmp_path, capsys):
    view = tmp_path / "view"  # the frames' share, mounted a second time
    _bind(frames, view)
    try:
        before = _tree(frames)
        code, err, _ = seg(frames, out=view / "out", capsys=capsys)
        assert code == 2 and "inside" in err
        assert _tree(frames) == before
        code, err = _run(["reconstruct", str(frames), "-o", str(view / "ws"), "-q"], capsys)
        assert code == 2 and "inside" in err
        assert _tree(frames) == before
    finally:
        subprocess.run(["umount", str(view)])
