"""Data sets in the docs/design.md layout, split by *sequence* (never frames of one sequence on
both sides), loaded into memory at training scale.

    <root>/<sequence>/images/<stem>.(jpg|png)
    <root>/<sequence>/masks/<stem>.png          (255 = subject; an alpha cut-out works too)
    <root>/<sequence>/labels/<stem>.png         (optional class map: segcore.config.CLASSES)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segcore.config import CLASSES
from segcore.io import IMAGE_EXTENSIONS, is_hidden, natural_key, read_image, read_label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    sequence: str
    image: Path
    mask: Path
    labels: Path | None = None  # class map (0 background, 1 garment, 2 figure, 3 support)


def find_sequences(root: str | Path) -> dict[str, list[Sample]]:
    """Sequences under ``root`` (or ``root`` itself if it is one sequence), with their samples."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data set folder not found")
    candidates = (
        [root]
        if (root / "images").is_dir()
        else sorted(
            (p for p in root.iterdir() if p.is_dir() and (p / "images").is_dir()),
            key=lambda p: natural_key(p.name),
        )
    )
    out: dict[str, list[Sample]] = {}
    for seq in candidates:
        masks = {p.stem: p for p in (seq / "masks").glob("*") if not is_hidden(p)}
        labels = {p.stem: p for p in (seq / "labels").glob("*.png") if not is_hidden(p)}
        samples = []
        for img in sorted((seq / "images").iterdir(), key=lambda p: natural_key(p.name)):
            if is_hidden(img) or img.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if img.stem in masks:
                samples.append(Sample(seq.name, img, masks[img.stem], labels.get(img.stem)))
        if samples:
            out[seq.name] = samples
    if not out:
        raise FileNotFoundError(
            f"{root}: no sequences found (expected <root>/<sequence>/images and /masks)"
        )
    return out


def sequence_meta(root: Path, name: str) -> dict:
    p = Path(root) / name / "meta.json"
    if p.exists():
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
    return {}


def split_sequences(names: list[str], val_share: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic split by a hash of the sequence name (stable when sequences are added)."""

    def h(n: str) -> float:
        d = hashlib.sha1(f"{seed}:{n}".encode()).digest()
        return int.from_bytes(d[:8], "big") / 2**64

    val = [n for n in names if h(n) < val_share]
    if not val and len(names) > 1:
        val = [names[-1]]
    train = [n for n in names if n not in val]
    return train, val


def read_classes(path: Path) -> np.ndarray:
    """A class map (uint8, values 0..len(CLASSES)-1)."""
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None or lab.ndim != 2:
        raise ValueError(f"{path}: not a one-channel class map")
    if int(lab.max()) >= len(CLASSES):
        raise ValueError(f"{path}: class {int(lab.max())} is not one of {CLASSES}")
    return lab.astype(np.uint8)


def class_coverage(labels: np.ndarray) -> np.ndarray:
    """(H, W, len(CLASSES)) uint8 coverage per class (255 = the pixel's class): resize or
    crop it like an image, then :func:`np.argmax` over the last axis gives a class map."""
    return (labels[..., None] == np.arange(len(CLASSES), dtype=np.uint8)).astype(np.uint8) * 255


def resize_classes(labels: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    """Resize a class map as per-class coverage, then take the class that covers most."""
    resized = cv2.resize(class_coverage(labels), size, interpolation=interp)
    return np.argmax(resized, axis=-1).astype(np.uint8)


def load_pair(s: Sample, long_side: int | None):
    """(BGR uint8, mask uint8 0/255, class map or None) resized so the long side is
    ``long_side`` (None = as is). With a class map, the mask is its garment + figure."""
    img = read_image(s.image)
    lab = read_classes(s.labels) if s.labels is not None else None
    m = read_label(s.mask).astype(np.uint8) * 255
    if m.shape != img.shape[:2] or (lab is not None and lab.shape != img.shape[:2]):
        raise ValueError(f"{s.mask}: size {m.shape} differs from its image {img.shape[:2]}")
    if long_side is not None:
        k = long_side / max(img.shape[:2])
        if abs(k - 1) > 1e-6:
            size = (max(1, round(img.shape[1] * k)), max(1, round(img.shape[0] * k)))
            interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
            img = cv2.resize(img, size, interpolation=interp)
            # the label is resized as a soft coverage map and re-thresholded at 0.5
            m = cv2.resize(m, size, interpolation=interp)
            m = np.where(m >= 128, np.uint8(255), np.uint8(0))
            if lab is not None:
                lab = resize_classes(lab, size, interp)
    if lab is not None:
        m = np.where((lab == 1) | (lab == 2), np.uint8(255), np.uint8(0))
    return img, m, lab


def load_all(samples: list[Sample], long_side: int | None, progress=None):
    imgs, masks, labels = [], [], []
    for s in samples:
        img, m, lab = load_pair(s, long_side)
        imgs.append(img)
        masks.append(m)
        labels.append(lab)
        if progress:
            progress.update()
    return imgs, masks, labels
