"""Label maps of a multi-class model: the class of every full-resolution pixel.

``labels/<stem>.png`` holds one byte a pixel, the class index of
:data:`segcore.config.CLASSES` (0 background, 1 garment, 2 figure, 3 support), written as a
palette PNG: an image viewer
shows the classes in the colours of :data:`PALETTE`, while every program that reads the
pixel values gets the index. A grey (one-channel) PNG of the indices, as the generator
writes its ``labels/``, reads the same (:func:`read_labels`).

A label map agrees with the mask of the same run: the mask (after its edges are decided,
cleaned and completed) decides subject against background; inside it, each pixel takes the
kept class whose probability, upsampled to full resolution by the same cubic spline as the
mask's, is highest (:func:`label_map`). Classes that are not kept are never in the map.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from .config import CLASSES
from .errors import FrameError
from .upsample import SplineField

#: viewing colours (RGB) per class index: background black, garment red, figure blue,
#: support yellow
PALETTE = ((0, 0, 0), (228, 26, 28), (55, 126, 184), (255, 200, 0))
BLOCK_ROWS = 256  # full-resolution rows evaluated at once (bounds the temporaries)


def palette_bytes() -> bytes:
    """The PNG ``PLTE`` payload of :data:`PALETTE`."""
    return bytes(v for rgb in PALETTE for v in rgb)


def label_map(probs: np.ndarray, keep: tuple[int, ...], mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W) class indices: 0 outside ``mask`` (uint8 or bool (H, W)), inside it the
    kept class (indices ``keep``) with the highest spline-upsampled probability of ``probs``
    (C, h, w) at network scale."""
    H, W = mask.shape
    out = np.zeros((H, W), np.uint8)
    fg = mask > 0
    if not fg.any():
        return out
    if len(keep) == 1:
        out[fg] = keep[0]
        return out
    ys, xs = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    fields = [SplineField(probs[k], (H, W)) for k in keep]
    ids = np.asarray(keep, np.uint8)
    for r0 in range(y0, y1, BLOCK_ROWS):
        r1 = min(r0 + BLOCK_ROWS, y1)
        best = np.argmax(np.stack([f.region(r0, r1, x0, x1) for f in fields]), axis=0)
        sel = fg[r0:r1, x0:x1]
        out[r0:r1, x0:x1][sel] = ids[best[sel]]
    return out


def nearest_class(labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``labels`` with the pixels of ``where`` (bool) set to the class of the nearest
    labelled (non-zero) pixel outside ``where``: a part added to a mask belongs to the class
    it hangs on to. Unchanged where nothing is labelled."""
    src = (labels > 0) & ~where
    if not where.any() or not src.any():
        return labels
    # distance to the nearest zero pixel of the input, and that pixel's index: the zero
    # pixels are the labelled ones (DIST_LABEL_PIXEL numbers each of them)
    _, idx = cv2.distanceTransformWithLabels(
        (~src).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    lut = np.zeros(int(idx.max()) + 1, np.uint8)
    lut[idx[src]] = labels[src]
    out = labels.copy()
    out[where] = lut[idx[where]]
    return out


def encode_labels(labels: np.ndarray) -> bytes:
    """Palette PNG bytes of a uint8 (H, W) label map."""
    from .io import encode_png_parallel

    return encode_png_parallel(labels, palette=palette_bytes())


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write a label map as a palette PNG, atomically."""
    from .io import atomic_write_bytes

    atomic_write_bytes(path, encode_labels(labels))


def decode_labels(img: np.ndarray | None, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """uint8 (H, W) class indices from a decoded label image: a one-channel image of indices,
    or one in :data:`PALETTE`'s colours (OpenCV expands a palette PNG to BGR)."""
    if img is None:
        raise FrameError(path, "cannot decode the label map; it must be a PNG of class indices")
    if img.ndim == 2 or img.shape[2] == 1:
        idx = img.reshape(img.shape[:2])
    else:
        bgr = img[..., :3].astype(np.int32)
        code = (bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]
        keys = np.array([(r << 16) | (g << 8) | b for r, g, b in PALETTE], np.int32)
        order = np.argsort(keys)
        pos = np.clip(np.searchsorted(keys[order], code), 0, len(keys) - 1)
        found = keys[order][pos] == code
        if not found.all():
            raise FrameError(
                path,
                "a colour image that is not in the label palette; a label map holds "
                "class indices (one channel) or the palette's colours",
            )
        return order[pos].astype(np.uint8)
    if idx.dtype != np.uint8 or int(idx.max(initial=0)) >= len(CLASSES):
        raise FrameError(
            path,
            f"holds values up to {int(idx.max(initial=0))}; a label map holds class indices "
            f"0..{len(CLASSES) - 1} ({', '.join(CLASSES)})",
        )
    return idx


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W) class indices of a label map file (see :func:`decode_labels`)."""
    from .io import read_bytes, without_png_profile

    data = read_bytes(path)
    if not data:
        raise FrameError(path, "the label map is empty (0 bytes)")
    data = without_png_profile(data)  # no libpng warnings about an editor's colour profile
    return decode_labels(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), path)
