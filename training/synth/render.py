"""Capture rigs (ring, turntable), the colour and mask passes, cameras.json and meta.json.

One sequence = one scene built once; the camera (ring) or the subject root (turntable) moves
between frames. The colour pass renders every frame with Cycles (few samples + OpenImageDenoise
when available), then camera realism is applied in numpy. The mask pass renders the same
cameras with every background object as holdout, transparent film and a flat emission in each
object's class colour (garment red, figure green, support blue): the label map is the class
with the largest coverage in each pixel (0 background, 1 garment, 2 figure, 3 support) and the
mask is garment + figure coverage >= 0.5 (255); the support (stand, pole, base, turntable
platter) is background in the mask. Output files are written atomically; ``meta.json`` is
written last and marks the sequence complete (an interrupted run resumes by skipping complete
ones; a sequence whose colour frames are complete but whose labels are missing gets only the
label pass again, which also rewrites its masks).

Per sequence: ``images/NNNN.jpg`` (the lens's focal length in their EXIF, as a camera writes
it), ``masks/NNNN.png``, ``labels/NNNN.png``, ``cameras.json`` (format in ``cameras.py``),
``meta.json`` (garment, form, stand, fabric, background, difficulty tags,
light setup, seed and the full spec: deterministic from the seed, for held-out splits) and
``render.json`` (timings; not deterministic).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time

import bpy
import cv2
import numpy as np

from segcore.exif import exif_block

from . import cameras as cam_math
from . import postfx, stage
from .scene import build_subject, reset_scene
from .spec import meta_from_spec

log = logging.getLogger(__name__)
SENSOR_MM = 36.0


@contextlib.contextmanager
def quiet(enabled: bool = True):
    """Silence Blender's C-level stdout/stderr (``Fra:`` lines) while rendering."""
    if not enabled:
        yield
        return
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def configure(width: int, height: int, samples: int, threads: int | None, seed: int) -> None:
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.render.resolution_x, sc.render.resolution_y = width, height
    sc.render.resolution_percentage = 100
    sc.render.pixel_aspect_x = sc.render.pixel_aspect_y = 1.0
    if threads:
        sc.render.threads_mode = "FIXED"
        sc.render.threads = threads
    sc.render.use_persistent_data = True
    c = sc.cycles
    c.samples = samples
    c.use_adaptive_sampling = False
    c.seed = seed % (1 << 30)
    c.max_bounces, c.diffuse_bounces, c.glossy_bounces = 3, 1, 1
    c.use_light_tree = False
    c.transmission_bounces, c.volume_bounces, c.transparent_max_bounces = 0, 0, 2
    c.caustics_reflective = c.caustics_refractive = False
    c.sample_clamp_indirect = 4.0
    c.blur_glossy = 1.0
    set_denoise(True)
    sc.render.image_settings.file_format = "PNG"
    sc.render.image_settings.compression = 0


def set_denoise(on: bool) -> bool:
    """OpenImageDenoise (fast settings) if this bpy build has it; False otherwise."""
    c = bpy.context.scene.cycles
    if not on:
        c.use_denoising = False
        return False
    try:
        c.use_denoising = True
        c.denoiser = "OPENIMAGEDENOISE"
        c.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        c.denoising_prefilter = "FAST"
        with contextlib.suppress(AttributeError, TypeError):
            c.denoising_quality = "FAST"
        return True
    except (AttributeError, TypeError) as e:
        log.warning("denoiser unavailable (%s); rendering without it", e)
        c.use_denoising = False
        return False


def _render(path: str, rgba: bool, depth: str, silent: bool) -> np.ndarray:
    sc = bpy.context.scene
    sc.render.image_settings.color_mode = "RGBA" if rgba else "RGB"
    sc.render.image_settings.color_depth = depth
    sc.render.filepath = path
    with quiet(silent):
        bpy.ops.render.render(write_still=True)
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise RuntimeError(f"Blender did not write {path}")
    return img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)


def plan_cameras(spec: dict, bmin, bmax, width: int, height: int, frames: int):
    """Camera distance, target and per-frame (camera matrix, subject angle) for the rig."""
    cam = spec["camera"]
    rng = np.random.default_rng([spec["seed"], spec["index"], 7])
    f = cam["focal_mm"]
    sensor_h = SENSOR_MM * height / width
    tan_v = sensor_h / 2 / f
    tan_h = SENSOR_MM / 2 / f
    size_z = bmax[2] - bmin[2]
    size_xy = max(bmax[0] - bmin[0], bmax[1] - bmin[1])
    # fit the subject's height (and width) into the frame at the requested fill
    dist = (
        max(size_z / (2 * tan_v * cam["fill"]), size_xy / (2 * tan_h * cam["fill"])) + size_xy / 2
    )
    target = np.array([0.0, 0.0, (bmin[2] + bmax[2]) / 2])
    if cam["close"]:
        target[2] = float(rng.uniform(1.0, 1.3))
    dist = max(dist, size_xy * 0.9 + 0.3)
    poses = []
    if spec["capture"] == "ring":
        els = cam["elevations"]
        per = [frames // len(els) + (1 if i < frames % len(els) else 0) for i in range(len(els))]
        for el, n in zip(els, per):
            for i in range(n):
                az = cam["azimuth0"] + 2 * np.pi * i / max(n, 1) + (0.3 if el != els[0] else 0)
                tj = target + rng.normal(0, cam["jitter"], 3)
                eye = cam_math.orbit_eye(target, dist * rng.uniform(0.97, 1.03), az, el)
                poses.append((cam_math.look_at(eye, tj), 0.0))
    else:
        eye = cam_math.orbit_eye(target, dist, cam["azimuth0"] * 0.2 - 0.1, cam["elevations"][0])
        m = cam_math.look_at(eye, target + rng.normal(0, cam["jitter"], 3))
        for i in range(frames):
            poses.append((m, -2 * np.pi * cam["sweep"] * i / frames))
    return dist, target, poses


CLASSES = ("background", "garment", "figure", "support")
LABEL_COLOURS = {1: (1.0, 0.0, 0.0, 1.0), 2: (0.0, 1.0, 0.0, 1.0), 3: (0.0, 0.0, 1.0, 1.0)}
"""Object colour per class in the label pass (RGBA, scene linear)."""


def sequence_complete(seq_dir: str, frames: int, passes=("images", "masks", "labels")) -> bool:
    if not os.path.exists(os.path.join(seq_dir, "meta.json")):
        return False
    for i in range(frames):
        for sub in passes:
            ext = "jpg" if sub == "images" else "png"
            if not os.path.exists(os.path.join(seq_dir, sub, f"{i:04d}.{ext}")):
                return False
    return os.path.exists(os.path.join(seq_dir, "cameras.json"))


def object_classes(subject, support=()) -> dict[str, int]:
    """Object name -> class: garment parts 1, the form or figure 2, its stand and ``support``
    (the turntable platter) 3."""
    classes = {ob.name: 2 for ob in subject.objects}
    classes.update({ob.name: 1 for ob in subject.garment_objects})
    classes.update({ob.name: 3 for ob in subject.objects if ob.name.startswith("stand")})
    classes.update({ob.name: 3 for ob in support})
    return classes


def labels_from_render(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label map, mask) from the label pass read by ``_render`` (BGRA, straight alpha, sRGB).

    Each class's coverage is its linear colour times alpha; the label is the class with the
    largest coverage (background = 1 - alpha), the mask is garment + figure coverage >= 0.5.
    """
    from .spec import srgb_to_linear

    alpha = rgba[..., 3]
    lin = srgb_to_linear(rgba[..., :3]).astype(np.float32)
    cover = np.stack(
        [1.0 - alpha, lin[..., 2] * alpha, lin[..., 1] * alpha, lin[..., 0] * alpha], axis=-1
    )
    labels = np.argmax(cover, axis=-1).astype(np.uint8)
    mask = np.where(cover[..., 1] + cover[..., 2] >= 0.5, 255, 0).astype(np.uint8)
    return labels, mask


def _set_pose(cam_ob, root, matrix, angle):
    from mathutils import Matrix

    cam_ob.matrix_world = Matrix(matrix.tolist())
    root.rotation_euler = (0.0, 0.0, angle)
    bpy.context.view_layer.update()


def render_sequence(
    spec: dict,
    out_root: str,
    width: int,
    height: int,
    frames: int,
    samples: int = 5,
    threads: int | None = None,
    mask_samples: int = 8,
    silent: bool = True,
    on_frame=None,
) -> dict:
    """Render one sequence into ``out_root/<name>``; returns timing stats (or ``skipped``).

    A sequence whose colour frames are complete but whose label maps are missing (rendered
    before label maps existed) gets the label pass only (``labels_only`` in the stats).
    """
    seq_dir = os.path.join(out_root, spec["name"])
    if sequence_complete(seq_dir, frames):
        return {"skipped": True, "frames": 0}
    labels_only = sequence_complete(seq_dir, frames, ("images",))
    t0 = time.time()
    for sub in ("images", "masks", "labels"):
        os.makedirs(os.path.join(seq_dir, sub), exist_ok=True)
    with quiet(silent):
        reset_scene()
    configure(width, height, samples, threads, spec["geometry_seed"])
    rng = np.random.default_rng([spec["seed"], spec["index"], 3])
    subject = build_subject(spec)
    bmin, bmax = subject.bbox()
    points = subject.surface_points(rng, 48)
    dist, target, poses = plan_cameras(spec, bmin, bmax, width, height, frames)
    eye = np.asarray(poses[0][0])[:3, 3]
    background = stage.build_background(
        spec["background"], dist, rng, math.atan2(float(eye[1]), float(eye[0]))
    )
    support = []
    if spec["form"]["turntable"]:
        platter = stage.turntable(subject.root, rng)
        for ob in background:  # the platter (top at z = 0) stands on the floor
            ob.location.z -= platter.dimensions.z
        background.append(platter)
        support.append(platter)
    az_cam = spec["camera"]["azimuth0"] * (0.2 if spec["capture"] == "turntable" else 1.0)
    stage.build_lights(spec["light"], az_cam, target, rng, ring=spec["capture"] == "ring")
    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = spec["camera"]["focal_mm"]
    cam_data.sensor_width = SENSOR_MM
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.clip_start, cam_data.clip_end = 0.05, 200.0
    cam_ob = bpy.data.objects.new("camera", cam_data)
    bpy.context.scene.collection.objects.link(cam_ob)
    sc = bpy.context.scene
    sc.camera = cam_ob
    sc.view_settings.view_transform = "AgX" if rng.uniform() < 0.6 else "Standard"
    k = cam_math.intrinsics(cam_data.lens, SENSOR_MM, width, height)
    build_s = time.time() - t0

    tmp = tempfile.mkdtemp(prefix="synth_")
    try:
        frames_json, times = [], []
        if not labels_only:
            # exposure: meter frame 0 at low resolution like a camera's auto exposure, then lock it
            _set_pose(cam_ob, subject.root, *poses[0])
            sc.render.resolution_percentage = 25
            sc.cycles.samples = 4
            tags = spec["difficulty"]
            target_lum = (
                0.2
                if "black_on_black" in tags
                else 0.62
                if "white_on_white" in tags
                else spec["post"]["target"]
            )
            ev = 0.0
            for _ in range(3):
                sc.view_settings.exposure = ev
                probe = _render(os.path.join(tmp, "probe.png"), False, "16", silent)
                lum = max(float(np.mean(probe)), 1e-3)
                high = float(np.percentile(probe.max(axis=2), 99.0))
                step = 2.2 * math.log2(target_lum / lum)
                step = (
                    min(step, -1.2)
                    if high > 0.97
                    else min(step, 2.2 * math.log2(0.97 / max(high, 1e-3)))
                )
                ev = float(np.clip(ev + step, -5, 4))
                if abs(step) < 0.3:
                    break
            sc.view_settings.exposure = ev + spec["post"]["exposure"] * 0.3
            sc.render.resolution_percentage = 100
            sc.cycles.samples = samples

            post_rng = np.random.default_rng([spec["seed"], spec["index"], 11])
            # the focal length in the frames' EXIF, as a camera writes it (segcore reads it)
            exif = exif_block(cam_data.lens, SENSOR_MM, width, height)
            for i, (m, angle) in enumerate(poses):
                t = time.time()
                _set_pose(cam_ob, subject.root, m, angle)
                img = _render(os.path.join(tmp, "c.png"), False, "16", silent)
                out = postfx.camera_realism(img, spec["post"], post_rng)
                postfx.write_image(
                    os.path.join(seq_dir, "images", f"{i:04d}.jpg"),
                    out,
                    spec["post"]["jpeg"],
                    exif=exif,
                )
                rel = np.array(subject.root.matrix_world.inverted() @ cam_ob.matrix_world)
                r, tt = cam_math.world_to_camera(rel)
                frames_json.append(
                    {"image": f"{i:04d}.jpg", "K": k.tolist(), "R": r.tolist(), "t": tt.tolist()}
                )
                times.append(time.time() - t)
                if on_frame:
                    on_frame("colour", i, times[-1])
        # label pass: the subject and its support in their class colours, the rest holdout
        classes = object_classes(subject, support)
        for ob in sc.objects:
            if ob.type == "MESH":
                ob.is_holdout = ob.name not in classes
                if ob.name in classes:
                    ob.color = LABEL_COLOURS[classes[ob.name]]
            elif ob.type == "LIGHT":
                ob.visible_camera = False  # a softbox in view is background, never alpha
        from .materials import mask_override

        bpy.context.view_layer.material_override = mask_override()
        sc.render.film_transparent = True
        set_denoise(False)
        sc.cycles.samples = mask_samples
        sc.cycles.max_bounces = 0
        sc.view_settings.view_transform = "Standard"  # class colours leave the render as set
        sc.view_settings.look = "None"
        sc.view_settings.exposure = 0.0
        sc.view_settings.gamma = 1.0
        mtimes = []
        for i, (m, angle) in enumerate(poses):
            t = time.time()
            _set_pose(cam_ob, subject.root, m, angle)
            rendered = _render(os.path.join(tmp, "m.png"), True, "16", silent)
            labels, mask = labels_from_render(rendered)
            postfx.write_image(os.path.join(seq_dir, "labels", f"{i:04d}.png"), labels)
            postfx.write_image(os.path.join(seq_dir, "masks", f"{i:04d}.png"), mask)
            mtimes.append(time.time() - t)
            if on_frame:
                on_frame("mask", i, mtimes[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cameras = {
        "version": 1,
        "kind": spec["capture"],
        "width": width,
        "height": height,
        "frames": frames_json,
        "subject": {
            "bbox_min": [float(x) for x in bmin],
            "bbox_max": [float(x) for x in bmax],
            "points": np.round(points, 6).tolist(),
        },
    }
    if labels_only:  # the colour frames, cameras.json and meta.json stay as they were
        return {
            "labels_only": True,
            "mask_s": [round(x, 2) for x in mtimes],
            "colour_s": [],
            "total_s": round(time.time() - t0, 2),
        }
    postfx.write_json(os.path.join(seq_dir, "cameras.json"), cameras)
    stats = {
        "build_s": round(build_s, 2),
        "colour_s": [round(x, 2) for x in times],
        "mask_s": [round(x, 2) for x in mtimes],
        "total_s": round(time.time() - t0, 2),
        "width": width,
        "height": height,
        "samples": samples,
    }
    postfx.write_json(os.path.join(seq_dir, "render.json"), stats)  # timings (not deterministic)
    postfx.write_json(
        os.path.join(seq_dir, "meta.json"), meta_from_spec(spec, subject.garment_tags)
    )
    return stats
