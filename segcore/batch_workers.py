"""The workers of ``segcore segment-many`` (:mod:`segcore.batch`): :class:`FrameWorker` (one
model load, frames segmented by ``SequenceJob.process``), run in a local process pool
(:class:`LocalPool`) or as Ray actors (:class:`RayPool`). A dead worker's calls come back
as :class:`WorkerLost` (local) or are retried by Ray.

Fault injection for tests: with ``SEGCORE_TEST_WORKER_EXIT=NAME@MARK`` in a worker's
environment, the worker dies (``os._exit``) right after writing the frame file ``NAME``'s
outputs, before it reports them, once: it creates the file ``MARK`` first and does not die
while ``MARK`` exists.
"""

from __future__ import annotations

import logging
import os
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from .errors import InputError
from .io import keep_freed_memory
from .pipeline import SegmentOptions, SequenceJob, load_segmenter

log = logging.getLogger(__name__)

ATTEMPTS = 3  # a frame is tried at most this many times when its worker dies
IN_FLIGHT = 2  # calls queued per worker: one running, one ready to start
CLUSTER_INSTALL = 'pip install "segcore[cluster]" (or: pip install ray)'
EXIT_HOOK = "SEGCORE_TEST_WORKER_EXIT"


class FrameWorker:
    """One worker's model and the frames-only jobs it runs (one model load per worker)."""

    def __init__(self, options: SegmentOptions):
        import cv2

        self.options = options
        keep_freed_memory()  # a process that segments frame after frame
        self.loaded = load_segmenter(options)
        cv2.setNumThreads(1)  # one frame at a time per worker, one worker per core
        self.jobs: dict[str, SequenceJob] = {}
        # frames are segmented on a thread of their own, as SequenceJob.run's pool does: on
        # a process's main thread a rim colour can come out one level apart (measured), and
        # the outputs must be those of `segcore segment` byte for byte
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="segcore")

    def run(self, spec: dict, indices: list[int]) -> list[dict]:
        """Segment frames ``indices`` of the sequence ``spec`` (from :meth:`BatchJob._spec`);
        one record (``SequenceJob.frame_record``) per frame, in order."""
        job = self.jobs.get(spec["output"])
        if job is None or self.options.temporal:  # a chain starts afresh with its sequence
            job = SequenceJob.frames_only(
                spec["input"], spec["output"], self.options, spec["frames"], self.loaded,
                spec["since"],
            )  # fmt: skip
            self.jobs = {spec["output"]: job}  # frames come sequence by sequence
        out = []
        for i in indices:
            out.append(job.frame_record(self.thread.submit(job.process, i).result()))
            _exit_hook(job.frames[i])
        return out


def _exit_hook(frame: Path) -> None:
    hook = os.environ.get(EXIT_HOOK)
    if hook:
        name, _, mark = hook.partition("@")
        if frame.name == name and mark and not os.path.exists(mark):
            Path(mark).write_bytes(b"")
            os._exit(3)


_WORKER: FrameWorker | None = None  # a pool process's own


def _pool_init(options: SegmentOptions) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C stops
    _WORKER = FrameWorker(options)


def _pool_run(spec: dict, indices: list[int]) -> list[dict]:
    return _WORKER.run(spec, indices)


class WorkerLost(Exception):
    """A unit's worker died on every attempt."""


class LocalPool:
    """``workers`` processes on this machine; a broken pool is replaced and its units resent."""

    name = "local"

    def __init__(self, options: SegmentOptions, workers: int):
        self.options, self.workers = options, workers
        self.capacity = workers * IN_FLIGHT
        self.pool = self._new_pool()
        self.futures: dict[Future, tuple] = {}  # future -> (key, spec, indices)
        self.attempts: dict = {}

    def _new_pool(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            self.workers, mp.get_context("spawn"), initializer=_pool_init, initargs=(self.options,)
        )

    def submit(self, key, spec: dict, indices: list[int]) -> None:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.futures[self.pool.submit(_pool_run, spec, indices)] = (key, spec, indices)

    def busy(self) -> int:
        return len(self.futures)

    def wait(self) -> list[tuple]:
        """(key, records or an exception) of the units done; blocks for one at least."""
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
        out, resend = [], []
        for f in done:
            key, spec, indices = self.futures.pop(f)
            try:
                out.append((key, f.result()))
            except BrokenProcessPool:
                resend.append((key, spec, indices))
        if resend:  # a worker died: every unit in flight is lost with the pool
            for f, unit in list(self.futures.items()):
                f.cancel()
                resend.append(unit)
            self.futures.clear()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            for key, spec, indices in resend:
                if self.attempts[key] >= ATTEMPTS:
                    out.append((key, WorkerLost(f"a worker process died on it {ATTEMPTS} times")))
                else:
                    log.warning("a worker process died; sending its frames again")
                    self.submit(key, spec, indices)
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, which is not installed: {CLUSTER_INSTALL}") from None
    return ray


class RayPool:
    """One Ray actor per worker (one CPU each, or a share when there are more workers than
    the cluster has CPUs; the model loaded once per actor). A dead actor is restarted by Ray
    and its calls retried there (``max_task_retries``)."""

    name = "ray"

    def __init__(self, options: SegmentOptions, workers: int | None, address: str | None):
        ray = self.ray = import_ray()
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except Exception as exc:  # a wrong address, no cluster there, a version mismatch
                raise InputError(f"--ray {address or ''}: cannot connect ({exc})") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, cpus)
        # one CPU an actor; more actors than CPUs share them (else the extra ones would wait
        # for a CPU for ever, and the frames sent to them with them)
        share = min(1.0, cpus / self.workers)
        remote = ray.remote(num_cpus=share, max_restarts=-1, max_task_retries=ATTEMPTS - 1)
        actor = remote(FrameWorker)
        self.actors = [actor.remote(options) for _ in range(self.workers)]
        self.capacity = self.workers * IN_FLIGHT
        self.load = [0] * self.workers
        self.refs: dict = {}  # ObjectRef -> (key, actor index)

    def submit(self, key, spec: dict, indices: list[int]) -> None:
        a = min(range(self.workers), key=self.load.__getitem__)
        self.load[a] += 1
        self.refs[self.actors[a].run.remote(spec, indices)] = (key, a)

    def busy(self) -> int:
        return len(self.refs)

    def wait(self) -> list[tuple]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        out = []
        for ref in ready:
            key, a = self.refs.pop(ref)
            self.load[a] -= 1
            try:
                out.append((key, self.ray.get(ref)))
            except self.ray.exceptions.RayActorError as exc:
                out.append((key, WorkerLost(f"its Ray worker died {ATTEMPTS} times ({exc})")))
            except self.ray.exceptions.RayError as exc:  # a worker without segcore, ...
                out.append((key, WorkerLost(f"Ray: {str(exc).strip().splitlines()[-1]}")))
        return out

    def close(self) -> None:
        if self.refs:  # interrupted: the frames in flight finish their writes first
            self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=60)
        for a in self.actors:
            self.ray.kill(a)
        if self.started_ray:
            self.ray.shutdown()


# --- the driver ---
