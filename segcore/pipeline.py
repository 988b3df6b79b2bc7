"""Segment one frame, or a whole sequence in bounded memory: the function every front end calls.

The CLI, the Blender add-on's operator and its batch script all run :class:`SequenceJob`.
Frames are processed by a small thread pool (OpenCV and numpy release the GIL, so decode,
inference, upsampling and encode of neighbouring frames overlap on the cores), at most
``workers`` frames in flight, results handed back in input order. Each output is written
atomically; a frame that fails is reported and skipped; an interrupted run can resume with
``skip_existing``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from . import formats as fmt
from .card import PostprocessParams
from .confidence import assess, grid_mask, verdict
from .config import CLASSES
from .edges import load_refiner
from .errors import InputError, OutputError, SegcoreError
from .frame import segment_frame
from .infer import Segmenter, keep_probability
from .io import (
    atomic_write_bytes,
    by_stem,
    discover_frames,
    encode_png,
    is_out_of_memory,
    no_memory,
    png_is_whole,
    read_image,
    remove_stale_temporaries,
    temporary_name,
    write_png,
)
from .labels import nearest_class, read_labels, write_labels
from .mask import foreground_share, threshold
from .options import DEFAULT_FORMATS, DEFAULT_WORKERS, MAX_WORKERS
from .outputs import Manifest, check_apart, relation
from .plate import check_mode as check_plate_mode
from .preprocess import MAX_INPUT_SIZE
from .temporal import SequenceSmoother

log = logging.getLogger(__name__)

REPORT_VERSION = 1


@dataclass(frozen=True)
class SegmentOptions:
    """What a user can choose; ``None`` means "as the model card says"."""

    model: str | None = None  # bundled model name, or a .json/.onnx path
    size: int | None = None  # network input long side
    threshold: float | None = None
    refine: bool | None = None
    flip: bool | None = None  # test-time flip averaging (Segmenter.probability)
    edges: str | None = None  # "learned" (the card's edge refiner) or "guided" (the filter)
    formats: tuple[str, ...] = DEFAULT_FORMATS  # names of segcore.options.FORMATS
    skip_existing: bool = False  # keep frames whose outputs all exist (resume)
    overwrite: bool = False  # replace existing outputs
    workers: int = DEFAULT_WORKERS  # frames in flight, 1 to MAX_WORKERS
    temporal: bool = False  # smooth along the sequence (segcore.temporal); frames in order
    plate: str = "auto"  # complete the masks from a still background (segcore.plate)
    recursive: bool = False  # frames in INPUT's subfolders too (outputs keep flat names)
    # classes a multi-class model keeps (names of segcore.config.CLASSES): None = the
    # garment figure, garment + figure (segcore.infer.DEFAULT_KEEP); binary models: None
    keep: tuple[str, ...] | None = None


@dataclass
class FrameResult:
    index: int
    path: str
    status: str  # "ok", "skipped" or "failed"
    seconds: float = 0.0
    foreground_share: float | None = None
    warnings: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # how far to trust the mask (segcore.confidence): 0..1, None until assessed (or failed)
    confidence: float | None = None
    suspect: bool = False  # confidence below 0.5: worth a look before 3D
    reasons: list[str] = field(default_factory=list)  # why it is suspect, in plain words
    signals: dict[str, float] = field(default_factory=dict)  # the measured values


def load_segmenter(options: SegmentOptions) -> tuple[Segmenter, PostprocessParams]:
    """The segmenter and post-processing for ``options`` (card defaults, user overrides)."""
    seg = Segmenter.load(options.model, keep=options.keep)
    if options.size is not None:
        if not 32 <= options.size <= MAX_INPUT_SIZE:
            raise InputError(
                f"--size {options.size} is out of range; use 32 to {MAX_INPUT_SIZE} pixels "
                f"(the model's own: {seg.card.preprocess.input_size})"
            )
        pre = replace(seg.card.preprocess, input_size=int(options.size))
        seg.card = replace(seg.card, preprocess=pre)
    post = seg.card.postprocess
    if options.threshold is not None:
        if not 0.0 < options.threshold < 1.0:
            raise InputError(f"--threshold {options.threshold} must be between 0 and 1")
        post = replace(post, threshold=float(options.threshold))
    if options.refine is not None:
        post = replace(post, refine=bool(options.refine))
    if options.flip is not None:
        post = replace(post, flip=bool(options.flip))
    if options.edges not in (None, "learned", "guided"):
        raise InputError(f"--edges {options.edges!r}: choose learned or guided")
    seg.edges = None if options.edges == "guided" else load_refiner(seg.card)
    if options.edges == "learned" and seg.edges is None:
        raise InputError(
            f"--edges learned: model {seg.card.name!r} has no edge refiner; use --edges guided"
        )
    return seg, post


def _rest_classes(keep: tuple[int, ...] | None) -> tuple[int, ...]:
    """The foreground classes (indices) a multi-class model does not keep."""
    return () if keep is None else tuple(i for i in range(1, len(CLASSES)) if i not in keep)


def _check_output(input_path: Path, out: Path, folders: list[str]) -> None:
    in_dir = input_path if input_path.is_dir() else input_path.parent
    if relation(out, in_dir) in ("is", "inside"):  # device + inode: bind mounts too
        raise OutputError(
            f"{out}: the output folder is the input folder or inside it; "
            "choose an output folder outside the frames' folder"
        )
    for f in folders:  # e.g. INPUT = OUT/rgba: its photos would be replaced by cut-outs
        check_apart(out / f, [in_dir], f"the output folder {f}/", advice="choose another OUT")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / temporary_name("-probe")  # a dead run's is removed like any temporary
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _unwritable(out, exc) from exc


def _unwritable(out: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"{out}: cannot write to the output folder ({exc.strerror}); choose a writable folder"
    )


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # AttributeError: Windows has no pathconf
        return 255


# write errors every later frame would meet too: full, read-only, no permission (an
# immutable or re-permissioned folder), so the run stops at the first, saying what to do
STOP_ADVICE = {
    errno.ENOSPC: "free space on that disk",
    errno.EDQUOT: "free space or raise the disk quota",
    errno.EROFS: "the file system turned read-only: remount it writable (or choose another OUT)",
    errno.EPERM: "the folder refuses new files (immutable?): make it writable (chattr -i)",
    errno.EACCES: "no permission to write there: give it back (chmod u+w)",
}
STOPPING_ERRNOS = tuple(STOP_ADVICE)
# --temporal: the chain's state after a frame (its grey and smoothed probability at network
# scale), kept until the next frame is done, so a resumed run goes on with it
CHAIN_STATES = ".segment-temporal"
# the frames the still-background pass completed (their outputs' sizes) and its summary, so a
# resumed run never completes a mask twice; the plate of a pass that was stopped, so it
# finishes with the same plate
PLATE_RECORD = ".segment-plate.json"
PLATE_SAVED = ".segment-plate.npz"
# every run's picture: its frames with the mask edges, suspect ones first (segcore.sheet)
CONTACT_SHEET = "contact_sheet.png"


class SequenceJob:
    """Segment every frame of ``input_path`` into ``output``; iterate :meth:`run` for results.

    Everything that can be checked before a frame is touched is checked in the constructor
    (paths, model, formats), which raises :class:`SegcoreError` with a one-line message.
    """

    def __init__(
        self,
        input_path,
        output,
        options: SegmentOptions = SegmentOptions(),
        loaded: tuple[Segmenter, PostprocessParams] | None = None,
    ):
        """``loaded``: the segmenter and post-processing :func:`load_segmenter` made for
        ``options``, when the caller has them (many sequences, one model load)."""
        self.input = Path(input_path)
        self.output = Path(output)
        self.options = options
        unknown = [f for f in options.formats if f not in fmt.WRITERS]
        if unknown or not options.formats:
            raise InputError(
                f"unknown output format(s) {', '.join(unknown) or '(none)'}; "
                f"choose from {', '.join(fmt.WRITERS)}"
            )
        if options.skip_existing and options.overwrite:
            raise InputError("--skip-existing and --overwrite exclude each other; pick one")
        check_plate_mode(options.plate)
        if isinstance(options.workers, bool) or not 1 <= options.workers <= MAX_WORKERS:
            raise InputError(
                f"--workers {options.workers}: use 1 to {MAX_WORKERS} frames at once "
                "(1 needs the least memory)"
            )
        self.notes: list[str] = []  # what INPUT holds that is not segmented, one line each
        self.frames = self._discover()
        self._check_stems()
        self._frame_state(loaded)  # the model: a bad card changes nothing
        _check_output(self.input, self.output, [w.folder for w in self.writers])
        self._check_name_lengths()
        if "labels" in options.formats and self.segmenter.keep is None:
            raise InputError(
                f"--formats labels: the model card {self.segmenter.card.name!r} has no "
                "classes (a binary model); label maps need a multi-class model"
            )
        self.existing = [i for i, p in enumerate(self.frames) if self._outputs_done(p)]
        partial = [i for i, p in enumerate(self.frames) if self._any_output_exists(p)]
        if partial and not (options.skip_existing or options.overwrite):
            raise OutputError(
                f"{self.output}: already holds outputs for {len(partial)} of "
                f"{len(self.frames)} frames; pass --skip-existing to resume or --overwrite "
                "to replace them"
            )
        # it replaces only outputs it wrote: --overwrite all of them, a resume the partial ones
        kept = set() if options.overwrite else set(self.existing)
        todo = [p for i, p in enumerate(self.frames) if i not in kept]
        self.owned = Manifest(self.output, "segment")
        # an output of its own left empty or cut short (a copy, a disk fault) is not done:
        # it is written again
        self.owned.refuse_foreign(
            str(q.relative_to(self.output))
            for q in self._paths(todo)
            if not (self.owned.lists(q) and not png_is_whole(q))
        )
        folders = [self.output / w.folder for w in self.writers]
        # the earlier run's report: the confidence signals of the frames it wrote and this
        # run keeps (skip_existing); the contact sheet, unless a file of that name is not ours
        self._earlier = self._earlier_frames() if options.skip_existing else {}
        sheet = self.output / CONTACT_SHEET
        self.sheet_foreign = os.path.lexists(sheet) and not self.owned.owns(sheet)
        try:
            for d in folders:
                d.mkdir(parents=True, exist_ok=True)
            for d in (self.output, *folders, self.output / CHAIN_STATES):
                remove_stale_temporaries(d)  # a dead run's, report.json's included
            own = ["report.json"] + ([] if self.sheet_foreign else [CONTACT_SHEET])
            self.owned.pending([*self._paths(todo), *own])
            self._forget_plate({p.name for p in todo})  # their outputs are written again
        except OSError as exc:
            raise _unwritable(self.output, exc) from exc
        self.results: list[FrameResult] = []
        self.started = time.time()
        self.interrupted = False
        self.report_error: str | None = None  # why report.json could not be written
        self.sheet_error: str | None = None  # why contact_sheet.png was not written
        self.sheet: Path | None = None  # the contact sheet written (write_report)
        self.confidence: dict | None = None  # the run's confidence summary (assess)
        self.plate: dict | None = None  # what the still background changed (complete_from_plate)
        self.plate_why: str | None = None  # why there was no still-background pass
        # progress(stage, done, total) of that pass (stages: segcore.plate.STAGES)
        self.plate_progress: Callable[[str, int, int], None] | None = None

    def _frame_state(self, loaded: tuple[Segmenter, PostprocessParams] | None) -> None:
        """What :meth:`process` needs besides the frames: writers, model, temporal chain."""
        self.writers = [fmt.WRITERS[name] for name in self.options.formats]
        self.rim_colours = "rgba" in self.options.formats  # only the RGBA output uses them
        self.segmenter, self.post = load_segmenter(self.options) if loaded is None else loaded
        # foreground classes a multi-class model does not keep: the still-background pass
        # sees them as subject too (a turning stand is no background), then keeps the kept
        self.rest = _rest_classes(self.segmenter.keep) if self.options.plate != "off" else ()
        self._rest_masks: dict[int, bytes] = {}  # their masks at network scale, PNG bytes
        self._grids: dict[int, np.ndarray] = {}  # each written mask on confidence's grid
        n = len(self.frames)
        self.smoother = SequenceSmoother(n) if self.options.temporal else None
        self.fatal: str | None = None  # a fault that stops the whole run (disk full)
        # frames whose outputs are whole and newer than this (time.time()) were written by
        # this run already (a retried worker's frames): kept, not written twice
        self.written_since: float | None = None

    @classmethod
    def frames_only(
        cls, input_path, output, options: SegmentOptions, frames: list, loaded, since: float
    ) -> SequenceJob:
        """A job that only segments and writes frames with :meth:`process`: no checks, no
        manifest, no report. The workers of ``segcore segment-many`` (:mod:`segcore.batch`)
        run it on the frames of a job the driver built in full (``frames``: that job's, in
        order; ``since``: when that job started, see ``written_since``)."""
        job = cls.__new__(cls)
        job.input, job.output, job.options = Path(input_path), Path(output), options
        job.frames = [Path(f) for f in frames]
        job._frame_state(loaded)
        job.written_since = since
        return job

    def frame_record(self, res: FrameResult) -> dict:
        """``res`` and what the end of the run needs of its frame (its mask on confidence's
        grid, the not-kept classes' mask), to hand over to the job that writes the report."""
        return {
            "result": asdict(res),
            "grid": self._grids.pop(res.index, None),
            "rest": self._rest_masks.pop(res.index, None),
            "fatal": self.fatal,
        }

    def take_record(self, record: dict) -> FrameResult:
        """A frame another process segmented (:meth:`frame_record`), counted as this run's."""
        res = FrameResult(**record["result"])
        if record.get("grid") is not None:
            self._grids[res.index] = record["grid"]
        if record.get("rest") is not None:
            self._rest_masks[res.index] = record["rest"]
        self.fatal = self.fatal or record.get("fatal")
        self.results.append(res)
        return res

    def _discover(self) -> list[Path]:
        """The frames to segment (:class:`segcore.watch.WatchJob` finds them as they come)."""
        return discover_frames(self.input, self.notes, self.options.recursive)

    def _check_stems(self) -> None:
        by_stem(self.frames, "their masks would overwrite each other")

    def _check_name_lengths(self) -> None:
        limit = _name_max(self.output)
        for p in self.frames:
            for w in self.writers:
                n = len(os.fsencode(w.filename(p)))
                if n > limit:
                    raise InputError(
                        f"{p}: the name of its {w.name} output would be {n} bytes, over the "
                        f"output folder's limit of {limit}; shorten the frame's file name"
                    )

    def _paths(self, frames: list[Path]) -> list[Path]:
        return [q for p in frames for q in self.output_paths(p)]

    def output_paths(self, frame: Path) -> list[Path]:
        return [self.output / w.folder / w.filename(frame) for w in self.writers]

    def _outputs_done(self, frame: Path) -> bool:
        """Every output of ``frame`` is there and whole (not empty, not cut short)."""
        return all(
            png_is_whole(self.output / w.folder / w.filename(frame), w.png_colour)
            for w in self.writers
        )

    def _any_output_exists(self, frame: Path) -> bool:
        return any(p.exists() for p in self.output_paths(frame))

    def process(self, index: int) -> FrameResult:
        """Segment and write one frame; never raises for a bad frame."""
        path = self.frames[index]
        res = FrameResult(index, str(path), "ok")
        t0 = time.perf_counter()
        try:
            if self.options.skip_existing and self._outputs_done(path):
                res.status = "skipped"
                self._resume_chain(index)
                return res
            if self._written_by_this_run(path):  # a retried worker's: kept as it was written
                res.outputs = [str(q) for q in self.output_paths(path)]
                self._resume_chain(index)
                return res
            ta = time.perf_counter()
            bgr = read_image(path, res.warnings)
            res.timings["decode"] = time.perf_counter() - ta
            smooth, state = None, []
            if self.smoother is not None:

                def smooth(source, prob):
                    state.append(self.smoother.smooth_state(index, source, prob))
                    return state[0][1]

            fm = segment_frame(bgr, self.segmenter, self.post, self.rim_colours, smooth)
            res.timings.update(fm.timings)
            if self.rest:
                self._rest_masks[index] = self._rest_png(fm.classes)
            tb = time.perf_counter()
            if state:  # saved first: a frame whose outputs are done has its state on disk
                self._save_chain_state(index, state[0])
            for w in self.writers:
                target = self.output / w.folder / w.filename(path)
                w.write(target, bgr, fm)
                res.outputs.append(str(target))
            if state:
                self._drop_chain_state(index - 1)  # only this frame, now done, needed it
            res.timings["encode"] = time.perf_counter() - tb
            res.signals = dict(fm.signals)
            self._grids[index] = grid_mask(fm.mask)
            res.foreground_share = foreground_share(fm.mask)
            if res.foreground_share == 0.0:
                res.warnings.append("no subject found: the mask is empty")
            elif res.foreground_share > 0.95:
                res.warnings.append("the mask covers almost the whole frame")
        except SegcoreError as exc:
            res.status, res.error = "failed", getattr(exc, "reason", str(exc))
        except OSError as exc:
            res.status = "failed"
            res.error = f"cannot write an output ({exc.strerror or exc})"
            if exc.errno in STOPPING_ERRNOS or not self.output.is_dir():
                self.fatal = self._stop_reason(exc)  # every later frame would fail the same way
        except Exception as exc:
            if is_out_of_memory(exc):  # numpy's MemoryError or OpenCV's allocation error
                res.status, res.error = "failed", no_memory()
            else:  # a bug, but one frame must not stop the others
                log.exception("unexpected error on %s", path)
                res.status, res.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        finally:
            if self.smoother is not None:
                self.smoother.skip(index)  # no-op once smoothed; unblocks the next frame
        res.seconds = time.perf_counter() - t0
        return res

    def _written_by_this_run(self, frame: Path) -> bool:
        if self.written_since is None or not self._outputs_done(frame):
            return False
        return all(q.stat().st_mtime >= self.written_since for q in self.output_paths(frame))

    def _stop_reason(self, exc: OSError) -> str:
        """One line for the fault that stops the run: which folder, what to do."""
        if not self.output.is_dir():
            return (
                f"{self.output}: the output folder disappeared (a drive unmounted?); "
                "reconnect it and rerun with --skip-existing"
            )
        where = Path(exc.filename).parent if exc.filename else self.output
        return f"{where}: {exc.strerror}; {STOP_ADVICE[exc.errno]}, then rerun with --skip-existing"

    # --- the --temporal chain across runs (CHAIN_STATES) ---

    def _chain_state_path(self, index: int) -> Path:
        name = os.fsencode(self.frames[index].name)
        return self.output / CHAIN_STATES / f"{hashlib.sha1(name).hexdigest()[:20]}.npz"

    def _chain_key(self, index: int) -> str:
        """What a saved state holds for: the frame (name, size, time), model and options."""
        st = self.frames[index].stat()
        card = self.segmenter.card
        return json.dumps(
            [self.frames[index].name, st.st_size, st.st_mtime_ns, card.name,
             card.preprocess.input_size, self.post.to_dict()],
            sort_keys=True,
        )  # fmt: skip

    def _save_chain_state(self, index: int, state) -> None:
        buf = io.BytesIO()
        np.savez(buf, gray=state[0], prob=state[1], key=np.array(self._chain_key(index)))
        path = self._chain_state_path(index)
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())

    def _drop_chain_state(self, index: int) -> None:
        if index >= 0:
            with contextlib.suppress(OSError):
                self._chain_state_path(index).unlink()

    def _resume_chain(self, index: int) -> None:
        """A frame done by an earlier run hands the next frame, if that one runs now, the
        chain state that run saved: the chain goes on as in an uninterrupted run."""
        nxt = index + 1
        if self.smoother is None or nxt >= len(self.frames) or self._outputs_done(self.frames[nxt]):
            return
        try:
            with np.load(self._chain_state_path(index), allow_pickle=False) as z:
                if str(z["key"]) == self._chain_key(index):
                    self.smoother.resume(index, (z["gray"], z["prob"]))
        except Exception:  # none, another run's or damaged: the chain starts again at nxt
            pass

    def _drop_chain_states(self) -> None:
        folder = self.output / CHAIN_STATES
        if folder.is_dir():
            for p in folder.glob("*.npz"):
                with contextlib.suppress(OSError):
                    p.unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()

    def run(self, should_stop: Callable[[], bool] | None = None) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per frame, in order. ``should_stop`` cancels."""
        workers = max(1, int(self.options.workers))
        n = len(self.frames)
        stop = threading.Event()
        cv_threads = cv2.getNumThreads()
        if min(workers, n) > 1:
            # one frame per core: OpenCV's own worker threads (resize, DNN) would only
            # oversubscribe the cores and spin; restored when the run ends
            cv2.setNumThreads(1)
        try:
            yield from self._run(workers, n, stop, should_stop)
        finally:
            cv2.setNumThreads(cv_threads)
        self.after_frames(should_stop)

    def after_frames(self, should_stop: Callable[[], bool] | None = None) -> None:
        """What follows the last frame: the temporal chain's states dropped when every frame
        is done, the still-background pass (:meth:`complete_from_plate`)."""
        n = len(self.frames)
        finished = not (self.interrupted or self.fatal) and len(self.results) == n
        if self.smoother is not None and finished and not self.failures():
            self._drop_chain_states()  # every frame done: no chain to go on with
        if self.options.plate != "off" and not self.interrupted and not self.fatal:
            self.complete_from_plate(self.options.plate == "on", self.plate_progress, should_stop)

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
        from .io import read_label
        from .plate import still_plate

        done = sorted(r.index for r in self.results if r.status in ("ok", "skipped"))
        done = [i for i in done if all(map(self.owned.owns, self.output_paths(self.frames[i])))]
        # a mask to read back: a mask format's, else the label map's, else the cut-out's alpha
        src = min(self.writers, key=lambda w: {"labels": 1, "rgba": 2}.get(w.name, 0))

        def mask_of(i: int) -> np.ndarray:
            path = self.output / src.folder / src.filename(self.frames[i])
            return read_labels(path) > 0 if src.name == "labels" else read_label(path)

        def subject_of(k: int) -> tuple[np.ndarray, np.ndarray]:
            bgr, mask = read_image(self.frames[done[k]]), mask_of(done[k])
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
            plate = self._saved_plate(names) or still_plate(
                len(done), subject_of, force, progress, why
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
                    self._complete_frame(i, plate, mask_of(i))
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
            subject = old | self._rest_of(i, bgr)
            corrected = plate.correct(bgr, subject)
            added = corrected & ~subject
            # an added part belongs to the class it hangs on to: kept (1) or not (2)
            side = nearest_class(np.where(old, 1, np.where(subject, 2, 0)).astype(np.uint8), added)
            new = (old & corrected) | (added & (side == 1))
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
        """The not-kept foreground classes' mask at network scale, as PNG bytes."""
        return encode_png(threshold(keep_probability(classes, self.rest), self.post.threshold))

    def _rest_of(self, i: int, bgr: np.ndarray) -> np.ndarray:
        """bool (H, W): where frame ``i`` shows foreground classes that are not kept."""
        png = self._rest_masks.get(i)
        if png is None:  # a frame kept from an earlier run (a resume): the network again
            png = self._rest_png(self.segmenter.predict(bgr, flip=self.post.flip)[1])
        small = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        H, W = bgr.shape[:2]
        return cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST) > 0

    def _run(self, workers, n, stop, should_stop, start: int = 0) -> Iterator[FrameResult]:
        """Process frames ``start`` to ``n - 1`` on a pool of ``workers``, yield in order."""
        with ThreadPoolExecutor(workers, thread_name_prefix="segcore") as pool:
            pending: dict[int, Future] = {}
            nxt = start
            try:
                for i in range(start, n):
                    while nxt < n and len(pending) < workers and not stop.is_set():
                        pending[nxt] = pool.submit(self.process, nxt)
                        nxt += 1
                    if i not in pending:
                        break
                    res = pending[i].result()  # popped once had: an interrupt here counts it
                    del pending[i]
                    self.results.append(res)
                    yield res
                    if self.fatal or (should_stop is not None and should_stop()):
                        stop.set()
                        self.interrupted = True
                        break
            except BaseException:  # KeyboardInterrupt (SIGINT, SIGTERM), or closed by the caller
                self.interrupted = True
                for f in pending.values():
                    f.cancel()
                raise
            finally:
                # frames in flight finish their atomic writes, start no more: each is counted
                # as what it became (a frame written while the run stopped is ok)
                for j in sorted(pending):
                    f = pending.pop(j)
                    if not f.cancelled():
                        self.results.append(f.result())

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

    # --- confidence and the contact sheet ---

    def _mask_writer(self):
        """The output to read a frame's mask back from: a mask format's, else the label
        map's, else the cut-out's alpha."""
        return min(self.writers, key=lambda w: {"labels": 1, "rgba": 2}.get(w.name, 0))

    def read_mask(self, i: int) -> np.ndarray:
        """bool (H, W): frame ``i``'s mask as written."""
        from .io import read_label

        src = self._mask_writer()
        path = self.output / src.folder / src.filename(self.frames[i])
        return read_labels(path) > 0 if src.name == "labels" else read_label(path)

    def _earlier_frames(self) -> dict[str, dict]:
        """The frames of the report an earlier run left in OUT, by path."""
        try:
            data = json.loads((self.output / "report.json").read_text(encoding="utf-8"))
            return {
                str(f["path"]): f
                for f in data.get("frames", [])
                if isinstance(f, dict) and f.get("status") in ("ok", "skipped") and "path" in f
            }
        except (OSError, ValueError, AttributeError, TypeError):
            return {}

    def assess(self) -> dict:
        """Every written frame's confidence (:mod:`segcore.confidence`), set on its
        :class:`FrameResult`; returns (and keeps in ``confidence``) the run's summary. A
        frame an earlier run wrote (skip_existing) brings the signals of that run's report;
        its mask is read back for the sequence's signals."""
        done = [r for r in self.results if r.status in ("ok", "skipped")]
        done.sort(key=lambda r: r.index)
        entries = []
        for r in done:
            if r.status == "skipped" and not r.signals:  # the earlier run's, where it said
                earlier = self._earlier.get(r.path, {}).get("signals") or {}
                r.signals = {
                    k: v
                    for k, v in earlier.items()
                    if k in ("uncertain", "flip_iou") and isinstance(v, (int, float))
                }
            if r.index not in self._grids:  # kept from an earlier run: its mask read back
                try:
                    mask = self.read_mask(r.index)
                    self._grids[r.index] = grid_mask(mask)
                    r.foreground_share = foreground_share(mask)
                except (SegcoreError, OSError):
                    r.foreground_share = None  # gone since: not assessed
            e = {"foreground_share": r.foreground_share, "grid": self._grids.get(r.index)}
            e.update({k: v for k, v in r.signals.items() if k in ("uncertain", "flip_iou")})
            entries.append(e)
        for r, a in zip(done, assess(entries)):
            r.confidence, r.suspect, r.reasons = a["confidence"], a["suspect"], a["reasons"]
            r.signals = {**r.signals, **a["signals"]}
        from .confidence import LIMITS

        assessed = [r for r in done if r.confidence is not None]
        suspect = [r for r in assessed if r.suspect]
        self.confidence = {
            "assessed": len(assessed),
            "suspect": len(suspect),
            "suspect_frames": [Path(r.path).name for r in suspect],
            "limits": dict(LIMITS),
        }
        return self.confidence

    def verdict(self) -> str:
        """The run's line about its frames' confidence (after :meth:`write_report`)."""
        c = self.confidence or self.assess()
        sheet = str(self.sheet) if self.sheet is not None else None
        return verdict(c["suspect"], c["assessed"], sheet)

    def write_contact_sheet(self) -> Path | None:
        """``OUT/contact_sheet.png``: the frames with their mask edges, suspect ones first
        and marked (:func:`segcore.sheet.run_sheet`); at most :data:`segcore.sheet.MAX_TILES`
        frames, so its size is bounded for any run. None (and ``sheet_error``) when it is
        not written: no frame written, a file of that name this command did not write, or
        a write fault."""
        from .sheet import run_sheet

        path = self.output / CONTACT_SHEET
        self.sheet = None
        if self.sheet_foreign:
            self.sheet_error = (
                f"{path}: `segcore segment` did not write it and will not replace it; no "
                "contact sheet this run (move it away)"
            )
            return None
        frames = [r for r in self.results if r.confidence is not None]
        if not frames:
            return None
        try:
            self.owned.pending([CONTACT_SHEET])  # ours to write (a report may have settled it)
            img = run_sheet(
                [(r.index, Path(r.path), r.confidence, r.suspect, r.reasons) for r in frames],
                self.read_mask,
                title=f"{self.input} -> {self.output}",
            )
            write_png(path, img)
        except (SegcoreError, OSError) as exc:
            self.sheet_error = f"{path}: not written ({getattr(exc, 'strerror', None) or exc})"
            return None
        self.sheet = path
        return path

    def summary(self) -> dict:
        by = {s: sum(r.status == s for r in self.results) for s in ("ok", "skipped", "failed")}
        done = [r for r in self.results if r.status == "ok"]
        return {
            "frames": len(self.frames),
            "processed": len(self.results),
            **by,
            "not_run": len(self.frames) - len(self.results),
            "interrupted": self.interrupted,
            "stopped_by": self.fatal,
            "seconds": round(time.time() - self.started, 3),
            "seconds_per_frame": round(sum(r.seconds for r in done) / len(done), 4)
            if done
            else None,
        }

    def report(self) -> dict:
        return {
            "version": REPORT_VERSION,
            "input": str(self.input),
            "output": str(self.output),
            "model": self.segmenter.card.name,
            "options": {
                **asdict(self.options),
                "formats": list(self.options.formats),
                "keep": list(self.segmenter.kept_names or ()) or None,
                "input_size": self.segmenter.card.preprocess.input_size,
                **self.post.to_dict(),
            },
            "summary": self.summary(),
            "input_notes": self.notes,
            "plate": self.plate,
            "plate_note": self.plate_note(),
            "confidence": self.confidence,
            "contact_sheet": self.sheet.name if self.sheet is not None else None,
            "frames": [asdict(r) for r in self.results],
        }

    def write_report(self, sheet: bool = True) -> Path | None:
        """``report.json`` (each frame's confidence assessed first) and, with ``sheet``, the
        contact sheet; None when the report cannot be written (a full or read-only disk),
        with the reason in ``report_error``."""
        path = self.output / "report.json"
        self.assess()
        if sheet:
            self.write_contact_sheet()
        try:
            atomic_write_bytes(path, (json.dumps(self.report(), indent=2) + "\n").encode())
            self.owned.settle()
        except OSError as exc:
            self.report_error = f"{path}: not written ({exc.strerror or exc})"
            return None
        return path

    def failures(self) -> list[FrameResult]:
        return [r for r in self.results if r.status == "failed"]
