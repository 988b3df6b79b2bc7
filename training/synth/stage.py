"""Backgrounds (studio sweeps, textured rooms, clutter, photo walls), turntable and lights.

Nothing built here is subject: all of it renders as holdout in the mask pass.
"""

from __future__ import annotations

import math

import bpy
import numpy as np
from mathutils import Vector

from . import materials, room_materials
from .geometry import MeshData, ring_grid
from .scene import mesh_object


def _box(name, size, loc, mat, rot_z=0.0, parent=None):
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=loc, rotation=(0, 0, rot_z))
    ob = bpy.context.object
    ob.name = name
    ob.scale = size
    ob.data.materials.append(mat)
    if parent is not None:
        ob.parent = parent
    return ob


def _plane(name, w, h, loc, rot, mat):
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=loc, rotation=rot)
    ob = bpy.context.object
    ob.name = name
    ob.scale = (w, h, 1)
    ob.data.materials.append(mat)
    return ob


def cyclorama(radius: float, colour, rng, reflective: bool):
    """Seamless studio sweep all around the subject: floor, cove, wall."""
    cove = min(0.8, radius * 0.3)
    prof = (
        [(0.02, 0.0)]
        + [
            (radius - cove + cove * math.sin(a), cove - cove * math.cos(a))
            for a in np.linspace(0, math.pi / 2, 8)
        ]
        + [(radius, 6.0)]
    )
    prof = np.array(prof)
    cen = np.stack([np.zeros(len(prof)), np.zeros(len(prof)), prof[:, 1]], 1)
    g, _ = ring_grid(cen, prof[:, 0], prof[:, 0], 96)
    ob = mesh_object("sweep", MeshData().add_grid(g, cap_start=True, flip=True))
    mat = materials.solid("paper", colour, 0.9, noise=0.12, scale=0.6)
    if reflective:
        mat.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = float(
            rng.uniform(0.03, 0.15)
        )
        mat.node_tree.nodes["Principled BSDF"].inputs["Coat Weight"].default_value = 1.0
    ob.data.materials.append(mat)
    return [ob]


def room(radius: float, bg: dict, rng):
    """Floor + four walls at ``radius``; photo walls for the ``photo`` kind."""
    obs = []
    half = radius
    fl = room_materials.floor("floor", bg["floor_colour"], rng, bg.get("reflective_floor", False))
    obs.append(_plane("floor", 2 * half, 2 * half, (0, 0, 0), (0, 0, 0), fl))
    paths = materials.photo_paths()
    wall_mat = room_materials.wall("wall", bg["colour"], rng)
    for i in range(4):
        a = i * math.pi / 2
        pos = (half * math.sin(a), half * math.cos(a), 3.0)
        ob = _plane(f"wall{i}", 2 * half, 6.0, pos, (math.pi / 2, 0, -a), wall_mat)
        obs.append(ob)
        if bg["kind"] == "photo" and paths:
            p = paths[int(rng.integers(len(paths)))]
            img = bpy.data.images.load(p, check_existing=True)
            ar = img.size[1] / max(1, img.size[0])
            w = float(rng.uniform(1.2, 2.0)) * half
            h = min(w * ar, 5.5)
            w = h / ar
            inward = Vector((-math.sin(a), -math.cos(a), 0)) * 0.02
            ph = _plane(
                f"photo{i}",
                w,
                h,
                tuple(Vector(pos[:2] + (max(h / 2, 0.6 + h / 2 - 0.6),)) + inward),
                (math.pi / 2, 0, -a),
                room_materials.photo(f"photo{i}", p),
            )
            ph.location.z = max(h / 2, float(rng.uniform(0.9, 1.6)))
            obs.append(ph)
    return obs


def _prop(i: int, kind: str, x: float, y: float, rz: float, mat, rng) -> list:
    """One clutter object of ``kind`` standing on the floor at (x, y), turned by ``rz``."""
    obs = []
    if kind == "cabinet":
        sz = rng.uniform([0.4, 0.3, 0.5], [1.5, 0.6, 2.0])
        obs.append(_box(f"cab{i}", tuple(sz), (x, y, sz[2] / 2), mat, rz))
    elif kind == "table":
        sz = rng.uniform([0.6, 0.5, 0.6], [1.6, 1.0, 0.95])
        obs.append(_box(f"top{i}", (sz[0], sz[1], 0.04), (x, y, sz[2]), mat, rz))
        for dx in (-1, 1):
            for dy in (-1, 1):
                c, s = math.cos(rz), math.sin(rz)
                lx, ly = dx * (sz[0] / 2 - 0.04), dy * (sz[1] / 2 - 0.04)
                obs.append(
                    _box(
                        f"leg{i}",
                        (0.04, 0.04, sz[2]),
                        (x + c * lx - s * ly, y + s * lx + c * ly, sz[2] / 2),
                        mat,
                        rz,
                    )
                )
    elif kind == "shelf":
        w, h = rng.uniform(0.6, 1.5), rng.uniform(1.2, 2.2)
        for k in range(4):
            obs.append(_box(f"shelf{i}_{k}", (w, 0.35, 0.03), (x, y, 0.1 + k * h / 4), mat, rz))
            for b in range(int(rng.integers(0, 6))):
                bm = materials.solid(f"book{i}{k}{b}", list(rng.uniform(0.05, 0.9, 3)), 0.6)
                bh = rng.uniform(0.15, 0.3)
                off = rng.uniform(-w / 2 + 0.05, w / 2 - 0.05)
                obs.append(
                    _box(
                        f"book{i}",
                        (0.04, 0.22, bh),
                        (
                            x + off * math.cos(rz),
                            y + off * math.sin(rz),
                            0.12 + k * h / 4 + bh / 2,
                        ),
                        bm,
                        rz,
                    )
                )
    elif kind in ("bin", "lamp"):
        h = rng.uniform(0.3, 0.7) if kind == "bin" else rng.uniform(1.2, 1.8)
        bpy.ops.mesh.primitive_cylinder_add(
            radius=rng.uniform(0.12, 0.3) if kind == "bin" else 0.02,
            depth=h,
            location=(x, y, h / 2),
        )
        bpy.context.object.data.materials.append(mat)
        obs.append(bpy.context.object)
        if kind == "lamp":
            bpy.ops.mesh.primitive_cone_add(
                radius1=0.22, radius2=0.12, depth=0.25, location=(x, y, h)
            )
            bpy.context.object.data.materials.append(
                materials.solid(f"shade{i}", [0.9, 0.85, 0.7], 0.8)
            )
            obs.append(bpy.context.object)
    elif kind == "ball":
        rad = rng.uniform(0.1, 0.35)
        bpy.ops.mesh.primitive_uv_sphere_add(radius=rad, location=(x, y, rad))
        bpy.context.object.data.materials.append(mat)
        obs.append(bpy.context.object)
    else:  # a bare torso form: a hard negative
        bpy.ops.mesh.primitive_uv_sphere_add(radius=0.17, location=(x, y, 1.2))
        ob = bpy.context.object
        ob.scale = (1, 0.7, 1.8)
        ob.data.materials.append(mat)
        bpy.ops.mesh.primitive_cylinder_add(radius=0.012, depth=0.9, location=(x, y, 0.45))
        bpy.context.object.data.materials.append(mat)
        obs += [ob, bpy.context.object]
    return obs


def clutter(inner: float, outer: float, rng, count: int):
    """Furniture-like primitives (cabinets, tables, shelves, bins, lamps, balls) in a ring."""
    obs = []
    for i in range(count):
        a = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(inner, outer)
        x, y = r * math.cos(a), r * math.sin(a)
        col = list(rng.uniform(0.05, 0.9, 3))
        mat = materials.solid(
            f"clutter{i}",
            col,
            float(rng.uniform(0.2, 0.9)),
            metallic=float(rng.uniform() < 0.15),
            noise=float(rng.uniform(0, 0.3)),
        )
        kind = rng.choice(["cabinet", "table", "shelf", "bin", "ball", "lamp", "form"])
        rz = float(rng.uniform(0, math.pi))
        obs += _prop(i, str(kind), x, y, rz, mat, rng)
    for ob in obs:
        ob.data.polygons.foreach_set("use_smooth", [True] * len(ob.data.polygons))
    return obs


def turntable(root, rng):
    """A platter under the subject (background), rotating with it."""
    bpy.ops.mesh.primitive_cylinder_add(
        radius=float(rng.uniform(0.35, 0.55)), depth=0.04, location=(0, 0, -0.02), vertices=64
    )
    ob = bpy.context.object
    ob.name = "turntable"
    ob.data.materials.append(materials.solid("platter", list(rng.uniform(0.02, 0.8, 3)), 0.4))
    ob.parent = root
    return ob


def behind(props: list[dict], azimuth: float, max_r: float) -> list:
    """Clutter on the line from the camera through the stand's axis, beyond it.

    ``props`` come from ``spec.focus_spec(..., "behind")`` (kind, distance beyond the axis,
    sideways offset, colour, seed); ``azimuth`` is the camera's, seen from the axis. A prop
    there shows next to the pole and the base in every frame of a turntable, the case the
    model confused with the stand on the benchmark (a ball behind the pole of ``seq_00023``).
    """
    obs = []
    back = azimuth + math.pi
    for j, p in enumerate(props):
        rng = np.random.default_rng(int(p["seed"]))
        r = min(float(p["distance"]), max_r)
        x = r * math.cos(back) - p["offset"] * math.sin(back)
        y = r * math.sin(back) + p["offset"] * math.cos(back)
        mat = materials.solid(
            f"behind{j}", p["colour"], float(p["roughness"]), metallic=float(p["metallic"])
        )
        obs += _prop(100 + j, p["kind"], x, y, float(rng.uniform(0, math.pi)), mat, rng)
    for ob in obs:
        ob.data.polygons.foreach_set("use_smooth", [True] * len(ob.data.polygons))
    return obs


def build_background(bg: dict, cam_dist: float, rng, cam_azimuth: float = 0.0) -> list:
    """All background objects for ``bg`` with cameras ``cam_dist`` from the subject
    (``cam_azimuth``: the turntable camera's direction, for ``bg["behind"]`` props)."""
    if bg["kind"] == "sweep":
        return cyclorama(
            cam_dist + rng.uniform(1.0, 3.0), bg["colour"], rng, bg["reflective_floor"]
        )
    radius = cam_dist + rng.uniform(1.2, 3.5)
    obs = room(radius, bg, rng)
    n = int(rng.integers(6, 16)) if bg["kind"] == "clutter" else int(rng.integers(0, 4))
    obs += clutter(cam_dist + 0.4, radius - 0.3, rng, n)
    if bg.get("behind"):
        obs += behind(bg["behind"], cam_azimuth, radius - 0.4)
    return obs


def _look_at(ob, target):
    d = Vector(target) - ob.location
    ob.rotation_euler = d.to_track_quat("-Z", "Y").to_euler()


def build_lights(light: dict, cam_az: float, target, rng, ring: bool = False) -> list:
    """Area-light softboxes (or one hard light) around the subject, colour-temperature tinted."""
    setup = light["setup"]
    base = room_materials.kelvin_rgb(light["kelvin"])
    rigs = {
        "softbox3": [(0.7, 0.6, 1.0, 1.0), (-0.9, 0.3, 0.45, 1.2), (2.8, 0.8, 0.6, 0.8)],
        "softbox2": [(0.8, 0.5, 1.0, 1.2), (-0.8, 0.4, 0.6, 1.2)],
        "window": [(1.4, 0.15, 1.0, 2.5)],
        "hard": [(rng.uniform(0.5, 1.3) * rng.choice([-1, 1]), rng.uniform(0.3, 0.8), 1.0, 0.05)],
        "even": [(a, 0.5, 0.7, 1.0) for a in np.linspace(0, 2 * np.pi, 4, endpoint=False)],
    }[setup]
    if ring and setup in ("softbox3", "softbox2", "window"):
        # cameras go all the way round: a studio lights the back too
        rigs = rigs + [(a + np.pi, el, p * 0.6, s) for a, el, p, s in rigs[:2]]
    obs = []
    for i, (az, el, power, size) in enumerate(rigs):
        az = cam_az + az + rng.normal(0, 0.25)
        el = el + rng.normal(0, 0.1)
        d = rng.uniform(1.8, 3.5)
        data = bpy.data.lights.new(f"light{i}", "AREA")
        data.shape = "RECTANGLE"
        data.size, data.size_y = size * rng.uniform(0.7, 1.3), size * rng.uniform(0.7, 1.5)
        data.energy = float(power * 90 * d * d * (1.0 if size > 0.2 else 1.6))
        k = room_materials.kelvin_rgb(
            light["kelvin"] + (rng.uniform(-1500, 1500) if light["mixed"] else 0)
        )
        data.color = k if light["mixed"] else base
        ob = bpy.data.objects.new(f"light{i}", data)
        bpy.context.scene.collection.objects.link(ob)
        ob.location = (
            target[0] + d * math.cos(el) * math.sin(az),
            target[1] - d * math.cos(el) * math.cos(az),
            target[2] + d * math.sin(el),
        )
        _look_at(ob, target)
        obs.append(ob)
    tint = np.array(base) * 0.5 + 0.5
    bpy.context.scene.world = room_materials.world(
        tuple(tint * 0.8), light["ambient"] * (0.3 if setup == "hard" else 1)
    )
    return obs
