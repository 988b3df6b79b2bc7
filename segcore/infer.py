"""Run the network: OpenCV's DNN module on the exported ONNX (default), or torch.

:class:`Segmenter` turns a full-resolution BGR frame into the subject probability at the
network scale, plus the geometry that maps it back to the frame. Both backends take the same
preprocessed blob, so they can be held to the same output.

A binary model (a card without ``classes``) outputs one sigmoid logit: the probability is
the garment figure's. A multi-class model outputs one softmax logit per class of
:data:`segcore.config.CLASSES`; its probability is that of the *kept* classes, the sum of
their softmax probabilities (:func:`keep_probability`), and everything downstream (spline,
guided filter, edge refiner, temporal smoothing, plate, threshold) sees that one map.
"""

from __future__ import annotations

import os

import numpy as np

from .backend import onnx_backend
from .card import ModelCard, load_card
from .config import CLASSES
from .edges import load_refiner
from .errors import InputError, ModelError
from .garment_regions import grow_garment
from .preprocess import compress, fit_size, prepare

#: what a multi-class model keeps unless told otherwise: the garment figure, the paper's
#: subject (support, the stand and its base, is background by default)
DEFAULT_KEEP = ("garment", "figure")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the first axis (the classes) of (C, h, w) logits, float32."""
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def keep_probability(probs: np.ndarray, keep: tuple[int, ...]) -> np.ndarray:
    """The one probability the pipeline works on: the kept classes' softmax probabilities
    (class indices ``keep`` of ``probs`` (C, h, w)) summed, float32 in [0, 1]."""
    p = probs[list(keep)].sum(axis=0, dtype=np.float32)
    return np.minimum(p, np.float32(1.0), out=p)


def parse_keep(keep: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...] | None:
    """``"garment,figure"`` (or a sequence of names) -> the names in :data:`CLASSES` order;
    None stays None (the card's default). :class:`InputError` for an unknown or empty one."""
    if keep is None:
        return None
    names = [n.strip() for n in (keep.split(",") if isinstance(keep, str) else keep)]
    names = [n for n in names if n]
    kept = CLASSES[1:]
    bad = [n for n in names if n not in kept]
    if bad or not names:
        what = "background is what is cut away" if bad == ["background"] else "unknown class"
        raise InputError(
            f"--keep {','.join(names) or '(empty)'}: {what} "
            f"{', '.join(bad) or '(none)'}; choose from {', '.join(kept)} "
            f"(default: {','.join(DEFAULT_KEEP)})"
        )
    return tuple(n for n in kept if n in names)


def resolve_keep(card: ModelCard, keep) -> tuple[int, ...] | None:
    """The class indices a model keeps (``keep``: names, a comma-separated string, or None
    for the default); None for a binary model, which knows no classes."""
    names = parse_keep(keep)
    if card.classes is None:
        if names is not None and names != DEFAULT_KEEP:
            raise InputError(
                f"--keep {','.join(names)}: the model card {card.name!r} has no classes (a "
                f"binary model: the garment figure, {'+'.join(DEFAULT_KEEP)}, against the "
                "rest); use a multi-class model or leave --keep out"
            )
        return None
    return tuple(card.classes.index(n) for n in (names or DEFAULT_KEEP))


class Segmenter:
    """Subject probability for full-resolution frames, driven by a model card."""

    #: a multi-class model's garment made coherent with the frame's colours
    #: (:mod:`segcore.garment_regions`); False: the network's classes as they are
    garment_regions = True

    def __init__(self, card: ModelCard, backend=None, keep=None):
        self.card = card
        if card.classes is not None and card.classes != CLASSES:
            raise ModelError(
                f"model card {card.name!r}: classes {list(card.classes)} are not the ones this "
                f"segcore knows ({list(CLASSES)}, in that order); re-export the model"
            )
        #: indices of the kept classes (multi-class models; None for a binary one)
        self.keep = resolve_keep(card, keep)
        self.backend = (
            backend if backend is not None else onnx_backend(card.onnx_path, card.runtime_onnx)
        )
        self._check()

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, keep=None) -> Segmenter:
        """Load a bundled model by name (default), or a ``.json`` card / ``.onnx`` path;
        ``keep``: the classes a multi-class model keeps (default :data:`DEFAULT_KEEP`).
        The card's learned edge refiner, if it names one, comes with it (as in the CLI)."""
        seg = cls(load_card(model), keep=keep)
        seg.edges = load_refiner(seg.card)
        return seg

    @property
    def kept_names(self) -> tuple[str, ...] | None:
        """The kept classes' names; None for a binary model."""
        return None if self.keep is None else tuple(CLASSES[i] for i in self.keep)

    def _check(self) -> None:
        """Run a tiny forward pass: a card that does not match the ONNX fails here."""
        pre = self.card.preprocess
        geo = fit_size((pre.pad_multiple * 2, pre.pad_multiple * 2), pre.pad_multiple * 2)
        blob = np.zeros((1, self.card.arch.in_channels, *geo.padded_hw), np.float32)
        where = getattr(self.backend, "path", self.card.name)
        try:
            out = self.backend.logits(blob)
        except Exception as exc:  # cv2.error or a torch shape error
            msg = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc)
            raise ModelError(
                f"{where}: the model does not run on a {self.card.arch.in_channels}-channel "
                f"input as its card says ({msg}); the card and the ONNX file do not match"
            ) from exc
        n = 1 if self.card.classes is None else len(self.card.classes)
        if out.shape != (1, n, *geo.padded_hw):
            raise ModelError(
                f"{where}: the model returned shape {tuple(out.shape)} for input "
                f"{tuple(blob.shape)}; expected (1, {n}, H, W)"
                + (" (one channel per class of its card)" if n > 1 else "")
                + ": the card and ONNX do not match"
            )

    def probability(self, bgr: np.ndarray, source: np.ndarray | None = None, flip: bool = False):
        """(H, W, 3) uint8 BGR frame -> (probability at network scale (h, w), geometry):
        the garment figure's (binary model) or the kept classes' (multi-class model).

        ``source``, if given, is the same frame already reduced (faster to compress).
        ``flip``: test-time flip averaging. The network also runs on the mirrored input and
        the two logit maps, aligned again, are averaged: a second opinion on every edge for
        one more inference (model v4 on the test split: F1 0.9815 -> 0.9849, BF@2px 0.904 ->
        0.919; at 1280x960 F1 0.9783 -> 0.9799, `python -m training eval --flip/--no-flip`).
        """
        p, _, geo = self.predict(bgr, source, flip)
        return p, geo

    def predict(
        self,
        bgr: np.ndarray,
        source: np.ndarray | None = None,
        flip: bool = False,
        passes: list | None = None,
    ):
        """(kept probability (h, w), class probabilities (C, h, w) or None for a binary
        model, geometry): :meth:`probability` with the classes it was summed from.

        ``passes``, a list, receives with ``flip`` the kept probability of each of the two
        passes (the direct one, then the mirrored one aligned again): how far they agree is
        one of a frame's confidence signals (:mod:`segcore.confidence`)."""
        pre = self.card.preprocess
        # the frame at the network's scale, once: the blob's source and the garment regions'
        small = compress(
            bgr if source is None else source,
            fit_size(bgr.shape[:2], pre.input_size, pre.pad_multiple),
        )
        blob, geo = prepare(bgr, pre, small)
        logits = self.backend.logits(blob)[0]
        if flip:
            mirrored = self.backend.logits(np.ascontiguousarray(blob[..., ::-1]))[0][..., ::-1]
            if passes is not None:
                passes.extend(self._kept(geo.crop(x)) for x in (logits, mirrored))
            logits = 0.5 * (logits + mirrored)
        if self.keep is None:
            return sigmoid(geo.crop(logits[0])), None, geo
        probs = softmax(geo.crop(logits))
        if self.garment_regions:
            probs = grow_garment(small, probs)
        return keep_probability(probs, self.keep), probs, geo

    def _kept(self, logits: np.ndarray) -> np.ndarray:
        """The kept probability (h, w) of one pass's cropped logits (C, h, w)."""
        if self.keep is None:
            return sigmoid(logits[0])
        return keep_probability(softmax(logits), self.keep)
