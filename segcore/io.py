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
from .imageinfo import ImageInfo, image_info

try:  # Intel's ISA-L deflate: 4-5x faster than zlib at level 1 and no larger (optional)
    from isal import isal_zlib as _deflate
except ImportError:  # e.g. inside Blender: plain zlib, the same PNG format
    _deflate = zlib

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
# what the hints name: every format segcore reads (IMAGE_EXTENSIONS)
READ_FORMATS = "JPEG, PNG, TIFF, BMP or WebP (.jpg .jpeg .png .tif .tiff .bmp .webp)"
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


# image formats segcore does not decode: a folder's files of these kinds are named, not
# silently passed over (HEIC/AVIF from phones, GIF, HDR/EXR, JPEG 2000 and XL, raw files)
UNREAD_IMAGE_EXTENSIONS = (
    *(".heic", ".heif", ".avif", ".gif", ".exr", ".hdr", ".jp2", ".j2k", ".jpx", ".jxl"),
    *(".psd", ".tga", ".pbm", ".pgm", ".ppm", ".pnm", ".dng", ".cr2", ".cr3", ".nef"),
    *(".nrw", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw", ".x3f", ".raw", ".iiq"),
)
CONVERT_ADVICE = "convert {} to JPEG, PNG or TIFF"


def _is_frame(p: Path) -> bool:
    return not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"{folder}: cannot list the folder ({exc.strerror})") from exc


def _walk(folder: Path) -> list[Path]:
    """Every non-hidden entry below ``folder`` (hidden folders not entered; a folder reached
    twice through symlinks is read once)."""
    out, seen, todo = [], set(), [folder]
    while todo:
        d = todo.pop()
        try:
            st = d.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        for p in _listing(d):
            if not is_hidden(p):
                out.append(p)
                if p.is_dir():
                    todo.append(p)
    return out


def _names(paths: list[Path], root: Path, most: int = 4) -> str:
    shown = ", ".join(p.relative_to(root).as_posix() for p in paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def skipped_inputs(folder: Path, entries: list[Path], recursive: bool) -> list[str]:
    """One line each about what a folder holds that will not be segmented: images in formats
    segcore does not read, and (without ``recursive``) images in subfolders."""
    notes = []
    unread = sorted(
        (p for p in entries if p.suffix.lower() in UNREAD_IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: natural_key(p.relative_to(folder).as_posix()),
    )
    if unread:
        n = len(unread)
        notes.append(
            f"skipped {n} image{'s' if n > 1 else ''} in formats segcore does not read: "
            f"{_names(unread, folder)} ({CONVERT_ADVICE.format('them')})"
        )
    if not recursive:
        subs = []
        for d in sorted((p for p in entries if p.is_dir()), key=lambda p: natural_key(p.name)):
            n = sum(1 for p in _walk(d) if _is_frame(p))
            if n:
                subs.append(f"{d.name}/ ({n})")
        if subs:
            shown = ", ".join(subs[:4]) + (f" and {len(subs) - 4} more" if len(subs) > 4 else "")
            notes.append(
                f"images in subfolders were not read: {shown}; pass --recursive to segment "
                "them too, or point INPUT at each subfolder"
            )
    return notes


def discover_frames(
    path: str | os.PathLike, notes: list[str] | None = None, recursive: bool = False
) -> list[Path]:
    """The image files of ``path`` (a folder, or one image), in natural order.

    ``recursive``: the images of its subfolders too (hidden ones left out), ordered by their
    path. ``notes`` receives one line for each kind of file left out that a user may have
    meant as a frame (:func:`skipped_inputs`).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            unread = path.suffix.lower() in UNREAD_IMAGE_EXTENSIONS
            how = f"; {CONVERT_ADVICE.format('it')}" if unread else ""
            raise InputError(
                f"{path}: not an image file segcore reads (expected one of "
                f"{', '.join(IMAGE_EXTENSIONS)}){how}"
            )
        return [path]
    entries = _walk(path) if recursive else [p for p in _listing(path) if not is_hidden(p)]
    frames = [p for p in entries if _is_frame(p)]
    skipped = skipped_inputs(path, entries, recursive)
    if not frames:
        files = [p for p in entries if not p.is_dir()]
        what = "is empty" if not entries else f"has {len(files)} files but no images segcore reads"
        raise InputError(
            f"{path}: the folder {what}"
            + "".join(f"; {s}" for s in skipped)
            + ("" if skipped else f"; point INPUT at a folder of {READ_FORMATS} frames")
        )
    if notes is not None:
        notes.extend(skipped)
    frames.sort(key=lambda p: natural_key(p.relative_to(path).as_posix()))
    return frames


def by_stem(paths: list[Path], clash: str) -> dict[str, Path]:
    """``paths`` by name stem; two files with one stem (``f0.png`` and ``f0.jpg``) are an
    :class:`InputError` naming both and ``clash``, what their one stem would cause."""
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise InputError(
                f"{p}: has the same name stem as {seen[p.stem].name}, so {clash}; "
                "rename or remove one of them"
            )
        seen[p.stem] = p
    return seen


# OpenCV decodes no image of more pixels than this (CV_IO_MAX_IMAGE_PIXELS, 2**30 unless
# the environment variable says otherwise)
MAX_DECODE_PIXELS = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
# segmenting a frame peaks at about this many times its decoded size (docs/reliability.md:
# 2.25x for 100 MP, OpenCV's JPEG decoder alone about 2x): a frame that needs more than the
# memory left fails with a message instead of waking the kernel's out-of-memory killer
FRAME_MEMORY_FACTOR = 3.2
_CHECK_MEMORY_FROM = 256 << 20  # bytes: smaller frames are not worth a look at /proc


def available_memory() -> int | None:
    """Bytes this process may still allocate: Linux's MemAvailable plus free swap, capped by
    the control group's limit; None where unknown (other systems)."""
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, value = line.split(":", 1)
                info[key] = int(value.split()[0]) * 1024
        avail = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (numpy's MemoryError or OpenCV's)."""
    return isinstance(exc, MemoryError) or (
        isinstance(exc, cv2.error) and getattr(exc, "code", None) == cv2.Error.StsNoMem
    )


def _megapixels(info: ImageInfo) -> str:
    return f"{info.width}x{info.height} ({info.pixels / 1e6:.0f} MP)"


def check_decodable(info: ImageInfo | None, path, reduce: int = 1) -> None:
    """:class:`FrameError` before decoding an image too large to decode, or to segment in the
    memory left (a decompression bomb: a few kilobytes that claim gigapixels)."""
    if info is None:
        return
    if info.pixels > MAX_DECODE_PIXELS:
        raise FrameError(
            path,
            f"image too large: {_megapixels(info)}; segcore decodes frames up to "
            f"{MAX_DECODE_PIXELS / 1e6:.0f} MP; downscale it",
        )
    need = FRAME_MEMORY_FACTOR * 3 * info.pixels / reduce**2
    if need >= _CHECK_MEMORY_FROM:
        avail = available_memory()
        if avail is not None and need > avail:
            raise FrameError(path, no_memory(info, need, avail))


def no_memory(info: ImageInfo | None = None, need: float = 0, avail: float = 0) -> str:
    size = f" a {_megapixels(info)} frame" if info is not None else " this frame"
    figures = f" (about {need / 1e9:.1f} GB needed, {avail / 1e9:.1f} GB free)" if need else ""
    return (
        f"not enough memory for{size}{figures}; close other programs, run with --workers 1, "
        "or downscale it"
    )


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


def decode_image(
    data: bytes,
    path: str | os.PathLike = "<bytes>",
    reduce: int = 1,
    warnings: list[str] | None = None,
) -> np.ndarray:
    """Decode image bytes to an 8-bit BGR array (H, W, 3), EXIF orientation applied.

    ``reduce`` in (1, 2, 4, 8) uses the JPEG decoder's reduced-size path (much faster).
    Notes about the input (an alpha channel dropped, float samples) go to ``warnings``.
    """
    if not data:
        raise FrameError(path, "the file is empty (0 bytes); re-export or remove it")
    if is_truncated_jpeg(data):
        raise FrameError(path, "the JPEG is truncated (an incomplete copy?); copy it again")
    info = image_info(data)
    check_decodable(info, path, reduce)
    data = without_png_profile(data)
    flags = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[reduce]
    buf = np.frombuffer(data, dtype=np.uint8)
    notes: list[str] = []
    try:
        if info is not None and info.float_samples:
            img = _decode_float(buf, info, notes, reduce)
        else:
            img = cv2.imdecode(buf, flags)
    except Exception as exc:  # OpenCV usually returns None instead
        if is_out_of_memory(exc):
            raise FrameError(path, no_memory(info)) from None
        if not isinstance(exc, cv2.error):
            raise
        raise FrameError(path, f"cannot decode the image ({exc.msg.strip()})") from exc
    if img is None or img.size == 0:
        raise FrameError(
            path, "cannot decode the image (corrupt, truncated or not an image); re-export it"
        )
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if warnings is not None:
        if info is not None and info.alpha:
            warnings.append("the input has an alpha channel; it was ignored")
        if info is not None and info.bits == 16 and not info.float_samples:
            warnings.append(SIXTEEN_BITS)
        warnings.extend(notes)
    return img


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


# what decode_image says of a 16-bit frame (OpenCV's 8-bit decoding keeps the top 8 bits)
SIXTEEN_BITS = (
    "16-bit image: segmented in 8 bits per channel, and the RGBA cut-out is 8-bit; for a "
    "16-bit cut-out, apply the mask (masks/) to the original"
)


_ORIENT = {  # EXIF / TIFF orientation -> the operation that makes the image upright
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _decode_float(buf, info: ImageInfo, notes: list[str], reduce: int = 1) -> np.ndarray | None:
    """A float TIFF as 8-bit BGR. OpenCV's 8-bit decoder reads float samples as 0..1 (and
    most float TIFFs not at all): 0..1 data is scaled to 0..255, data up to 255 is taken as
    0..255, brighter data is scaled down to fit; the last two with a note."""
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return None
    if img.ndim == 3:
        img = img[:, :, :3] if img.shape[2] >= 3 else img[:, :, 0]
    img = np.nan_to_num(img.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(img.max())
    if top <= 1.5:  # 0..1 data (lossy encodings such as LogLuv overshoot a little)
        scale = 255.0
    elif top <= 255.0 * 1.01:
        scale = 1.0
        notes.append(
            f"float samples up to {top:.4g}: read as 0..255 (float images are usually 0..1); "
            "save 8- or 16-bit TIFFs to be sure"
        )
    else:
        scale = 255.0 / top
        notes.append(
            f"float samples up to {top:.4g} (high dynamic range): scaled so that {top:.4g} "
            "is white; tone-map it or save an 8- or 16-bit TIFF"
        )
    out = np.clip(img * scale + 0.5, 0, 255).astype(np.uint8)
    if reduce > 1:  # as the decoder's reduced modes: sides divided, rounded up
        h, w = out.shape[:2]
        out = cv2.resize(out, (-(-w // reduce), -(-h // reduce)), interpolation=cv2.INTER_AREA)
    turn = _ORIENT.get(info.orientation)
    return turn(out) if turn is not None else out


def read_image(path: str | os.PathLike, warnings: list[str] | None = None) -> np.ndarray:
    """Read a frame as 8-bit BGR (H, W, 3). Notes about the input go to ``warnings``."""
    return decode_image(read_bytes(path), path, warnings=warnings)


def read_label(path: str | os.PathLike, warnings: list[str] | None = None) -> np.ndarray:
    """Read a label as a bool mask: a mask PNG (> 127 = subject) or an alpha cut-out.

    An image editor's alpha-cut PNG counts as a label too: alpha > 0.5 is the subject. A mask
    of two values of which neither is above half (0 and 1, or 0 and 100: a label map's or
    another tool's convention) has its non-zero value as the subject; that, and a mask with
    no value above half at all (read as empty), is said in ``warnings``.
    """
    data = read_bytes(path)
    if not data:
        raise FrameError(path, "the label file is empty (0 bytes)")
    img = cv2.imdecode(np.frombuffer(without_png_profile(data), np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameError(path, "cannot decode the label image; re-export it as PNG")
    if img.ndim == 3 and img.shape[2] == 4:
        chan = img[:, :, 3]
    elif img.ndim == 3:
        chan = img.max(axis=2)
    else:
        chan = img
    full = float(np.iinfo(chan.dtype).max) if chan.dtype.kind in "ui" else 1.0
    if warnings is not None and looks_like_photo(img, full):
        warnings.append(PHOTO_NOT_MASK)
    top = float(chan.max()) if chan.size else 0.0
    if not 0 < top <= 0.5 * full:
        return chan > 0.5 * full
    if np.count_nonzero((chan != 0) & (chan != top)) == 0:  # two values: 0 and top
        if warnings is not None:
            warnings.append(
                f"holds only the values 0 and {top:g}, not 0 and {full:g}: read with "
                f"{top:g} as the subject"
            )
        return chan > 0
    if warnings is not None:
        warnings.append(
            f"has no value above {0.5 * full:g} (at most {top:g}): read as an empty mask; a "
            f"mask marks the subject with {full:g}"
        )
    return chan > 0.5 * full


# what read_label says of a file that is a photo, not a mask (the frames' folder given as
# the ground truth, say): one fixed text, so a folder of them is said once
PHOTO_NOT_MASK = (
    "looks like a photo, not a mask (most pixels are neither black nor white, or it has "
    "colour): a mask is 0 = background, 255 = subject; is this the frames' folder?"
)


def looks_like_photo(img: np.ndarray, full: float = 255.0) -> bool:
    """Whether a label image is a photo rather than a mask: colour (in an image without
    alpha) or more than a quarter of its pixels in the grey middle (a mask is black and
    white, with at most a soft rim; a lossy JPEG mask stays near the two)."""
    step = max(1, int(np.sqrt(img.shape[0] * img.shape[1] / 250_000)))  # ~250k samples
    sub = img[::step, ::step]
    if sub.ndim == 3 and sub.shape[2] == 4:
        chan = sub[:, :, 3]
    elif sub.ndim == 3:
        c = sub[:, :, :3].astype(np.float32)
        if float(np.mean(np.ptp(c, axis=2))) > 0.06 * full:  # colour: channels differ
            return True
        chan = sub.max(axis=2)
    else:
        chan = sub
    mid = (chan > 0.1 * full) & (chan < 0.9 * full)
    return bool(np.count_nonzero(mid) > 0.25 * mid.size)


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
