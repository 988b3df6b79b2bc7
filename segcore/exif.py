"""The focal length a camera wrote into a frame's EXIF, in pixels, and the EXIF block that
says it.

Structure from motion needs the focal length in pixels. A camera records it in millimetres
(``FocalLength``) with the size of a sensor pixel (``FocalPlaneXResolution`` and its unit),
or as the 35 mm film equivalent (``FocalLengthIn35mmFilm``); exported, resized or rendered
frames often carry neither. Read from a JPEG's APP1 ``Exif`` block or a TIFF's EXIF
directory, in that order of trust:

1. ``FocalLength`` x ``FocalPlaneXResolution`` (pixels per unit of ``FocalPlaneResolutionUnit``),
   scaled by the frame's width over ``PixelXDimension`` when the frame was resized;
2. ``FocalLengthIn35mmFilm``: the focal a 36 x 24 mm frame would need for the same angle of
   view along the diagonal, so ``f35 / 43.27 mm x the frame's diagonal in pixels`` (a whole
   number of millimetres: about 1 % off).

:func:`exif_block` writes the same tags (the synthetic generator's frames carry them, as a
camera's would).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

from .imageinfo import ifd_tags, image_info

EXIF_IFD = 0x8769  # IFD0's pointer to the EXIF directory
EXIF_VERSION = 0x9000
FOCAL_LENGTH = 0x920A  # mm, RATIONAL
PIXEL_X, PIXEL_Y = 0xA002, 0xA003  # the image size the camera wrote
PLANE_X, PLANE_Y, PLANE_UNIT = 0xA20E, 0xA20F, 0xA210  # pixels per unit of the sensor plane
FOCAL_35MM = 0xA405  # mm, SHORT
#: FocalPlaneResolutionUnit -> millimetres: 2 inch, 3 cm (EXIF); 4 mm, 5 µm (some cameras)
UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)
HEAD_BYTES = 1 << 17  # a JPEG's EXIF block is in its first 64 KiB segment


@dataclass(frozen=True)
class ExifFocal:
    pixels: float  # focal length in pixels of the frame as stored
    source: str  # the tags it comes from


def exif_focal(path) -> ExifFocal | None:
    """The focal length in pixels that the EXIF of the image at ``path`` gives, or None
    (no EXIF, no focal tags, or a header that does not parse)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        data = head + f.read() if head[:4] in (b"II*\x00", b"MM\x00*") else head
    info = image_info(data)
    try:
        tags = exif_tags(data)
    except (struct.error, IndexError, ValueError):
        return None
    if info is None or not tags:
        return None
    focal_mm = tags.get(FOCAL_LENGTH, (0.0,))[0]
    per_unit = tags.get(PLANE_X, (0.0,))[0]
    unit = UNIT_MM.get(tags.get(PLANE_UNIT, (2,))[0])  # the standard's default: inches
    if focal_mm > 0 and per_unit > 0 and unit:
        written = tags.get(PIXEL_X, (0,))[0]
        scale = info.width / written if written > 0 else 1.0
        return ExifFocal(
            focal_mm * per_unit / unit * scale, "EXIF FocalLength and FocalPlaneXResolution"
        )
    f35 = tags.get(FOCAL_35MM, (0,))[0]
    if f35 > 0:
        diagonal = math.hypot(info.width, info.height)
        return ExifFocal(f35 / FILM_DIAGONAL_MM * diagonal, "EXIF FocalLengthIn35mmFilm")
    return None


def exif_tags(data: bytes) -> dict[int, tuple]:
    """IFD0's and the EXIF directory's numeric fields of a JPEG's or TIFF's bytes ({} when
    there are none)."""
    base = _tiff_start(data)
    if base is None:
        return {}
    e = "<" if data[base : base + 2] == b"II" else ">"
    (offset,) = struct.unpack_from(e + "I", data, base + 4)
    tags = ifd_tags(data, offset, e, base)
    if EXIF_IFD in tags:
        tags.update(ifd_tags(data, tags[EXIF_IFD][0], e, base))
    return tags


def _tiff_start(data: bytes) -> int | None:
    """Where the TIFF structure holding the EXIF starts: 0 for a TIFF, the APP1 ``Exif``
    block's for a JPEG, None otherwise."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return 0
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: no more metadata
            return None
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
            return i + 10
        i += 2 + length
    return None


def exif_block(focal_mm: float, sensor_width_mm: float, width: int, height: int) -> bytes:
    """A JPEG APP1 ``Exif`` segment (marker included) for a ``width`` x ``height`` frame of a
    lens of ``focal_mm`` on a sensor ``sensor_width_mm`` wide: FocalLength, the focal-plane
    resolution (pixels per centimetre), PixelX/YDimension and FocalLengthIn35mmFilm."""
    per_cm = width / (sensor_width_mm / 10.0)
    f_px = focal_mm / sensor_width_mm * width
    f35 = round(f_px / math.hypot(width, height) * FILM_DIAGONAL_MM)
    entries = [  # (tag, type, count, packed value), sorted by tag
        (EXIF_VERSION, 7, 4, b"0232"),
        (FOCAL_LENGTH, 5, 1, _rational(focal_mm)),
        (PIXEL_X, 4, 1, struct.pack("<I", width)),
        (PIXEL_Y, 4, 1, struct.pack("<I", height)),
        (PLANE_X, 5, 1, _rational(per_cm)),
        (PLANE_Y, 5, 1, _rational(per_cm)),  # square pixels
        (PLANE_UNIT, 3, 1, struct.pack("<H", 3)),  # centimetres
        (FOCAL_35MM, 3, 1, struct.pack("<H", max(1, min(65535, f35)))),
    ]
    ifd0 = 8
    exif_at = ifd0 + 2 + 12 + 4
    tiff = b"II*\x00" + struct.pack("<I", ifd0)
    tiff += struct.pack("<H", 1) + struct.pack("<HHII", EXIF_IFD, 4, 1, exif_at) + b"\0" * 4
    data_at = exif_at + 2 + 12 * len(entries) + 4
    table, extra = b"", b""
    for tag, typ, count, value in entries:
        if len(value) > 4:
            table += struct.pack("<HHII", tag, typ, count, data_at + len(extra))
            extra += value
        else:
            table += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
    tiff += struct.pack("<H", len(entries)) + table + b"\0" * 4 + extra
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_exif(jpeg: bytes, block: bytes) -> bytes:
    """JPEG bytes with the APP1 ``block`` right after the start-of-image marker (pixels
    untouched)."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG: no start-of-image marker")
    return jpeg[:2] + block + jpeg[2:]


def _rational(x: float, den: int = 10000) -> bytes:
    return struct.pack("<II", round(x * den), den)


def known_focal(first_frame, focal_px: float | None) -> tuple[float | None, str | None]:
    """The focal length to trust for a sequence: ``focal_px`` when given, else the EXIF of
    its first frame (a fixed-lens sequence); ``(None, None)`` when neither says."""
    if focal_px is not None:
        return float(focal_px), "given"
    found = exif_focal(first_frame)
    return (found.pixels, found.source) if found is not None else (None, None)
