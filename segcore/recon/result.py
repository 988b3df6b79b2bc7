"""A reconstruction's result: cameras, poses, sparse points, and how it is read back.

:class:`ReconResult` is what :func:`segcore.recon.reconstruct` returns and what ``recon.json``
(with COLMAP's ``sparse/0/points3D.bin``) stores; :func:`load_result` reads it back with
numpy alone (no pycolmap: the Blender importer uses it on its own).

Pixel conventions: :class:`Intrinsics` uses OpenCV's (the centre of the top-left pixel is
(0, 0), as ``cameras.json``); COLMAP's files put that centre at (0.5, 0.5), so cx and cy there
are 0.5 larger.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, SegcoreError

RESULT_VERSION = 1
SFM_MASKS = "sfm_masks"  # the eroded masks feature extraction uses
HULL_MASKS = "hull_masks"  # the visual hull's masks, where the plate made them (below)
HULL_CHECK = "hull_check.png"  # frames with the masks' and the hull's outlines drawn
RING_PAIRS = "ring_pairs.txt"  # the frame pairs the ring matcher matched (recon.sfm)
VIEW_PAIRS = "view_pairs.txt"  # the pairs matched once the cameras were known (recon.sfm)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class ReconstructionError(SegcoreError):
    """SfM ran but did not register enough frames; ``result`` holds what it found, if any."""

    def __init__(self, message: str, result: ReconResult | None = None):
        super().__init__(message)
        self.result = result


class CancelledError(SegcoreError):
    """The caller's ``should_stop`` asked to stop."""


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
    verdict: dict | None = None  # whether it can be trusted (segcore.recon.verdict)

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
            "verdict": self.verdict,
        }

    def summary_line(self, mesh=None) -> str:
        """``16 of 16 frames registered, 812 points, 0.61 px, garment mesh 9,240 faces``."""
        s = self.summary()
        hull = f", garment mesh {len(mesh.faces):,} faces" if mesh is not None else ""
        check = (getattr(mesh, "info", None) or {}).get("check") if mesh is not None else None
        if check:  # how the hull's silhouettes fit the masks (silhouette_check)
            hull += f" (fits the masks to IoU {check['mean_iou']:.3f}: {check['image']})"
        if s["points"]:
            points = (
                f"{s['points']:,} points, "
                f"mean reprojection error {s['mean_reprojection_error_px']:.2f} px"
            )
        else:  # no error to average (nan): the turntable solver can place the cameras alone
            points = "no feature points"
            if self.options.get("mapper") == "turntable":
                points += " (the turntable solver used the silhouettes)"
        line = f"{s['registered']} of {s['frames']} frames registered, {points}{hull}"
        if self.verdict:  # the reasons: segcore.recon.verdict.verdict_line
            line += f"; verdict: {self.verdict['status']}"
        return line

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
        s.get("verdict"),
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


def write_result_json(result: ReconResult, path: Path, extra: dict | None = None) -> None:
    from ..io import atomic_write_bytes

    data = result.to_json()
    if extra:
        data["summary"].update(extra)
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))
