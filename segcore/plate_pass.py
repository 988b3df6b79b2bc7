"""The still-background pass of a sequence (``--plate``): where the background stands still
(a turntable), every finished frame's outputs are completed from the sequence's plate
(:mod:`segcore.plate`). A part of :class:`segcore.pipeline.SequenceJob`, which it reads
(frames, results, writers, outputs) and completes."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Callable

import cv2
import numpy as np

from .errors import OutputError, SegcoreError
from .infer import keep_probability
from .io import (
    atomic_write_bytes,
    encode_png,
    read_image,
    write_png,
)
from .labels import nearest_class, read_labels, write_labels
from .mask import threshold
from .outputs import STOPPING_ERRNOS

log = logging.getLogger(__name__)

# the frames the still-background pass completed (their outputs' sizes) and its summary, so a
# resumed run never completes a mask twice; the plate of a pass that was stopped, so it
# finishes with the same plate
PLATE_RECORD = ".segment-plate.json"
PLATE_SAVED = ".segment-plate.npz"
# a part the plate adds is the network's kept or other classes' where the larger of the two
# probabilities (mean over the part, network scale) reaches this; below, the class it hangs on
PART_SURE = 0.02


class PlatePass:
    """:class:`segcore.pipeline.SequenceJob`'s still-background pass (a mixin)."""

    def complete_from_plate(
        self,
        force: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict | None:
        """Second pass over a finished sequence: where the background stands still (a
        turntable), complete every frame's outputs from its plate (:mod:`segcore.plate`):
        thin turning parts the network missed are added, leaks onto the backdrop removed.

        Rewrites (atomically) only the outputs of frames that change; the RGBA cut-outs keep
        their soft rim. Returns (and keeps in ``self.plate``) what changed, or None where the
        background moves or there are fewer than 6 frames. ``should_stop`` or an interrupt
        (KeyboardInterrupt) ends the pass early: every output stays valid (completed, or the
        network's as it was), ``interrupted`` is set and ``plate`` says how far it got.

        Idempotent: the frames it completed are listed in :data:`PLATE_RECORD` (with their
        outputs' sizes), and a later pass (a resumed run) completes only the others; a pass
        that was stopped leaves its plate in :data:`PLATE_SAVED`, so the resumed pass goes on
        with the same plate and ends with the files of an uninterrupted one.
        """
        from .plate import still_plate

        done = sorted(r.index for r in self.results if r.status in ("ok", "skipped"))
        done = [i for i in done if all(map(self.owned.owns, self.output_paths(self.frames[i])))]

        def subject_of(k: int) -> tuple[np.ndarray, np.ndarray]:
            bgr, mask = read_image(self.frames[done[k]]), self.read_mask(done[k])
            return bgr, (mask | self._rest_of(done[k], bgr)) if self.rest else mask

        record = self._plate_record()
        todo = [i for i in done if not self._plate_completed(i, record)]
        if done and not todo:  # an earlier pass completed every frame: never twice
            self.plate = {**record["plate"], "stopped": False} if record.get("plate") else None
            if self.plate is None:
                self.plate_why = "an earlier run of this folder found no still background"
            return self.plate
        names = [self.frames[i].name for i in done]
        why: list[str] = []
        try:
            drawn = self.artist_frames()
            plate = self._saved_plate(names) or still_plate(
                len(done),
                subject_of,
                force,
                progress,
                why,
                artist=[k for k, i in enumerate(done) if i in drawn],
            )
            if plate is None:
                self.plate_why = why[0] if why else "no still background"
                return None
            self.owned.pending(self._paths([self.frames[i] for i in todo]))  # rewritten below
        except (SegcoreError, OSError) as exc:  # a frame gone or unreadable since: say so
            log.warning("no still-background pass: %s", getattr(exc, "reason", exc))
            self.plate_why = f"not run: {getattr(exc, 'reason', exc)}"
            return None
        except BaseException:
            self.interrupted = True
            raise
        saved = time.monotonic()
        try:
            for k, i in enumerate(todo):
                if should_stop is not None and should_stop():
                    self.interrupted = True
                    break
                try:
                    self._complete_frame(i, plate, self.read_mask(i))
                    record["frames"][self.frames[i].name] = self._output_sizes(i)
                except (SegcoreError, OSError) as exc:  # one bad frame never stops the others,
                    if getattr(exc, "errno", None) in STOPPING_ERRNOS:  # a full disk does
                        self.fatal = self._stop_reason(exc)
                        break
                    log.warning("%s: not completed from the plate: %s", self.frames[i], exc)
                if progress is not None:
                    progress("plate masks", k + 1, len(todo))
                if time.monotonic() - saved > 1.0:  # a kill loses at most a second's record
                    self._save_plate_record(record)
                    saved = time.monotonic()
        except BaseException:
            self.interrupted = True
            raise
        finally:
            self.plate = {**plate.summary(), "frames_completed": plate.corrected}
            self.plate["stopped"] = stopped = self.interrupted or self.fatal is not None
            record["plate"] = self.plate
            self._save_plate_record(record)
            self._keep_plate(plate, names if stopped else None)
        if stopped:
            log.warning("still-background pass stopped: %s", self.plate)
        else:
            log.info("masks completed from the still background: %s", self.plate)
        return self.plate

    def artist_frames(self) -> set[int]:
        """Frames whose masks a person drew: the plate trusts what they show clear."""
        return set()

    # --- the still-background pass across runs (PLATE_RECORD, PLATE_SAVED) ---

    def _output_sizes(self, i: int) -> dict[str, int]:
        paths = self.output_paths(self.frames[i])
        return {p.relative_to(self.output).as_posix(): p.stat().st_size for p in paths}

    def _plate_record(self) -> dict:
        try:
            record = json.loads((self.output / PLATE_RECORD).read_text(encoding="utf-8"))
            if isinstance(record.get("frames"), dict):
                return record
        except (OSError, ValueError, AttributeError):
            pass
        return {"version": 1, "plate": None, "frames": {}}

    def _plate_completed(self, i: int, record: dict) -> bool:
        """Whether an earlier pass completed frame ``i``'s outputs as they are now."""
        try:
            return record["frames"].get(self.frames[i].name) == self._output_sizes(i)
        except OSError:
            return False

    def _save_plate_record(self, record: dict) -> None:
        try:
            data = json.dumps(record, indent=1, sort_keys=True) + "\n"
            atomic_write_bytes(self.output / PLATE_RECORD, data.encode("utf-8"))
        except OSError as exc:
            log.warning("%s: not written (%s)", self.output / PLATE_RECORD, exc.strerror or exc)

    def _forget_plate(self, names: set[str]) -> None:
        """Frames whose outputs are written again are no longer completed."""
        record = self._plate_record()
        if names & set(record["frames"]):
            record["frames"] = {k: v for k, v in record["frames"].items() if k not in names}
            self._save_plate_record(record)

    def _keep_plate(self, plate, names: list[str] | None) -> None:
        """Save ``plate`` (built from the frames ``names``) for a resumed pass; None: remove
        a saved one (the pass finished)."""
        path = self.output / PLATE_SAVED
        if names is None:
            with contextlib.suppress(OSError):
                path.unlink()
            return
        arrays = {k: v for k, v in vars(plate).items() if isinstance(v, np.ndarray)}
        meta = {k: v for k, v in vars(plate).items() if k not in arrays}
        buf = io.BytesIO()
        np.savez(buf, **arrays, meta=np.array(json.dumps({**meta, "names": names})))
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            log.warning("%s: not written (%s)", path, exc.strerror or exc)

    def _saved_plate(self, names: list[str]):
        """The plate a stopped pass saved, if it was built from the frames ``names``."""
        from .plate import Plate

        try:
            with np.load(self.output / PLATE_SAVED, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.pop("names") != names:
                    return None
                arrays = {k: z[k] for k in z.files if k != "meta"}
            return Plate(**{**meta, "size": tuple(meta["size"]), **arrays})
        except Exception:  # none, or not readable as one: the plate is built again
            return None

    def _complete_frame(self, i: int, plate, old: np.ndarray) -> None:
        bgr = read_image(self.frames[i])
        if self.rest:  # corrected as the whole subject; kept: what the kept classes hold
            maps = self._class_maps(i, bgr)
            subject = old | self._rest_of(i, bgr, maps)
            sides = np.where(old, 1, np.where(subject, 2, 0)).astype(np.uint8)
            corrected = plate.correct(bgr, subject, lambda a: _kept_parts(a, sides, maps))
            new = (old & corrected) | (corrected & ~subject)
        else:
            new = plate.correct(bgr, old)
        gain, loss = new & ~old, old & ~new
        if not (gain.any() or loss.any()):
            return
        for w in self.writers:
            target = self.output / w.folder / w.filename(self.frames[i])
            if w.name == "rgba":  # the cut-out keeps its soft rim and defringed colours
                rgba = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
                if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
                    raise OutputError(f"{target}: cannot read the cut-out back")
                rgba[gain, 3], rgba[loss, 3] = 255, 0
                write_png(target, rgba)
            elif w.name == "labels":  # lost pixels are background, gained ones take a class
                labels = read_labels(target)
                labels[loss] = 0
                write_labels(target, nearest_class(labels, gain))
            else:
                write_png(target, np.where(new, 255, 0).astype(np.uint8))

    def _rest_png(self, classes: np.ndarray) -> bytes:
        """At network scale, as PNG bytes (blue, green): the probability of the foreground
        classes that are not kept, and of the kept ones."""
        rest = keep_probability(classes, self.rest)
        kept = keep_probability(classes, self.segmenter.keep)
        img = np.stack([rest, kept, np.zeros_like(rest)], axis=-1)
        return encode_png(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8))

    def _class_maps(self, i: int, bgr: np.ndarray) -> np.ndarray:
        """float32 (2, h, w) at network scale: the not-kept and the kept classes'
        probabilities of frame ``i`` (the kept ones NaN in an earlier version's record)."""
        png = self._rest_masks.get(i)
        if png is None:  # a frame kept from an earlier run (a resume): the network again
            png = self._rest_png(self.segmenter.predict(bgr, flip=self.post.flip)[1])
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        if img.ndim == 2:  # the not-kept classes' mask alone
            return np.stack([img / 255.0, np.full(img.shape, np.nan)]).astype(np.float32)
        return img[..., :2].transpose(2, 0, 1).astype(np.float32) / 255.0

    def _rest_of(self, i: int, bgr: np.ndarray, maps: np.ndarray | None = None) -> np.ndarray:
        """bool (H, W): where frame ``i`` shows foreground classes that are not kept."""
        rest = (self._class_maps(i, bgr) if maps is None else maps)[0]
        small = threshold(rest, self.post.threshold)
        H, W = bgr.shape[:2]
        return cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST) > 0

    def plate_note(self) -> str | None:
        """Why ``plate`` is None (the report's ``plate_note``); None when there was a pass."""
        if self.plate is not None:
            return None
        if self.options.plate == "off":
            return "off (--plate off)"
        if self.plate_why:
            return self.plate_why
        if self.interrupted or self.fatal:
            return "not run: the run stopped before the last frame"
        return "not run"


def _kept_parts(added, sides, maps) -> np.ndarray:
    """bool (H, W): the parts of ``added`` (pixels the plate adds, at the plate's size) that
    join the kept classes (``sides``: 1 kept, 2 the other foreground classes, 0 background,
    at the frame's size; ``maps``: :meth:`PlatePass._class_maps`).

    The plate finds what turns; the network says what it is: a part whose network-scale
    probability is higher for the kept classes than for the others joins them (a sleeve's
    tip); one the network sees as a support does not (a stand's pole or leg, background by
    default, turns with the garment all the same). Where the network says nothing either
    way (both below ``PART_SURE``), a part belongs to the class it hangs on to.
    """
    if not added.any():
        return added
    H, W = added.shape
    n, comp = cv2.connectedComponents(added.astype(np.uint8), connectivity=8)
    rest, kept = (cv2.resize(m, (W, H), interpolation=cv2.INTER_LINEAR) for m in maps)
    size = np.maximum(np.bincount(comp.ravel(), minlength=n), 1)
    sure = np.zeros(n, bool)
    joins = np.zeros(n, bool)
    if np.isfinite(kept).all():
        r = np.bincount(comp.ravel(), rest.ravel(), minlength=n) / size
        k = np.bincount(comp.ravel(), kept.ravel(), minlength=n) / size
        sure = np.maximum(r, k) >= PART_SURE
        joins = k > r
    decided = np.where(sure, joins, False)
    if not sure[1:].all():  # parts the network says nothing of: the class they hang on to
        if sides.shape != added.shape:  # the plate works within LONG_SIDE pixels
            sides = cv2.resize(sides, (W, H), interpolation=cv2.INTER_NEAREST)
        return added & (decided[comp] | (~sure[comp] & (nearest_class(sides, added) == 1)))
    return added & decided[comp]
