"""The suspect frames of the last run, for the panel: no bpy here.

A run writes ``OUT/report.json`` with every frame's confidence (``segcore.confidence``): a
frame whose mask looks unreliable is ``suspect``, with its reasons in plain words. The panel
lists them under Correct, each with a button that opens the frame with its mask as alpha
(the correction image), so the artist looks at those first, corrects what is wrong and
adapts the sequence. Read from the report on disk, so the list is there again after Blender
restarts, and it follows a run made on the command line into the same folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .runner import Settings, segcore


@dataclass(frozen=True)
class Suspect:
    name: str  # the frame's file name
    reasons: str  # why its mask looks unreliable, in plain words ("; "-joined)
    confidence: float | None  # 0..1 (below 0.5: suspect)


@dataclass(frozen=True)
class Review:
    suspects: tuple[Suspect, ...]
    assessed: int  # frames the run judged
    report: Path


_cache: dict = {}


def review(output_dir: str) -> Review | None:
    """The suspect frames of ``OUT/report.json`` (None: no report, or one that cannot be
    read). Cached by the report's modification time: the panel asks on every redraw."""
    if not output_dir.strip():
        return None
    path = Path(output_dir) / "report.json"
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _cache:
        _cache.clear()
        _cache[key] = _read(path)
    return _cache[key]


def _read(path: Path) -> Review | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        frames = [f for f in data.get("frames", []) if isinstance(f, dict)]
    except (OSError, ValueError, AttributeError):
        return None
    suspects = tuple(
        Suspect(Path(f.get("path", "?")).name, "; ".join(f.get("reasons") or []) or "suspect",
                f.get("confidence"))
        for f in sorted(frames, key=lambda f: f.get("index", 0))
        if f.get("suspect")
    )  # fmt: skip
    assessed = sum(1 for f in frames if f.get("confidence") is not None)
    return Review(suspects, assessed, path)


def frame_index(settings: Settings, name: str) -> int:
    """The index of the frame called ``name`` in the input folder (Correct Frame's *Frame*);
    ``InputError`` when the input folder does not hold it."""
    InputError = segcore("errors").InputError  # noqa: N806

    if not settings.input_dir.strip():
        raise InputError("no input folder set; choose the folder that holds the frames")
    frames = segcore("io").discover_frames(settings.input_dir)
    for i, p in enumerate(frames):
        if p.name == name:
            return i
    raise InputError(
        f"{name} is not in the input folder {settings.input_dir}; set the input folder the "
        "sequence was segmented from"
    )
