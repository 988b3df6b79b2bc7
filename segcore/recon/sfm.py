"""The structure-from-motion steps on a prepared workspace, each reported to
``progress(stage, done, total)`` and stoppable between (and, through pycolmap's cancellation
token, inside) its calls.

- ``features``: SIFT on the CPU with ``ImageReaderOptions.mask_path`` (no keypoints where the
  mask is 0), one shared camera (``CameraMode.SINGLE``: a fixed-lens sequence).
- ``matching``: exhaustive up to :data:`EXHAUSTIVE_MAX` frames, else sequential (loop
  detection off: it needs a vocabulary tree file).
- ``mapping``: incremental (or global, GLOMAP) mapping; or, on a still background, the
  circular-motion solver (:mod:`segcore.recon.turntable`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .result import RING_PAIRS, SFM_MASKS, VIEW_PAIRS, CancelledError
from .workspace import image_size

log = logging.getLogger(__name__)

EXHAUSTIVE_MAX = 60  # "auto" matcher: exhaustive up to this many frames, sequential beyond
SEQUENTIAL_OVERLAP = 12  # sequential matcher: each frame is matched with this many successors
# ring matcher: each frame with its successors over about this share of the frames (a 24-frame
# ring: 2, 30 degrees; 36 frames: 3), at least RING_MIN; the last frames with the first.
# On a furnished-room ring (24 frames, a striped curtain) whole-frame features matched
# exhaustively register every frame 95 degrees off (the curtain matches frames half a turn
# apart as well as neighbours); ring pairs over 2 / 3 / 4 / 6 neighbours: 0.66 / 0.81 / 1.4 /
# 95 degrees (median relative rotation error)
RING_SHARE = 1 / 12
RING_MIN = 2
# once SfM has registered a moving camera from those pairs, every two frames whose optical
# axes are within this many degrees of each other are matched too and the frames mapped
# again: a ring at two heights is two loops in capture order, which ring pairs join only
# where one loop ends and the next begins (a furnished room, 24 frames at two heights: 0.6-0.7
# deg aligned with ring pairs alone, 0.19-0.22 with each frame matched to the ones above or
# below it as well)
VIEW_PAIR_DEG = 40.0


class Stages:
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


def still_background(
    frames: list[Path], ws: Path, masked: bool, plate: str, plate_info: dict | None
) -> bool | None:
    """Whether the masked frames show a still background (a turntable: the camera stands
    still, the garment turns; :mod:`segcore.plate`); None without masks (not measured)."""
    from ..io import read_image, read_label
    from ..plate import STILL_SHARE, still_plate

    if not masked:
        return None
    if plate_info is not None:  # the plate pass measured it already
        return plate_info["still_share"] >= STILL_SHARE
    if plate == "auto":  # measured, and not still (or too few frames)
        return False
    masks = ws / "masks"
    return (
        still_plate(
            len(frames),
            lambda i: (read_image(frames[i]), read_label(masks / f"{frames[i].name}.png")),
        )
        is not None
    )


def auto_mapper(still: bool | None) -> str:
    """``turntable`` on a still background, else ``incremental`` (also without masks: the
    turntable solver calibrates from the silhouettes)."""
    return "turntable" if still else "incremental"


def reader_options(pycolmap, ws: Path, first: Path, use_masks: bool, focal_px: float | None):
    """One SIMPLE_RADIAL camera; the (eroded) masks if ``use_masks`` (else features over
    the whole frame); a known focal length, if given."""
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    if use_masks:
        sfm_masks = ws / SFM_MASKS
        reader.mask_path = str(sfm_masks if sfm_masks.is_dir() else ws / "masks")
    if focal_px is not None:
        h, w = image_size(first)
        reader.camera_params = f"{float(focal_px)},{w / 2},{h / 2},0"  # COLMAP: f, cx, cy, k
    return reader


def extract_features(pycolmap, run, report, ws, names, reader, max_image_size, threads, quality):
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


def ring_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Each frame with its next ``max(RING_MIN, round(RING_SHARE * n))`` frames in capture
    order, wrapping round from the last frames to the first (a closed ring)."""
    n = len(names)
    k = min(n - 1, max(RING_MIN, round(RING_SHARE * n)))
    seen, out = set(), []
    for i in range(n):
        for j in range(i + 1, i + k + 1):
            pair = tuple(sorted((i, j % n)))
            if pair[0] != pair[1] and pair not in seen:
                seen.add(pair)
                out.append((names[pair[0]], names[pair[1]]))
    return out


def view_pairs(model, matched, max_deg: float = VIEW_PAIR_DEG) -> list[tuple[str, str]]:
    """The pairs of frames ``model`` (a pycolmap reconstruction) registered whose optical
    axes are within ``max_deg`` degrees, in name order, leaving out the ``matched`` ones
    (pairs of names, either order)."""
    import numpy as np

    axes = {}
    for img in model.images.values():
        if img.has_pose:  # x_cam = R X + t: the optical axis is R's third row
            axes[img.name] = np.asarray(img.cam_from_world().matrix())[2, :3]
    done = {tuple(sorted(p)) for p in matched}
    names = sorted(axes)
    if not names:
        return []
    z = np.array([axes[n] for n in names])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    near = z @ z.T >= np.cos(np.radians(max_deg))
    return [
        (names[i], names[j])
        for i, j in zip(*np.nonzero(np.triu(near, 1)))
        if (names[i], names[j]) not in done
    ]


def most_registered(models: dict) -> int:
    """The most frames any of ``models`` (pycolmap reconstructions by index) registered."""
    return max((r.num_reg_images() for r in models.values()), default=0)


def matched_pairs(kind: str, names: list[str]) -> list[tuple[str, str]]:
    """The pairs the ``ring`` or ``sequential`` matcher matched among ``names``."""
    if kind == "ring":
        return ring_pairs(names)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 : i + 1 + SEQUENTIAL_OVERLAP]]


def match(pycolmap, run, report, ws, kind, threads, quality, names=None) -> None:
    """Exhaustive, sequential (loop detection off: it needs a vocabulary tree), ring
    (:func:`ring_pairs` of ``names``, the frames in capture order) or ``views`` matching:
    ``names`` is then the list of pairs (:func:`view_pairs`)."""
    matching = pycolmap.FeatureMatchingOptions()
    matching.use_gpu = False
    matching.num_threads = int(threads)
    matching.guided_matching = quality == "high"
    kw = dict(matching_options=matching, device=pycolmap.Device.cpu, cancellation_token=run.token)
    report("matching", 0, 1)
    if kind == "exhaustive":
        pycolmap.match_exhaustive(ws / "database.db", **kw)
    elif kind in ("ring", "views"):
        from ..io import atomic_write_bytes

        pairs = ring_pairs(names) if kind == "ring" else names
        listed = ws / (RING_PAIRS if kind == "ring" else VIEW_PAIRS)
        atomic_write_bytes(listed, "".join(f"{a} {b}\n" for a, b in pairs).encode())
        options = pycolmap.ImportedPairingOptions()
        options.match_list_path = str(listed)
        pycolmap.match_image_pairs(ws / "database.db", pairing_options=options, **kw)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = SEQUENTIAL_OVERLAP
        pairing.loop_detection = False
        pycolmap.match_sequential(ws / "database.db", pairing_options=pairing, **kw)
    report("matching", 1, 1)


def map_frames(
    pycolmap, run, report, ws, n, mapper, threads, seed, focal_px=None, one_model=False
) -> dict:
    """Incremental (COLMAP) or global (GLOMAP) mapping; the models found, by index.
    ``one_model``: incremental mapping stops after its first model (no further models
    grown from the frames it left out)."""
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
            opts.multiple_models = not one_model
            if seed is not None:
                opts.random_seed = int(seed)

            def mapping():
                registered[0] = 0
                return pycolmap.incremental_mapping(
                    ws / "database.db",
                    ws / "images",
                    tmp,
                    opts,
                    initial_image_pair_callback=on_image,
                    next_image_callback=on_image,
                    cancellation_token=run.token,
                )

            models = mapping()
            # a first model that never grew past its initial pair is a bad start, not a
            # model: on several threads COLMAP's search for the initial pair sometimes finds
            # none and settles for a pair with a few dozen points that no further frame
            # registers against (a 12-frame ring: one run in four on 2 threads, never on
            # one); it is mapped again on one thread
            if one_model and opts.num_threads != 1 and most_registered(models) <= 2:
                log.info("incremental SfM stopped at its initial pair: mapped again on one thread")
                run.check()
                opts.num_threads = 1
                if seed is not None:
                    pycolmap.set_random_seed(int(seed))
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                models = mapping()
            return models
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
