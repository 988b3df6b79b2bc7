"""Online augmentation for training crops (numpy + OpenCV, so it needs no torchvision).

The eight symmetries of the square (the paper's 8x amplification), scale and crop, colour
(brightness, contrast, saturation, hue, white balance, gamma), blur, sensor noise, JPEG
re-compression, and background swaps (the subject composited onto another background).
"""

from __future__ import annotations

import cv2
import numpy as np


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 symmetries of the square (k in 0..7): rotations by 90°, then flips."""
    y = np.rot90(x, k % 4, axes=(0, 1))
    if k >= 4:
        y = y[:, ::-1]
    return np.ascontiguousarray(y)


def random_crop(img, mask, size: int, rng: np.random.Generator, scale=(0.6, 1.4)):
    """Scale by a random factor, then crop (or reflect-pad) a ``size`` x ``size`` window
    that contains part of the subject most of the time."""
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    h, w = img.shape[:2]
    nh, nw = max(8, round(h * s)), max(8, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    mask = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_LINEAR)
    mask = np.where(mask >= 128, np.uint8(255), np.uint8(0))
    ph, pw = max(0, size - nh), max(0, size - nw)
    if ph or pw:
        t, l = ph // 2, pw // 2
        img = cv2.copyMakeBorder(img, t, ph - t, l, pw - l, cv2.BORDER_REFLECT_101)
        mask = cv2.copyMakeBorder(mask, t, ph - t, l, pw - l, cv2.BORDER_REFLECT_101)
        nh, nw = img.shape[:2]
    ys, xs = np.nonzero(mask[::4, ::4])
    if len(ys) and rng.random() < 0.8:  # centre the crop near a subject pixel
        j = rng.integers(len(ys))
        cy, cx = ys[j] * 4, xs[j] * 4
        y0 = int(np.clip(cy - rng.integers(size), 0, nh - size))
        x0 = int(np.clip(cx - rng.integers(size), 0, nw - size))
    else:
        y0, x0 = int(rng.integers(nh - size + 1)), int(rng.integers(nw - size + 1))
    return img[y0 : y0 + size, x0 : x0 + size], mask[y0 : y0 + size, x0 : x0 + size]


def colour_jitter(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0):
    x = img.astype(np.float32) * (1 / 255)
    x *= rng.uniform(1 - 0.12 * strength, 1 + 0.12 * strength, size=3).astype(np.float32)
    c = rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength)
    b = rng.uniform(-0.12, 0.12) * strength
    mean = x.mean()
    x = (x - mean) * c + mean + b
    grey = x.mean(axis=2, keepdims=True)
    sat = rng.uniform(1 - 0.5 * strength, 1 + 0.4 * strength)
    x = grey + (x - grey) * sat
    x = np.clip(x, 0, 1) ** rng.uniform(0.75, 1.35)
    out = (x * 255 + 0.5).astype(np.uint8)
    if rng.random() < 0.3:  # hue rotation
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
        hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int16) + rng.integers(-12, 13)) % 180).astype(
            np.uint8
        )
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return out


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera realism: blur, noise, JPEG."""
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.4:
        noise = rng.normal(0, rng.uniform(1, 8), img.shape).astype(np.float32)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


def procedural_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random background: flat, gradient, noise texture, stripes or checks."""
    kind = rng.integers(5)
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if kind == 0:
        bg = np.empty((h, w, 3), np.float32)
        bg[:] = c1
    elif kind == 1:
        t = np.linspace(0, 1, h if rng.random() < 0.5 else w, dtype=np.float32)
        t = t[:, None, None] if len(t) == h else t[None, :, None]
        bg = np.broadcast_to(c1 * (1 - t) + c2 * t, (h, w, 3)).astype(np.float32)
    elif kind == 2:
        small = rng.random((max(2, h // 16), max(2, w // 16), 1)).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, None]
        bg = c1 * (1 - t) + c2 * t
    else:
        period = rng.uniform(6, 60)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, np.pi)
        u = np.cos(a) * xx + np.sin(a) * yy
        t = (np.sin(u * 2 * np.pi / period) > 0).astype(np.float32)
        if kind == 4:
            v = -np.sin(a) * xx + np.cos(a) * yy
            t = np.logical_xor(t > 0, np.sin(v * 2 * np.pi / period) > 0).astype(np.float32)
        bg = c1 * (1 - t[:, :, None]) + c2 * t[:, :, None]
    return np.clip(bg, 0, 255).astype(np.uint8)


def swap_background(img, mask, bg: np.ndarray) -> np.ndarray:
    """Composite the subject (mask, softened by a pixel) onto ``bg`` (same size)."""
    a = cv2.GaussianBlur(mask.astype(np.float32) * (1 / 255), (0, 0), 0.7)[:, :, None]
    return (img.astype(np.float32) * a + bg.astype(np.float32) * (1 - a) + 0.5).astype(np.uint8)


def random_photo_crop(photos: list[np.ndarray], h: int, w: int, rng) -> np.ndarray:
    p = photos[rng.integers(len(photos))]
    s = max(h / p.shape[0], w / p.shape[1]) * rng.uniform(1.0, 2.0)
    p = cv2.resize(p, (max(w, round(p.shape[1] * s)), max(h, round(p.shape[0] * s))))
    y0, x0 = rng.integers(p.shape[0] - h + 1), rng.integers(p.shape[1] - w + 1)
    out = p[y0 : y0 + h, x0 : x0 + w]
    return dihedral(out, int(rng.integers(8))) if h == w else out


def augment(
    img,
    mask,
    size: int,
    rng: np.random.Generator,
    photos=None,
    bg_swap: float = 0.3,
    scale=(0.6, 1.4),
):
    """One training crop (BGR uint8 (size, size, 3), mask uint8 (size, size))."""
    img, mask = random_crop(img, mask, size, rng, scale)
    if rng.random() < bg_swap and mask.any():
        use_photo = photos and rng.random() < 0.6
        bg = (
            random_photo_crop(photos, size, size, rng)
            if use_photo
            else procedural_background(size, size, rng)
        )
        img = swap_background(img, mask, bg)
    # Captures are mostly upright: keep identity/mirror 3 times in 4, the other six
    # symmetries of the square (the paper's amplification) the rest of the time.
    k = int(rng.choice([0, 4])) if rng.random() < 0.75 else int(rng.integers(8))
    img, mask = dihedral(img, k), dihedral(mask, k)
    img = colour_jitter(img, rng)
    img = degrade(img, rng)
    return img, mask
