"""Structure from motion on a masked frame sequence with pycolmap (no Blender, no GPU).

    result = reconstruct("shoot/", "out/masks", "work/")     # -> ReconResult
    result.poses[0].R, result.poses[0].t                      # world-to-camera, OpenCV axes

Steps, each reported to ``progress(stage, done, total)``:

1. ``prepare``: frames hard-linked (else copied) to ``workspace/images/<name>``; masks
   normalised to COLMAP's convention in ``workspace/masks/<name>.png`` (uint8, 0 = ignore,
   255 = use; segcore's ``<stem>.png`` masks, COLMAP's ``<name>.png`` ones and alpha cut-outs
   are all accepted), and shrunk a little for feature extraction in ``workspace/sfm_masks``.
2. ``features``: SIFT on the CPU with ``ImageReaderOptions.mask_path`` (no keypoints where the
   mask is 0), one shared camera (``CameraMode.SINGLE``: a fixed-lens sequence).
3. ``matching``: exhaustive up to :data:`EXHAUSTIVE_MAX` frames, else sequential (loop
   detection off: it needs a vocabulary tree file).
4. ``mapping``: incremental (or global, GLOMAP) mapping; the largest model is written in
   COLMAP's binary format to ``workspace/sparse/0`` (COLMAP's GUI, nerfstudio and Blender
   photogrammetry importers read it).

Why masks matter: on a turntable the background stands still while the garment turns, so
unmasked, SfM explains most matches with a camera that never moves and fails (or registers
a few frames wrongly); with the background masked out only the turning subject is left and
the sequence reads as a camera orbiting a static garment.

Pixel conventions: :class:`Intrinsics` uses OpenCV's (the centre of the top-left pixel is
(0, 0), as ``cameras.json``); COLMAP's files put that centre at (0.5, 0.5), so cx and cy there
are 0.5 larger.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import InputError, OutputError, SegcoreError, optional_import
from .hull import DEFAULT_VOXELS
from .outputs import Manifest, check_apart
from .plate import STAGES as plate_stages
from .plate import check_mode as check_plate_mode

log = logging.getLogger(__name__)

EXHAUSTIVE_MAX = 60  # "auto" matcher: exhaustive up to this many frames, sequential beyond
SEQUENTIAL_OVERLAP = 12  # sequential matcher: each frame is matched with this many successors
RESULT_VERSION = 1
MATCHERS = ("auto", "exhaustive", "sequential")
MAPPERS = ("auto", "incremental", "global", "turntable")  # auto: turntable if still, else incr.
# what each progress stage is called on screen (the CLI's bars, the add-on's status)
STAGE_LABELS = {
    "prepare": "Preparing",
    "features": "Features",
    "matching": "Matching",
    "mapping": "Registering",
    "turntable features": "Features",
    "turntable step": "Turntable step",
    "turntable axis": "Turntable axis",
    "turntable refine": "Turntable fit",
    "turntable polish": "Turntable polish",
    "hull": "Visual hull",
    **plate_stages,
}
QUALITIES = ("high", "fast")
ERODE_SHARE = 0.006  # default mask erosion for SfM, share of the frame's long side
SFM_MASKS = "sfm_masks"  # the eroded masks feature extraction uses
HULL_MASKS = "hull_masks"  # the visual hull's masks, where the plate made them (below)
HULL_CHECK = "hull_check.png"  # frames with the masks' and the hull's outlines drawn

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class ReconstructionError(SegcoreError):
    """SfM ran but did not register enough frames; ``result`` holds what it found, if any."""

    def __init__(self, message: str, result: ReconResult | None = None):
        super().__init__(message)
        self.result = result


class CancelledError(SegcoreError):
    """The caller's ``should_stop`` asked to stop."""


def import_pycolmap():
    """pycolmap, with its (glog) console chatter limited to errors unless we log DEBUG."""
    # OpenCV first: imported after pycolmap, cv2's PNG encoder binds pycolmap's bundled zlib
    # and crashes in deflateEnd (pycolmap 4.2.1 + opencv-python-headless 4.11 wheels).
    import cv2  # noqa: F401

    pycolmap = optional_import("pycolmap", "pycolmap")
    if not log.isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = 2  # glog: 0 info, 1 warning, 2 error
    return pycolmap


# --------------------------------------------------------------------------- result types


@dataclass
class Intrinsics:
    """A pinhole camera with OpenCV radial-tangential distortion, OpenCV pixel convention."""

    camera_id: int
    model: str  # COLMAP camera model it came from (SIMPLE_RADIAL, PINHOLE, OPENCV, ...)
    width: int
    height: int
    fx: float
    fy: float
    cx: float  # centre of the top-left pixel is (0, 0)
    cy: float
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    @property
    def K(self) -> np.ndarray:  # noqa: N802
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def dist(self) -> np.ndarray:
        """OpenCV's (k1, k2, p1, p2)."""
        return np.array([self.k1, self.k2, self.p1, self.p2])


@dataclass
class Pose:
    """A registered frame: x_cam = R @ X + t, OpenCV camera axes (x right, y down, z forward)."""

    name: str  # image file name (as in workspace/images)
    camera_id: int
    R: np.ndarray  # noqa: N815  (3, 3)
    t: np.ndarray  # (3,)

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t


@dataclass
class ReconResult:
    workspace: Path
    cameras: dict[int, Intrinsics]
    poses: list[Pose]  # registered frames, in frame order
    points: np.ndarray  # (N, 3) float64, world
    colors: np.ndarray  # (N, 3) uint8 RGB
    frames: list[str]  # every input frame's file name, in order
    mean_reprojection_error: float  # pixels
    timings: dict[str, float] = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    masked: bool = True

    @property
    def registered(self) -> list[str]:
        return [p.name for p in self.poses]

    @property
    def images_dir(self) -> Path:
        return self.workspace / "images"

    @property
    def masks_dir(self) -> Path | None:
        d = self.workspace / "masks"
        return d if self.masked and d.is_dir() else None

    @property
    def sparse_dir(self) -> Path:
        return self.workspace / "sparse" / "0"

    def camera(self, pose: Pose) -> Intrinsics:
        return self.cameras[pose.camera_id]

    def mask_path(self, name: str) -> Path | None:
        d = self.masks_dir
        return d / f"{name}.png" if d is not None else None

    def hull_mask_path(self, name: str) -> Path | None:
        """The mask the visual hull is carved with: ``hull_masks/<name>.png`` where the
        still background's plate made one (:func:`prepare_workspace`), else the mask."""
        d = self.workspace / HULL_MASKS
        if self.masked and (d / f"{name}.png").is_file():
            return d / f"{name}.png"
        return self.mask_path(name)

    def summary(self) -> dict:
        return {
            "frames": len(self.frames),
            "registered": len(self.poses),
            "registered_share": round(len(self.poses) / max(1, len(self.frames)), 4),
            "unregistered": [n for n in self.frames if n not in set(self.registered)],
            "points": int(len(self.points)),
            "mean_reprojection_error_px": round(float(self.mean_reprojection_error), 4),
            "masked": self.masked,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "options": self.options,
        }

    def summary_line(self, mesh=None) -> str:
        """``16 of 16 frames registered, 812 points, 0.61 px, garment mesh 9,240 faces``."""
        s = self.summary()
        hull = f", garment mesh {len(mesh.faces):,} faces" if mesh is not None else ""
        check = (getattr(mesh, "info", None) or {}).get("check") if mesh is not None else None
        if check:  # how the hull's silhouettes fit the masks (silhouette_check)
            hull += f" (fits the masks to IoU {check['mean_iou']:.3f}: {check['image']})"
        return (
            f"{s['registered']} of {s['frames']} frames registered, {s['points']:,} points, "
            f"mean reprojection error {s['mean_reprojection_error_px']:.2f} px{hull}"
        )

    def to_json(self) -> dict:
        return {
            "version": RESULT_VERSION,
            "summary": self.summary(),
            "cameras": [
                {k: getattr(c, k) for k in Intrinsics.__dataclass_fields__}
                for c in self.cameras.values()
            ],
            "images": [
                {
                    "name": p.name,
                    "camera_id": p.camera_id,
                    "R": np.asarray(p.R).tolist(),
                    "t": np.asarray(p.t).tolist(),
                }
                for p in self.poses
            ],
            "frames": self.frames,
        }


def load_result(workspace: str | os.PathLike) -> ReconResult:
    """Read back what :func:`reconstruct` wrote (``recon.json`` + ``sparse/0/points3D.bin``).

    Pure numpy: no pycolmap needed (the Blender importer can use it on its own).
    """
    ws = Path(workspace)
    path = ws / "recon.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found; run `segcore reconstruct` into {ws} first") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read it ({exc}); run the reconstruction again") from None
    cams = {c["camera_id"]: Intrinsics(**c) for c in data["cameras"]}
    poses = [
        Pose(i["name"], i["camera_id"], np.array(i["R"], float), np.array(i["t"], float))
        for i in data["images"]
    ]
    pts, cols = read_points3d_binary(ws / "sparse" / "0" / "points3D.bin")
    s = data.get("summary", {})
    return ReconResult(
        ws,
        cams,
        poses,
        pts,
        cols,
        list(data.get("frames", [p.name for p in poses])),
        float(s.get("mean_reprojection_error_px", float("nan"))),
        dict(s.get("timings_s", {})),
        dict(s.get("options", {})),
        bool(s.get("masked", True)),
    )


def read_points3d_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP's ``points3D.bin``: (xyz (N, 3) float64, rgb (N, 3) uint8).

    Layout (colmap/src/colmap/scene/reconstruction_io.cc): uint64 count, then per point
    uint64 id, 3 x float64 xyz, 3 x uint8 rgb, float64 error, uint64 track length, and
    track length x (uint32 image id, uint32 point2D index).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the sparse points ({exc.strerror})") from None
    (n,) = struct.unpack_from("<Q", data, 0)
    xyz = np.empty((n, 3))
    rgb = np.empty((n, 3), np.uint8)
    off = 8
    head = struct.Struct("<Q3d3BdQ")
    for i in range(n):
        _, x, y, z, r, g, b, _, tl = head.unpack_from(data, off)
        xyz[i] = x, y, z
        rgb[i] = r, g, b
        off += head.size + 8 * tl
    return xyz, rgb


# --------------------------------------------------------------------------- preparation


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


def _settles(fn):
    """``fn(frames_dir, masks_dir, workspace, ...)``, then the sizes of what it wrote into the
    workspace's manifest (also when it fails or is cancelled)."""

    @functools.wraps(fn)
    def run(frames_dir, masks_dir, workspace, *args, **kwargs):
        try:
            return fn(frames_dir, masks_dir, workspace, *args, **kwargs)
        finally:
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

    from .io import discover_frames, read_image, read_label, write_png

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
        h, w = _image_size(p)
        if m.shape != (h, w):
            raise InputError(
                f"{found[p.name]}: the mask is {m.shape[1]}x{m.shape[0]} but the frame is "
                f"{w}x{h}; masks must have the frames' full resolution"
            )
        return m

    check_plate_mode(plate)
    still = None
    if plate != "off":
        from .plate import still_plate

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


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width): from the PNG header, else by decoding the frame."""
    from .io import read_image

    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        w, h = struct.unpack(">II", head[16:24])
        return h, w
    return read_image(path).shape[:2]


# --------------------------------------------------------------------------- pycolmap


def _from_reconstruction(rec, workspace: Path, frames: list[str], masked: bool) -> ReconResult:
    cams = {}
    for cid, cam in rec.cameras.items():
        cams[int(cid)] = intrinsics_from_colmap(
            int(cid), cam.model.name, cam.width, cam.height, list(cam.params)
        )
    order = {n: i for i, n in enumerate(frames)}
    poses = []
    for img in rec.images.values():
        if not img.has_pose:
            continue
        m = img.cam_from_world().matrix()
        poses.append(Pose(img.name, int(img.camera_id), np.array(m[:, :3]), np.array(m[:, 3])))
    poses.sort(key=lambda p: order.get(p.name, len(order)))
    ids = list(rec.points3D)
    pts = np.array([rec.points3D[i].xyz for i in ids], float).reshape(-1, 3)
    cols = np.array([rec.points3D[i].color for i in ids], np.uint8).reshape(-1, 3)
    err = float(rec.compute_mean_reprojection_error()) if ids else float("nan")
    return ReconResult(workspace, cams, poses, pts, cols, list(frames), err, masked=masked)


def intrinsics_from_colmap(cid: int, model: str, width: int, height: int, params) -> Intrinsics:
    """COLMAP camera parameters -> :class:`Intrinsics` (principal point shifted by -0.5)."""
    p = [float(x) for x in params]
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = p
        fx = fy = f
        d = [0.0] * 4
    elif model == "PINHOLE":
        fx, fy, cx, cy = p
        d = [0.0] * 4
    elif model == "SIMPLE_RADIAL":
        f, cx, cy, k1 = p
        fx = fy = f
        d = [k1, 0.0, 0.0, 0.0]
    elif model == "RADIAL":
        f, cx, cy, k1, k2 = p
        fx = fy = f
        d = [k1, k2, 0.0, 0.0]
    elif model == "OPENCV":
        fx, fy, cx, cy, *d = p
    else:
        raise ReconstructionError(
            f"camera model {model} is not supported here; use SIMPLE_RADIAL, RADIAL or OPENCV"
        )
    return Intrinsics(cid, model, int(width), int(height), fx, fy, cx - 0.5, cy - 0.5, *d)


@_settles
def reconstruct(
    frames_dir,
    masks_dir,
    workspace,
    matcher: str = "auto",
    mapper: str = "auto",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    min_registered: int = 3,
    min_registered_share: float = 0.5,
    max_image_size: int = 3200,
    num_threads: int = -1,
    seed: int = 0,
    mask_erode_px: int | None = None,
    quality: str = "high",
    focal_px: float | None = None,
    plate: str = "auto",
) -> ReconResult:
    """SfM of the frames in ``frames_dir`` with the masks in ``masks_dir`` (None: no masks).

    Writes ``workspace/{images,masks,database.db,sparse/0}`` and returns the largest model.
    Raises :class:`ReconstructionError` (with ``.result``, the partial model, when there is
    one) if fewer than ``min_registered`` frames or ``min_registered_share`` of them register.

    ``mask_erode_px``: the masks are shrunk by this much for SfM only (None: 0.6 % of the
    frame's long side). Keypoints on the silhouette's edge describe garment and background
    at once; on a turntable they slide with the outline instead of turning with the garment.
    ``quality``: "high" uses SIFT with affine shape and domain-size pooling (DSP-SIFT) and
    guided matching, which finds two to three times more correct matches on smooth fabric
    for several times the extraction time; "fast" uses plain SIFT.
    ``focal_px``: a known focal length in pixels (what EXIF gives COLMAP for camera photos;
    exported or rendered frames have none). It is held while the model grows and refined
    once at the end; without it the focal starts at 1.2 x the long side and is refined
    throughout, which a small subject on a turntable constrains poorly.
    ``plate``: complete the masks from a still background ("auto": when it is still; see
    :mod:`segcore.plate`); the corrected masks are the workspace's, for SfM and the solver,
    and the hull is carved from the plate's hull masks (``hull_masks/``, see
    :func:`prepare_workspace`).
    """
    if focal_px is not None and not focal_px > 0:
        raise InputError(f"focal length {focal_px}: give it in pixels (> 0), or leave it out")
    if matcher not in MATCHERS:
        raise InputError(f"matcher {matcher!r}: choose one of {', '.join(MATCHERS)}")
    if mapper not in MAPPERS:
        raise InputError(f"mapper {mapper!r}: choose one of {', '.join(MAPPERS)}")
    if quality not in QUALITIES:
        raise InputError(f"quality {quality!r}: choose one of {', '.join(QUALITIES)}")
    check_plate_mode(plate)
    pycolmap = import_pycolmap()
    if seed is not None:  # RANSAC in matching and mapping
        pycolmap.set_random_seed(int(seed))
    report = progress or (lambda stage, done, total: None)
    run = _Stages(pycolmap.CancellationToken(), should_stop or (lambda: False))
    ws = Path(workspace)
    if mask_erode_px is None and masks_dir is not None:
        from .io import discover_frames, read_image

        first = discover_frames(frames_dir)[0]
        mask_erode_px = max(1, round(ERODE_SHARE * max(read_image(first).shape[:2])))
    with run.watch():
        with run.timed("prepare"):
            frames, masked, plate_info = prepare_workspace(
                frames_dir, masks_dir, ws, mask_erode_px or 0, plate, report
            )
        if plate_info is not None:
            log.info("masks completed from the still background: %s", plate_info)
        names = [p.name for p in frames]
        n = len(names)
        if n < 3:
            raise InputError(f"{frames_dir}: {n} frames; structure from motion needs 3 or more")
        report("prepare", n, n)
        asked = mapper
        turntable_notes = None  # the turntable solver's log, for recon.json
        if mapper == "auto":
            mapper = _auto_mapper(frames, ws, masked, plate, plate_info)
            log.info("mapper auto: %s", mapper)
        if mapper == "turntable":
            if not masked:
                raise InputError(
                    "the turntable solver needs masks (it calibrates from the silhouettes)"
                )

            def checked(stage, done, total):  # a stop request ends the solve between steps
                run.check()
                report(stage, done, total)

            with run.timed("turntable"):
                best, turntable_notes = _turntable_model(pycolmap, ws, names, focal_px, checked)
            models = {0: best}
        kind = matcher
        if kind == "auto":
            kind = "exhaustive" if n <= EXHAUSTIVE_MAX else "sequential"
        if mapper != "turntable":
            with run.timed("features"):
                reader = _reader_options(pycolmap, ws, frames[0], masked, focal_px)
                _extract_features(
                    pycolmap, run, report, ws, names, reader, max_image_size, num_threads, quality
                )
            with run.timed("matching"):
                _match(pycolmap, run, report, ws, kind, num_threads, quality)
            with run.timed("mapping"):
                models = _map(pycolmap, run, report, ws, n, mapper, num_threads, seed, focal_px)
    best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
    if best is None:
        raise ReconstructionError(
            f"no frame registered (0 of {n}): structure from motion found no initial pair; "
            + _advice(masked)
        )
    if mapper != "turntable":  # the circular model has no lens distortion to refine
        with run.timed("refine"):
            best = _refine_distortion(pycolmap, best, refine_focal=focal_px is None)
    _write_model(best, ws / "sparse" / "0")
    result = _from_reconstruction(best, ws, names, masked)
    run.timings["total"] = time.perf_counter() - run.t0
    result.timings = run.timings
    result.options = {
        "matcher": kind,
        "mapper": mapper,
        "mapper_asked": asked,
        "camera_mode": "single",
        "camera_model": "SIMPLE_RADIAL",
        "max_image_size": max_image_size,
        "mask_erode_px": mask_erode_px,
        "quality": quality,
        "focal_px": focal_px,
        "seed": seed,
        "plate": plate,
        "plate_changes": plate_info,
        "turntable": turntable_notes,
        "pycolmap": getattr(pycolmap, "__version__", "?"),
    }
    k = len(result.poses)
    if len(models) > 1:
        log.info(
            "SfM split the sequence into %d models; kept the largest (%d frames)", len(models), k
        )
    if k < min_registered or k < min_registered_share * n:
        raise ReconstructionError(
            f"only {k} of {n} frames registered (SfM needs at least "
            f"{max(min_registered, int(np.ceil(min_registered_share * n)))}); " + _advice(masked),
            result,
        )
    return result


class _Stages:
    """Timings of the steps, and the stop request: checked between steps, and passed to
    pycolmap's long calls through its cancellation token by a watcher thread."""

    def __init__(self, token, should_stop: Callable[[], bool]):
        self.token, self.should_stop = token, should_stop
        self.timings: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def check(self) -> None:
        if self.should_stop():
            self.token.cancel()
            raise CancelledError("reconstruction cancelled")

    @contextlib.contextmanager
    def timed(self, stage: str):
        self.check()
        t = time.perf_counter()
        yield
        self.timings[stage] = time.perf_counter() - t
        self.check()

    @contextlib.contextmanager
    def watch(self):
        finished = threading.Event()

        def watch():
            while not finished.wait(0.2):
                if self.should_stop():
                    self.token.cancel()
                    return

        threading.Thread(target=watch, name="segcore-recon-stop", daemon=True).start()
        try:
            yield
        finally:
            finished.set()


def _auto_mapper(
    frames: list[Path], ws: Path, masked: bool, plate: str, plate_info: dict | None
) -> str:
    """``turntable`` when the masked frames show a still background (a turntable: the
    camera stands still, the garment turns; :mod:`segcore.plate`), else ``incremental``."""
    from .io import read_image, read_label
    from .plate import STILL_SHARE, still_plate

    if not masked:
        return "incremental"  # the turntable solver calibrates from the silhouettes
    if plate_info is not None:  # the plate pass measured it already
        still = plate_info["still_share"] >= STILL_SHARE
    elif plate == "auto":  # measured, and not still (or too few frames)
        still = False
    else:
        masks = ws / "masks"
        still = (
            still_plate(
                len(frames),
                lambda i: (read_image(frames[i]), read_label(masks / f"{frames[i].name}.png")),
            )
            is not None
        )
    return "turntable" if still else "incremental"


def _reader_options(pycolmap, ws: Path, first: Path, masked: bool, focal_px: float | None):
    """One SIMPLE_RADIAL camera; the (eroded) masks; a known focal length, if given."""
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    if masked:
        sfm_masks = ws / SFM_MASKS
        reader.mask_path = str(sfm_masks if sfm_masks.is_dir() else ws / "masks")
    if focal_px is not None:
        h, w = _image_size(first)
        reader.camera_params = f"{float(focal_px)},{w / 2},{h / 2},0"  # COLMAP: f, cx, cy, k
    return reader


def _extract_features(pycolmap, run, report, ws, names, reader, max_image_size, threads, quality):
    """SIFT on the CPU, no keypoints where the (eroded) mask is 0, one shared camera."""
    db = ws / "database.db"
    for stale in (db, ws / "database.db-shm", ws / "database.db-wal"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = int(max_image_size)
    extraction.num_threads = int(threads)
    extraction.use_gpu = False
    if quality == "high":  # smooth fabric: more, and more distinctive, keypoints
        extraction.sift.peak_threshold = 0.002  # COLMAP's default 0.0067 finds too few
        extraction.sift.estimate_affine_shape = True
        extraction.sift.domain_size_pooling = True
    # One camera for the whole sequence; then features in batches, for progress and cancel.
    pycolmap.Database.open(db).close()  # import_images needs the file to exist
    pycolmap.import_images(db, ws / "images", pycolmap.CameraMode.SINGLE, names, reader)
    n = len(names)
    batch = max(1, min(8, n // 10 or 1))
    for i in range(0, n, batch):
        run.check()
        pycolmap.extract_features(
            db,
            ws / "images",
            image_names=names[i : i + batch],
            camera_mode=pycolmap.CameraMode.SINGLE,
            reader_options=reader,
            extraction_options=extraction,
            device=pycolmap.Device.cpu,
        )
        report("features", min(n, i + batch), n)


def _match(pycolmap, run, report, ws, kind, threads, quality) -> None:
    """Exhaustive or sequential matching (loop detection off: it needs a vocabulary tree)."""
    matching = pycolmap.FeatureMatchingOptions()
    matching.use_gpu = False
    matching.num_threads = int(threads)
    matching.guided_matching = quality == "high"
    kw = dict(matching_options=matching, device=pycolmap.Device.cpu, cancellation_token=run.token)
    report("matching", 0, 1)
    if kind == "exhaustive":
        pycolmap.match_exhaustive(ws / "database.db", **kw)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = SEQUENTIAL_OVERLAP
        pairing.loop_detection = False
        pycolmap.match_sequential(ws / "database.db", pairing_options=pairing, **kw)
    report("matching", 1, 1)


def _map(pycolmap, run, report, ws, n, mapper, threads, seed, focal_px=None) -> dict:
    """Incremental (COLMAP) or global (GLOMAP) mapping; the models found, by index."""
    tmp = ws / "sparse_tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    registered = [0]

    def on_image():
        registered[0] += 1
        report("mapping", min(registered[0], n), n)

    report("mapping", 0, n)
    try:
        if mapper == "incremental":
            opts = pycolmap.IncrementalPipelineOptions()
            opts.min_model_size = min(10, max(3, n // 2))
            opts.num_threads = int(threads)
            # Lens distortion is held at 0 while the model grows: refined from a few dozen
            # points of the first pairs it runs away (k1 = -1.8 seen on a 320 px turntable)
            # and takes the geometry with it. It is refined once, at the end.
            opts.ba_refine_extra_params = False
            opts.mapper.abs_pose_refine_extra_params = False
            opts.ba_refine_focal_length = focal_px is None
            if seed is not None:
                opts.random_seed = int(seed)
            return pycolmap.incremental_mapping(
                ws / "database.db",
                ws / "images",
                tmp,
                opts,
                initial_image_pair_callback=on_image,
                next_image_callback=on_image,
                cancellation_token=run.token,
            )
        gopts = pycolmap.GlobalPipelineOptions()
        gopts.num_threads = int(threads)
        gopts.mapper.global_positioning.use_gpu = False
        gopts.mapper.bundle_adjustment.ceres.use_gpu = False
        gopts.mapper.bundle_adjustment.refine_extra_params = False
        gopts.mapper.bundle_adjustment.refine_focal_length = focal_px is None
        if seed is not None:
            gopts.random_seed = int(seed)
        return pycolmap.global_mapping(ws / "database.db", ws / "images", tmp, gopts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _turntable_model(pycolmap, ws: Path, names: list[str], focal_px, report):
    """Circular-motion SfM (:mod:`segcore.turntable`) on the workspace's frames (features in
    the eroded masks, outlines from the masks as they are), as a pycolmap reconstruction
    (written as a COLMAP text model and read back), and the solver's notes."""
    import cv2

    from .io import read_image, read_label
    from .turntable import solve_turntable, write_colmap_text

    mdir = ws / SFM_MASKS if (ws / SFM_MASKS).is_dir() else ws / "masks"
    frames = [read_image(ws / "images" / nm) for nm in names]
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    masks = [read_label(mdir / f"{nm}.png") for nm in names]
    sils = (
        [read_label(ws / "masks" / f"{nm}.png") for nm in names] if mdir != ws / "masks" else masks
    )
    h, w = grays[0].shape
    f = float(focal_px) if focal_px else 1.2 * max(h, w)  # COLMAP's guess without EXIF
    K = np.array([[f, 0, w / 2 - 0.5], [0, f, h / 2 - 0.5], [0, 0, 1.0]])
    try:
        fit = solve_turntable(grays, masks, K, report, silhouettes=sils)
    except ValueError as exc:
        raise ReconstructionError(f"turntable solve failed: {exc}") from exc
    for note in fit.log:
        log.info("turntable: %s", note)
    colours = []
    for tr in fit.tracks:
        fr, (x, y) = tr[0]
        b, g, r = frames[fr][min(h - 1, int(round(y))), min(w - 1, int(round(x)))]
        colours.append((r, g, b))
    text = ws / "sparse_turntable"
    shutil.rmtree(text, ignore_errors=True)
    write_colmap_text(text, fit, names, (w, h), K, colours)
    rec = pycolmap.Reconstruction(str(text))
    shutil.rmtree(text, ignore_errors=True)
    return rec, list(fit.log)


MAX_K1 = 0.5  # a refined |k1| beyond this is a runaway, not a lens


def _refine_distortion(pycolmap, rec, refine_focal: bool = True):
    """A final bundle adjustment that also refines the radial distortion: its result is
    returned when it lowers the reprojection error and k1 stays plausible, else ``rec``.
    A known focal length (``refine_focal=False``) stays fixed here too, as in the mapping.
    """
    if rec.num_points3D() < 200:
        return rec
    before = rec.compute_mean_reprojection_error()
    trial = pycolmap.Reconstruction(rec)
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_extra_params = True
    opts.refine_focal_length = bool(refine_focal)
    opts.print_summary = False
    try:
        pycolmap.bundle_adjustment(trial, opts)
    except Exception as exc:  # pragma: no cover - Ceres failures are rare
        log.info("distortion refinement failed (%s); keeping k1 = 0", exc)
        return rec
    ks = [c.params[3] for c in trial.cameras.values() if c.model.name == "SIMPLE_RADIAL"]
    after = trial.compute_mean_reprojection_error()
    if ks and max(abs(k) for k in ks) < MAX_K1 and after < before:
        log.info("refined k1 = %s, reprojection error %.3f -> %.3f px", ks, before, after)
        return trial
    return rec


def _advice(masked: bool) -> str:
    if not masked:
        return (
            "on a turntable the still background defeats SfM: pass masks "
            "(segcore segment frames/ -o out/, then MASKS_DIR=out/masks) and keep "
            "neighbouring frames overlapping (10-15 degrees apart)"
        )
    return (
        "check that the masks cover the garment (segcore eval / the RGBA cut-outs) and that "
        "neighbouring frames overlap (10-15 degrees apart, sharp, evenly lit)"
    )


def _write_model(rec, sparse: Path) -> None:
    """Write the model to ``sparse`` through a temporary folder and a rename."""
    tmp = sparse.with_name(f".{sparse.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rec.write(tmp)
    shutil.rmtree(sparse, ignore_errors=True)
    os.replace(tmp, sparse)


def write_result_json(result: ReconResult, path: Path, extra: dict | None = None) -> None:
    from .io import atomic_write_bytes

    data = result.to_json()
    if extra:
        data["summary"].update(extra)
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------- front door


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


@_settles
def run_reconstruction(
    frames_dir,
    masks_dir,
    workspace,
    matcher: str = "auto",
    mapper: str = "auto",
    hull: bool = True,
    voxels: int = DEFAULT_VOXELS,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    quality: str = "high",
    focal_px: float | None = None,
    plate: str = "auto",
):
    """Everything ``segcore reconstruct`` does: SfM, visual hull, ``transforms.json``,
    ``recon.json``. Returns ``(ReconResult, Mesh or None)``; the CLI, the Blender operator
    and its batch script all call this.
    """
    from .hull import hull_from_views, silhouette_check, views_from_result, write_ply
    from .io import write_png
    from .nerfstudio import write_transforms

    if not 16 <= int(voxels) <= 1024:
        raise InputError(f"voxels {voxels}: use 16 to 1024 ({DEFAULT_VOXELS} is a good start)")
    ws = Path(workspace)
    report = progress or (lambda stage, done, total: None)
    try:
        result = reconstruct(
            frames_dir,
            masks_dir,
            ws,
            matcher=matcher,
            mapper=mapper,
            progress=progress,
            should_stop=should_stop,
            quality=quality,
            focal_px=focal_px,
            plate=plate,
        )
    except ReconstructionError as exc:
        if exc.result is not None:
            write_result_json(exc.result, ws / "recon.json")
        raise
    mesh = None
    extra: dict = {}
    if hull and result.masks_dir is not None:
        if should_stop is not None and should_stop():
            raise CancelledError("reconstruction cancelled")
        report("hull", 0, 1)
        t = time.perf_counter()
        views = views_from_result(result)  # masks read once: for the hull and its check
        mesh = hull_from_views(views, points=result.points, voxels=voxels)
        write_ply(ws / "hull.ply", mesh)
        result.timings["hull"] = time.perf_counter() - t
        extra["hull"] = {k: mesh.info[k] for k in ("vertices", "faces", "voxel_size", "views")}
        extra["hull"]["masks"] = HULL_MASKS if (ws / HULL_MASKS).is_dir() else "masks"
        # a picture of how the hull fits the masks (a person looks before trusting the mesh)
        sheet, ious = silhouette_check(mesh, views)
        write_png(ws / HULL_CHECK, sheet)
        extra["hull"]["check"] = mesh.info["check"] = {
            "image": HULL_CHECK,
            "mean_iou": round(float(np.mean(list(ious.values()))), 4),
            "iou": ious,
        }
        report("hull", 1, 1)
    write_transforms(result, ws)
    write_result_json(result, ws / "recon.json", extra)
    return result, mesh


# --------------------------------------------------------------------------- scene placement


@dataclass
class Placement:
    """World (SfM) -> scene: ``x_scene = scale * rotation @ (x - center)``, z up."""

    scale: float
    rotation: np.ndarray  # (3, 3) proper rotation
    center: np.ndarray  # (3,) SfM point that lands on the scene origin

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(points, float) - self.center) @ self.rotation.T

    def camera_matrix(self, pose: Pose) -> np.ndarray:
        """Blender camera-to-world 4x4 (camera looks down -Z, +Y up) of a pose, unscaled."""
        m = np.eye(4)
        m[:3, :3] = self.rotation @ np.asarray(pose.R).T @ np.diag([1.0, -1.0, -1.0])
        m[:3, 3] = self.apply(pose.center[None])[0]
        return m


def up_vector(poses: list[Pose]) -> np.ndarray:
    """The scene's up: the normal of the plane the cameras orbit in, signed by their mean
    "up" (-y of the camera); the mean "up" alone when the centres are not spread in a plane.
    """
    ups = np.array([-np.asarray(p.R)[1] for p in poses])
    mean_up = ups.mean(axis=0)
    mean_up /= max(np.linalg.norm(mean_up), 1e-12)
    if len(poses) >= 3:
        c = np.array([p.center for p in poses])
        _, s, vt = np.linalg.svd(c - c.mean(axis=0))
        if s[1] > 1e-9 and s[2] < 0.35 * s[1]:  # spread in a plane: use its normal
            n = vt[2]
            return n if n @ mean_up >= 0 else -n
    return mean_up


def placement(result: ReconResult, vertices: np.ndarray | None = None, height: float = 1.7):
    """Upright (z = up from the cameras), centred on the garment (x, y) with its lowest point
    at z = 0, scaled to ``height`` units tall, the first camera on the -y side (front view).
    The garment is the hull's ``vertices`` if given, else the sparse points (2nd-98th
    percentiles).
    """
    if not result.poses:
        raise ReconstructionError("no registered frames to place in the scene")
    up = up_vector(result.poses)
    pts = np.asarray(vertices if vertices is not None else result.points, float).reshape(-1, 3)
    if len(pts) == 0:
        pts = np.array([p.center for p in result.poses])
    # the first camera's direction from the garment, flattened, becomes -y
    mid = np.median(pts, axis=0)
    toward = result.poses[0].center - mid
    toward -= (toward @ up) * up
    if np.linalg.norm(toward) < 1e-12:
        toward = np.cross(up, [1.0, 0, 0]) if abs(up[0]) < 0.9 else np.cross(up, [0, 1.0, 0])
    minus_y = toward / np.linalg.norm(toward)
    x_axis = np.cross(-minus_y, up)  # right-handed: x = y cross z
    rot = np.stack([x_axis / np.linalg.norm(x_axis), -minus_y, up])  # rows: scene axes
    local = pts @ rot.T
    lo_q, hi_q = (0.0, 100.0) if vertices is not None else (2.0, 98.0)
    lo, hi = np.percentile(local, lo_q, axis=0), np.percentile(local, hi_q, axis=0)
    tall = max(float(hi[2] - lo[2]), 1e-9)
    centre_local = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return Placement(height / tall, rot, rot.T @ centre_local)


def blender_camera(cam: Intrinsics, sensor_mm: float = 36.0) -> dict:
    """Blender camera data for ``cam``: sensor fit on the long side, lens from fx (fy for a
    portrait frame; square pixels assumed), shift from the principal point (in units of the
    long side), and the render size.
    """
    w, h = int(cam.width), int(cam.height)
    long_side = max(w, h)
    fit = "HORIZONTAL" if w >= h else "VERTICAL"
    f = cam.fx if fit == "HORIZONTAL" else cam.fy
    cx, cy = cam.cx + 0.5, cam.cy + 0.5  # image-corner origin, as Blender's frame
    return {
        "sensor_fit": fit,
        "sensor_width": sensor_mm,
        "sensor_height": sensor_mm,
        "lens": float(f) * sensor_mm / long_side,
        "shift_x": float((w / 2 - cx) / long_side),
        "shift_y": float((cy - h / 2) / long_side),
        "resolution_x": w,
        "resolution_y": h,
    }
