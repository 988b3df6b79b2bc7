"""Output writers: each format is a folder, a file-naming rule and a pixel convention.

``mask``: ``masks/<stem>.png``, uint8 one channel, 255 = subject, 0 = background.
``rgba``: ``rgba/<stem>.png``, the frame with the mask as alpha (the mask operation).
The photogrammetry conventions live beside these (see :data:`WRITERS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import write_png
from .mask import cutout


@dataclass(frozen=True)
class Writer:
    name: str
    folder: str
    filename: Callable[[Path], str]  # input frame path -> output file name
    write: Callable[[Path, np.ndarray, np.ndarray, np.ndarray], None]  # (path, bgr, mask, alpha)
    doc: str


def _write_mask(path: Path, bgr, mask, alpha) -> None:
    write_png(path, mask)


def _write_rgba(path: Path, bgr, mask, alpha) -> None:
    write_png(path, cutout(bgr, alpha))


WRITERS: dict[str, Writer] = {
    "mask": Writer(
        "mask", "masks", lambda p: f"{p.stem}.png", _write_mask, "255 = subject, 0 = background"
    ),
    "rgba": Writer(
        "rgba", "rgba", lambda p: f"{p.stem}.png", _write_rgba, "the frame, mask as alpha"
    ),
    # COLMAP / pycolmap: ImageReaderOptions.mask_path holds "<image file name>.png" for each
    # image (e.g. "frame_001.jpg.png"); features are not extracted where the mask is 0
    # (COLMAP docs, "Feature extraction: mask_path"; src/colmap/feature/extraction.cc).
    "colmap": Writer(
        "colmap", "colmap_masks", lambda p: f"{p.name}.png", _write_mask, "0 = ignore"
    ),
}
