"""PNG bytes: fast encoding of large masks and cut-outs, a check that a file is a whole
PNG, and removal of ICC profile chunks that libpng would warn about."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

try:  # Intel's ISA-L deflate: 4-5x faster than zlib at level 1 and no larger (optional)
    from isal import isal_zlib as _deflate
except ImportError:  # e.g. inside Blender: plain zlib, the same PNG format
    _deflate = zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def without_png_profile(data: bytes) -> bytes:
    """PNG bytes without their ICC profile chunk (``iCCP``), other bytes as they are.

    OpenCV ignores the profile anyway, but libpng checks it while decoding and prints
    warnings straight to the terminal ("libpng warning: iCCP: known incorrect sRGB
    profile": many photos saved by image editors carry one); without the chunk it has
    nothing to warn about, and the pixels are the same."""
    if not data.startswith(PNG_SIGNATURE) or b"iCCP" not in data[: 1 << 20]:
        return data
    out, pos, n = [data[:8]], 8, len(data)
    while pos + 12 <= n:
        size = int.from_bytes(data[pos : pos + 4], "big")
        tag = data[pos + 4 : pos + 8]
        end = pos + 12 + size
        if tag == b"IDAT" or end > n:  # the profile comes before the image data
            out.append(data[pos:])
            return b"".join(out)
        if tag != b"iCCP":
            out.append(data[pos:end])
        pos = end
    out.append(data[pos:])
    return b"".join(out)


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
