"""Output writers: each format is a folder, a file-naming rule and a pixel convention.

``mask``: ``masks/<stem>.png``, uint8 one channel, 255 = subject, 0 = background.
``rgba``: ``rgba/<stem>.png``, the frame with the mask as alpha (the mask operation); the
alpha is soft along the rim and the rim's colours are defringed.
``labels``: ``labels/<stem>.png``, a multi-class model's class index per pixel as a palette
PNG (:mod:`segcore.labels`), 0 wherever the mask is 0.
Every format follows ``--keep``: all are drawn from the same final mask.
The photogrammetry conventions live beside these (see :data:`WRITERS`). The names, in order,
are :data:`segcore.options.FORMATS` (read by the add-on without importing this module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .io import write_png
from .labels import write_labels
from .options import FORMATS


class Masks(Protocol):
    """What a writer reads of one segmented frame (``frame.FrameMasks`` is one)."""

    mask: np.ndarray  # uint8 (H, W), 255 = subject

    def rgba(self, bgr: np.ndarray) -> np.ndarray: ...

    def labels(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Writer:
    name: str
    folder: str
    filename: Callable[[Path], str]  # input frame path -> output file name
    write: Callable[[Path, np.ndarray, Masks], None]  # (path, frame BGR, masks)
    doc: str
    png_colour: int = 0  # PNG colour type of its files: 0 grey, 6 RGBA (io.png_is_whole)


def _write_mask(path: Path, bgr, fm) -> None:
    write_png(path, fm.mask)


def _write_rgba(path: Path, bgr, fm) -> None:
    write_png(path, fm.rgba(bgr))


def _write_labels(path: Path, bgr, fm) -> None:
    write_labels(path, fm.labels())


WRITERS: dict[str, Writer] = {
    "mask": Writer(
        "mask", "masks", lambda p: f"{p.stem}.png", _write_mask, "255 = subject, 0 = background"
    ),
    "rgba": Writer(
        "rgba", "rgba", lambda p: f"{p.stem}.png", _write_rgba, "the frame, mask as alpha", 6
    ),
    # multi-class models only (SequenceJob refuses it for a binary one)
    "labels": Writer(
        "labels",
        "labels",
        lambda p: f"{p.stem}.png",
        _write_labels,
        "class index: 0 background, 1 garment, 2 figure, 3 support (palette PNG)",
        3,
    ),
    # COLMAP / pycolmap: ImageReaderOptions.mask_path holds "<image file name>.png" for each
    # image (e.g. "frame_001.jpg.png"); no features are extracted where the mask is 0
    # (COLMAP FAQ "Mask image regions"; colmap/src/colmap/feature/extraction.cc).
    "colmap": Writer(
        "colmap", "colmap_masks", lambda p: f"{p.name}.png", _write_mask, "0 = ignore"
    ),
    # Meshroom / AliceVision: a masks folder given to PrepareDenseScene / the masking nodes;
    # a mask is found by the image's name stem (or view id) + ".png"; black = ignored
    # (AliceVision PR #1878 "masksFolders"; Meshroom issue #702: "masks ... black").
    "meshroom": Writer(
        "meshroom", "meshroom_masks", lambda p: f"{p.stem}.png", _write_mask, "0 = ignore"
    ),
    # RealityCapture: a mask layer is a file named "<image file name>.mask.png" beside the
    # image, e.g. "DSC_0001.jpg.mask.png"; white = use, black = masked out
    # (RealityCapture help, "Image Layers" and "Alpha Channel Masks").
    "realitycapture": Writer(
        "realitycapture",
        "realitycapture_masks",
        lambda p: f"{p.name}.mask.png",
        _write_mask,
        "255 = keep, 0 = ignore",
    ),
    # Agisoft Metashape: File > Import > Import Masks, method "From File", filename template
    # "{filename}_mask.png" where {filename} is the image name without extension;
    # white = keep, black = masked (Metashape user manual, "Masks"; Agisoft KB 31000162414).
    "metashape": Writer(
        "metashape",
        "metashape_masks",
        lambda p: f"{p.stem}_mask.png",
        _write_mask,
        "255 = keep, 0 = masked",
    ),
    # OpenMVS DensifyPointCloud: "<image stem>.mask.png" next to each image, pixels equal to
    # --ignore-mask-label (pass 0) are ignored (openMVS issue #918, cdcseacave's answer).
    "openmvs": Writer(
        "openmvs",
        "openmvs_masks",
        lambda p: f"{p.stem}.mask.png",
        _write_mask,
        "0 = ignore (--ignore-mask-label 0)",
    ),
}
if tuple(WRITERS) != FORMATS:  # pragma: no cover - a writer added here but not there
    raise ImportError(f"segcore.options.FORMATS {FORMATS} must name WRITERS {tuple(WRITERS)}")
