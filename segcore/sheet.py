"""Contact sheets: frames in a grid with the mask edge drawn over them, for people to look at."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .labels import PALETTE


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


def tint_classes(bgr: np.ndarray, labels: np.ndarray, strength: float = 0.4) -> np.ndarray:
    """The frame with each class of ``labels`` (uint8 class indices; 0 untouched) blended
    towards its viewing colour (:data:`segcore.labels.PALETTE`)."""
    out = bgr.copy()
    for k, (r, g, b) in enumerate(PALETTE):
        sel = labels == k
        if k and sel.any():
            mixed = (1 - strength) * out[sel] + strength * np.array((b, g, r), np.float32)
            out[sel] = mixed.astype(np.uint8)
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


# --- a run's contact sheet (segcore segment) and labelled sheets ---------------------------

MAX_TILES = 48  # frames on a run's contact sheet at most: its size is bounded for any run
TILE_W = 300  # pixels, each tile's width
COLS = 6
SUSPECT_BGR = (40, 40, 230)  # red: the border and label of a suspect frame
EDGE_BGR = (0, 255, 0)  # green: the mask's edge (overlay)
TRUTH_BGR = (255, 0, 255)  # magenta: the ground truth's edge (overlay)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img, text: str, org, scale: float = 0.42, colour=(255, 255, 255)) -> None:
    """Text readable on any photo: a dark outline, then the colour."""
    cv2.putText(img, text, org, _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, _FONT, scale, colour, 1, cv2.LINE_AA)


def wrap(text: str, width_px: int, scale: float = 0.38) -> list[str]:
    """``text`` cut into lines that fit ``width_px`` pixels at font ``scale``."""
    lines, cur = [], ""
    for word in text.split():
        trial = f"{cur} {word}".strip()
        if cv2.getTextSize(trial, _FONT, scale, 1)[0][0] > width_px and cur:
            lines.append(cur)
            cur = word
        else:
            cur = trial
    return [*lines, cur] if cur else lines


def titled(sheet: np.ndarray, lines: list[str], legend: list[tuple[tuple, str]] = ()) -> np.ndarray:
    """``sheet`` under a header: ``lines`` of text, then a legend of (BGR colour, meaning)
    swatches on one line."""
    w = sheet.shape[1]
    rows = [piece for line in lines for piece in wrap(line, w - 16, 0.5)]
    h = 12 + 20 * len(rows) + (24 if legend else 0)
    head = np.full((h, w, 3), 40, np.uint8)
    y = 22
    for line in rows:
        _text(head, line, (8, y), 0.5)
        y += 20
    x = 8
    for colour, meaning in legend:
        cv2.rectangle(head, (x, y - 10), (x + 22, y - 2), colour, -1)
        _text(head, meaning, (x + 28, y), 0.45)
        x += 40 + cv2.getTextSize(meaning, _FONT, 0.45, 1)[0][0]
    return np.vstack([head, sheet])


def thumbnail(path, width: int = TILE_W) -> np.ndarray:
    """A frame read small (the JPEG decoder's reduced sizes where they fit), upright."""
    from .imageinfo import image_info
    from .io import decode_image, read_bytes

    data = read_bytes(path)
    info = image_info(data)
    reduce = 1
    if info is not None:  # the shorter side: upright or turned by its EXIF orientation
        side = min(info.width, info.height)
        while reduce < 8 and side / (reduce * 2) >= width:
            reduce *= 2
    return decode_image(data, path, reduce=reduce)


def _tile(path, mask, width: int, suspect: bool, label: str, reasons: list[str]):
    try:
        bgr = thumbnail(path, width)
        h = max(1, round(bgr.shape[0] * width / bgr.shape[1]))
        bgr = cv2.resize(bgr, (width, h), interpolation=cv2.INTER_AREA)
    except Exception:  # gone or unreadable since it was segmented: a grey tile says so
        bgr, mask = np.full((width * 3 // 4, width, 3), 90, np.uint8), None
        reasons = ["the frame cannot be read now"]
    if mask is not None:
        m = cv2.resize(
            mask.astype(np.uint8) * np.uint8(255),
            (bgr.shape[1], bgr.shape[0]),
            interpolation=cv2.INTER_AREA,
        )
        bgr = overlay(bgr, m, tint=0.35)
    if suspect:  # a red frame, and the label on a red band
        cv2.rectangle(bgr, (0, 0), (bgr.shape[1] - 1, bgr.shape[0] - 1), SUSPECT_BGR, 5)
        cv2.rectangle(bgr, (0, 0), (bgr.shape[1] - 1, 22), SUSPECT_BGR, -1)
    _text(bgr, label, (6, 16), 0.42)
    lines = [piece for r in reasons[:2] for piece in wrap(r, width - 12)][:4]
    for k, line in enumerate(reversed(lines)):
        _text(bgr, line, (6, bgr.shape[0] - 8 - 14 * k), 0.38)
    return bgr


def run_sheet(items, read_mask, title: str = "", max_tiles: int = MAX_TILES) -> np.ndarray:
    """A run's contact sheet. ``items``: (index, frame path, confidence, suspect, reasons)
    per written frame; ``read_mask(index)``: its mask (bool). Suspect frames first (lowest
    confidence first), marked in red with their reasons, then the others in order; at most
    ``max_tiles`` tiles (the others evenly spaced over the run), so a 1000-frame run's sheet
    is as big as a 48-frame one's."""
    items = list(items)
    suspect = sorted((it for it in items if it[3]), key=lambda it: (it[2], it[0]))
    rest = sorted((it for it in items if not it[3]), key=lambda it: it[0])
    shown = suspect[:max_tiles]
    room = max_tiles - len(shown)
    if len(rest) > room:
        keep = np.unique(np.linspace(0, len(rest) - 1, room).round().astype(int)) if room else []
        rest = [rest[k] for k in keep]
    shown += rest
    tiles = []
    for index, path, conf, bad, reasons in shown:
        try:
            mask = read_mask(index)
        except Exception:
            mask = None
        name = Path(path).name
        label = f"{'SUSPECT ' if bad else ''}{name}  {conf:.2f}"
        tiles.append(_tile(path, mask, TILE_W, bad, label, reasons if bad else []))
    n_sus = len(suspect)
    lines = [title] if title else []
    lines.append(
        f"{n_sus} of {len(items)} frames look unreliable (red border, shown first, with the reason)"
        if n_sus
        else f"all {len(items)} frames look reliable"
    )
    lines[-1] += "; the number is each frame's confidence (0..1, suspect below 0.5)"
    if len(shown) < len(items):
        lines.append(f"{len(shown)} of {len(items)} frames shown; every frame is in report.json")
    legend = [(EDGE_BGR, "mask edge"), (SUSPECT_BGR, "suspect frame")]
    return titled(grid(tiles, cols=min(COLS, len(tiles))), lines, legend)
