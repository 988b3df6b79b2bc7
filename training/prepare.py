"""The paper's data-set steps on a user's own labelled photos.

For every photo with a label (a mask PNG, 255 = subject, or an image editor's alpha cut-out):
HSV V-channel Gaussian denoise; normalisation (crop away the background around the subject,
keeping a margin, and resize to the training size); amplification to 8x by the eight
symmetries of the square. The result is a data set in the docs/design.md layout.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from segcore.io import IMAGE_EXTENSIONS, is_hidden, natural_key, read_image, read_label, write_png
from segcore.preprocess import denoise_v

from .augment import dihedral

#: the long side of whole frames (``margin=None``): training reads them at 1.25x the
#: network's input, 400 pixels for the shipped model's 320
WHOLE_FRAME_SIZE = 640


def pair_files(photos: Path, labels: Path) -> list[tuple[Path, Path]]:
    """(photo, label) pairs matched by file stem; a label may be ``<stem>.png`` or
    ``<photo file name>.png``."""
    lab = {}
    for p in labels.iterdir():
        if p.is_file() and not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS:
            lab[p.stem] = p
    pairs = []
    for img in sorted(photos.iterdir(), key=lambda p: natural_key(p.name)):
        if img.is_file() and not is_hidden(img) and img.suffix.lower() in IMAGE_EXTENSIONS:
            m = lab.get(img.stem) or lab.get(img.name)
            if m is not None and m != img:
                pairs.append((img, m))
    return pairs


def crop_to_subject(img: np.ndarray, mask: np.ndarray, margin: float):
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return img, mask
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = int((y1 - y0) * margin), int((x1 - x0) * margin)
    H, W = mask.shape
    y0, y1, x0, x1 = max(0, y0 - my), min(H, y1 + my), max(0, x0 - mx), min(W, x1 + mx)
    return img[y0:y1, x0:x1], mask[y0:y1, x0:x1]


def prepare_pair(img, mask, size: int, margin: float | None, sigma: float, symmetries: int = 8):
    """One photo + bool mask -> the amplified (image, mask uint8) pairs: the 8 symmetries
    of the square (the paper's), or 2 (as is and mirrored). ``margin`` None keeps the whole
    frame (no crop to the subject)."""
    img = denoise_v(img, sigma)
    if margin is not None:
        img, mask = crop_to_subject(img, mask, margin)
    k = size / max(img.shape[:2])
    wh = (max(1, round(img.shape[1] * k)), max(1, round(img.shape[0] * k)))
    img = cv2.resize(img, wh, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    m = cv2.resize(mask.astype(np.uint8) * 255, wh, interpolation=cv2.INTER_LINEAR)
    m = np.where(m >= 128, np.uint8(255), np.uint8(0))
    kept = range(8) if symmetries == 8 else (0, 4)[:symmetries]  # 4: the mirror image
    return [(dihedral(img, s), dihedral(m, s)) for s in kept]


def prepare(
    photos: str | Path,
    labels: str | Path,
    out: str | Path,
    size: int = 320,
    margin: float | None = 0.15,
    sigma: float = 0.5,
    name: str | None = None,
    progress=None,
    symmetries: int = 8,
) -> tuple[int, list[str]]:
    """Write the prepared data set; returns (pairs written, one-line errors). The defaults
    are the paper's steps (module docstring); ``margin=None, symmetries=2`` keeps whole
    upright frames, as they are and mirrored (what ``finetune`` prepares)."""
    if symmetries not in (1, 2, 8):
        raise ValueError(f"symmetries={symmetries}: 1, 2 or 8")
    photos, labels = Path(photos), Path(labels)
    pairs = pair_files(photos, labels)
    if not pairs:
        raise FileNotFoundError(f"{photos}: no photo has a label in {labels} (matched by name)")
    seq = Path(out) / (name or photos.resolve().name)
    (seq / "images").mkdir(parents=True, exist_ok=True)
    (seq / "masks").mkdir(parents=True, exist_ok=True)
    # frames an earlier preparation left here, by photo: replaced, not mixed with the new ones
    earlier: dict[str, list[Path]] = {}
    for f in (*(seq / "images").iterdir(), *(seq / "masks").iterdir()):
        if hit := re.fullmatch(r"(.+)_s\d+\.png", f.name):
            earlier.setdefault(hit.group(1), []).append(f)
    done, errors = 0, []
    for img_path, lab_path in pairs:
        try:
            img, mask = read_image(img_path), read_label(lab_path)
            if mask.shape != img.shape[:2]:
                raise ValueError(f"label size {mask.shape[::-1]} != photo size {img.shape[1::-1]}")
            pairs_out = prepare_pair(img, mask, size, margin, sigma, symmetries)
            for old in earlier.get(img_path.stem, ()):
                old.unlink(missing_ok=True)  # an earlier preparation's (other symmetries)
            for s, (im, m) in enumerate(pairs_out):
                write_png(seq / "images" / f"{img_path.stem}_s{s}.png", im)
                write_png(seq / "masks" / f"{img_path.stem}_s{s}.png", m)
            done += 1
        except Exception as exc:  # report and go on
            errors.append(f"{img_path}: {exc}")
        if progress:
            progress.update()
    return done, errors
