import os

import cv2
import numpy as np
import pytest

from segcore.errors import FrameError, InputError
from segcore.io import (
    atomic_write_bytes,
    decode_image,
    discover_frames,
    natural_key,
    read_image,
    read_label,
    remove_stale_temporaries,
)


def _png(path, img):
    ok, buf = cv2.imencode(".png", img)
    path.write_bytes(buf.tobytes())


def test_natural_order_and_hidden_files(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    for n in ["f_10.png", "f_2.png", "f_1.jpg", ".DS_Store", "._f_3.jpg", "notes.txt"]:
        _png(tmp_path / n, img)
    names = [p.name for p in discover_frames(tmp_path)]
    assert names == ["f_1.jpg", "f_2.png", "f_10.png"]
    assert natural_key("a2") < natural_key("a10")


def test_empty_and_imageless_folders_are_named(tmp_path):
    with pytest.raises(InputError, match="empty"):
        discover_frames(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        discover_frames(tmp_path)
    with pytest.raises(InputError, match="no such"):
        discover_frames(tmp_path / "missing")


def test_exif_orientation_is_honoured(tmp_path):
    # a 2x4 landscape JPEG tagged "rotate 90 CW" (orientation 6) must come back 4x2 portrait
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255
    ok, buf = cv2.imencode(".jpg", img)
    data = buf.tobytes()
    # build an APP1 EXIF segment with Orientation = 6
    tiff = (
        b"MM\x00\x2a\x00\x00\x00\x08"
        + b"\x00\x01"
        + b"\x01\x12\x00\x03\x00\x00\x00\x01"
        + b"\x00\x06\x00\x00"
        + b"\x00\x00\x00\x00"
    )
    app1 = b"\xff\xe1" + (len(tiff) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
    (tmp_path / "r.jpg").write_bytes(data[:2] + app1 + data[2:])
    out = read_image(tmp_path / "r.jpg")
    assert out.shape[:2] == (40, 20)


def test_16bit_gray_and_rgba_become_8bit_bgr(tmp_path):
    g16 = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    _png(tmp_path / "g16.png", g16)
    out = read_image(tmp_path / "g16.png")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 128
    _png(tmp_path / "rgba.png", rgba)
    warns = []
    assert read_image(tmp_path / "rgba.png", warns).shape == (8, 8, 3)
    assert warns and "alpha" in warns[0]


def test_corrupt_and_empty_files_raise_frame_error(tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    with pytest.raises(FrameError, match="empty"):
        read_image(tmp_path / "z.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(FrameError, match="decode|truncated"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(FrameError):
        decode_image(os.urandom(100))


def test_label_from_alpha_cutout(tmp_path):
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[2:4, 2:4, 3] = 200
    _png(tmp_path / "cut.png", rgba)
    lab = read_label(tmp_path / "cut.png")
    assert lab.dtype == bool and lab.sum() == 4


def test_atomic_write_leaves_no_temporaries(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"hello")
    assert (tmp_path / "a.bin").read_bytes() == b"hello"
    assert os.listdir(tmp_path) == ["a.bin"]
    (tmp_path / ".segcore-dead-a.bin.tmp").write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == 1
    assert os.listdir(tmp_path) == ["a.bin"]


@pytest.fixture(params=["isal", "zlib"])
def deflater(request, monkeypatch):
    """Both deflaters the PNG writer may use: ISA-L (installed here) and zlib (Blender)."""
    import zlib

    import segcore.png

    if request.param == "isal":
        monkeypatch.setattr(segcore.png, "_deflate", pytest.importorskip("isal.isal_zlib"))
    else:
        monkeypatch.setattr(segcore.png, "_deflate", zlib)
    return request.param


@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 7, 3), (5, 3, 4), (301, 257), (300, 211, 3), (333, 190, 4)]
)
def test_parallel_png_decodes_to_the_same_pixels(shape, deflater):
    from segcore.io import encode_png_parallel

    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png_parallel(img, pieces_bytes=10_000)  # many pieces, many IDAT chunks
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), img)
    Image = pytest.importorskip("PIL.Image")  # a second decoder, strict about CRCs
    import io

    rgb = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(rgb, img if img.ndim == 2 else img[:, :, [2, 1, 0, 3][: shape[2]]])


def test_large_png_is_no_bigger_than_opencvs(deflater):
    from segcore.io import PARALLEL_PNG_PIXELS, encode_png

    h, w = 1024, PARALLEL_PNG_PIXELS // 1024 + 1
    rng = np.random.default_rng(0)
    flat = np.full((h, w, 4), 230, np.uint8)
    cv2.circle(flat, (w // 2, h // 2), h // 3, (40, 60, 120, 255), -1)
    noisy = np.clip(flat + rng.normal(0, 4, flat.shape), 0, 255).astype(np.uint8)
    for img in (flat, noisy):
        ours, theirs = encode_png(img), cv2.imencode(".png", img)[1]
        assert np.array_equal(cv2.imdecode(np.frombuffer(ours, np.uint8), -1), img)
        # on the flat image both are tiny (14 KB for 4 MB of pixels); ISA-L's level 1 adds
        # a few KB there that do not matter, and is the smaller one on photos
        assert len(ours) <= 1.05 * len(theirs) + 16_384, (len(ours), len(theirs))


def test_freed_frame_buffers_are_kept_where_glibc_allocates():
    import platform

    from segcore.io import keep_freed_memory

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc
