"""Segment one frame, or a whole sequence in bounded memory: the function every front end calls.

The CLI, the Blender add-on's operator and its batch script all run :class:`SequenceJob`.
Frames are processed by a small thread pool (OpenCV and numpy release the GIL, so decode,
inference, upsampling and encode of neighbouring frames overlap on the cores), at most
``workers`` frames in flight, results handed back in input order. Each output is written
atomically; a frame that fails is reported and skipped; an interrupted run can resume with
``skip_existing``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from . import formats as fmt
from .card import PostprocessParams
from .edges import active_cells, coarse_logit, load_refiner
from .errors import InputError, OutputError, SegcoreError
from .infer import Segmenter
from .io import (
    atomic_write_bytes,
    discover_frames,
    read_image,
    remove_stale_temporaries,
    write_png,
)
from .mask import cutout, decide, foreground_share
from .outputs import Manifest, check_apart, relation
from .plate import check_mode as check_plate_mode
from .preprocess import fit_size
from .refine import GuidedCoefficients, band_window, refine_params
from .temporal import SequenceSmoother
from .upsample import SplineField, spline_upsample

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
    formats: tuple[str, ...] = ("rgba", "mask")
    skip_existing: bool = False  # keep frames whose outputs all exist (resume)
    overwrite: bool = False  # replace existing outputs
    workers: int = 2  # frames in flight
    temporal: bool = False  # smooth along the sequence (segcore.temporal); frames in order
    plate: str = "auto"  # complete the masks from a still background (segcore.plate)


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


@dataclass
class FrameMasks:
    """The result of :func:`segment_frame` for one frame."""

    mask: np.ndarray  # uint8 (H, W), 255 = subject: the binary mask for photogrammetry
    alpha: np.ndarray  # uint8 (H, W): the same, with soft values along the boundary
    small: np.ndarray  # float32 (h, w): subject probability at network scale
    timings: dict[str, float]
    # defringed subject colours on the soft rim: (y0, x0, selection, BGR uint8 (n, 3)) tiles
    rim: list = field(default_factory=list)

    def rgba(self, bgr: np.ndarray) -> np.ndarray:
        """The mask operation: the frame with soft alpha, rim colours defringed."""
        out = cutout(bgr, self.alpha)
        for y0, x0, sel, colours in self.rim:
            h, w = sel.shape
            out[y0 : y0 + h, x0 : x0 + w, :3][sel] = colours
        return out


TILE = 16  # boundary tiles, at most this many network pixels a side
TILE_PX = 64  # and about this many frame pixels a side


def segment_frame(
    bgr: np.ndarray,
    segmenter: Segmenter,
    post: PostprocessParams,
    rim_colours: bool = True,
    smooth: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> FrameMasks:
    """Full-resolution BGR frame -> binary mask and soft alpha at full resolution.

    1. the network's probability at network scale; threshold and clean-up there (area limits
       are shares of the frame, so they mean the same at any scale);
    2. the mask is decided away from the boundary by that coarse mask;
    3. in a band of two network pixels around the boundary, tile by tile, the cubic B-spline
       upsampled probability (optionally refined by a colour guided filter on the photo)
       decides each full-resolution pixel.

    ``rim_colours=False`` skips the defringed rim colours, which only the RGBA output uses.
    ``smooth(frame_small, probability)``, if given, replaces the network's probability before
    step 1 (temporal consistency: :class:`segcore.temporal.SequenceSmoother`).
    """
    t = {}
    t0 = time.perf_counter()
    H, W = bgr.shape[:2]
    source, radius = guide_source(bgr, segmenter.card.preprocess.input_size, post)
    t["preprocess"] = time.perf_counter() - t0
    small, geo = segmenter.probability(bgr, source=source, flip=post.flip)
    t1 = time.perf_counter()
    t["inference"] = t1 - t0 - t["preprocess"]
    if smooth is not None:
        small = smooth(source, small)
        t1, t["temporal"] = time.perf_counter(), time.perf_counter() - t1
    thr = post.threshold
    coarse, p, band = decide(small, thr, post.min_blob_share, post.max_hole_share)
    h, w = small.shape
    rows = np.minimum(((np.arange(H) + 0.5) * (h / H)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * (w / W)).astype(np.int64), w - 1)
    mask = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_NEAREST)
    alpha = mask.copy()
    spline = SplineField(p, (H, W))
    t1b = time.perf_counter()
    t["mask"] = t1b - t1
    edges = getattr(segmenter, "edges", None)
    guided = None
    if post.refine and band.any() and (edges is None or edges.spec.guide == "guided"):
        guided = guided_field((H, W), source, p, band, radius, post.refine_eps)
    if post.refine and edges is not None:
        _learned_edges(
            bgr, edges, edge_prior(bgr, spline, guided), band, rows, cols, thr, mask, alpha
        )
        t["upsample"], t["refine"] = 0.0, time.perf_counter() - t1b
        return FrameMasks(mask, alpha, small, t, [])
    t_up, t_ref = 0.0, (time.perf_counter() - t1b) if guided is not None else 0.0
    rim: list = []
    # tiles of about TILE_PX frame pixels a side: big enough that per-tile overhead stays
    # small, small enough that few pixels outside the band are evaluated at any scale
    tile = max(2, min(TILE, round(TILE_PX / max(H / h, W / w))))
    nty, ntx = -(-h // tile), -(-w // tile)
    padded = np.zeros((nty * tile, ntx * tile), bool)
    padded[:h, :w] = band
    ty, tx = np.nonzero(padded.reshape(nty, tile, ntx, tile).any(axis=(1, 3)))
    # tile bounds in frame pixels: the frame rows whose nearest network row is in the tile
    ybounds = np.searchsorted(rows, np.arange(0, h + tile, tile))
    xbounds = np.searchsorted(cols, np.arange(0, w + tile, tile))
    u8_255, u8_0 = np.uint8(255), np.uint8(0)
    for i, j in zip(ty, tx):
        y0, y1 = int(ybounds[i]), int(ybounds[min(i + 1, len(ybounds) - 1)])
        x0, x1 = int(xbounds[j]), int(xbounds[min(j + 1, len(xbounds) - 1)])
        if y1 <= y0 or x1 <= x0:
            continue
        ta = time.perf_counter()
        sel = band[rows[y0:y1, None], cols[None, x0:x1]]
        if guided is not None:
            region = bgr[y0:y1, x0:x1]
            q, back = guided.apply(region, y0, x0, background=rim_colours)
            if rim_colours:
                soft = sel & (q > 0.02) & (q < 0.98)
                if soft.any():  # subject colour F from I = a F + (1 - a) B, B the local background
                    a = q[soft][:, None]
                    fg = (region[soft].astype(np.float32) - (1 - a) * back[soft]) / np.maximum(
                        a, 0.2
                    )
                    rim.append((y0, x0, soft, np.clip(fg + 0.5, 0, 255).astype(np.uint8)))
            t_ref += time.perf_counter() - ta
        else:
            q = spline.region(y0, y1, x0, x1)
            t_up += time.perf_counter() - ta
        np.copyto(mask[y0:y1, x0:x1], np.where(q > thr, u8_255, u8_0), where=sel)
        a8 = np.clip(q * 255 + 0.5, 0, 255).astype(np.uint8)
        np.copyto(alpha[y0:y1, x0:x1], a8, where=sel)
    t["upsample"] = t_up
    t["refine"] = t_ref
    return FrameMasks(mask, alpha, small, t, rim)


def guide_source(bgr: np.ndarray, input_size: int, post: PostprocessParams):
    """(the frame reduced for the guided filter and the network, the filter's radius in
    frame pixels): one area-resize pass feeds both."""
    H, W = bgr.shape[:2]
    geo = fit_size((H, W), input_size)
    scale = max(H / geo.scaled_hw[0], W / geo.scaled_hw[1])
    radius, sub = refine_params(scale, post.refine_radius)
    if post.refine and sub > 1:
        bgr = cv2.resize(
            bgr, (max(1, round(W / sub)), max(1, round(H / sub))), interpolation=cv2.INTER_AREA
        )
    return bgr, radius


def guided_field(frame_hw, source, p, band, radius, eps) -> GuidedCoefficients:
    """The colour guided filter of the upsampled probability ``p`` on the frame (``source``:
    the frame as :func:`guide_source` reduced it), over the band's window."""
    hs, ws = source.shape[:2]
    rs = round(radius * hs / frame_hw[0])
    y0, y1, x0, x1 = band_window(band, (hs, ws), rs)
    return GuidedCoefficients(
        source[y0:y1, x0:x1],
        spline_upsample(p, (hs, ws))[y0:y1, x0:x1],
        frame_hw,
        rs,
        eps,
        origin=(y0, x0),
        grid_hw=(hs, ws),
    )


def edge_prior(bgr, spline: SplineField, guided: GuidedCoefficients | None):
    """The learned refiner's prior channel for a region: the guided filter's probability
    when there is one, else the spline-upsampled one (as a coarse logit)."""
    if guided is None:
        return lambda y0, y1, x0, x1: coarse_logit(spline.region(y0, y1, x0, x1))
    return lambda y0, y1, x0, x1: coarse_logit(
        guided.apply(bgr[y0:y1, x0:x1], y0, x0, background=False)[0]
    )


def _learned_edges(bgr, edges, logit_at, band, rows, cols, thr, mask, alpha) -> None:
    """Decide the band's full-resolution pixels with the learned refiner (segcore.edges)."""
    cell = edges.spec.cell
    corners = active_cells(band, rows, cols, cell)
    q = edges.refine(bgr, logit_at, corners)
    H, W = mask.shape
    u8_255, u8_0 = np.uint8(255), np.uint8(0)
    for (y0, x0), qc in zip(corners, q):
        y1, x1 = min(int(y0) + cell, H), min(int(x0) + cell, W)
        qc = qc[: y1 - y0, : x1 - x0]
        sel = band[rows[y0:y1, None], cols[None, x0:x1]]
        np.copyto(mask[y0:y1, x0:x1], np.where(qc > thr, u8_255, u8_0), where=sel)
        a8 = np.clip(qc * 255 + 0.5, 0, 255).astype(np.uint8)
        np.copyto(alpha[y0:y1, x0:x1], a8, where=sel)


def load_segmenter(options: SegmentOptions) -> tuple[Segmenter, PostprocessParams]:
    """The segmenter and post-processing for ``options`` (card defaults, user overrides)."""
    seg = Segmenter.load(options.model)
    if options.size is not None:
        if options.size < 32:
            raise InputError(f"--size {options.size} is too small; use 32 or more")
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
        probe = out / f".segcore-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot write to the output folder ({exc.strerror}); choose a writable folder"
        ) from exc


# write errors every later frame would meet too: full, read-only, no permission (an
# immutable or re-permissioned folder), so the run stops at the first
STOPPING_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EPERM, errno.EACCES)


class SequenceJob:
    """Segment every frame of ``input_path`` into ``output``; iterate :meth:`run` for results.

    Everything that can be checked before a frame is touched is checked in the constructor
    (paths, model, formats), which raises :class:`SegcoreError` with a one-line message.
    """

    def __init__(self, input_path, output, options: SegmentOptions = SegmentOptions()):
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
        self.frames = discover_frames(self.input)
        self.writers = [fmt.WRITERS[name] for name in options.formats]
        self.rim_colours = "rgba" in options.formats  # only the RGBA output uses them
        self._check_stems()
        _check_output(self.input, self.output, [w.folder for w in self.writers])
        self.segmenter, self.post = load_segmenter(options)
        self.existing = [i for i, p in enumerate(self.frames) if self._outputs_exist(p)]
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
        self.owned.refuse_foreign(str(q.relative_to(self.output)) for q in self._paths(todo))
        for w in self.writers:
            (self.output / w.folder).mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.output / w.folder)
        self.owned.pending([*self._paths(todo), "report.json"])
        self.smoother = SequenceSmoother(len(self.frames)) if options.temporal else None
        self.results: list[FrameResult] = []
        self.started = time.time()
        self.interrupted = False
        self.fatal: str | None = None  # a fault that stops the whole run (disk full)
        self.report_error: str | None = None  # why report.json could not be written
        self.plate: dict | None = None  # what the still background changed (complete_from_plate)
        # progress(stage, done, total) of that pass (stages: segcore.plate.STAGES)
        self.plate_progress: Callable[[str, int, int], None] | None = None

    def _check_stems(self) -> None:
        seen: dict[str, Path] = {}
        for p in self.frames:
            if p.stem in seen:
                raise InputError(
                    f"{p}: has the same name stem as {seen[p.stem].name}, so their masks "
                    "would overwrite each other; rename one of them"
                )
            seen[p.stem] = p

    def _paths(self, frames: list[Path]) -> list[Path]:
        return [q for p in frames for q in self.output_paths(p)]

    def output_paths(self, frame: Path) -> list[Path]:
        return [self.output / w.folder / w.filename(frame) for w in self.writers]

    def _outputs_exist(self, frame: Path) -> bool:
        return all(p.exists() for p in self.output_paths(frame))

    def _any_output_exists(self, frame: Path) -> bool:
        return any(p.exists() for p in self.output_paths(frame))

    def process(self, index: int) -> FrameResult:
        """Segment and write one frame; never raises for a bad frame."""
        path = self.frames[index]
        res = FrameResult(index, str(path), "ok")
        t0 = time.perf_counter()
        try:
            if self.options.skip_existing and self._outputs_exist(path):
                res.status = "skipped"
                return res
            ta = time.perf_counter()
            bgr = read_image(path, res.warnings)
            res.timings["decode"] = time.perf_counter() - ta
            smooth = None
            if self.smoother is not None:
                smooth = partial(self.smoother.smooth, index)
            fm = segment_frame(bgr, self.segmenter, self.post, self.rim_colours, smooth)
            res.timings.update(fm.timings)
            tb = time.perf_counter()
            for w in self.writers:
                target = self.output / w.folder / w.filename(path)
                w.write(target, bgr, fm)
                res.outputs.append(str(target))
            res.timings["encode"] = time.perf_counter() - tb
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
                # every later frame would fail the same way: stop the run
                what = exc.strerror if self.output.is_dir() else "the output folder disappeared"
                self.fatal = (
                    f"{self.output}: {what}; free space (or fix the folder) and rerun "
                    "with --skip-existing"
                )
        except MemoryError:
            res.status, res.error = "failed", "not enough memory for this frame"
        except Exception as exc:  # a bug, but one frame must not stop the others
            log.exception("unexpected error on %s", path)
            res.status, res.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        finally:
            if self.smoother is not None:
                self.smoother.skip(index)  # no-op once smoothed; unblocks the next frame
        res.seconds = time.perf_counter() - t0
        return res

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
        background moves or there are fewer than 6 frames. ``should_stop`` ends the pass
        early (every output stays valid: completed, or the network's as it was).
        """
        from .io import read_label
        from .plate import still_plate

        done = sorted(r.index for r in self.results if r.status in ("ok", "skipped"))
        done = [i for i in done if all(map(self.owned.owns, self.output_paths(self.frames[i])))]
        src = next((w for w in self.writers if w.name != "rgba"), self.writers[0])

        def mask_of(i: int) -> np.ndarray:
            return read_label(self.output / src.folder / src.filename(self.frames[i]))

        try:
            plate = still_plate(
                len(done),
                lambda k: (read_image(self.frames[done[k]]), mask_of(done[k])),
                force,
                progress,
            )
        except (SegcoreError, OSError) as exc:  # a frame gone or unreadable since: say so
            log.warning("no still-background pass: %s", getattr(exc, "reason", exc))
            return None
        if plate is None:
            return None
        self.owned.pending(self._paths([self.frames[i] for i in done]))  # rewritten below
        for k, i in enumerate(done):
            if should_stop is not None and should_stop():
                log.warning("still-background pass stopped after %d of %d frames", k, len(done))
                break
            try:
                self._complete_frame(i, plate, mask_of(i))
            except (SegcoreError, OSError) as exc:  # one bad frame never stops the others
                log.warning("%s: not completed from the plate: %s", self.frames[i], exc)
            if progress is not None:
                progress("plate masks", k + 1, len(done))
        self.plate = plate.summary()
        log.info("masks completed from the still background: %s", self.plate)
        return self.plate

    def _complete_frame(self, i: int, plate, old: np.ndarray) -> None:
        new = plate.correct(read_image(self.frames[i]), old)
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
            else:
                write_png(target, np.where(new, 255, 0).astype(np.uint8))

    def _run(self, workers, n, stop, should_stop) -> Iterator[FrameResult]:
        with ThreadPoolExecutor(workers, thread_name_prefix="segcore") as pool:
            pending: dict[int, Future] = {}
            nxt = 0
            try:
                for i in range(n):
                    while nxt < n and len(pending) < workers and not stop.is_set():
                        pending[nxt] = pool.submit(self.process, nxt)
                        nxt += 1
                    if i not in pending:
                        break
                    res = pending.pop(i).result()
                    self.results.append(res)
                    yield res
                    if self.fatal or (should_stop is not None and should_stop()):
                        stop.set()
                        self.interrupted = True
                        # let frames in flight finish (their writes are atomic), start no more
                        for j in sorted(pending):
                            self.results.append(pending.pop(j).result())
                        break
            except BaseException:
                self.interrupted = True
                for f in pending.values():
                    f.cancel()
                raise

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
                "input_size": self.segmenter.card.preprocess.input_size,
                **self.post.to_dict(),
            },
            "summary": self.summary(),
            "plate": self.plate,
            "frames": [asdict(r) for r in self.results],
        }

    def write_report(self) -> Path | None:
        """``report.json``; None when it cannot be written (a full or read-only disk), with
        the reason in ``report_error``."""
        path = self.output / "report.json"
        try:
            atomic_write_bytes(path, (json.dumps(self.report(), indent=2) + "\n").encode())
            self.owned.settle()
        except OSError as exc:
            self.report_error = f"{path}: not written ({exc.strerror or exc})"
            return None
        return path

    def failures(self) -> list[FrameResult]:
        return [r for r in self.results if r.status == "failed"]
