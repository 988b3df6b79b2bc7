"""Run a model on real photos of people in clothes that ship with installed packages
(scikit-image's astronaut and cameraman, matplotlib's Grace Hopper) and draw the masks.

These photos have no ground truth; the contact sheet is for people to judge, honestly, how
a model trained on synthetic captures does on real photographs.

    python -m training realphotos --out docs/real_photos.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segcore.io import read_image, write_png
from segcore.sheet import grid, overlay


def package_people_photos() -> list[tuple[str, np.ndarray]]:
    photos = []
    try:
        import skimage

        d = Path(skimage.__file__).parent / "data"
        for name in ("astronaut.png", "camera.png"):
            if (d / name).exists():  # segcore's reader: no libpng chatter on their profiles
                photos.append((f"skimage {name}", read_image(d / name)))
    except ImportError:
        pass
    try:
        import matplotlib

        p = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if p.exists():
            photos.append(("matplotlib grace_hopper.jpg", read_image(p)))
    except ImportError:
        pass
    return photos


def real_photo_sheet(model: str | None, out: Path) -> Path:
    from segcore.pipeline import SegmentOptions, load_segmenter, segment_frame

    seg, post = load_segmenter(SegmentOptions(model=model))
    tiles, labels = [], []
    for name, img in package_people_photos():
        fm = segment_frame(img, seg, post)
        tiles.append(overlay(img, fm.mask, tint=0.6))
        labels.append(name)
    write_png(out, grid(tiles, cols=len(tiles), tile_w=320, labels=labels))
    return out
