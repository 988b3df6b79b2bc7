"""What segment leaves out is named, odd pixel formats are read or warned about, options are
bounded, and a frame too large for the memory fails with a message, not an internal error."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from segcore.cli import main
from segcore.errors import FrameError
from segcore.imageinfo import image_info
from segcore.io import decode_image

from .conftest import ROOT
from .test_reliability import _frame, _report, seg  # noqa: F401  (seg: a fixture)


def _png(width: int, height: int, colour_type: int, rows: bytes, *chunks) -> bytes:
    def chunk(tag: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(payload, zlib.crc32(tag))
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    body = [chunk(tag, payload) for tag, payload in chunks]
    return b"".join(
        [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", ihdr), *body, chunk(b"IDAT", rows)]
        + [chunk(b"IEND", b"")]
    )


def _bomb(side: int) -> bytes:
    """A grey PNG of side x side zeros: a few hundred kilobytes that decode to side**2 bytes."""
    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    return _png(side, side, 0, b"".join(z.compress(row) for _ in range(side)) + z.flush())


def _one_frame(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.jpg"), _frame(1))
    return d


# --- files left out ------------------------------------------------------------------------


def test_unread_formats_and_subfolders_are_named(random_model, tmp_path, capsys):
    d = tmp_path / "in"
    (d / "cam2" / "raw").mkdir(parents=True)
    cv2.imwrite(str(d / "a.jpg"), _frame(1))
    cv2.imwrite(str(d / "cam2" / "raw" / "b.jpg"), _frame(2))
    for name in ("c.heic", "d.gif", "e.exr", "f.hdr", "g.jp2"):
        (d / name).write_bytes(b"\0" * 16)
    (d / "notes.txt").write_text("not an image: left out without a word")
    out = tmp_path / "out"
    code = main(["segment", str(d), "-o", str(out), "--model", str(random_model["card"])])
    err = capsys.readouterr().err
    assert code == 0
    assert (
        f"warning: {d}: skipped 5 images in formats segcore does not read: c.heic, d.gif, "
        "e.exr, f.hdr and 1 more (convert them to JPEG, PNG or TIFF)" in err
    )
    assert "images in subfolders were not read: cam2/ (1); pass --recursive" in err
    assert "notes.txt" not in err
    notes = _report(out)["input_notes"]
    assert len(notes) == 2 and "g.jp2" not in notes[0]


def test_recursive_segments_subfolders_and_refuses_a_stem_twice(seg, tmp_path, capsys):  # noqa: F811
    d = tmp_path / "in"
    (d / "cam1").mkdir(parents=True)
    (d / ".cache").mkdir()
    cv2.imwrite(str(d / "cam1" / "f_10.jpg"), _frame(1))
    cv2.imwrite(str(d / "cam1" / "f_2.jpg"), _frame(2))
    cv2.imwrite(str(d / ".cache" / "x.jpg"), _frame(3))
    code, err, out = seg(d, "--recursive", capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["f_10.png", "f_2.png"]
    assert [f["path"].rsplit("/", 1)[-1] for f in _report(out)["frames"]] == ["f_2.jpg", "f_10.jpg"]
    cv2.imwrite(str(d / "f_2.png"), _frame(4))  # the same stem at the top: masks would collide
    code, err, out = seg(d, "--recursive", capsys=capsys)
    assert code == 2 and "has the same name stem as" in err and not out.exists()


def test_a_single_unread_image_says_how_to_convert_it(seg, tmp_path, capsys):  # noqa: F811
    p = tmp_path / "photo.heic"
    p.write_bytes(b"\0" * 16)
    code, err, _ = seg(p, capsys=capsys)
    assert code == 2 and "not an image file segcore reads" in err and "convert it to JPEG" in err


# --- pixel formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["logluv", "none"])
def test_float_tiff_with_values_to_255_is_read_as_such_and_warned(compression):
    img = _frame(5)
    params = [] if compression == "logluv" else [cv2.IMWRITE_TIFF_COMPRESSION, 1]
    data = cv2.imencode(".tif", img.astype(np.float32), params)[1].tobytes()
    assert image_info(data).float_samples
    warnings: list[str] = []
    out = decode_image(data, "f.tif", warnings=warnings)
    assert out.dtype == np.uint8 and out.shape == img.shape
    tol = 1 if compression == "none" else 12  # LogLuv stores colour with some loss
    assert np.abs(out.astype(int) - img).mean() <= tol
    assert len(warnings) == 1 and "float samples up to" in warnings[0] and "0..255" in warnings[0]
    # 0..1 float data is the usual convention: read as is, nothing to say
    data = cv2.imencode(".tif", img.astype(np.float32) / 255, params)[1].tobytes()
    warnings.clear()
    assert np.abs(decode_image(data, "g.tif", warnings=warnings).astype(int) - img).mean() <= tol
    assert warnings == []


def test_alpha_is_warned_for_16_bit_rgba_tiff_and_palette_png(seg, tmp_path, capsys):  # noqa: F811
    d = tmp_path / "in"
    d.mkdir()
    bgra16 = cv2.cvtColor(_frame(6), cv2.COLOR_BGR2BGRA).astype(np.uint16) * 257
    cv2.imwrite(str(d / "a.tif"), bgra16)
    h, w = 48, 64
    rows = b"".join(b"\0" + bytes((x // 8) % 4 for x in range(w)) for _ in range(h))
    palette = bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    png = _png(w, h, 3, zlib.compress(rows), (b"PLTE", palette), (b"tRNS", b"\x00\xff"))
    (d / "b.png").write_bytes(png)
    cv2.imwrite(str(d / "c.jpg"), _frame(7))
    code, err, out = seg(d, capsys=capsys)
    assert code == 0, err
    warned = {f["path"].rsplit("/", 1)[-1]: f["warnings"] for f in _report(out)["frames"]}
    alpha = "the input has an alpha channel; it was ignored"
    assert alpha in warned["a.tif"] and alpha in warned["b.png"]
    assert alpha not in warned["c.jpg"]


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--workers", "0", "--workers 0: use 1 to 64 frames at once"),
        ("--workers", "-1", "--workers -1: use 1 to 64 frames at once"),
        ("--workers", "1000", "--workers 1000: use 1 to 64 frames at once"),
        ("--size", "100000", "--size 100000 is out of range; use 32 to 4096 pixels"),
        ("--size", "16", "--size 16 is out of range; use 32 to 4096 pixels"),
    ],
)
def test_options_out_of_range_are_refused(seg, tmp_path, capsys, option, value, message):  # noqa: F811
    code, err, out = seg(_one_frame(tmp_path), option, value, capsys=capsys)
    assert code == 2 and message in err and not out.exists()


# --- decompression bombs and memory ------------------------------------------------------------


def test_image_beyond_the_decoder_limit_is_too_large():
    # a header that claims 40000 x 40000 pixels (the data never gets read)
    data = _png(40000, 40000, 0, zlib.compress(b"\0" * 100))
    with pytest.raises(FrameError, match=r"image too large: 40000x40000 \(1600 MP\)"):
        decode_image(data, "bomb.png")


def test_bomb_larger_than_free_memory_fails_with_not_enough_memory(
    seg,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    import segcore.io

    d = _one_frame(tmp_path)
    (d / "bomb.png").write_bytes(_bomb(12000))  # 144 MP in 150 kB: ~1.4 GB to segment
    monkeypatch.setattr(segcore.io, "available_memory", lambda: 400 << 20)
    code, err, out = seg(d, capsys=capsys)
    assert code == 1
    assert (
        "bomb.png: not enough memory for a 12000x12000 (144 MP) frame (about 1.4 GB needed, "
        "0.4 GB free)" in err
    )
    assert "internal error" not in err and (out / "masks" / "a.png").exists()


def test_allocation_failure_mid_frame_is_not_enough_memory(seg, tmp_path, capsys, monkeypatch):  # noqa: F811
    import segcore.pipeline

    def fail(*args, **kw):
        exc = cv2.error("OpenCV(4.11.0) alloc.cpp:73: error: (-4:Insufficient memory)")
        exc.code = cv2.Error.StsNoMem
        raise exc

    d = _one_frame(tmp_path)
    monkeypatch.setattr(segcore.pipeline, "segment_frame", fail)
    code, err, _ = seg(d, capsys=capsys)
    assert code == 1 and "a.jpg: not enough memory for this frame" in err
    assert "internal error" not in err


def test_bomb_decoded_under_a_memory_limit_says_not_enough_memory(tmp_path):
    """A real allocation failure: the decoder runs out of address space (RLIMIT_AS)."""
    pytest.importorskip("resource")
    (tmp_path / "bomb.png").write_bytes(_bomb(20000))  # 400 MP: 1.2 GB decoded
    code = f"""
import resource, sys
sys.path.insert(0, {str(ROOT)!r})
from segcore.errors import FrameError
from segcore.io import read_image
limit = 1200 << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    read_image({str(tmp_path / "bomb.png")!r})
    print("decoded")
except FrameError as exc:
    print(exc)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "bomb.png: not enough memory for a 20000x20000 (400 MP) frame" in res.stdout, (
        res.stdout + res.stderr
    )
    assert res.returncode == 0


# --- eval --------------------------------------------------------------------------------------


def _masks(folder, values: dict[str, int], ext: str = ".png"):
    """One mask per name: a centred rectangle of ``value`` on 0."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        m = np.zeros((40, 60), np.uint8)
        m[10:30, 15:45] = value
        cv2.imwrite(str(folder / f"{name}{ext}"), m)
    return folder


def test_eval_refuses_two_masks_with_one_stem(tmp_path, capsys):
    pred = _masks(tmp_path / "pred", {"f0": 255})
    gt = _masks(tmp_path / "gt", {"f0": 255})
    _masks(gt, {"f0": 255}, ".jpg")
    code = main(["eval", str(pred), str(gt)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{gt / 'f0.png'}: has the same name stem as f0.jpg, so both would be scored" in err


def test_eval_reads_low_valued_masks_with_a_warning(tmp_path, capsys):
    pred = _masks(tmp_path / "pred", {"f0": 255, "f1": 255, "f2": 255, "f3": 255})
    gt = _masks(tmp_path / "gt", {"f0": 1, "f1": 1, "f2": 100, "f3": 255})
    code = main(["eval", str(pred), str(gt), "--json", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 0
    assert (
        f"warning: {gt / 'f0.png'} (and 1 more masks): holds only the values 0 and 1, not 0 "
        "and 255: read with 1 as the subject" in err
    )
    assert f"warning: {gt / 'f2.png'}: holds only the values 0 and 100" in err
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["pooled"]["iou"] == 1.0 and len(scores["warnings"]) == 2
    # a label map of class indices (more than two values, none above half) is no mask
    m = np.zeros((40, 60), np.uint8)
    m[10:30, 15:30], m[10:30, 30:45] = 1, 2
    cv2.imwrite(str(gt / "f0.png"), m)
    main(["eval", str(pred), str(gt)])
    assert "has no value above 127.5 (at most 2): read as an empty mask" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["missing_folder", "a_folder"])
def test_eval_json_target_that_cannot_be_a_file(tmp_path, capsys, where):
    pred = _masks(tmp_path / "pred", {"f0": 255})
    gt = _masks(tmp_path / "gt", {"f0": 255})
    target = tmp_path / "nope" / "s.json" if where == "missing_folder" else tmp_path / "pred"
    code = main(["eval", str(pred), str(gt), "--json", str(target)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""  # refused before scoring
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err
    if where == "missing_folder":
        folder = tmp_path / "nope"
        assert err == f"error: {folder}: no such folder for --json {target}; create it or " + (
            "choose another path"
        )
    else:
        assert err.startswith(f"error: {target}: is a folder; --json needs a file name")
