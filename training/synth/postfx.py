"""Camera realism applied after rendering, atomic image writers, and the contact sheet.

Pure numpy/cv2. Only photometric effects (white balance, vignetting, slight blur, sharpening,
signal-dependent sensor noise, JPEG) so the mask stays pixel-exact.
"""

from __future__ import annotations

import json
import os
import tempfile

import cv2
import numpy as np

from segcore.exif import with_exif


def camera_realism(img: np.ndarray, post: dict, rng: np.random.Generator) -> np.ndarray:
    """float BGR sRGB [0,1] -> uint8 BGR with a small camera's imperfections."""
    x = np.clip(img, 0, 1).astype(np.float32)
    lin = x**2.2
    lin *= np.asarray(post["wb"], np.float32)[::-1]
    h, w = x.shape[:2]
    if post["vignette"] > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        lin *= (1 - post["vignette"] * r2)[..., None]
    if post["noise"] > 0:
        a = post["noise"]
        sigma = np.sqrt(a * 0.05 * lin + (a * 0.08) ** 2)
        luma = rng.standard_normal((h, w, 1)).astype(np.float32)
        chroma = rng.standard_normal((h, w, 3)).astype(np.float32)
        lin = lin + sigma * (0.7 * luma + 0.5 * chroma)
    x = np.clip(lin, 0, 1) ** (1 / 2.2)
    if post["blur"] > 0.05:
        x = cv2.GaussianBlur(x, (0, 0), post["blur"])
    if post["sharpen"] > 0:
        soft = cv2.GaussianBlur(x, (0, 0), 1.2)
        x = x + post["sharpen"] * (x - soft)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_image(path: str, img: np.ndarray, jpeg_quality: int = 95, exif: bytes = b"") -> None:
    """Encode ``img`` by the file's extension; a JPEG gets the APP1 block ``exif``
    (``segcore.exif.exif_block``: the lens's focal length, as a camera writes it)."""
    ext = os.path.splitext(path)[1].lower()
    jpeg = ext in (".jpg", ".jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if jpeg else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise OSError(f"could not encode {path}")
    data = buf.tobytes()
    if jpeg and exif:
        data = with_exif(data, exif)
    _atomic_bytes(path, data)


def write_json(path: str, obj) -> None:
    _atomic_bytes(path, json.dumps(obj, indent=1).encode())


def draw_mask_edges(
    img: np.ndarray, mask: np.ndarray, colour=(0, 255, 0), thickness=1
) -> np.ndarray:
    out = img.copy()
    contours, _ = cv2.findContours(
        (mask > 127).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE
    )
    cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def contact_sheet(images, masks, cols: int = 6, thumb_width: int = 200, labels=None) -> np.ndarray:
    """Grid of thumbnails (BGR uint8) with mask contours drawn in green."""
    thumbs = []
    for i, (im, m) in enumerate(zip(images, masks)):
        h, w = im.shape[:2]
        th = int(round(h * thumb_width / w))
        t = cv2.resize(im, (thumb_width, th), interpolation=cv2.INTER_AREA)
        tm = cv2.resize(m, (thumb_width, th), interpolation=cv2.INTER_AREA)
        t = draw_mask_edges(t, tm)
        if labels:
            cv2.putText(t, labels[i], (3, th - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 2)
            cv2.putText(
                t, labels[i], (3, th - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1
            )
        thumbs.append(t)
    if not thumbs:
        raise ValueError("contact_sheet needs at least one image")
    th = max(t.shape[0] for t in thumbs)
    rows = (len(thumbs) + cols - 1) // cols
    sheet = np.full((rows * (th + 2), cols * (thumb_width + 2), 3), 255, np.uint8)
    for i, t in enumerate(thumbs):
        r, c = divmod(i, cols)
        sheet[
            r * (th + 2) : r * (th + 2) + t.shape[0],
            c * (thumb_width + 2) : c * (thumb_width + 2) + thumb_width,
        ] = t
    return sheet
