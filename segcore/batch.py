"""``segcore segment-many``: many sequences at once, on a local process pool or a Ray cluster.

The driver (the process that runs the command) builds one :class:`~segcore.pipeline.
SequenceJob` per sequence, as ``segcore segment`` would: every check, the output manifest,
the resume decision. Workers load the model once each and segment frames by the same
:meth:`~segcore.pipeline.SequenceJob.process` (a job made by ``SequenceJob.frames_only``),
so each frame's outputs are the files ``segcore segment`` writes, written atomically where
the worker runs. The driver streams frames to them, a few in flight per worker, and once a
sequence's frames are back it runs what follows the last frame (the still-background pass)
and writes the sequence's ``report.json`` and contact sheet; ``OUT/summary.json`` sums up.

- **Local** (default): a process pool of ``workers`` processes on this machine.
- **Ray** (``--ray [ADDRESS]``, ``pip install "segcore[cluster]"``): a pool of Ray actors,
  one per worker; every node must see the inputs and OUT at the same paths (a shared file
  system) and have the same segcore installed.

A worker that dies (killed, out of memory) has its frames run again: the pool is restarted
(local) or Ray restarts the actor and retries the calls (``max_restarts``,
``max_task_retries``). A retried frame whose outputs the run had already written whole is
kept, not written twice (``SequenceJob.written_since``). A frame that kills its worker
every time fails alone after :data:`segcore.batch_workers.ATTEMPTS` tries. With
``--temporal`` a sequence's frames go to one worker, in order (the chain from frame to
frame needs them there).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .batch_workers import LocalPool, RayPool, import_ray
from .errors import InputError, OutputError, SegcoreError
from .io import atomic_write_bytes, is_hidden, natural_key
from .outputs import Manifest, relation
from .pipeline import FrameResult, SegmentOptions, SequenceJob, load_segmenter

log = logging.getLogger(__name__)

SUMMARY = "summary.json"  # OUT/summary.json: every sequence's outcome
SUMMARY_VERSION = 1


@dataclass(frozen=True)
class Sequence:
    name: str  # OUT/<name>/ holds its outputs
    input: Path  # its frames' folder


# --- which sequences ---


def _frames_folder(folder: Path) -> Path:
    """A capture folder's frames: ``<folder>/images`` in the data-set layout, else itself."""
    images = folder / "images"
    return images if images.is_dir() else folder


def _name_of(path: Path) -> str:
    path = Path(os.path.abspath(path))
    return path.parent.name if path.name == "images" else path.name


def find_sequences(source: str | os.PathLike, notes: list[str] | None = None) -> list[Sequence]:
    """The sequences of ``source``: a folder of capture folders (each holds its frames, or
    an ``images/`` folder of them), or a manifest file: a text file of folder paths, one a
    line (``#`` comments; relative paths from the manifest's folder), or a JSON list of
    paths or of ``{"path": ..., "name": ...}``. Names are the folders' (``images``: its
    parent's) and must differ."""
    src = Path(source)
    if src.is_file():
        seqs = _read_manifest(src)
    elif src.is_dir():
        seqs = []
        for d in sorted(src.iterdir(), key=lambda p: natural_key(p.name)):
            if d.is_dir() and not is_hidden(d):
                seqs.append(Sequence(d.name, _frames_folder(d)))
            elif d.is_file() and not is_hidden(d) and notes is not None:
                notes.append(f"{d.name}: a file, not a capture folder: left out")
        if not seqs:
            raise InputError(
                f"{src}: holds no capture folders; segment-many takes a folder of capture "
                "folders or a manifest file of their paths (one folder: segcore segment)"
            )
    else:
        raise InputError(f"{src}: no such folder or manifest file")
    seen: dict[str, Path] = {}
    for s in seqs:
        if s.name in seen:
            raise InputError(
                f"{source}: two sequences are named {s.name!r} ({seen[s.name]} and {s.input}); "
                'their outputs would mix: give one another name (JSON: {"path": ..., "name": ...})'
            )
        if s.name in ("", ".", "..", SUMMARY) or "/" in s.name or "\\" in s.name:
            raise InputError(f"{source}: {s.name!r} cannot name an output folder; rename it")
        seen[s.name] = s.input
    return seqs


def _read_manifest(path: Path) -> list[Sequence]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from None
    base = path.parent

    def seq(entry, name=None) -> Sequence:
        p = Path(os.path.expanduser(str(entry)))
        p = p if p.is_absolute() else base / p
        return Sequence(str(name) if name is not None else _name_of(p), _frames_folder(p))

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            data = data.get("sequences")
        if not isinstance(data, list):
            raise InputError(f'{path}: expected a JSON list of paths (or {{"sequences": [...]}})')
        out = []
        for k, e in enumerate(data):
            if isinstance(e, str):
                out.append(seq(e))
            elif isinstance(e, dict) and isinstance(e.get("path"), str):
                out.append(seq(e["path"], e.get("name")))
            else:
                raise InputError(f'{path}: entry {k + 1} is neither a path nor {{"path": ...}}')
    else:
        lines = (ln.split("#", 1)[0].strip() for ln in text.splitlines())
        out = [seq(ln) for ln in lines if ln]
    if not out:
        raise InputError(f"{path}: the manifest lists no sequences")
    return out


class BatchJob:
    """Segment every sequence of ``source`` into ``output/<name>/``; iterate :meth:`run`.

    ``ray``: None for the local process pool, else the Ray address ("" or "local": start or
    join Ray on this machine as ``ray.init()`` does). ``workers``: processes or actors
    (default: this machine's cores, or the Ray cluster's CPUs).
    """

    def __init__(
        self,
        source,
        output,
        options: SegmentOptions = SegmentOptions(),
        workers: int | None = None,
        ray: str | None = None,
    ):
        self.source, self.output = Path(source), Path(os.path.abspath(output))
        self.ray = ray
        if workers is not None and (isinstance(workers, bool) or workers < 1):
            raise InputError(f"--workers {workers}: use 1 or more worker processes")
        self.workers = workers
        if ray is not None:
            import_ray()  # missing: said before anything is written
        self.notes: list[str] = []
        self.sequences = find_sequences(self.source, self.notes)
        if self.source.is_dir() and relation(self.output, self.source) in ("is", "inside"):
            raise OutputError(
                f"{self.output}: the output folder is {self.source} or inside it, where it "
                "would be taken for a sequence; choose an output folder outside it"
            )
        model = options.model
        if model and Path(model).exists():  # workers run elsewhere: an absolute path
            model = str(Path(model).resolve())
        # the report's workers: each worker runs one frame at a time
        self.options = replace(options, model=model, workers=1)
        self.loaded = load_segmenter(self.options)  # a bad model or option: before anything
        self.owned = Manifest(self.output, "segment-many")
        self.output.mkdir(parents=True, exist_ok=True)
        self.owned.refuse_foreign([SUMMARY])
        self.jobs: dict[str, SequenceJob] = {}
        self.errors: dict[str, str] = {}  # sequences that could not start, and why
        for s in self.sequences:
            try:
                out = self.output / s.name
                self.jobs[s.name] = SequenceJob(s.input, out, self.options, self.loaded)
            except SegcoreError as exc:
                self.errors[s.name] = str(exc)
        self.owned.pending([SUMMARY])
        self.frames = sum(len(j.frames) for j in self.jobs.values())
        self.started = time.time()
        self.interrupted = False
        self.fatal: str | None = None
        self.backend: str | None = None
        self.used_workers: int | None = None
        self.finished: dict[str, Path | None] = {}  # sequence -> its report (None: not written)
        # after_frames + the report, one sequence at a time, while the workers go on
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="segcore-finish")
        self._finishing: list[Future] = []

    def _spec(self, name: str) -> dict:
        job = self.jobs[name]
        return {
            "input": str(job.input.resolve()),
            "output": str(job.output.resolve()),
            "frames": [str(p.resolve()) for p in job.frames],
            "since": job.started,
        }

    def _units(self) -> deque:
        """(sequence, frame indices): a frame each, or a whole sequence with --temporal."""
        units: deque = deque()
        for name, job in self.jobs.items():
            n = len(job.frames)
            if self.options.temporal:
                units.append((name, tuple(range(n))))
            else:
                units.extend((name, (i,)) for i in range(n))
        return units

    def _pool(self):
        if self.ray is not None:
            return RayPool(self.options, self.workers, self.ray or None)
        return LocalPool(self.options, self.workers or os.cpu_count() or 1)

    def run(
        self, should_stop: Callable[[], bool] | None = None
    ) -> Iterator[tuple[str, FrameResult]]:
        """Yield (sequence, :class:`FrameResult`) as frames come back (in no fixed order);
        each sequence's report is written once its last frame is back."""
        units = self._units()
        left = {name: len(job.frames) for name, job in self.jobs.items()}
        for name in [n for n, k in left.items() if k == 0]:
            self._finish(name)
        pool = None
        try:
            if units:
                pool = self._pool()
                self.backend, self.used_workers = pool.name, pool.workers
            while units or (pool is not None and pool.busy()):
                stopping = self.fatal or (should_stop is not None and should_stop())
                if stopping and units:
                    self.interrupted = self.interrupted or not self.fatal
                    units.clear()
                while units and pool.busy() < pool.capacity:
                    unit = units.popleft()
                    pool.submit(unit, self._spec(unit[0]), list(unit[1]))
                if not pool.busy():
                    break
                for (name, indices), records in pool.wait():
                    job = self.jobs[name]
                    if isinstance(records, Exception):
                        records = [self._lost(job, i, records) for i in indices]
                    for rec in records:
                        res = job.take_record(rec)
                        if job.fatal and not self.fatal:
                            self.fatal = job.fatal
                        left[name] -= 1
                        yield name, res
                    if left[name] == 0:
                        self._finish(name)
        except BaseException:  # Ctrl-C, or closed by the caller: the frames back are kept
            self.interrupted = True
            raise
        finally:
            if pool is not None:
                pool.close()
            for name, job in self.jobs.items():
                if name not in self.finished and left[name] < len(job.frames):
                    job.interrupted = not job.fatal
                    self._finish(name)
            for f in self._finishing:
                f.result()
            self._finisher.shutdown()

    @staticmethod
    def _lost(job: SequenceJob, i: int, exc: Exception) -> dict:
        res = FrameResult(i, str(job.frames[i]), "failed", error=str(exc))
        return job.frame_record(res)

    def _finish(self, name: str) -> None:
        job = self.jobs[name]
        job.results.sort(key=lambda r: r.index)
        self.finished[name] = None

        def work():
            if not job.interrupted:
                job.after_frames()
            self.finished[name] = job.write_report()

        self._finishing.append(self._finisher.submit(work))

    def summary(self) -> dict:
        rows = []
        totals = {"frames": 0, "ok": 0, "skipped": 0, "failed": 0, "not_run": 0}
        for s in self.sequences:
            row = {"name": s.name, "input": str(s.input), "output": str(self.output / s.name)}
            job = self.jobs.get(s.name)
            if job is None:
                row.update(status="not started", error=self.errors[s.name])
            else:
                sm = job.summary()
                for k in totals:
                    totals[k] += sm[k]
                status = "ok" if not (sm["failed"] or sm["not_run"]) else "incomplete"
                row.update(
                    {k: sm[k] for k in totals},
                    status=status,
                    report=job.report_error or "report.json",
                    suspect=(job.confidence or {}).get("suspect"),
                    plate_frames_changed=(job.plate or {}).get("frames_changed"),
                )
            rows.append(row)
        seconds = time.time() - self.started
        return {
            "version": SUMMARY_VERSION,
            "source": str(self.source),
            "output": str(self.output),
            "backend": self.backend,
            "workers": self.used_workers,
            "interrupted": self.interrupted,
            "stopped_by": self.fatal,
            "seconds": round(seconds, 3),
            "frames_per_second": round(totals["ok"] / seconds, 3) if seconds > 0 else None,
            "totals": {**totals, "sequences": len(self.sequences),
                       "sequences_not_started": len(self.errors)},
            "notes": self.notes,
            "sequences": rows,
        }  # fmt: skip

    def write_summary(self) -> Path:
        """``OUT/summary.json`` (atomically); :class:`OutputError` when it cannot be."""
        path = self.output / SUMMARY
        try:
            atomic_write_bytes(path, (json.dumps(self.summary(), indent=2) + "\n").encode())
            self.owned.settle()
        except OSError as exc:
            raise OutputError(f"{path}: not written ({exc.strerror or exc})") from None
        return path
