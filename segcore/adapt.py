"""Correct one frame, fix the sequence: a per-sequence head fitted on the artist's corrections.

The frames of one capture share the garment, the backdrop and the light, so a frame the
artist corrected by hand teaches the others. :func:`fit_head` fits a small classifier per
sequence, at the network's scale, on cheap features of each pixel (colour in Lab, its local
mean and spread, the gradient, the colour around it, where it lies relative to the coarse
mask, and the network's own probability and logit) from

- the corrected frames (their masks area-reduced to the network's grid): the pixels the
  network gets wrong or that lie near an edge (up to :data:`HARD`), and a sample of the
  rest weighted by how many pixels each stands for, and
- the confident pixels of a few other frames (far from the network's boundary, low weight),
  which keep the head close to the network wherever the corrections say nothing new.

The head is a linear model on the features plus a small tanh layer, fitted with scipy's
L-BFGS; it starts as the network (the weight on the network's logit is 1, the rest 0) and is
pulled back towards it by its regulariser, so a correction moves the decision only where the
features tell the corrected pixels apart. Where it decides otherwise than the network, its
probability replaces the network's before the mask decision (:func:`segcore.mask.decide`;
where the two agree the network's soft edges stay), so the clean-up, the upsampling and the
edge refinement of :func:`segcore.frame.segment_frame` run as in ``segment``: the network
and its card stay as they are, binary or multi-class.

:class:`AdaptJob` is a :class:`segcore.pipeline.SequenceJob` that re-segments the sequence
with the head and writes the corrected frames' outputs from the artist's masks (the mask file
copied byte for byte when it is already a binary PNG). Where the background stands still (a
turntable), the still-background pass that follows (:mod:`segcore.plate`) trusts what the
corrected frames show clear: a part the network keeps in every frame, such as a stand's pole
on the axis, is removed from every frame where it looks as in the corrected one, at the
frame's own resolution (the head, at the network's, leaves such slivers alone). The head is saved in
``OUT/adapted.json`` (:data:`HEAD_FILE`, a card naming the base model and the corrections it
was fitted on); a rerun with the same corrections and model reuses it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from . import formats as fmt
from .adapt_head import (
    CONFIDENT,
    CONFIDENT_DIST,
    FEATURES_VERSION,
    LOGIT_FEATURE,
    OTHERS,
    OTHERS_WEIGHT,
    PER_OTHER,
    RIDGE,
    Head,
    corrected_sample,
    fit_head,
    network_grid,
    pixel_features,
)
from .config import CLASSES
from .discovery import IMAGE_EXTENSIONS
from .errors import InputError, SegcoreError
from .frame import FrameMasks, guide_source
from .infer import parse_keep
from .io import atomic_write_bytes, by_stem, discover_frames, read_bytes, read_image, read_label
from .pipeline import FrameResult, SegmentOptions, SequenceJob

HEAD_FILE = "adapted.json"  # in OUT: the fitted head and what it was fitted on
HEAD_VERSION = 1
CORRECTED_DIR = "corrected"  # the add-on saves corrections here, beside OUT's outputs
KEEP_FILE = "keep.txt"  # in the corrections' folder: the classes they were painted as
FIGURE_KEEP = ("garment", "figure")  # what a binary model's masks (and the default) keep


def keep_text(kept: tuple[str, ...] | None) -> str:
    """The kept classes as ``keep.txt`` and the messages write them: names in class order,
    comma-separated (None: the garment figure)."""
    names = set(parse_keep(kept) or FIGURE_KEEP)
    return ",".join(n for n in CLASSES if n in names)


def recorded_keep(folder: str | Path) -> str | None:
    """The classes the corrections in ``folder`` were painted as (its :data:`KEEP_FILE`, as
    the add-on's Save Correction writes it; names in any order), or None when nothing says
    (masks made by hand). :class:`InputError` naming the file for a name that is no class."""
    path = Path(folder) / KEEP_FILE
    try:
        text = path.read_text(encoding="utf-8").strip().lower()
    except OSError:
        return None
    if not text:
        return None
    try:
        return keep_text(tuple(text.split(",")))
    except InputError as exc:
        raise InputError(f"{path}: {exc}; write the classes the corrections show") from None


def _other_corrections(folder: Path, stem: str | None) -> bool:
    """Whether ``folder`` holds a correction (an image) other than frame ``stem``'s."""
    return any(
        p.suffix.lower() in IMAGE_EXTENSIONS and p.stem != stem and not p.name.startswith(".")
        for p in folder.iterdir()
    )


def _painted_with(have: str) -> str:
    return f"Keep {have}, with the multi-class model they were painted with"


def record_keep(folder: str | Path, kept: tuple[str, ...] | None, stem: str | None = None) -> None:
    """Note beside the correction of frame ``stem`` being saved into ``folder`` what it keeps
    (``kept``: class names, None for the garment figure); :class:`InputError` when other
    corrections there keep something else: one sequence's corrections show the same classes."""
    folder, text = Path(folder), keep_text(kept)
    have = recorded_keep(folder) if folder.is_dir() else None
    if have is not None and have != text and _other_corrections(folder, stem):
        raise InputError(
            f"{folder / KEEP_FILE}: the corrections there keep {have}, this one {text}; set "
            f"{_painted_with(have)}, or delete the corrections there to correct the sequence "
            f"as {text}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if have != text:
        atomic_write_bytes(folder / KEEP_FILE, (text + "\n").encode("utf-8"))


def check_keep(folder: str | Path, kept: tuple[str, ...] | None) -> None:
    """:class:`InputError` when the corrections in ``folder`` were painted as other classes
    than the run keeps: a garment-figure correction would teach a garment-only run to keep
    the figure, and the reverse to drop it."""
    have, text = recorded_keep(folder), keep_text(kept)
    if have is not None and have != text:
        raise InputError(
            f"{Path(folder) / KEEP_FILE}: the corrections there keep {have}, the run {text}; "
            f"adapt with {_painted_with(have)} (--keep {have}), or correct the frames again "
            f"as {text}"
        )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def read_corrections(folder: str | Path, frames: list[Path]) -> dict[int, Path]:
    """The corrected masks of ``folder`` matched to ``frames`` by stem: frame index -> file.
    :class:`InputError` for a folder without masks or a mask that names no frame."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{folder}: no such folder of corrected masks; save a corrected mask as "
            f"<frame name>.png in it (the add-on's Save Correction writes OUT/{CORRECTED_DIR})"
        )
    files = discover_frames(folder) if any(p.name != KEEP_FILE for p in folder.iterdir()) else []
    if not files:
        raise InputError(
            f"{folder}: holds no corrected masks; correct at least one frame (a mask named "
            "like its frame, 255 = subject) and save it there"
        )
    stems = by_stem(frames, "their masks would overwrite each other")
    found: dict[int, Path] = {}
    index = {p: i for i, p in enumerate(frames)}
    for f in files:
        frame = stems.get(f.stem)
        if frame is None:
            raise InputError(
                f"{f}: no frame named {f.stem!r} in the sequence; name a corrected mask after "
                "its frame (frame 0007.jpg -> 0007.png)"
            )
        found[index[frame]] = f
    return found


def check_share(path: Path, mask: np.ndarray) -> None:
    """:class:`InputError` for a correction with no subject pixel or no background pixel."""
    share = np.count_nonzero(mask) / mask.size
    if share == 0.0:
        raise InputError(
            f"{path}: the correction is empty (no subject pixel); mark the garment (white, "
            "255) and save it again, or delete the file"
        )
    if share == 1.0:
        raise InputError(
            f"{path}: the correction marks the whole frame as subject; mark the background "
            "(black, 0) and save it again, or delete the file"
        )


def check_correction(path: Path, mask: np.ndarray, frame_hw, network_mask: np.ndarray) -> None:
    """:class:`InputError` for a correction that cannot teach anything: the wrong size, empty,
    the whole frame, or the network's mask turned inside out (255 must be the subject)."""
    H, W = frame_hw
    if mask.shape != (H, W):
        raise InputError(
            f"{path}: the corrected mask is {mask.shape[1]}x{mask.shape[0]}, its frame "
            f"{W}x{H}; save the mask at the frame's size"
        )
    check_share(path, mask)
    small = mask.astype(np.uint8)
    small = cv2.resize(small, network_mask.shape[::-1], interpolation=cv2.INTER_AREA) > 0
    if network_mask.any() and _iou(small, network_mask) < 0.05 and _iou(~small, network_mask) > 0.5:
        raise InputError(
            f"{path}: the correction contradicts the frame: it is the network's mask inside "
            "out (the background marked as subject); 255 (white) must be the garment"
        )


# --- the adapted segmenter and job --------------------------------------------------------


class AdaptedSegmenter:
    """A :class:`segcore.infer.Segmenter` whose probability is the head's: what
    :func:`segcore.frame.segment_frame` sees in place of the network's."""

    def __init__(self, base, head: Head, threshold_: float):
        self.base, self.head, self.thr = base, head, threshold_
        self.card, self.keep, self.edges = base.card, base.keep, getattr(base, "edges", None)
        self.backend = base.backend

    @property
    def kept_names(self):
        return self.base.kept_names

    def predict(self, bgr, source=None, flip: bool = False):
        p, classes, geo = self.base.predict(bgr, source, flip)
        grid = network_grid(bgr if source is None else source, bgr.shape[:2],
                            self.card.preprocess.input_size)  # fmt: skip
        return self.head.probability(grid, p, self.thr), classes, geo

    def probability(self, bgr, source=None, flip: bool = False):
        p, _, geo = self.predict(bgr, source, flip)
        return p, geo


def _sha1(path: Path) -> str:
    return hashlib.sha1(read_bytes(path)).hexdigest()


def _is_plain_mask_png(data: bytes) -> bool:
    """A one-channel 8-bit PNG holding only 0 and 255: what ``segment`` writes as a mask."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return (
        img is not None
        and img.ndim == 2
        and img.dtype == np.uint8
        and not np.any((img != 0) & (img != 255))
    )


class AdaptJob(SequenceJob):
    """Re-segment a sequence with a head fitted on its corrected frames (module docstring).

    ``corrected``: the folder of corrected masks. Outputs are written as ``segment`` writes
    them (replacing only files it wrote, per the manifest); the corrected frames' outputs
    hold the artist's masks. Fitting happens in :meth:`fit` (called by :meth:`run` if not
    before); ``refit`` ignores a saved head.
    """

    def __init__(
        self,
        input_path,
        output,
        corrected,
        options: SegmentOptions = SegmentOptions(),
        refit: bool = False,
    ):
        options = replace(options, overwrite=True, skip_existing=False)
        self.corrected_dir = Path(corrected)
        for name in options.formats:  # the artist's folder is never an output folder
            folder = Path(output) / fmt.WRITERS[name].folder if name in fmt.WRITERS else None
            if folder is not None and folder.resolve() == self.corrected_dir.resolve():
                raise InputError(
                    f"{self.corrected_dir}: the corrected masks are in an output folder that "
                    f"adapt rewrites; move them to {Path(output) / CORRECTED_DIR}"
                )
        super().__init__(input_path, output, options)
        self.corrections = read_corrections(self.corrected_dir, self.frames)
        check_keep(self.corrected_dir, self.segmenter.kept_names)
        self.refit = refit
        self.head: Head | None = None
        self.fit_info: dict | None = None
        self.fit_progress: Callable[[str, int, int], None] | None = None
        self._base = self.segmenter

    # -- fitting

    def _card_key(self) -> dict:
        card = self._base.card
        return {
            "name": card.name,
            "onnx_sha1": _sha1(card.onnx_path) if card.onnx_path else None,
            "input_size": card.preprocess.input_size,
            "keep": list(self._base.kept_names or ()) or None,
            "features": FEATURES_VERSION,
        }

    def _corrections_key(self) -> dict:
        return {self.frames[i].name: _sha1(p) for i, p in sorted(self.corrections.items())}

    def _saved_head(self) -> Head | None:
        if self.refit:
            return None
        try:
            data = json.loads((self.output / HEAD_FILE).read_text(encoding="utf-8"))
            if (
                data.get("version") == HEAD_VERSION
                and data.get("base_model") == self._card_key()
                and data.get("corrected") == self._corrections_key()
            ):
                self.fit_info = {**data.get("fit", {}), "reused": True}
                return Head.from_dict(data["head"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return None

    def _network(self, i: int):
        bgr = read_image(self.frames[i])
        source, _ = guide_source(bgr, self._base.card.preprocess.input_size, self.post)
        p = self._base.predict(bgr, source=source, flip=self.post.flip)[0]
        return bgr, network_grid(source, bgr.shape[:2], self._base.card.preprocess.input_size), p

    def fit(self) -> Head:
        """Fit (or reuse) the head; :class:`InputError` for a correction it cannot use."""
        if self.head is not None:
            return self.head
        t0 = time.perf_counter()
        head = self._saved_head()
        if head is None:
            head = self._fit()
            self._save_head(head)
        self.head = head
        self.fit_info["seconds"] = round(time.perf_counter() - t0, 3)
        self.segmenter = AdaptedSegmenter(self._base, head, self.post.threshold)
        return head

    def _fit(self) -> Head:
        thr = self.post.threshold
        rng = np.random.default_rng(0)
        xs, ys, ws, checks = [], [], [], []
        corrected = sorted(self.corrections)
        others = [i for i in range(len(self.frames)) if i not in self.corrections]
        if len(others) > OTHERS:
            others = [
                others[k] for k in np.linspace(0, len(others) - 1, OTHERS).round().astype(int)
            ]
        steps = len(corrected) + len(others) + 1
        for k, i in enumerate(corrected):
            path = self.corrections[i]
            bgr, grid, p = self._network(i)
            mask = read_label(path)
            net = p > thr
            check_correction(path, mask, bgr.shape[:2], net)
            target = cv2.resize(
                mask.astype(np.float32), p.shape[::-1], interpolation=cv2.INTER_AREA
            )
            x = pixel_features(grid, p, thr)
            sel, w = corrected_sample(x, p.ravel(), target.ravel(), rng)
            xs.append(x[sel])
            ys.append(target.ravel()[sel])
            ws.append(w)
            checks.append((path, x, target > 0.5, net))
            self._fit_step(k + 1, steps)
        for k, i in enumerate(others):
            _, grid, p = self._network(i)
            x = pixel_features(grid, p, thr)
            dist = x[:, LOGIT_FEATURE + 1] * 24.0
            conf = ((p.ravel() < CONFIDENT) | (p.ravel() > 1 - CONFIDENT)) & (
                np.abs(dist) >= CONFIDENT_DIST
            )
            sel = np.flatnonzero(conf)
            if sel.size > PER_OTHER:
                sel = rng.choice(sel, PER_OTHER, replace=False)
            if sel.size:
                xs.append(x[sel])
                ys.append((p.ravel()[sel] > 0.5).astype(np.float32))
                ws.append(
                    np.full(sel.size, OTHERS_WEIGHT * len(corrected) / (sel.size * len(others)))
                )
            self._fit_step(len(corrected) + k + 1, steps)
        head, stats = fit_head(
            np.concatenate(xs), np.concatenate(ys), np.concatenate(ws), RIDGE * len(corrected)
        )
        per = {}
        for path, x, truth, net in checks:
            adapted = (head.logit(x) > np.log(thr / (1 - thr))).reshape(truth.shape)
            before, after = _iou(net, truth), _iou(adapted, truth)
            per[path.name] = {"network_iou": round(before, 4), "adapted_iou": round(after, 4)}
            if after < before - 0.02:
                raise InputError(
                    f"{path}: the corrections contradict each other or the frame: the "
                    f"sequence's head fits this one worse than the network (IoU {after:.3f} "
                    f"against {before:.3f}); check that every correction marks the same "
                    "garment, 255 = subject"
                )
        self.fit_info = {**stats, "corrected": per, "others": len(others), "reused": False}
        self._fit_step(steps, steps)
        return head

    def _fit_step(self, done: int, total: int) -> None:
        if self.fit_progress is not None:
            self.fit_progress("adapt", done, total)

    def _save_head(self, head: Head) -> None:
        data = {
            "version": HEAD_VERSION,
            "kind": "segcore sequence head",
            "base_model": self._card_key(),
            "corrected_folder": str(self.corrected_dir),
            "corrected": self._corrections_key(),
            "threshold": self.post.threshold,
            "fit": self.fit_info,
            "head": head.to_dict(),
        }
        path = self.output / HEAD_FILE
        if path.exists() and not self.owned.owns(path):
            self.owned.refuse_foreign([HEAD_FILE])
        self.owned.pending([HEAD_FILE])
        atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))
        self.owned.settle([HEAD_FILE])

    # -- segmenting

    def run(self, should_stop=None):
        self.fit()
        yield from super().run(should_stop)

    def process(self, index: int) -> FrameResult:
        """Corrected frames: the artist's mask in every output; the others: segmented."""
        path = self.corrections.get(index)
        if path is None:
            return super().process(index)
        frame = self.frames[index]
        res = FrameResult(index, str(frame), "ok")
        t0 = time.perf_counter()
        try:
            bgr = read_image(frame, res.warnings)
            data = read_bytes(path)
            mask = np.where(read_label(path), np.uint8(255), np.uint8(0))
            p, classes, _ = self._base.predict(bgr, flip=self.post.flip)
            fm = FrameMasks(mask, mask, p, {}, classes=classes, keep=self._base.keep)
            if self.rest:
                self._rest_masks[index] = self._rest_png(classes)
            plain = _is_plain_mask_png(data)
            for w in self.writers:
                target = self.output / w.folder / w.filename(frame)
                if plain and w.write is fmt.WRITERS["mask"].write:
                    atomic_write_bytes(target, data)  # the artist's file, byte for byte
                else:
                    w.write(target, bgr, fm)
                res.outputs.append(str(target))
            res.foreground_share = float(np.count_nonzero(mask)) / mask.size
        except SegcoreError as exc:
            res.status, res.error = "failed", getattr(exc, "reason", str(exc))
        except OSError as exc:
            res.status, res.error = "failed", f"cannot write an output ({exc.strerror or exc})"
        res.seconds = time.perf_counter() - t0
        return res

    def artist_frames(self) -> set[int]:
        return set(self.corrections)

    def _complete_frame(self, i: int, plate, old: np.ndarray) -> None:
        if i not in self.corrections:  # the still-background pass keeps the artist's masks
            super()._complete_frame(i, plate, old)

    def report(self) -> dict:
        rep = super().report()
        rep["adapt"] = {
            "corrected": {self.frames[i].name: str(p) for i, p in sorted(self.corrections.items())},
            "head": HEAD_FILE,
            "fit": self.fit_info,
        }
        return rep
