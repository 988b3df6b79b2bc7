"""A dependency-free one-line progress bar for the CLIs (libraries log, CLIs show progress)."""

from __future__ import annotations

import sys
import time

MIN_RATE_SECONDS = 0.5  # no rate (nor time left) before this much time has passed


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class Progress:
    """``Progress(total, "Segmenting")``; ``update(note=...)`` per item; ``close()`` at the end.

    Draws in place on a terminal; elsewhere (pipes, CI logs) prints a line every ~10 %.
    """

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
        self.total, self.label = max(0, total), label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.n = 0
        self.t0 = time.perf_counter()
        self._last_pct = -1

    def line(self, note: str = "") -> str:
        el = time.perf_counter() - self.t0
        frac = self.n / self.total if self.total else 1.0
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        if el < MIN_RATE_SECONDS:  # one item in a few microseconds is no rate to show
            speed, left = "  --/s", "--:--"
        else:
            rate = self.n / el
            speed = f"{rate:5.2f}/s"
            left = fmt_seconds((self.total - self.n) / rate) if rate > 0 else "--:--"
        return (
            f"{self.label} [{bar}] {self.n}/{self.total} {speed} "
            f"elapsed {fmt_seconds(el)} left {left} {note}"
        ).rstrip()

    def update(self, k: int = 1, note: str = "") -> None:
        self.n += k
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line(note)[:160])
            self.stream.flush()
        else:
            pct = int(100 * self.n / self.total) // 10 if self.total else 10
            if pct != self._last_pct or self.n == self.total:
                self._last_pct = pct
                self.stream.write(self.line(note) + "\n")
                self.stream.flush()

    def write(self, msg: str) -> None:
        """Print a message above the bar."""
        if self.tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(msg + "\n")
        if self.tty and self.enabled:
            self.stream.write(self.line())
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class StageBar:
    """One progress bar per reconstruction stage (features, matching, mapping, or the
    turntable solver's stages; the hull)."""

    def __init__(self, enabled: bool):
        self.enabled, self.stage, self.bar = enabled, None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from .recon import STAGE_LABELS

        if stage not in STAGE_LABELS or stage == "prepare":
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = Progress(total, STAGE_LABELS[stage], enabled=self.enabled)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def raise_interrupt(signum, frame):
    """A signal handler (SIGTERM) that stops a command as Ctrl-C does."""
    raise KeyboardInterrupt
