"""Online augmentation for training crops (numpy + OpenCV, so it needs no torchvision).

The eight symmetries of the square (the paper's 8x amplification), scale and crop, colour
(brightness, contrast, saturation, hue, white balance, gamma), another camera (colour
temperature, exposure, vignetting, chromatic aberration, defocus and motion blur, sensor noise
at several ISO levels, JPEG: :func:`camera`), and background swaps (the subject composited
onto a real photo, a procedural texture, or a background in its own colour), and, where
the frame has a class map, new fabrics: the garment (or the figure) redrawn in another colour,
a print cut from a real photo or a noise texture, under the render's own shading
(:func:`retexture`).
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


def random_crop(img, mask, size: int, rng: np.random.Generator, scale=(0.6, 1.4), labels=None):
    """Scale by a random factor, then crop (or reflect-pad) a ``size`` x ``size`` window
    that contains part of the subject most of the time. A class map (``labels``) follows the
    same window as per-class coverage; returns (img, mask) or (img, mask, labels)."""
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    h, w = img.shape[:2]
    nh, nw = max(8, round(h * s)), max(8, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    mask = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_LINEAR)
    mask = np.where(mask >= 128, np.uint8(255), np.uint8(0))
    onehot = None
    if labels is not None:
        from .data import class_coverage

        onehot = cv2.resize(class_coverage(labels), (nw, nh), interpolation=cv2.INTER_LINEAR)
    ph, pw = max(0, size - nh), max(0, size - nw)
    if ph or pw:
        t, l = ph // 2, pw // 2
        img = cv2.copyMakeBorder(img, t, ph - t, l, pw - l, cv2.BORDER_REFLECT_101)
        mask = cv2.copyMakeBorder(mask, t, ph - t, l, pw - l, cv2.BORDER_REFLECT_101)
        if onehot is not None:
            onehot = cv2.copyMakeBorder(onehot, t, ph - t, l, pw - l, cv2.BORDER_REFLECT_101)
        nh, nw = img.shape[:2]
    ys, xs = np.nonzero(mask[::4, ::4])
    if len(ys) and rng.random() < 0.8:  # centre the crop near a subject pixel
        j = rng.integers(len(ys))
        cy, cx = ys[j] * 4, xs[j] * 4
        y0 = int(np.clip(cy - rng.integers(size), 0, nh - size))
        x0 = int(np.clip(cx - rng.integers(size), 0, nw - size))
    else:
        y0, x0 = int(rng.integers(nh - size + 1)), int(rng.integers(nw - size + 1))
    win = (slice(y0, y0 + size), slice(x0, x0 + size))
    if onehot is None:
        return img[win], mask[win]
    lab = np.argmax(onehot[win], axis=-1).astype(np.uint8)
    return img[win], np.where((lab == 1) | (lab == 2), np.uint8(255), np.uint8(0)), lab


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
    """Camera realism: the same scene through another camera and lens (:func:`camera`)."""
    return camera(img, rng)


def camera(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """BGR uint8 -> the same scene through another camera: colour temperature and white
    balance error, exposure, gamma, vignetting, lateral chromatic aberration, defocus or
    motion blur, sensor noise at several ISO levels (shot noise grows with brightness, blotchy
    chroma noise), and JPEG. ``strength`` scales how often each happens (0: never)."""
    x = img.astype(np.float32) * (1 / 255)
    h, w = x.shape[:2]
    if rng.random() < 0.6 * strength:  # colour temperature (blue <-> amber) and a tint
        t, tint = rng.normal(0, 0.08), rng.normal(0, 0.03)
        x *= np.float32([1 - t, 1 + tint, 1 + t])  # B, G, R
    if rng.random() < 0.5 * strength:
        x *= np.float32(2 ** rng.normal(0, 0.3))
    if rng.random() < 0.3 * strength:
        yy, xx = np.ogrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
        x *= (1 - rng.uniform(0.1, 0.45) * (yy**2 + xx**2) / 2)[..., None].astype(np.float32)
    x = np.clip(x, 0, 1)
    if rng.random() < 0.3 * strength:
        x = x ** np.float32(rng.uniform(0.8, 1.25))
    if rng.random() < 0.2 * strength:  # lateral CA: red and blue scaled about the centre
        k = rng.uniform(0.001, 0.004)
        for c, sign in ((0, -1), (2, 1)):
            m = cv2.getRotationMatrix2D((w / 2, h / 2), 0, 1 + sign * k)
            x[..., c] = cv2.warpAffine(x[..., c], m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    u = rng.random()
    if u < 0.25 * strength:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.4))
    elif u < 0.32 * strength:  # motion blur: a short line kernel
        n = int(rng.integers(3, 8))
        k = np.zeros((n, n), np.float32)
        k[n // 2] = 1 / n
        k = cv2.warpAffine(
            k, cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(0, 180), 1), (n, n)
        )
        x = cv2.filter2D(x, -1, k / max(k.sum(), 1e-6))
    level = rng.choice([0.0, 0.005, 0.015, 0.03, 0.05], p=[0.3, 0.25, 0.2, 0.15, 0.1])
    if level and rng.random() < strength:
        shot = np.sqrt(np.clip(x, 1e-4, 1)) * np.float32(level)
        x = x + rng.standard_normal(x.shape, np.float32) * shot
        if rng.random() < 0.5:  # chroma noise, blotchy
            n = rng.standard_normal((h // 2 + 1, w // 2 + 1, 3), np.float32) * np.float32(level)
            x = x + cv2.resize(n, (w, h))
    out = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.random() < 0.5 * strength:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(55, 96))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def matched_background(img, mask, rng) -> np.ndarray:
    """A procedural background in the subject's own colour (white on white, black on
    black): the case where only texture and shading tell subject from background."""
    h, w = mask.shape
    sel = mask > 127
    colour = np.median(img[sel], axis=0) if sel.any() else np.full(3, 128.0)
    bg = procedural_background(h, w, rng).astype(np.float32)
    bg = (bg - bg.mean(axis=(0, 1))) * rng.uniform(0.05, 0.3) + colour + rng.normal(0, 6, 3)
    return np.clip(bg, 0, 255).astype(np.uint8)


def noise_field(h: int, w: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 1) float32 smooth noise in 0..1 whose blobs are about ``cell`` pixels wide."""
    small = rng.random((max(2, int(h / cell)), max(2, int(w / cell)), 1)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, None]


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
        t = noise_field(h, w, 16, rng)
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


def _shading(img: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """(h, w, 1) float32: the luminance over ``sel`` divided by its median there (folds,
    creases and light falloff, without the fabric's colour), clipped to 0.15..2.5."""
    lum = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32) + 4
    med = float(np.median(lum[sel]))
    # a print's own contrast is not shading: smooth it a little, keep the folds
    lum = cv2.GaussianBlur(lum, (0, 0), 1.2)
    return np.clip(lum / max(med, 8.0), 0.15, 2.5)[:, :, None]


def _fabric(h, w, img, labels, cls, rng, photos) -> np.ndarray:
    """A new albedo (float32 BGR, 0..255) for class ``cls``: a plain colour (random, or the
    median colour of the rest of the crop or of its background), a print cut from a real
    photo, or a noise texture."""
    u = rng.random()
    if u < 0.4:
        if rng.random() < 0.35:  # matched: the colour of what lies around it
            other = labels != cls
            if rng.random() < 0.5:
                other = labels == 0
            c = np.median(img[other], axis=0) if other.any() else rng.integers(0, 256, 3)
            c = np.asarray(c, np.float32) + rng.normal(0, 8, 3)
        else:
            c = rng.integers(0, 256, 3).astype(np.float32)
            if rng.random() < 0.3:  # dark, light and beige garments are common
                c = np.full(3, rng.choice([20.0, 200.0, 235.0]), np.float32) + rng.normal(0, 10, 3)
        return np.broadcast_to(np.clip(c, 0, 255), (h, w, 3)).astype(np.float32)
    if photos and u < 0.8:  # a busy print: a real photo shrunk to the fabric's scale
        k = rng.uniform(1.0, 4.0)
        big = random_photo_crop(photos, round(h * k), round(w * k), rng)
        tex = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    else:  # a noise texture in two colours (mottled, camouflage-like blobs)
        t = noise_field(h, w, rng.uniform(3, 16), rng)
        if rng.random() < 0.5:
            t = (t > rng.uniform(0.35, 0.65)).astype(np.float32)
        c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        tex = c1 * (1 - t) + c2 * t
    return tex.astype(np.float32)


def retexture(img, labels, rng: np.random.Generator, photos=None, garment=0.5, figure=0.25):
    """Redraw the fabric of the garment (with probability ``garment``) and the surface of the
    figure (``figure``) from the class map: a new albedo (:func:`_fabric`) times the render's
    shading, blended over the class's area softened by a pixel. The outline and the class map
    do not change, so the crop keeps its labels; what changes is every cue of colour and print
    the network could have learnt in place of shape."""
    out = img
    h, w = labels.shape
    for cls, p in ((1, garment), (2, figure)):
        sel = labels == cls
        if rng.random() >= p or sel.sum() < 64:
            continue
        new = _fabric(h, w, out, labels, cls, rng, photos) * _shading(out, sel)
        a = cv2.GaussianBlur(sel.astype(np.float32), (0, 0), 0.7)[:, :, None]
        out = (out.astype(np.float32) * (1 - a) + np.clip(new, 0, 255) * a + 0.5).astype(np.uint8)
    return out


def augment(
    img,
    mask,
    size: int,
    rng: np.random.Generator,
    photos=None,
    bg_swap: float = 0.3,
    scale=(0.6, 1.4),
    labels=None,
    retex: float = 0.0,
):
    """One training crop (BGR uint8 (size, size, 3), mask uint8 (size, size)), plus the crop's
    class map when ``labels`` is given (a background swap then keeps the support too; with
    ``retex`` > 0 that share of crops gets a new garment fabric, half as many a new figure
    surface: :func:`retexture`)."""
    if labels is None:
        img, mask = random_crop(img, mask, size, rng, scale)
        keep = mask
    else:
        img, mask, labels = random_crop(img, mask, size, rng, scale, labels)
        keep = np.where(labels > 0, np.uint8(255), np.uint8(0))
        if retex > 0:
            img = retexture(img, labels, rng, photos, retex, retex / 2)
    if rng.random() < bg_swap and mask.any():
        u = rng.random()
        if photos and u < 0.55:
            bg = random_photo_crop(photos, size, size, rng)
        elif u < 0.75:
            bg = matched_background(img, mask, rng)
        else:
            bg = procedural_background(size, size, rng)
        img = swap_background(img, keep, bg)
    # Captures are mostly upright: keep identity/mirror 3 times in 4, the other six
    # symmetries of the square (the paper's amplification) the rest of the time.
    k = int(rng.choice([0, 4])) if rng.random() < 0.75 else int(rng.integers(8))
    img, mask = dihedral(img, k), dihedral(mask, k)
    img = colour_jitter(img, rng)
    img = degrade(img, rng)
    if labels is None:
        return img, mask
    return img, mask, dihedral(labels, k)
