"""What an image file's header says, without decoding it: format, size, alpha, float samples.

Read before decoding a frame: the size decides whether the frame can be decoded at all (a
decompression bomb of a few kilobytes can claim gigapixels), and alpha or float samples are
what OpenCV's 8-bit colour decoder drops or saturates without a word. JPEG, PNG, TIFF, BMP
and WebP headers are read; for anything else, or a header that does not parse, the answer is
``None`` and the decoder decides.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "jpeg", "png", "tiff", "bmp" or "webp"
    width: int
    height: int
    alpha: bool = False  # an alpha channel or a transparent colour (which decoding drops)
    float_samples: bool = False  # IEEE float samples (a TIFF)
    orientation: int = 1  # a TIFF's Orientation tag (1 = as stored; EXIF's meaning)
    bits: int = 8  # bits per sample (PNG bit depth, TIFF BitsPerSample): 16 for 16-bit images

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_info(data: bytes) -> ImageInfo | None:
    """The header's answer for image bytes, or None (unknown format or a broken header)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png(data)
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
        if data[:2] == b"BM":
            w, h = struct.unpack_from("<ii", data, 18)
            return ImageInfo("bmp", abs(w), abs(h))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError, ValueError):
        pass
    return None


def _png(data: bytes) -> ImageInfo:
    w, h = struct.unpack_from(">II", data, 16)
    colour_type = data[25]
    alpha = colour_type in (4, 6)  # grey + alpha, RGB + alpha
    pos = 8
    while not alpha and pos + 8 <= len(data):  # a tRNS chunk: a palette's or a colour key's
        length, tag = struct.unpack_from(">I4s", data, pos)
        if tag in (b"IDAT", b"IEND"):
            break
        alpha = tag == b"tRNS"
        pos += 12 + length
    return ImageInfo("png", w, h, alpha, bits=data[24])


def _jpeg(data: bytes) -> ImageInfo | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        # start of frame: baseline, progressive, lossless, arithmetic (not DHT, JPG, DAC)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack_from(">HH", data, i + 5)
            return ImageInfo("jpeg", w, h)
        if marker == 0xDA:
            return None
        i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    return None


# TIFF field types: BYTE, SHORT, LONG, RATIONAL (two LONGs: numerator, denominator), LONG8
_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 5: "II", 16: "Q"}


def ifd_tags(data: bytes, offset: int, endian: str, base: int = 0) -> dict[int, tuple]:
    """The numeric fields of the TIFF image file directory at ``base + offset``: tag ->
    values (a RATIONAL as a float; other types and long arrays left out). ``base``: where
    the TIFF header starts (an EXIF block inside a JPEG: offsets count from there)."""
    e = endian
    (n,) = struct.unpack_from(e + "H", data, base + offset)
    tags: dict[int, tuple] = {}
    for k in range(n):
        tag, typ, count = struct.unpack_from(e + "HHI", data, base + offset + 2 + 12 * k)
        code = _TIFF_TYPES.get(typ)
        if code is None or count > 64:
            continue
        size = struct.calcsize(e + code) * count
        at = base + offset + 10 + 12 * k
        if size > 4:
            (at,) = struct.unpack_from(e + "I", data, at)
            at += base
        values = struct.unpack_from(f"{e}{code * count}", data, at)
        if typ == 5:  # RATIONAL
            values = tuple(a / b if b else 0.0 for a, b in zip(values[::2], values[1::2]))
        tags[tag] = values
    return tags


def _tiff(data: bytes) -> ImageInfo | None:
    e = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(e + "I", data, 4)
    tags = ifd_tags(data, offset, e)
    if 256 not in tags or 257 not in tags:
        return None
    samples = tags.get(277, (1,))[0]
    photometric = tags.get(262, (2,))[0]
    colour = 3 if photometric == 2 else 1  # RGB, else grey (or a palette's index)
    # extra samples beyond the colour ones: OpenCV reads a fourth (second) one as alpha
    alpha = 338 in tags or (photometric in (0, 1, 2) and samples > colour)
    # IEEE float samples, or LogLuv (how OpenCV writes a float RGB TIFF): float when decoded
    float_samples = 3 in tags.get(339, ()) or photometric in (32844, 32845)
    orientation = tags.get(274, (1,))[0]
    bits = tags.get(258, (1,))[0]
    return ImageInfo("tiff", tags[256][0], tags[257][0], alpha, float_samples, orientation, bits)


def _webp(data: bytes) -> ImageInfo | None:
    kind = data[12:16]
    if kind == b"VP8X":
        flags = data[20]
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return ImageInfo("webp", w, h, bool(flags & 0x10))
    if kind == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, 21)
        w, h = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        return ImageInfo("webp", w, h, bool((bits >> 28) & 1))
    if kind == b"VP8 ":
        w, h = struct.unpack_from("<HH", data, 26)
        return ImageInfo("webp", w & 0x3FFF, h & 0x3FFF)
    return None
