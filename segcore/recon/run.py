"""Structure from motion on a masked frame sequence with pycolmap (no Blender, no GPU).

    result = reconstruct("shoot/", "out/masks", "work/")     # -> ReconResult
    result.poses[0].R, result.poses[0].t                      # world-to-camera, OpenCV axes

Steps, each reported to ``progress(stage, done, total)`` (:mod:`segcore.recon.workspace`,
:mod:`segcore.recon.sfm`):

1. ``prepare``: frames hard-linked (else copied) to ``workspace/images/<name>``; masks
   normalised to COLMAP's convention in ``workspace/masks/<name>.png`` (uint8, 0 = ignore,
   255 = use; segcore's ``<stem>.png`` masks, COLMAP's ``<name>.png`` ones and alpha cut-outs
   are all accepted), and shrunk a little for feature extraction in ``workspace/sfm_masks``.
2. ``features``: SIFT on the CPU with ``ImageReaderOptions.mask_path`` (no keypoints where the
   mask is 0), one shared camera (``CameraMode.SINGLE``: a fixed-lens sequence).
3. ``matching``: exhaustive up to :data:`~segcore.recon.sfm.EXHAUSTIVE_MAX` frames, else
   sequential (loop detection off: it needs a vocabulary tree file).
4. ``mapping``: incremental (or global, GLOMAP) mapping, or the turntable solver
   (:mod:`segcore.recon.turntable`) on a still background; the largest model is written in
   COLMAP's binary format to ``workspace/sparse/0`` (COLMAP's GUI, nerfstudio and Blender
   photogrammetry importers read it).

:func:`run_reconstruction` adds the visual hull, ``transforms.json`` and ``recon.json``.

Why masks matter: on a turntable the background stands still while the garment turns, so
unmasked, SfM explains most matches with a camera that never moves and fails (or registers
a few frames wrongly); with the background masked out only the turning subject is left and
the sequence reads as a camera orbiting a static garment.

Pixel conventions: :mod:`segcore.recon.result`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import write_png
from ..options import DEFAULT_VOXELS, FEATURE_AREAS, MAPPERS, MATCHERS, QUALITIES, VOXELS
from ..plate import STAGES as plate_stages
from ..plate import STILL_SHARE
from ..plate import check_mode as check_plate_mode
from .camera import views_from_result
from .carve import hull_from_views
from .check import silhouette_check, silhouette_fit
from .colmap import from_reconstruction, import_pycolmap, refine_distortion, write_model
from .mesh import HullError
from .nerfstudio import write_transforms
from .ply import write_ply
from .result import (
    HULL_CHECK,
    HULL_MASKS,
    CancelledError,
    Progress,
    ReconResult,
    ReconstructionError,
    write_result_json,
)
from .sfm import (
    EXHAUSTIVE_MAX,
    Stages,
    auto_mapper,
    extract_features,
    map_frames,
    match,
    matched_pairs,
    most_registered,
    reader_options,
    still_background,
    view_pairs,
)
from .turntable.colmap import turntable_model
from .verdict import judge, rotation_steps
from .workspace import ERODE_SHARE, prepare_workspace, segment_plate, settles

log = logging.getLogger(__name__)

CAPTURES = {True: "turntable", False: "moving camera", None: "not measured (no masks)"}
# a moving camera (``--mapper auto``) that incremental SfM registers in fewer than this share
# of the frames is solved as an even ring: circular motion from the masks (_circular_ring)
RING_CIRCULAR_SHARE = 0.95

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


@settles
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
    features: str = "auto",
    circular_because: str | None = None,
) -> ReconResult:
    """SfM of the frames in ``frames_dir`` with the masks in ``masks_dir`` (None: no masks).

    Writes ``workspace/{images,masks,database.db,sparse/0}`` and returns the largest model.
    Raises :class:`ReconstructionError` (with ``.result``, the partial model, when there is
    one) if fewer than ``min_registered`` frames or ``min_registered_share`` of them register.

    ``mask_erode_px``: the masks are shrunk by this much for SfM only (None: 0.6 % of the
    frame's long side). Keypoints on the silhouette's edge describe garment and background
    at once; on a turntable they slide with the outline instead of turning with the garment.
    ``quality``: "high" uses SIFT with affine shape and domain-size pooling (DSP-SIFT) inside
    the masks (over the whole frame, where the room carries the registration, plain SIFT) and
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
    ``features``: where SfM takes its features: "masked" (inside the eroded masks), "whole"
    (the whole frame) or "auto": masked on a still background (a turntable: there the
    background would register a camera that never moves), the whole frame when the camera
    moves (the still room is the best thing to register it against; the masks carve the
    mesh and go to the workspace for the dense / NeRF tools all the same).
    ``circular_because``: with ``mapper="turntable"`` on a moving camera, why the ring is
    solved as circular motion (:func:`run_reconstruction`'s second try; ``recon.json``).
    """
    if features not in FEATURE_AREAS:
        raise InputError(f"features {features!r}: choose one of {', '.join(FEATURE_AREAS)}")
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
    run = Stages(pycolmap.CancellationToken(), should_stop or (lambda: False))
    ws = Path(workspace)
    if mask_erode_px is None and masks_dir is not None:
        from ..io import discover_frames, read_image

        first = discover_frames(frames_dir)[0]
        mask_erode_px = max(1, round(ERODE_SHARE * max(read_image(first).shape[:2])))
    # masks `segment` already completed from the still background, with the network's
    # classes (a stand's legs left out), are not completed again here, without them
    by_segment = segment_plate(masks_dir) if plate == "auto" and masks_dir is not None else None
    with run.watch():
        with run.timed("prepare"):
            frames, masked, plate_info = prepare_workspace(
                frames_dir,
                masks_dir,
                ws,
                mask_erode_px or 0,
                "off" if by_segment else plate,
                report,
            )
        if plate_info is not None:
            log.info("masks completed from the still background: %s", plate_info)
        names = [p.name for p in frames]
        n = len(names)
        if n < 3:
            raise InputError(f"{frames_dir}: {n} frames; structure from motion needs 3 or more")
        report("prepare", n, n)
        asked = "auto" if circular_because else mapper
        turntable_notes = None  # the turntable solver's log, for recon.json
        # a ring SfM could not register, solved as circular motion: why (recon.json)
        ring_note = circular_because if mapper == "turntable" else None
        view_note = None  # the second round of matching from the cameras (_match_views...)
        suspects: list[str] = []  # masks the turntable solver found the others disagree with
        axis_off = None  # degrees between the turntable's axis and the room's verticals
        still = (
            by_segment["still_share"] >= STILL_SHARE
            if by_segment
            else still_background(frames, ws, masked, plate, plate_info)
        )
        if mapper == "auto":
            mapper = auto_mapper(still)
            log.info("mapper auto: %s", mapper)
        feature_masks = masked and (features == "masked" or (features == "auto" and still))

        def checked(stage, done, total):  # a stop request ends the solver between steps
            run.check()
            report(stage, done, total)

        if mapper == "turntable":
            if not masked:
                raise InputError(
                    "the turntable solver needs masks (it calibrates from the silhouettes)"
                )
            with run.timed("turntable"):
                best, turntable_notes, suspects, axis_off = turntable_model(
                    pycolmap, ws, names, focal_px, checked, still=still is not False
                )
            models = {0: best}
        kind = matcher
        if kind == "auto" and mapper != "turntable" and masked and not feature_masks:
            kind = "ring"  # a moving camera registered from the whole frame: sfm.RING_SHARE
        elif kind == "auto":
            kind = "exhaustive" if n <= EXHAUSTIVE_MAX else "sequential"
        if mapper != "turntable":
            with run.timed("features"):
                reader = reader_options(pycolmap, ws, frames[0], feature_masks, focal_px)
                # DSP-SIFT finds the matches smooth fabric has (inside the masks); over the
                # whole frame the room carries the registration and plain SIFT suffices
                sift = quality if feature_masks else "fast"
                extract_features(
                    pycolmap, run, report, ws, names, reader, max_image_size, num_threads, sift
                )
            with run.timed("matching"):
                match(pycolmap, run, report, ws, kind, num_threads, quality, names)
            # a moving camera the even ring takes over below 95 % registered: the further
            # models COLMAP would grow from the frames its first one left out cannot reach
            # that (a close-up ring: 8 of 24 frames, then 80 s more for none)
            circular_next = asked == "auto" and masked and still is False
            with run.timed("mapping"):
                args = (pycolmap, run, report, ws, n, mapper, num_threads, seed, focal_px)
                models = map_frames(*args, one_model=circular_next)
            if kind in ("ring", "sequential") and mapper == "incremental":
                models, view_note = _match_views_and_map_again(
                    pycolmap, run, report, ws, names, models, args, circular_next,
                    (kind, num_threads, quality),
                )  # fmt: skip
            if circular_next:
                k = most_registered(models)
                if k < RING_CIRCULAR_SHARE * n:
                    circular = _circular_ring(pycolmap, run, checked, ws, names, focal_px, k)
                    if isinstance(circular, str):
                        ring_note = circular
                    else:
                        best, turntable_notes, suspects, axis_off = circular
                        models, mapper = {0: best}, "turntable"
                        ring_note = (
                            f"incremental SfM registered {k} of {n} frames: solved as an even "
                            "ring (circular motion) from the masks' outlines and tracks"
                        )
    best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
    if best is None:
        raise ReconstructionError(
            f"no frame registered (0 of {n}): structure from motion found no initial pair; "
            + _advice(masked)
        )
    if mapper != "turntable":  # the circular model has no lens distortion to refine
        with run.timed("refine"):
            best = refine_distortion(pycolmap, best, refine_focal=focal_px is None)
    write_model(best, ws / "sparse" / "0")
    result = from_reconstruction(best, ws, names, masked)
    run.timings["total"] = time.perf_counter() - run.t0
    result.timings = run.timings
    result.options = {
        "matcher": kind if mapper != "turntable" else None,  # the solver matches its own
        "mapper": mapper,
        "mapper_asked": asked,
        # what the frames show: a still background (a turntable) or not (the camera moves)
        "capture": CAPTURES[still],
        "features": (
            "turntable solver (inside the masks)"
            if mapper == "turntable"
            else "inside the masks"
            if feature_masks
            else "whole frame"
        ),
        "camera_mode": "single",
        "camera_model": "SIMPLE_RADIAL",
        "max_image_size": max_image_size,
        "mask_erode_px": mask_erode_px,
        "quality": quality,
        "focal_px": focal_px,
        "seed": seed,
        "plate": plate,
        "plate_changes": plate_info,
        "plate_by_segment": by_segment,
        "turntable": turntable_notes,
        "ring_circular": ring_note,
        "view_pairs": view_note,
        "turntable_suspects": suspects,
        "turntable_axis_to_verticals_deg": None if axis_off is None else round(axis_off, 2),
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


def _match_views_and_map_again(pycolmap, run, report, ws, names, models, args, one, how):
    """A moving camera's second round (:data:`sfm.VIEW_PAIR_DEG`): the frames whose cameras
    SfM found looking the same way, unmatched in capture order, are matched and the frames
    mapped again; the new models are kept unless they register fewer frames. Returns
    ``(models, recon.json's note or None)``."""
    n = len(names)
    k = most_registered(models)
    if k < 3 or (one and k < RING_CIRCULAR_SHARE * n):  # the even ring will take over
        return models, None
    best = max(models.values(), key=lambda r: r.num_reg_images())
    kind, threads, quality = how
    pairs = view_pairs(best, matched_pairs(kind, names))
    if not pairs:
        return models, None
    with run.timed("view pairs"):
        match(pycolmap, run, report, ws, "views", threads, quality, pairs)
        again = map_frames(*args, one_model=one)
    k2 = most_registered(again)
    note = (
        f"{len(pairs)} more pairs of frames looking the same way matched, then mapped again: "
        f"{k2} of {n} frames registered (before: {k})"
    )
    log.info(note)
    return (again, note) if k2 >= k else (models, note + "; the first mapping kept")


def even_ring(options: dict | None) -> bool:
    """Whether a result (its ``options``) is a moving camera solved as an even ring."""
    opts = options or {}
    return bool(opts.get("ring_circular")) and opts.get("mapper") == "turntable"


def _circular_ring(pycolmap, run, checked, ws, names, focal_px, registered):
    """A ring that incremental SfM could not register (a close-up garment filling the frame
    before a plain room gives it too little to match): the camera went round the garment, so
    its cameras are a circular motion, which the turntable solver finds from the masks'
    outlines and the garment's tracks, with the room left out (``still=False``). Returns
    :func:`turntable_model`'s tuple, or a note (str) saying why it was not used."""
    try:
        with run.timed("circular"):
            return turntable_model(pycolmap, ws, names, focal_px, checked, still=False)
    except (InputError, ReconstructionError) as exc:  # no focal length known, or no solve
        return f"incremental SfM registered {registered} of {len(names)} frames; {exc}"


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


@settles
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
    features: str = "auto",
):
    """Everything ``segcore reconstruct`` does: SfM, visual hull, ``transforms.json``,
    ``recon.json``. Returns ``(ReconResult, Mesh or None)``; the CLI, the Blender operator
    and its batch script all call this.
    """
    if not VOXELS[0] <= int(voxels) <= VOXELS[1]:
        raise InputError(
            f"voxels {voxels}: use {VOXELS[0]} to {VOXELS[1]} ({DEFAULT_VOXELS} is a good start)"
        )
    ws = Path(workspace)
    report = progress or (lambda stage, done, total: None)

    def solve(mapper, because=None):
        return reconstruct(
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
            features=features,
            circular_because=because,
        )

    try:
        result = solve(mapper)
    except ReconstructionError as exc:
        if exc.result is not None:
            exc.result.verdict = result_verdict(exc.result, failure=str(exc).split(";")[0])
            write_result_json(exc.result, ws / "recon.json")
        raise
    carved = _carve_and_judge(result, ws, hull, voxels, report, should_stop)
    opts = result.options or {}
    if (
        result.verdict["status"] == "failed"
        and opts.get("mapper_asked") == "auto"
        and opts.get("capture") == CAPTURES[False]
        and not opts.get("ring_circular")
        and result.masks_dir is not None
    ):
        # SfM registered the ring but its cameras contradict the masks (a close-up garment
        # before plain walls): solved again as an even ring, which replaces it
        because = (
            f"incremental SfM's cameras failed the verdict ({result.verdict['reasons'][0]}): "
            "solved as an even ring (circular motion) from the masks' outlines and tracks"
        )
        try:
            second = solve("turntable", because)
        except (ReconstructionError, InputError) as exc:
            log.info("no circular solve of the ring: %s", exc)
        else:  # the time the first solve took counts
            for k, v in result.timings.items():
                second.timings[k] = second.timings.get(k, 0.0) + v
            result, carved = second, _carve_and_judge(second, ws, hull, voxels, report, should_stop)
    mesh, extra = carved
    write_transforms(result, ws)
    write_result_json(result, ws / "recon.json", extra)
    return result, mesh


def _carve_and_judge(result, ws: Path, hull: bool, voxels: int, report, should_stop):
    """The visual hull of ``result`` (``hull.ply``, ``hull_check.png``) and its verdict
    (``result.verdict``): ``(mesh or None, recon.json's extra entries)``."""
    mesh = None
    fit = None
    hull_error = None
    extra: dict = {}
    if hull and result.masks_dir is not None:
        if should_stop is not None and should_stop():
            raise CancelledError("reconstruction cancelled")
        report("hull", 0, 1)
        t = time.perf_counter()
        views = views_from_result(result)  # masks read once: for the hull and its check
        try:
            mesh = hull_from_views(views, points=result.points, voxels=voxels)
        except HullError as exc:  # the cameras are written all the same; the verdict fails
            hull_error = str(exc)
            extra["hull"] = {"error": hull_error}
            for stale in (ws / "hull.ply", ws / HULL_CHECK):  # a rerun's: not this run's mesh
                stale.unlink(missing_ok=True)
        else:
            extra["hull"], fit = _write_hull(ws, mesh, views)
        result.timings["hull"] = time.perf_counter() - t
        report("hull", 1, 1)
    result.verdict = result_verdict(result, fit, hull_error=hull_error)
    return mesh, extra


def _write_hull(ws: Path, mesh, views) -> tuple[dict, dict]:
    """``hull.ply`` and ``hull_check.png`` in ``ws``: (recon.json's ``hull`` entry, the mesh
    fit per registered frame, the verdict's)."""
    write_ply(ws / "hull.ply", mesh)
    info = {k: mesh.info[k] for k in ("vertices", "faces", "voxel_size", "views")}
    info["masks"] = HULL_MASKS if (ws / HULL_MASKS).is_dir() else "masks"
    # a picture of how the hull fits the masks (a person looks before trusting the mesh)
    sheet, ious = silhouette_check(mesh, views)
    write_png(ws / HULL_CHECK, sheet)
    info["check"] = mesh.info["check"] = {
        "image": HULL_CHECK,
        "mean_iou": round(float(np.mean(list(ious.values()))), 4),
        "iou": ious,
    }
    info["fit"] = fit = silhouette_fit(mesh, views)  # every registered frame
    return info, fit


def result_verdict(
    result: ReconResult,
    fit: dict | None = None,
    failure: str | None = None,
    hull_error: str | None = None,
):
    """The verdict of ``result`` (:func:`segcore.recon.verdict.judge`): ``fit``, the mesh
    fit per frame; the steps judged on a still background (a turntable); ``hull_error``,
    why no mesh could be carved."""
    order = {n: i for i, n in enumerate(result.frames)}
    poses = sorted(result.poses, key=lambda p: order.get(p.name, 0))
    gaps = [order.get(b.name, 0) - order.get(a.name, 0) for a, b in zip(poses, poses[1:])]
    opts = result.options or {}
    return judge(
        len(result.frames),
        len(result.poses),
        result.mean_reprojection_error,
        fit,
        turntable=opts.get("capture") == "turntable",
        steps=rotation_steps([p.R for p in poses], gaps),
        suspects=list(opts.get("turntable_suspects") or []),
        axis_off=opts.get("turntable_axis_to_verticals_deg"),
        failure=failure,
        hull_error=hull_error,
        circular_ring=even_ring(opts),
    )
