"""Render ``tests/data/recon_turntable``: a small textured turntable capture for the SfM tests
(and, with ``--ring``, ``tests/data/recon_ring``: the camera moving round the still subject).

    .venv/bin/python tests/data/make_recon_turntable.py [--frames 16] [--size 400x300]
    .venv/bin/python tests/data/make_recon_turntable.py --ring --frames 12 --sweep 0.3 \
        --out tests/data/recon_ring

A dress-form-like subject (a printed cylinder body, a head, a base) turns on a turntable in
front of a still, textured room (brick wall, gravel floor), seen by one fixed camera:
the case where unmasked structure from motion locks onto the background. Cycles on the
CPU, a few seconds a frame. Writes ``images/NNNN.jpg`` (the lens's focal length in EXIF),
``masks/NNNN.png`` (255 = subject) and ``cameras.json`` in ``training/synth/cameras.py``'s
format (poses relative to the turning subject, OpenCV axes). The textures are
scikit-image's bundled photographs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LENS_MM = 24.0  # wide: the subject fills the frame, so the views have parallax
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))


def _image_material(name: str, path: str, scale=(1.0, 1.0, 1.0), emission: float = 0.0):
    import bpy

    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(path, check_existing=True)
    coords = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    mapping.inputs["Scale"].default_value = scale
    links.new(coords.outputs["UV"], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.9
    return mat


def build_scene(width: int, height: int):
    import bpy

    from training.synth.materials import photo_paths

    photos = {Path(p).stem: p for p in photo_paths()}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 12
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("world")
    scene.world = world
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6

    root = bpy.data.objects.new("root", None)
    scene.collection.objects.link(root)
    body_mat = _image_material("body", photos["astronaut"])
    head_mat = _image_material("head", photos["coffee"])
    base_mat = _image_material("base", photos["chelsea"])
    bpy.ops.mesh.primitive_cylinder_add(radius=0.3, depth=0.6, location=(0, 0, 0.65))
    body = bpy.context.object
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.2, location=(0, 0, 1.15))
    head = bpy.context.object
    bpy.ops.mesh.primitive_cylinder_add(radius=0.34, depth=0.08, location=(0, 0, 0.04))
    base = bpy.context.object
    bpy.ops.mesh.primitive_cylinder_add(radius=0.05, depth=0.3, location=(0, 0, 0.2))
    pole = bpy.context.object
    for ob, mat in ((body, body_mat), (head, head_mat), (base, base_mat), (pole, base_mat)):
        ob.data.materials.append(mat)
        ob.parent = root
        bpy.ops.object.select_all(action="DESELECT")
        ob.select_set(True)
        bpy.context.view_layer.objects.active = ob
        bpy.ops.object.shade_smooth()
    subject = [body, head, base, pole]

    wall_mat = _image_material("wall", photos["brick"], (3.0, 3.0, 1.0))
    floor_mat = _image_material("floor", photos["gravel"], (4.0, 4.0, 1.0))
    bpy.ops.mesh.primitive_plane_add(size=8, location=(0, 2.5, 2.0), rotation=(math.pi / 2, 0, 0))
    bpy.context.object.data.materials.append(wall_mat)
    wall = bpy.context.object
    bpy.ops.mesh.primitive_plane_add(size=8, location=(0, 0, -0.001))
    bpy.context.object.data.materials.append(floor_mat)
    floor = bpy.context.object
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 2.0
    sun.rotation_euler = (0.6, 0.2, -0.5)
    scene.collection.objects.link(sun)
    return scene, root, subject, [wall, floor]


def render(out: Path, frames: int, width: int, height: int, sweep: float, ring: bool) -> None:
    import bpy
    from mathutils import Matrix

    from segcore.exif import exif_block, with_exif
    from training.synth import cameras as cm

    scene, root, subject, background = build_scene(width, height)
    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = LENS_MM, 36.0, "HORIZONTAL"
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    target = np.array([0.0, 0.0, 0.65])
    eye = cm.orbit_eye(target, 1.75, 0.0, 0.3)
    m = cm.look_at(eye, target)
    cam.matrix_world = Matrix(m.tolist())
    k = cm.intrinsics(LENS_MM, 36.0, width, height)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="recon-tt-"))
    white = bpy.data.materials.new("white")
    if bpy.app.version < (5, 0, 0):
        white.use_nodes = True
    em = white.node_tree.nodes.new("ShaderNodeEmission")
    em.inputs["Strength"].default_value = 1.0
    white.node_tree.links.new(em.outputs[0], white.node_tree.nodes["Material Output"].inputs[0])
    records = []
    try:
        import cv2

        for i in range(frames):
            angle = 2 * math.pi * sweep * i / frames
            if ring:  # the camera moves round the still subject, facing the wall throughout
                az = angle - math.pi * sweep
                m = cm.look_at(cm.orbit_eye(target, 1.75, az, 0.3), target)
                cam.matrix_world = Matrix(m.tolist())
            else:
                root.rotation_euler = (0.0, 0.0, angle)
            bpy.context.view_layer.update()
            name = f"{i:04d}"
            scene.render.image_settings.file_format = "PNG"
            scene.render.filepath = str(tmp / f"{name}.png")
            bpy.ops.render.render(write_still=True)
            img = cv2.imread(str(tmp / f"{name}.png"))
            ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
            # the lens in EXIF, as a camera writes it: reconstruct reads the focal from there
            exif = exif_block(LENS_MM, 36.0, width, height)
            (out / "images" / f"{name}.jpg").write_bytes(with_exif(jpeg.tobytes(), exif))
            # mask pass: background hidden, subject pure white on black
            for ob in background:
                ob.hide_render = True
            saved = [list(ob.data.materials) for ob in subject]
            for ob in subject:
                ob.data.materials[0] = white
            scene.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
            samples = scene.cycles.samples
            scene.cycles.samples = 4
            scene.render.filepath = str(tmp / f"{name}_m.png")
            bpy.ops.render.render(write_still=True)
            scene.cycles.samples = samples
            scene.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
            for ob, mats in zip(subject, saved):
                ob.data.materials[0] = mats[0]
            for ob in background:
                ob.hide_render = False
            mk = cv2.imread(str(tmp / f"{name}_m.png"), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(
                str(out / "masks" / f"{name}.png"), np.where(mk > 127, 255, 0).astype(np.uint8)
            )
            # the camera relative to the turned subject: world = subject frame
            rz = np.eye(4)
            c, s = math.cos(-angle), math.sin(-angle)
            rz[:2, :2] = [[c, -s], [s, c]]
            r, t = cm.world_to_camera(m if ring else rz @ m)
            records.append(
                {"image": f"{name}.jpg", "K": k.tolist(), "R": r.tolist(), "t": t.tolist()}
            )
            print(f"frame {i + 1}/{frames}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kind = "ring" if ring else "turntable"
    data = {"version": 1, "kind": kind, "width": width, "height": height, "frames": records}
    (out / "cameras.json").write_text(json.dumps(data, indent=1) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / "recon_turntable")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", default="400x300")
    p.add_argument("--sweep", type=float, default=0.6, help="turn, share of a full circle")
    p.add_argument("--ring", action="store_true", help="the camera moves, the subject stands")
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="bpy-user-"))
    render(args.out, args.frames, w, h, args.sweep, args.ring)
    return 0


if __name__ == "__main__":
    sys.exit(main())
