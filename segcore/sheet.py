"""Contact sheets: frames in a grid with the mask edge drawn over them, for people to look at."""

from __future__ import annotations

import cv2
import numpy as np


def overlay(
    bgr: np.ndarray, mask: np.ndarray | None, gt: np.ndarray | None = None, tint: float = 0.0
) -> np.ndarray:
    """The frame with the mask's edge in green (and the ground truth's in magenta)."""
    out = bgr.copy()
    thick = max(1, round(max(bgr.shape[:2]) / 400))
    if mask is not None and tint > 0:
        sel = mask > 127
        out[~sel] = (out[~sel] * (1 - tint)).astype(np.uint8)
    for m, colour in ((gt, (255, 0, 255)), (mask, (0, 255, 0))):
        if m is None:
            continue
        contours, _ = cv2.findContours(
            (m > 127).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(out, contours, -1, colour, thick, cv2.LINE_AA)
    return out


def grid(
    tiles: list[np.ndarray],
    cols: int,
    tile_w: int = 256,
    labels: list[str] | None = None,
    pad: int = 4,
) -> np.ndarray:
    """Arrange BGR tiles (any sizes) in a grid of ``cols`` columns, each ``tile_w`` wide."""
    if not tiles:
        raise ValueError("no tiles")
    resized = []
    for i, t in enumerate(tiles):
        h = max(1, round(t.shape[0] * tile_w / t.shape[1]))
        r = cv2.resize(t, (tile_w, h), interpolation=cv2.INTER_AREA)
        if labels and i < len(labels) and labels[i]:
            cv2.putText(
                r, labels[i], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA
            )
            cv2.putText(
                r,
                labels[i],
                (4, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
        resized.append(r)
    tile_h = max(r.shape[0] for r in resized)
    rows = -(-len(resized) // cols)
    sheet = np.full((rows * (tile_h + pad) + pad, cols * (tile_w + pad) + pad, 3), 40, np.uint8)
    for i, r in enumerate(resized):
        y, x = pad + (i // cols) * (tile_h + pad), pad + (i % cols) * (tile_w + pad)
        sheet[y : y + r.shape[0], x : x + tile_w] = r
    return sheet
