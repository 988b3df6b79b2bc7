"""The reconstruction's workspace: frames linked in, masks in COLMAP's convention, and the
rules for what may be written there.

``prepare`` (the first step of :func:`segcore.recon.reconstruct`): frames hard-linked (else
copied) to ``workspace/images/<name>``; masks normalised to COLMAP's convention in
``workspace/masks/<name>.png`` (uint8, 0 = ignore, 255 = use; segcore's ``<stem>.png`` masks,
COLMAP's ``<name>.png`` ones and alpha cut-outs are all accepted), and shrunk a little for
feature extraction in ``workspace/sfm_masks``. A workspace whose folders are, contain or lie
inside an input, or that holds files the reconstruction did not write, is refused before any
change (:mod:`segcore.outputs`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import struct
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import InputError, OutputError
from ..outputs import Manifest, check_apart
from ..plate import check_mode as check_plate_mode
from .result import HULL_CHECK, HULL_MASKS, RING_PAIRS, SFM_MASKS, VIEW_PAIRS, Progress

ERODE_SHARE = 0.006  # default mask erosion for SfM, share of the frame's long side


def find_masks_dir(masks_dir: str | os.PathLike) -> Path:
    """A segmentation output folder means its ``masks/`` subfolder."""
    d = Path(masks_dir)
    if not d.is_dir():
        raise InputError(
            f"{d}: no such masks folder; point MASKS_DIR at `segcore segment`'s output"
        )
    for sub in ("masks", "colmap_masks"):
        if (d / sub).is_dir() and not any(d.glob("*.png")):
            return d / sub
    return d


def mask_for(frame: Path, masks_dir: Path) -> Path | None:
    """The mask of ``frame``: ``<name>.png`` (COLMAP) or ``<stem>.png`` (segcore)."""
    for cand in (masks_dir / f"{frame.name}.png", masks_dir / f"{frame.stem}.png"):
        if cand.is_file():
            return cand
    return None


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        try:
            if dst.samefile(src) or dst.stat().st_size == src.stat().st_size:
                return
        except OSError:
            pass
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# everything reconstruct writes in its workspace (folders end in "/")
WORKSPACE_ENTRIES = (
    "images/",
    "masks/",
    f"{SFM_MASKS}/",
    f"{HULL_MASKS}/",
    "database.db",
    "database.db-shm",
    "database.db-wal",
    "sparse/",
    "sparse_tmp/",
    "sparse_turntable/",
    RING_PAIRS,
    VIEW_PAIRS,
    "hull.ply",
    HULL_CHECK,
    "transforms.json",
    "sparse_pc.ply",
    "recon.json",
)


def check_workspace(ws: Path, frames_dir, masks_dir: Path | None) -> Manifest:
    """Refuse, before any change, a workspace whose folders are, contain or lie inside an
    input, or that holds files where reconstruct writes that it did not write itself.
    Returns the workspace's manifest (:mod:`segcore.outputs`)."""
    inputs = [Path(frames_dir)] + ([masks_dir] if masks_dir is not None else [])
    advice = f"choose another workspace (-o), e.g. {ws / 'reconstruction'}"
    check_apart(ws, inputs, "the workspace", advice=advice)
    for sub in ("images", "masks", SFM_MASKS, HULL_MASKS, "sparse"):
        check_apart(ws / sub, inputs, f"the workspace's {sub}/ folder", True, advice)
    owned = Manifest(ws, "reconstruct")
    owned.refuse_foreign(WORKSPACE_ENTRIES)
    return owned


_SETTLING = threading.local()  # how deep this thread is in calls wrapped by settles()


def settles(fn):
    """``fn(frames_dir, masks_dir, workspace, ...)``, then the sizes of what it wrote into the
    workspace's manifest (also when it fails or is cancelled). Only the outermost of nested
    calls settles: an inner one (``run_reconstruction`` calls ``reconstruct``) would drop
    the entries the outer call has yet to write (the hull, ``recon.json``) from the manifest,
    and a second run into the same workspace would refuse to replace them."""

    @functools.wraps(fn)
    def run(frames_dir, masks_dir, workspace, *args, **kwargs):
        depth = getattr(_SETTLING, "depth", 0)
        _SETTLING.depth = depth + 1
        try:
            return fn(frames_dir, masks_dir, workspace, *args, **kwargs)
        finally:
            _SETTLING.depth = depth
            if depth == 0:
                Manifest(workspace, "reconstruct").settle()

    return run


class Prepared(NamedTuple):
    frames: list[Path]
    masked: bool
    plate: dict | None = None  # what the still background's plate changed (segcore.plate)


def prepare_workspace(
    frames_dir,
    masks_dir,
    workspace,
    erode_px: int = 0,
    plate: str = "off",
    progress: Progress | None = None,
) -> Prepared:
    """Frames into ``workspace/images``, masks (COLMAP naming) into ``workspace/masks`` and,
    shrunk by ``erode_px`` for feature extraction, into ``workspace/sfm_masks``.

    ``plate``: "auto" completes the masks from the still background's plate when the
    background does stand still (a turntable; :mod:`segcore.plate`), "on" always, "off" never.
    Where it does, the visual hull gets masks of its own in ``workspace/hull_masks``
    (:meth:`segcore.plate.Plate.correct_pair`): they also take the turning parts that differ
    from the plate less clearly, which the other views carve away where they are wrong.
    """
    import cv2

    from ..io import discover_frames, read_image, read_label, write_png

    frames = discover_frames(frames_dir)
    if not Path(frames_dir).is_dir():
        raise InputError(f"{frames_dir}: FRAMES_DIR must be a folder of frames, not one image")
    ws = Path(workspace)
    names = [p.name for p in frames]
    if len(set(names)) != len(names):  # pragma: no cover - one folder cannot hold duplicates
        raise InputError(f"{frames_dir}: duplicate frame names")
    mdir = None if masks_dir is None else find_masks_dir(masks_dir)
    found = {} if mdir is None else {p.name: mask_for(p, mdir) for p in frames}
    missing = [n for n, m in found.items() if m is None]
    if missing:
        raise InputError(
            f"{mdir}: no mask for {len(missing)} of {len(frames)} frames (first: {missing[0]}; "
            f"looked for {missing[0]}.png and {Path(missing[0]).stem}.png); segment every frame"
        )
    owned = check_workspace(ws, frames_dir, mdir)  # before any change
    try:
        (ws / "images").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{ws}: cannot create the workspace ({exc.strerror})") from None
    owned.pending(WORKSPACE_ENTRIES)
    for old in (ws / "images").iterdir():  # frames of an earlier run that are gone now
        if old.name not in set(names):
            owned.remove_tree(old)
    for p in frames:
        _link_or_copy(p, ws / "images" / p.name)
    out, sfm, hout = ws / "masks", ws / SFM_MASKS, ws / HULL_MASKS
    for d in (out, sfm, hout):
        owned.remove_tree(d)
    if mdir is None:
        owned.settle(WORKSPACE_ENTRIES[:4])
        return Prepared(frames, False)
    out.mkdir(parents=True)
    kernel = None
    if erode_px > 0:
        sfm.mkdir(parents=True)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1,) * 2)

    def label(p: Path) -> np.ndarray:
        m = read_label(found[p.name])
        h, w = image_size(p)
        if m.shape != (h, w):
            raise InputError(
                f"{found[p.name]}: the mask is {m.shape[1]}x{m.shape[0]} but the frame is "
                f"{w}x{h}; masks must have the frames' full resolution"
            )
        return m

    check_plate_mode(plate)
    still = None
    if plate != "off":
        from ..plate import still_plate

        still = still_plate(
            len(frames),
            lambda i: (read_image(frames[i]), label(frames[i])),
            plate == "on",
            progress,
        )
    if still is not None:
        hout.mkdir(parents=True)
    for k, p in enumerate(frames):
        m = label(p)
        if still is not None:
            m, hull = still.correct_pair(read_image(p), m)
            write_png(hout / f"{p.name}.png", np.where(hull, 255, 0).astype(np.uint8))
            if progress is not None:
                progress("plate masks", k + 1, len(frames))
        m8 = np.where(m, 255, 0).astype(np.uint8)
        write_png(out / f"{p.name}.png", m8)
        if kernel is not None:
            write_png(sfm / f"{p.name}.png", cv2.erode(m8, kernel))
    owned.settle(WORKSPACE_ENTRIES[:4])  # the folders this step wrote
    return Prepared(frames, True, still.summary() if still is not None else None)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width): from the PNG header, else by decoding the frame."""
    from ..io import read_image

    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        w, h = struct.unpack(">II", head[16:24])
        return h, w
    return read_image(path).shape[:2]


def segment_plate(masks_dir) -> dict | None:
    """What ``segcore segment``'s still-background pass did to the masks in ``masks_dir``
    (its ``report.json`` beside them: the plate's summary), when it completed every frame it
    wrote; else None. Such masks are complete: the network's classes chose the parts added
    (not a stand's legs), which a workspace's plate, reading binary masks, cannot."""
    try:
        mdir = find_masks_dir(masks_dir)
        report = json.loads((mdir.parent / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, InputError):
        return None
    plate = report.get("plate") if isinstance(report, dict) else None
    if not isinstance(plate, dict) or plate.get("stopped") or "still_share" not in plate:
        return None
    if Path(str(report.get("output", ""))).resolve() != mdir.parent.resolve():
        return None  # a report copied with the masks from elsewhere
    return plate


def inputs_from_segmentation(out_dir) -> tuple[Path, Path]:
    """(frames folder, masks folder) of a ``segcore segment`` output folder (its report)."""
    out = Path(out_dir)
    report = out / "report.json"
    try:
        frames = Path(json.loads(report.read_text(encoding="utf-8"))["input"])
    except FileNotFoundError:
        raise InputError(
            f"{out}: no report.json, so not a segmentation output folder; "
            "choose the folder `segcore segment` wrote, or give frames and masks folders"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{report}: cannot read it ({exc}); segment the frames again") from None
    if not frames.is_dir():
        raise InputError(
            f"{report}: the frames folder it names ({frames}) is gone; give the frames folder"
        )
    if not (out / "masks").is_dir():
        raise InputError(f"{out}: has no masks/ folder; segment again with the mask format")
    return frames, out / "masks"
