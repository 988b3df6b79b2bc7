"""Frame discovery, decoding and atomic writing.

- Frames are found in natural order (``f_2`` before ``f_10``); hidden files and macOS
  resource forks (``.DS_Store``, ``._frame.jpg``) are ignored.
- Decoding goes through ``cv2.imdecode`` on bytes read by Python, so unicode paths work on
  every OS; EXIF orientation is honoured; 16-bit, grayscale and RGBA inputs become 8-bit BGR.
- Every output is written atomically: a hidden temporary file in the target folder, then
  ``os.replace``. A reader never sees a half-written file, and an interrupted run leaves
  only finished outputs (plus, at worst, a hidden ``.*.tmp`` file that the next run removes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import threading
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from .errors import FrameError, InputError

try:  # Intel's ISA-L deflate: 4-5x faster than zlib at level 1 and no larger (optional)
    from isal import isal_zlib as _deflate
except ImportError:  # e.g. inside Blender: plain zlib, the same PNG format
    _deflate = zlib

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
TMP_PREFIX = ".segcore-"
TMP_SUFFIX = ".tmp"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``f_2`` < ``f_10``."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts)


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def discover_frames(path: str | os.PathLike) -> list[Path]:
    """The image files of ``path`` (a folder, or one image), in natural order."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise InputError(
                f"{path}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})"
            )
        return [path]
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise InputError(f"{path}: cannot list the folder ({exc.strerror})") from exc
    frames = [
        p
        for p in entries
        if not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    if not frames:
        others = [p for p in entries if not is_hidden(p)]
        what = "is empty" if not others else f"has {len(others)} files but no images"
        raise InputError(
            f"{path}: the folder {what}; point INPUT at a folder of "
            f"{'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS[:3])} frames"
        )
    frames.sort(key=lambda p: natural_key(p.name))
    return frames


def _png_has_alpha(data: bytes) -> bool:
    # PNG IHDR colour type at byte 25: 4 = grey + alpha, 6 = RGB + alpha.
    return data[:8] == PNG_SIGNATURE and len(data) > 25 and data[25] in (4, 6)


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise FrameError(path, f"cannot read the file ({exc.strerror})") from exc


def is_truncated_jpeg(data: bytes) -> bool:
    """A JPEG whose main image lacks its end-of-image marker (an interrupted copy).

    The marker segments are walked (skipping APPn payloads, which may hold a thumbnail with
    its own markers) to the main image's start of scan; in entropy-coded data 0xFF is always
    escaped, so the first FFD9 after it is the image's end.
    """
    if data[:3] != b"\xff\xd8\xff":
        return False
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False  # malformed: leave it to the decoder
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0xDA:
            return data.find(b"\xff\xd9", i) < 0
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return True  # ended before any image data


def decode_image(data: bytes, path: str | os.PathLike = "<bytes>", reduce: int = 1) -> np.ndarray:
    """Decode image bytes to an 8-bit BGR array (H, W, 3), EXIF orientation applied.

    ``reduce`` in (1, 2, 4, 8) uses the JPEG decoder's reduced-size path (much faster).
    """
    if not data:
        raise FrameError(path, "the file is empty (0 bytes); re-export or remove it")
    if is_truncated_jpeg(data):
        raise FrameError(path, "the JPEG is truncated (an incomplete copy?); copy it again")
    flags = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[reduce]
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:  # pragma: no cover - OpenCV usually returns None instead
        raise FrameError(path, f"cannot decode the image ({exc.msg.strip()})") from exc
    if img is None or img.size == 0:
        raise FrameError(
            path, "cannot decode the image (corrupt, truncated or not an image); re-export it"
        )
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def read_image(path: str | os.PathLike, warnings: list[str] | None = None) -> np.ndarray:
    """Read a frame as 8-bit BGR (H, W, 3). Notes about the input go to ``warnings``."""
    data = read_bytes(path)
    img = decode_image(data, path)
    if warnings is not None and _png_has_alpha(data):
        warnings.append("the input has an alpha channel; it was ignored")
    return img


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a label as a bool mask: a mask PNG (> 127 = subject) or an alpha cut-out.

    An image editor's alpha-cut PNG counts as a label too: alpha > 0.5 is the subject.
    """
    data = read_bytes(path)
    if not data:
        raise FrameError(path, "the label file is empty (0 bytes)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameError(path, "cannot decode the label image; re-export it as PNG")
    if img.ndim == 3 and img.shape[2] == 4:
        chan = img[:, :, 3]
    elif img.ndim == 3:
        chan = img.max(axis=2)
    else:
        chan = img
    half = 0.5 * (np.iinfo(chan.dtype).max if chan.dtype.kind in "ui" else 1.0)
    return chan > half


def png_is_whole(path: str | os.PathLike, colour_type: int | None = None) -> bool:
    """Whether ``path`` is a whole PNG (of IHDR ``colour_type``, when given): the signature,
    an intact IHDR, chunks that chain on to an IEND that ends the file. Reads the chunk
    headers only, not the pixels (a few milliseconds for a 24 MP cut-out), and catches an
    empty, truncated or cut-short file: what an output that is not done looks like."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(33)
            if (
                len(head) < 33
                or head[:8] != PNG_SIGNATURE
                or head[12:16] != b"IHDR"
                or zlib.crc32(head[12:29]) != int.from_bytes(head[29:33], "big")
                or (colour_type is not None and head[25] != colour_type)
            ):
                return False
            pos = 33
            while pos + 12 <= size:
                f.seek(pos)
                chunk = f.read(8)
                if chunk[4:] == b"IEND":
                    return pos + 12 == size and chunk + f.read(4) == PNG_IEND
                pos += 12 + int.from_bytes(chunk[:4], "big")
    except OSError:
        pass
    return False


def temporary_name(what: str = "") -> str:
    """A hidden temporary file name of this process (pid + random, and ``what``): short and
    of a fixed length, so a target of any legal name (up to 255 bytes) has one."""
    return f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}{what}{TMP_SUFFIX}"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(temporary_name())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


PARALLEL_PNG_PIXELS = 1_000_000  # from this size on, PNGs are compressed in parallel pieces
_PNG_PIECE_BYTES = 4 << 20  # raw bytes per piece: bounds the temporaries
_png_pool: ThreadPoolExecutor | None = None
_png_pool_lock = threading.Lock()


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint8 gray, BGR or BGRA image (or anything ``cv2.imencode`` takes).

    Large 8-bit images go through :func:`encode_png_parallel` (same pixels, about the same
    size, both cores busy); small ones through OpenCV.
    """
    if img.dtype == np.uint8 and img.shape[0] * img.shape[1] >= PARALLEL_PNG_PIXELS:
        return encode_png_parallel(img)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(tag))
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of ``a + b`` from those of ``a`` and ``b`` (``len2`` = len(b))."""
    base = 65521
    a1, b1, a2, b2 = adler1 & 0xFFFF, adler1 >> 16, adler2 & 0xFFFF, adler2 >> 16
    a = (a1 + a2 - 1) % base
    b = (b1 + b2 + len2 * (a1 - 1)) % base
    return (b << 16) | a


def encode_png_parallel(
    img: np.ndarray, pieces_bytes: int = _PNG_PIECE_BYTES, palette: bytes | None = None
) -> bytes:
    """PNG bytes of a uint8 (H, W), (H, W, 3) BGR or (H, W, 4) BGRA image, compressed in
    horizontal pieces on a small thread pool (zlib releases the GIL).

    Each scanline gets PNG's "Up" filter; each piece is deflated on its own and ends on a
    byte boundary (a sync flush), so the pieces concatenate into one zlib stream, written as
    one IDAT chunk per piece. The deflater is ISA-L's level 1 when the ``isal`` package is
    installed (a 1280x960 RGBA frame: 16 ms instead of 88, and a little smaller), else
    zlib's level 1 with the run-length strategy (OpenCV's default). On noisy photos the file
    is a little smaller than OpenCV's; on flat backgrounds about the same.

    ``palette`` (RGB triples, the ``PLTE`` payload) makes a one-channel image a palette
    PNG: its pixel values are indices into the palette (OpenCV cannot write one).
    """
    if palette is not None and img.ndim != 2:
        raise ValueError(f"a palette PNG is one channel of indices, got {img.shape}")
    if (
        img.dtype != np.uint8
        or img.ndim not in (2, 3)
        or (img.ndim == 3 and img.shape[2] not in (3, 4))
    ):
        raise ValueError(f"expected a uint8 gray, BGR or BGRA image, got {img.shape} {img.dtype}")
    H, W = img.shape[:2]
    C = 1 if img.ndim == 2 else img.shape[2]
    row_bytes = W * C
    step = max(1, pieces_bytes // max(1, row_bytes))
    starts = list(range(0, H, step))

    def piece(k: int):
        a, b = starts[k], min(H, starts[k] + step)
        src = img[max(0, a - 1) : b]
        if C == 3:
            src = cv2.cvtColor(src, cv2.COLOR_BGR2RGB)
        elif C == 4:
            src = cv2.cvtColor(src, cv2.COLOR_BGRA2RGBA)
        rows = src.reshape(len(src), row_bytes)
        f = np.empty((b - a, row_bytes + 1), np.uint8)
        f[:, 0] = 2  # filter type Up: the byte minus the byte above
        if a == 0:
            f[0, 1:] = rows[0]
            np.subtract(rows[1:], rows[:-1], out=f[1:, 1:])
        else:
            np.subtract(rows[1:], rows[:-1], out=f[:, 1:])
        data = memoryview(f).cast("B")
        if _deflate is zlib:
            z = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
        else:
            z = _deflate.compressobj(1, _deflate.DEFLATED, -15, 9)
        last = k == len(starts) - 1
        out = z.compress(data) + z.flush(_deflate.Z_FINISH if last else _deflate.Z_SYNC_FLUSH)
        return out, _deflate.adler32(data), len(data)

    parts = list(_pool().map(piece, range(len(starts))))
    adler = 1
    for _, a2, n2 in parts:
        adler = _adler32_combine(adler, a2, n2)
    idat = [p[0] for p in parts]
    idat[0] = b"\x78\x01" + idat[0]  # zlib header: deflate, 32 K window, fastest
    idat[-1] = idat[-1] + struct.pack(">I", adler)
    colour_type = 3 if palette is not None else {1: 0, 3: 2, 4: 6}[C]
    return b"".join(
        [
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, colour_type, 0, 0, 0)),
            *([_png_chunk(b"PLTE", palette)] if palette is not None else []),
            *(_png_chunk(b"IDAT", z) for z in idat),
            _png_chunk(b"IEND", b""),
        ]
    )


def _pool() -> ThreadPoolExecutor:
    global _png_pool
    with _png_pool_lock:
        if _png_pool is None:
            n = max(1, min(4, os.cpu_count() or 1))
            _png_pool = ThreadPoolExecutor(n, thread_name_prefix="segcore-png")
        return _png_pool


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Encode ``img`` as PNG and write it atomically."""
    atomic_write_bytes(path, encode_png(img))


def _owner_alive(name: str) -> bool:
    """Whether the process that made temporary file ``name`` (pid in its name) still runs."""
    try:
        pid = int(name[len(TMP_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, max_age_s: float = 6 * 3600) -> int:
    """Delete temporary files that interrupted runs left in ``folder``; returns how many.

    A temporary file of a run that is still going (another process writing to the same
    folder) is left alone, unless it is older than ``max_age_s`` (a pid reused, or a run on
    another machine sharing the folder that died).
    """
    import time

    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now = time.time()
    for p in folder.iterdir():
        if p.name.startswith(TMP_PREFIX) and p.name.endswith(TMP_SUFFIX):
            try:
                if _owner_alive(p.name) and now - p.stat().st_mtime < max_age_s:
                    continue
                p.unlink()
                n += 1
            except OSError:
                pass
    return n
