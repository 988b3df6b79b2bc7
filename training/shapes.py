"""A tiny, trivially learnable synthetic data set (blobs on textured backgrounds).

For tests and smoke runs of the trainer only; the real data comes from ``training.synth``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segcore.io import write_png

from .augment import procedural_background


def blob_frame(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 'figure' of a few ellipses and a polygon, textured, on a contrasting background."""
    mask = np.zeros((h, w), np.uint8)
    cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2 + rng.uniform(-0.1, 0.1) * h
    for _ in range(rng.integers(2, 5)):
        ax = (int(rng.uniform(0.08, 0.22) * w), int(rng.uniform(0.1, 0.3) * h))
        c = (int(cx + rng.uniform(-0.15, 0.15) * w), int(cy + rng.uniform(-0.2, 0.2) * h))
        cv2.ellipse(mask, c, ax, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    pts = np.array(
        [[cx + rng.uniform(-0.25, 0.25) * w, cy + rng.uniform(-0.3, 0.3) * h] for _ in range(5)],
        np.int32,
    )
    cv2.fillPoly(mask, [pts], 255)
    bg = procedural_background(h, w, rng)
    fg = procedural_background(h, w, rng)
    # keep subject and background apart in brightness so the task stays trivial
    fg = np.clip(fg.astype(np.int16) // 2 + (128 if bg.mean() < 128 else 0), 0, 255).astype(
        np.uint8
    )
    img = np.where(mask[:, :, None] > 0, fg, bg)
    return img, mask


def make_shapes_dataset(
    root: str | Path,
    sequences: int = 4,
    frames: int = 4,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> Path:
    """Write a blob data set in the docs/design.md layout; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for s in range(sequences):
        seq = root / f"shapes_{s:03d}"
        (seq / "images").mkdir(parents=True, exist_ok=True)
        (seq / "masks").mkdir(parents=True, exist_ok=True)
        for f in range(frames):
            img, mask = blob_frame(size[0], size[1], rng)
            write_png(seq / "images" / f"{f:04d}.png", img)
            write_png(seq / "masks" / f"{f:04d}.png", mask)
    return root
