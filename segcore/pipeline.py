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
from .confidence import grid_mask
from .config import CLASSES
from .edges import load_refiner
from .errors import InputError, OutputError, SegcoreError
from .frame import segment_frame
from .infer import Segmenter
from .io import (
    atomic_write_bytes,
    by_stem,
    discover_frames,
    is_out_of_memory,
    no_memory,
    png_is_whole,
    read_image,
    remove_stale_temporaries,
)
from .mask import foreground_share
from .options import DEFAULT_FORMATS, DEFAULT_WORKERS, MAX_WORKERS
from .outputs import (
    STOP_ADVICE,
    STOPPING_ERRNOS,
    Manifest,
    check_output_folder,
    name_max,
    unwritable,
)
from .plate import check_mode as check_plate_mode
from .plate_pass import PlatePass
from .preprocess import MAX_INPUT_SIZE
from .run_report import CONTACT_SHEET, RunReport
from .temporal import SequenceSmoother

log = logging.getLogger(__name__)

QUEUE_PER_WORKER = 2  # frames queued a worker (SequenceJob._run); one at a time in flight


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


# --temporal: the chain's state after a frame (its grey and smoothed probability at network
# scale), kept until the next frame is done, so a resumed run goes on with it
CHAIN_STATES = ".segment-temporal"


class SequenceJob(PlatePass, RunReport):
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
        check_output_folder(self.input, self.output, [w.folder for w in self.writers])
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
            raise unwritable(self.output, exc) from exc
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
        self._chain_lock = threading.Lock()
        self._chain_done: set[int] = set()  # --temporal: frames whose outputs are written
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
        limit = name_max(self.output)
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
                self._chain_written(index)
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

    def _chain_written(self, index: int) -> None:
        """Frame ``index`` is written: the state it was chained from is needed no more, nor
        its own once the next frame is written too. The next frame can finish first (it is
        chained from this frame's state in memory, before this frame has saved it), so the
        frame written second drops the state between them."""
        with self._chain_lock:
            self._chain_done.add(index)
            self._drop_chain_state(index - 1)
            if index + 1 in self._chain_done:
                self._drop_chain_state(index)

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

    def _run(self, workers, n, stop, should_stop, start: int = 0) -> Iterator[FrameResult]:
        """Process frames ``start`` to ``n - 1`` on a pool of ``workers``, yield in order."""
        with ThreadPoolExecutor(workers, thread_name_prefix="segcore") as pool:
            pending: dict[int, Future] = {}
            nxt = start
            # frames queued ahead (QUEUE_PER_WORKER a worker): a worker whose frame is done
            # takes the next one while an earlier frame is still being handed back in order;
            # no more frames are in flight (a queued frame holds nothing but its index). A
            # temporal chain queues none: each of its frames waits for the one before, and a
            # frame left out would break the chain of the frames after it
            chained = self.smoother is not None
            depth = workers if chained else workers * QUEUE_PER_WORKER

            def take(k: int) -> FrameResult | None:
                if not chained and (stop.is_set() or self.fatal):  # queued behind a stop
                    return None
                return self.process(k)

            try:
                for i in range(start, n):
                    while nxt < n and len(pending) < depth and not stop.is_set():
                        pending[nxt] = pool.submit(take, nxt)
                        nxt += 1
                    if i not in pending:
                        break
                    res = pending[i].result()  # popped once had: an interrupt here counts it
                    del pending[i]
                    if res is None:  # a stop or a fatal error came while it was queued
                        self.interrupted = self.interrupted or not self.fatal
                        break
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
                # frames in flight finish their atomic writes, queued ones never start: each
                # is counted as what it became (a frame written while the run stopped is ok)
                if not chained:
                    for f in pending.values():
                        f.cancel()  # only a frame not started yet
                for j in sorted(pending):  # in order: a skipped frame frees the next first
                    f = pending.pop(j)
                    if f.cancelled():
                        if chained:
                            self.smoother.skip(j)  # the next frame must not wait for it
                    elif (res := f.result()) is not None:
                        self.results.append(res)

    def failures(self) -> list[FrameResult]:
        return [r for r in self.results if r.status == "failed"]
