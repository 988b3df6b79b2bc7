"""Reading frames and masks, and writing outputs atomically: segcore's file API.

Frame discovery lives in :mod:`segcore.discovery` and PNG encoding in :mod:`segcore.png`;
their public names are imported here too, so ``segcore.io`` stays the one place to import
file handling from.

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
import uuid
from pathlib import Path

import cv2
import numpy as np

from .discovery import (  # noqa: F401  (segcore.io's public names)
    CONVERT_ADVICE,
    IMAGE_EXTENSIONS,
    READ_FORMATS,
    UNREAD_IMAGE_EXTENSIONS,
    by_stem,
    discover_frames,
    is_hidden,
    natural_key,
    skipped_inputs,
)
from .errors import FrameError
from .imageinfo import ImageInfo, image_info
from .png import (  # noqa: F401  (segcore.io's public names)
    PARALLEL_PNG_PIXELS,
    PNG_IEND,
    PNG_SIGNATURE,
    encode_png,
    encode_png_parallel,
    png_is_whole,
    without_png_profile,
)

log = logging.getLogger(__name__)

TMP_PREFIX = ".segcore-"
TMP_SUFFIX = ".tmp"


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


# glibc's allocator returns a freed buffer of a few megabytes to the system and faults fresh
# pages in for the next frame's (a 1280x960 cut-out took 2 to 20 ms for that alone): a
# frame's buffers up to this size are kept for the next one, and up to this much freed
# memory stays with the process (1280x960, masks and RGBA: 10.1 -> 11 frames/s, the same
# peak memory; 4000x3000: +14 % speed, +140 MB)
KEEP_BUFFERS_UP_TO = 32 << 20
KEEP_FREED_UP_TO = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """Make glibc's allocator keep freed frame buffers for reuse (constants above); a no-op
    (False) elsewhere. For processes that segment frame after frame: the command line and
    segment-many's workers, not a host application such as Blender."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, KEEP_BUFFERS_UP_TO)
        and mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_UP_TO)
    )


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
