"""The turntable fit as a COLMAP model: written as text, read back by pycolmap, for the
reconstruction's workspace (the ``turntable`` mapper of :func:`segcore.recon.reconstruct`)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from ..result import SFM_MASKS, ReconstructionError
from .circular import TurntableFit
from .solve import solve_turntable
from .tracks import reproject

log = logging.getLogger(__name__)


def turntable_model(pycolmap, ws: Path, names: list[str], focal_px, report, still: bool = True):
    """Circular-motion SfM (:mod:`segcore.recon.turntable`) on the workspace's frames (features in
    the eroded masks, outlines from the masks as they are), as a pycolmap reconstruction
    (written as a COLMAP text model and read back), the solver's notes and the frames whose
    masks it found suspect and left out of the fit, and the angle (degrees) between the solved
    axis and the background's vertical edges (None: too few edges).

    ``still``: the background stands still (a turntable). A camera carried round the garment
    on an even ring at one height sees the same circular motion, with the room moving behind
    the garment: then no outline is judged against a still background (no leaks, no still
    outlines, no vertical edges of a plate)."""
    import cv2

    from ...io import read_image, read_label

    mdir = ws / SFM_MASKS if (ws / SFM_MASKS).is_dir() else ws / "masks"
    frames = [read_image(ws / "images" / nm) for nm in names]
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    masks = [read_label(mdir / f"{nm}.png") for nm in names]
    sils = (
        [read_label(ws / "masks" / f"{nm}.png") for nm in names] if mdir != ws / "masks" else masks
    )
    h, w = grays[0].shape
    f, source = focal_for_solver(ws / "images" / names[0], focal_px)
    K = np.array([[f, 0, w / 2 - 0.5], [0, f, h / 2 - 0.5], [0, 0, 1.0]])
    try:
        fit = solve_turntable(grays, masks, K, report, silhouettes=sils, still=still)
    except ValueError as exc:
        raise ReconstructionError(f"turntable solve failed: {exc}") from exc
    fit.log.insert(0, f"focal: {f:.1f} px ({source})")
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
    return rec, list(fit.log), [names[i] for i in fit.suspects], fit.axis_to_verticals_deg


def focal_for_solver(first_frame: Path, focal_px) -> tuple[float, str]:
    """``(focal in pixels, where it comes from)``: ``focal_px`` (``--focal``), else the
    frame's EXIF. The solver holds the focal fixed (a guessed one gives wrong cameras), so
    without either it stops with what to do."""
    from ...errors import InputError
    from ...exif import known_focal

    f, source = known_focal(first_frame, focal_px)
    if f is None:
        raise InputError(
            f"{first_frame.name}: no focal length in its EXIF, and the turntable solver needs "
            "one: give it in pixels, --focal PX (the lens's focal length in mm / the sensor's "
            "width in mm x the frame's width in pixels)"
        )
    return f, source


def write_colmap_text(folder, fit: TurntableFit, names, size_wh, K, colours=None) -> None:
    """A COLMAP text model (cameras.txt, images.txt, points3D.txt) of the inlier tracks.

    COLMAP's pixel centres are at +0.5 (OpenCV's at 0), hence the shift; one SIMPLE_RADIAL
    camera with k = 0.
    """
    from pathlib import Path

    from scipy.spatial.transform import Rotation

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size_wh
    f = 0.5 * (K[0, 0] + K[1, 1])
    (folder / "cameras.txt").write_text(
        f"1 SIMPLE_RADIAL {w} {h} {f!r} {K[0, 2] + 0.5!r} {K[1, 2] + 0.5!r} 0\n"
    )
    keep = [k for k in range(len(fit.tracks)) if fit.inliers[k]]
    obs: list[list[tuple[float, float, int]]] = [[] for _ in names]
    pts = []
    for pid, k in enumerate(keep, start=1):
        track = []
        for fr, (x, y) in fit.tracks[k]:
            obs[fr].append((x + 0.5, y + 0.5, pid))
            track.append((fr + 1, len(obs[fr]) - 1))
        rgb = colours[k] if colours is not None else (128, 128, 128)
        frames = np.array([fr for fr, _ in fit.tracks[k]])
        seen = np.array([p for _, p in fit.tracks[k]], np.float64)
        pr, _ = reproject(K, fit.R, fit.t, np.repeat(fit.points[k][None], len(frames), 0), frames)
        err = float(np.linalg.norm(pr - seen, axis=1).mean())
        pts.append((pid, fit.points[k], rgb, track, err))
    lines = []
    for i, name in enumerate(names):
        qx, qy, qz, qw = Rotation.from_matrix(fit.R[i]).as_quat()
        tx, ty, tz = fit.t[i]
        lines.append(f"{i + 1} {qw!r} {qx!r} {qy!r} {qz!r} {tx!r} {ty!r} {tz!r} 1 {name}")
        lines.append(" ".join(f"{x!r} {y!r} {pid}" for x, y, pid in obs[i]))
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    plines = []
    for pid, X, rgb, track, err in pts:
        tr = " ".join(f"{im} {idx}" for im, idx in track)
        plines.append(
            f"{pid} {X[0]!r} {X[1]!r} {X[2]!r} {int(rgb[0])} {int(rgb[1])} {int(rgb[2])} "
            f"{err!r} {tr}"
        )
    (folder / "points3D.txt").write_text("\n".join(plines) + ("\n" if plines else ""))
