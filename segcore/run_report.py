"""What a sequence's run says when it ends: each frame's confidence against the others
(:mod:`segcore.confidence`), the verdict, ``OUT/contact_sheet.png`` and ``OUT/report.json``.
A part of :class:`segcore.pipeline.SequenceJob`, which it reads (frames, results, options)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .confidence import assess, grid_mask, verdict
from .errors import SegcoreError
from .io import (
    atomic_write_bytes,
    write_png,
)
from .labels import read_labels
from .mask import foreground_share

REPORT_VERSION = 1
# every run's picture: its frames with the mask edges, suspect ones first (segcore.sheet)
CONTACT_SHEET = "contact_sheet.png"


def _graph(backend) -> dict | None:
    """What ran a network: the runtime and the graph's file name (None for torch's own)."""
    if backend is None:
        return None
    path = getattr(backend, "path", None)
    return {"runtime": getattr(backend, "name", type(backend).__name__),
            "graph": Path(path).name if path else None}  # fmt: skip


def networks(segmenter) -> dict:
    """``report.json``'s ``networks``: which graph of the coarse network and of the edge
    refiner ran, and through which runtime (ONNX Runtime runs the card's faster graphs where
    it is installed; OpenCV's DNN, as in Blender, the trained ones)."""
    edges = getattr(segmenter, "edges", None)
    return {
        "coarse": _graph(getattr(segmenter, "backend", None)),
        "edge_refiner": _graph(getattr(edges, "backend", None)),
    }


class RunReport:
    """:class:`segcore.pipeline.SequenceJob`'s report, verdict and contact sheet (a mixin)."""

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
            "networks": networks(self.segmenter),
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
