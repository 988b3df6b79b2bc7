"""Tethered capture: segment frames as the camera writes them (``segcore segment --watch``).

:class:`WatchJob` is a :class:`segcore.pipeline.SequenceJob` whose frames are not known in
advance: it polls INPUT and takes each new image once its size and modification time have
stood still for ``settle`` seconds (a camera or a copy still writing it is left alone), in
natural name order. Each frame then goes through the same code as any run: the same
outputs, written atomically and listed in the output manifest, the same per-frame report
entries and confidence, ``--skip-existing`` / ``--overwrite`` with the same meaning frame by
frame, so a watch stopped and started again goes on where it was.

The watch ends when ``should_stop()`` says so, after ``idle`` seconds without a new frame
(when given), or on Ctrl-C (KeyboardInterrupt, raised out of :meth:`WatchJob.run`; the
caller then writes the report): frames in flight finish first. Only a watch that ends by
itself (``idle``) runs the still-background pass; after a stop, a run over the same folder
with ``--skip-existing`` completes it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2

from .errors import InputError, OutputError
from .io import IMAGE_EXTENSIONS, is_hidden, natural_key
from .outputs import name_max
from .pipeline import FrameResult, SegmentOptions, SequenceJob

SETTLE = 1.0  # seconds a file's size and time must stand still before it is taken
POLL = 0.25  # seconds between looks at the folder
REPORT_EVERY = 5.0  # seconds: report.json is brought up to date at most this often


class WatchJob(SequenceJob):
    """Segment the frames of folder ``input_path`` as they arrive; iterate :meth:`run`."""

    def __init__(
        self,
        input_path,
        output,
        options: SegmentOptions = SegmentOptions(),
        settle: float = SETTLE,
        idle: float | None = None,
        poll: float = POLL,
    ):
        path = Path(input_path)
        if not path.is_dir():
            raise InputError(
                f"{path}: --watch needs a folder the camera writes into"
                + ("" if path.exists() else " (no such folder; create it first)")
            )
        if options.recursive:
            raise InputError("--watch reads one folder: leave out --recursive")
        if options.temporal:
            raise InputError(
                "--watch takes frames one by one as they come; --temporal smooths a whole "
                "sequence: run it after the capture (segcore segment INPUT -o OUT --temporal)"
            )
        if settle < 0 or (idle is not None and idle <= 0):
            raise InputError("--settle must be 0 or more seconds, --idle more than 0")
        self.settle, self.idle, self.poll = float(settle), idle, float(poll)
        self._seen: dict[Path, tuple[int, int, float]] = {}  # path -> (size, mtime, since)
        self._taken: set[Path] = set()
        self._refused: dict[int, str] = {}  # frames admitted as failed, and why
        self.ended_by: str | None = None  # "idle", "stop" or "interrupt"
        super().__init__(input_path, output, options)
        present = [p for p in self._images() if self._any_output_exists(p)]
        if present and not (options.skip_existing or options.overwrite):
            raise OutputError(
                f"{self.output}: already holds outputs for {len(present)} frames of "
                f"{self.input}; pass --skip-existing to go on with the watch or --overwrite "
                "to replace them"
            )

    def _discover(self) -> list[Path]:
        return []  # every frame is taken as it arrives, once it is whole (_stable)

    def _images(self) -> list[Path]:
        try:
            entries = list(self.input.iterdir())
        except OSError:
            return []  # gone for a moment (a network share): looked at again next time
        return [
            p
            for p in entries
            if not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        ]

    def _stable(self) -> list[Path]:
        """New images whose size and time have not changed for ``settle`` seconds."""
        now = time.monotonic()
        ready = []
        for p in self._images():
            if p in self._taken:
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            key = (st.st_size, st.st_mtime_ns)
            old = self._seen.get(p)
            if old is None or old[:2] != key:
                self._seen[p] = (*key, now)
                if self.settle > 0:
                    continue
                old = self._seen[p]
            if st.st_size > 0 and now - old[2] >= self.settle:
                ready.append(p)
        return sorted(ready, key=lambda p: natural_key(p.name))

    def _admit(self, path: Path) -> None:
        """Add a new frame; what keeps it from being segmented makes it a failed frame."""
        index = len(self.frames)
        self.frames.append(path)
        self._taken.add(path)
        self._seen.pop(path, None)
        stems = {p.stem: p for p in self.frames[:-1]}
        why = None
        if path.stem in stems:
            why = (
                f"has the same name stem as {stems[path.stem].name}, so their masks would "
                "overwrite each other; rename it"
            )
        else:
            limit = name_max(self.output)
            for w in self.writers:
                if len(os.fsencode(w.filename(path))) > limit:
                    why = f"the name of its {w.name} output would be too long; shorten it"
        if why is None and self._any_output_exists(path):
            done = self.options.skip_existing and self._outputs_done(path)
            if not (self.options.skip_existing or self.options.overwrite):
                why = "its outputs are already in OUT; pass --skip-existing or --overwrite"
            elif not done:
                rel = [str(q.relative_to(self.output)) for q in self.output_paths(path)]
                foreign = self.owned.foreign(rel)
                if foreign:
                    why = f"{foreign[0]}: `segcore segment` did not write it; it stays as it is"
        if why is not None:
            self._refused[index] = why
            return
        self.owned.pending(self.output_paths(path))
        self._forget_plate({path.name})

    def process(self, index: int) -> FrameResult:
        if index in self._refused:
            return FrameResult(index, str(self.frames[index]), "failed", error=self._refused[index])
        return super().process(index)

    def run(self, should_stop: Callable[[], bool] | None = None) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per frame as the frames come and are done."""
        workers = max(1, int(self.options.workers))
        stop = threading.Event()
        cv_threads = cv2.getNumThreads()
        if workers > 1:
            cv2.setNumThreads(1)
        last_new = last_report = time.monotonic()
        try:
            while True:
                if should_stop is not None and should_stop():
                    self.ended_by = "stop"
                    break
                new = self._stable()
                if new:
                    start = len(self.frames)
                    for p in new:
                        self._admit(p)
                    yield from self._run(workers, len(self.frames), stop, should_stop, start)
                    if self.fatal:
                        break
                    if self.interrupted:  # should_stop during the batch
                        self.interrupted = len(self.results) < len(self.frames)
                        self.ended_by = "stop"
                        break
                    last_new = time.monotonic()
                    if last_new - last_report >= REPORT_EVERY:
                        self.write_report(sheet=False)  # up to date for whoever looks
                        last_report = time.monotonic()
                    continue
                if self.idle is not None and time.monotonic() - last_new >= self.idle:
                    self.ended_by = "idle"
                    break
                time.sleep(self.poll)
        except (KeyboardInterrupt, GeneratorExit):  # Ctrl-C, or the caller closed the run
            self.ended_by = "interrupt"
            # frames in flight were finished by _run; a watch stopped between frames lost none
            self.interrupted = len(self.results) < len(self.frames)
            raise
        finally:
            cv2.setNumThreads(cv_threads)
        if self.ended_by == "idle" and self.options.plate != "off" and not self.fatal:
            self.complete_from_plate(self.options.plate == "on", self.plate_progress, should_stop)

    def plate_note(self) -> str | None:
        if (
            self.plate is None
            and self.ended_by in ("stop", "interrupt")
            and self.options.plate != "off"
        ):
            return (
                "not run: the watch was stopped; `segcore segment INPUT -o OUT --skip-existing` "
                "completes the masks from a still background"
            )
        return super().plate_note()

    def summary(self) -> dict:
        return {**super().summary(), "watch": {"ended_by": self.ended_by}}
