"""Finding a capture's frames: natural order, hidden files ignored, unread formats named.

- Frames are found in natural order (``f_2`` before ``f_10``); hidden files and macOS
  resource forks (``.DS_Store``, ``._frame.jpg``) are ignored.
- Files of an image format segcore does not decode (HEIC, RAW, ...) and subfolders are named
  in the run's notes, never passed over in silence.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
# what the hints name: every format segcore reads (IMAGE_EXTENSIONS)
READ_FORMATS = "JPEG, PNG, TIFF, BMP or WebP (.jpg .jpeg .png .tif .tiff .bmp .webp)"

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
