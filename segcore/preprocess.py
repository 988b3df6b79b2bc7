"""The paper's preprocessing: V-channel denoise, compression to the network size, normalisation.

``prepare(frame, params)`` turns a full-resolution BGR frame into the network's input blob
and a :class:`Geometry` that maps the network's output back to frame coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import fields as f

# the network input's long side may be at most this (a card's input_size, ``--size``): the
# network's activations at 4096 px already take gigabytes
MAX_INPUT_SIZE = 4096
FIELDS = ("input_size", "pad_multiple", "denoise_sigma", "color_order", "mean", "std")


@dataclass(frozen=True)
class PreprocessParams:
    """What the model card says about the network's input."""

    input_size: int = 320  # long side of the compressed frame, in pixels
    pad_multiple: int = 32  # network input sides are padded up to a multiple of this
    denoise_sigma: float = 0.0  # Gaussian sigma on the HSV V channel, in input pixels; 0 = off
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # RGB, on [0, 1] values
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # RGB

    @classmethod
    def from_dict(cls, d: dict, where: str = "preprocess") -> PreprocessParams:
        """Each field checked for type and range (:class:`segcore.fields.FieldError`)."""
        f.only(d, FIELDS, where=where)  # a misspelt field is not silently ignored
        f.choice(d, "color_order", ("RGB",), where=where, default="RGB")
        return cls(
            input_size=f.integer(d, "input_size", 32, MAX_INPUT_SIZE, where=where),
            pad_multiple=f.integer(d, "pad_multiple", 1, 256, where=where, default=32),
            # sigma in network pixels: beyond 16 the frame is a blur (and the kernel huge)
            denoise_sigma=f.number(d, "denoise_sigma", 0, 16, where=where, default=0.0),
            mean=f.numbers(d, "mean", 3, -10, 10, where=where, default=list(cls.mean)),
            std=f.numbers(d, "std", 3, 1e-3, 100, where=where, default=list(cls.std)),
        )

    def to_dict(self) -> dict:
        return {
            "input_size": self.input_size,
            "pad_multiple": self.pad_multiple,
            "denoise_sigma": self.denoise_sigma,
            "color_order": "RGB",
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class Geometry:
    """How a frame maps onto the network input: resize, then pad bottom/right."""

    frame_hw: tuple[int, int]  # full-resolution frame (H, W)
    scaled_hw: tuple[int, int]  # compressed frame inside the network input (h, w)
    padded_hw: tuple[int, int]  # network input (h + pad, w + pad)

    def crop(self, net_map: np.ndarray) -> np.ndarray:
        """The part of a network-sized map that covers the frame (drops the padding)."""
        h, w = self.scaled_hw
        return net_map[..., :h, :w]

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Network-input pixel coordinates (pixel centres) to frame pixel coordinates."""
        (H, W), (h, w) = self.frame_hw, self.scaled_hw
        s = np.array([W / w, H / h])
        return (np.asarray(xy, dtype=np.float64) + 0.5) * s - 0.5


def fit_size(frame_hw: tuple[int, int], long_side: int, multiple: int = 32) -> Geometry:
    """Size of the compressed frame (long side = ``long_side``) and its padded input."""
    H, W = int(frame_hw[0]), int(frame_hw[1])
    if H < 1 or W < 1:
        raise ValueError(f"frame size must be positive, got {H}x{W}")
    scale = long_side / max(H, W)
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    ph, pw = (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
    return Geometry((H, W), (h, w), (ph, pw))


def denoise_v(bgr: np.ndarray, sigma: float) -> np.ndarray:
    """The paper's denoise: Gaussian smoothing of the V channel in HSV. ``sigma`` 0 = off."""
    if sigma <= 0:
        return bgr
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    hsv[:, :, 2] = cv2.GaussianBlur(hsv[:, :, 2], (0, 0), sigma)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def normalize(rgb01: np.ndarray, mean, std) -> np.ndarray:
    """Per-channel ``(x - mean) / std`` on an (H, W, 3) float array in [0, 1]."""
    return (rgb01 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def to_blob(bgr_small: np.ndarray, params: PreprocessParams, padded_hw) -> np.ndarray:
    """(h, w, 3) uint8 BGR at network scale -> (1, 3, ph, pw) float32 normalised RGB."""
    h, w = bgr_small.shape[:2]
    ph, pw = padded_hw
    img = cv2.copyMakeBorder(bgr_small, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) * (1.0 / 255.0)
    x = normalize(rgb, params.mean, params.std)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def compress(bgr: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Resize a frame to the network scale (area averaging when shrinking)."""
    h, w = geometry.scaled_hw
    if bgr.shape[:2] == (h, w):
        return bgr
    shrinking = h < bgr.shape[0]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(bgr, (w, h), interpolation=interp)


def prepare(
    bgr: np.ndarray, params: PreprocessParams, source: np.ndarray | None = None
) -> tuple[np.ndarray, Geometry]:
    """Full-resolution BGR frame -> (network blob, geometry).

    The frame is compressed first and denoised at network scale (sigma is in network-input
    pixels, so it means the same whatever the camera's resolution). ``source`` is an optional
    reduced copy of the frame to compress from (cheaper than the full frame).
    """
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {bgr.shape} {bgr.dtype}")
    geo = fit_size(bgr.shape[:2], params.input_size, params.pad_multiple)
    small = denoise_v(compress(bgr if source is None else source, geo), params.denoise_sigma)
    return to_blob(small, params, geo.padded_hw), geo
