"""Subject builders in bpy: garment + the form/figure wearing it + its stand, under one root.

Foreground rule: the *subject* (mask 255) is the garment, the dress form / mannequin / figure
wearing it, and that form's stand (pole and base). Everything else — floor, walls, backdrop,
turntable platter, clutter, lights — is background (mask 0).

All subject objects are parented to ``Subject.root`` (an empty at the origin, the subject's base
centre, z up, front towards -y). A turntable capture rotates the root about z.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bmesh
import bpy
import numpy as np

from . import garments as garments_mod
from . import materials
from .body import BodyShape, body_mesh, stand_mesh
from .geometry import MeshData


def reset_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for block in (bpy.data.meshes, bpy.data.materials, bpy.data.images, bpy.data.textures):
        for item in list(block):
            block.remove(item)


def mesh_object(name: str, md: MeshData, parent=None, recalc: bool = False, smooth: bool = True):
    verts = md.array()
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts.tolist(), [], md.faces)
    me.validate(clean_customdata=False)
    if recalc:
        bm = bmesh.new()
        bm.from_mesh(me)
        bmesh.ops.recalc_face_normals(bm, faces=bm.faces)
        bm.to_mesh(me)
        bm.free()
    me.polygons.foreach_set("use_smooth", [smooth] * len(me.polygons))
    _set_uvs(me, md.uv_array())
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    if parent is not None:
        ob.parent = parent
    return ob


def _set_uvs(me, uvp: np.ndarray) -> None:
    """Per-loop UVs from per-vertex (u, v, period), unwrapping faces that straddle the seam."""
    if len(uvp) != len(me.vertices):
        return
    nl = len(me.loops)
    vidx = np.zeros(nl, np.int64)
    me.loops.foreach_get("vertex_index", vidx)
    starts = np.zeros(len(me.polygons), np.int64)
    totals = np.zeros(len(me.polygons), np.int64)
    me.polygons.foreach_get("loop_start", starts)
    me.polygons.foreach_get("loop_total", totals)
    u, v, per = uvp[vidx, 0].copy(), uvp[vidx, 1], uvp[vidx, 2]
    poly = np.repeat(np.arange(len(starts)), totals)
    umax = np.full(len(starts), -np.inf)
    umin = np.full(len(starts), np.inf)
    np.maximum.at(umax, poly, u)
    np.minimum.at(umin, poly, u)
    p = np.maximum(per, 1e-9)
    fix = ((umax - umin)[poly] > 0.5 * p) & (per > 0) & (u < (umax + umin)[poly] / 2)
    u[fix] += per[fix]
    layer = me.uv_layers.new(name="UVMap")
    layer.data.foreach_set("uv", np.stack([u, v], 1).ravel().astype(np.float32))


def add_cloth_modifiers(ob, thickness: float, displace: float, rng, subdiv: int = 1) -> None:
    if displace > 0:
        tex = bpy.data.textures.new(ob.name + "_folds", "CLOUDS")
        tex.noise_scale = float(rng.uniform(0.06, 0.16))
        tex.noise_depth = 1
        d = ob.modifiers.new("folds", "DISPLACE")
        d.texture = tex
        d.texture_coords = "LOCAL"
        d.strength = float(rng.uniform(0.004, 0.012)) * displace
        d.mid_level = 0.25  # mostly outward, so the body never pokes through
    if thickness > 0:
        s = ob.modifiers.new("thickness", "SOLIDIFY")
        s.thickness = thickness
        s.offset = -1.0
        s.use_even_offset = False
        s.use_rim = True
    if subdiv:
        s = ob.modifiers.new("smooth", "SUBSURF")
        s.levels = s.render_levels = subdiv


@dataclass
class Subject:
    root: object
    objects: list = field(default_factory=list)  # every subject object (mask = 255)
    garment_objects: list = field(default_factory=list)
    garment_tags: list = field(default_factory=list)
    background: list = field(default_factory=list)  # subject-parented background (platter)

    def surface_points(self, rng: np.random.Generator, count: int = 48) -> np.ndarray:
        """Random vertices of the evaluated garment meshes, in the subject frame."""
        dg = bpy.context.evaluated_depsgraph_get()
        inv = np.array(self.root.matrix_world.inverted())
        pts = []
        for ob in self.garment_objects:
            ev = ob.evaluated_get(dg)
            me = ev.to_mesh()
            co = np.zeros(len(me.vertices) * 3)
            me.vertices.foreach_get("co", co)
            ev.to_mesh_clear()
            co = co.reshape(-1, 3)
            m = inv @ np.array(ob.matrix_world)
            pts.append(co @ m[:3, :3].T + m[:3, 3])
        allp = np.concatenate(pts)
        idx = rng.choice(len(allp), size=min(count, len(allp)), replace=False)
        return allp[np.sort(idx)]

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        dg = bpy.context.evaluated_depsgraph_get()
        inv = np.array(self.root.matrix_world.inverted())
        corners = []
        for ob in self.objects:
            ev = ob.evaluated_get(dg)
            m = inv @ np.array(ob.matrix_world)
            c = np.array([list(v) for v in ev.bound_box])
            corners.append(c @ m[:3, :3].T + m[:3, 3])
        c = np.concatenate(corners)
        return c.min(axis=0), c.max(axis=0)


def build_subject(spec: dict) -> Subject:
    """Build the garment on its form/figure and stand, as described by ``spec``."""
    rng = np.random.default_rng(spec["geometry_seed"])
    root = bpy.data.objects.new("subject_root", None)
    bpy.context.scene.collection.objects.link(root)
    subj = Subject(root)
    form = spec["form"]
    body = BodyShape(**spec["body"])
    kind = form["kind"]
    if kind == "dress_form":
        body = BodyShape(
            **{
                **spec["body"],
                "arm_angle": 0.22 + spec["body"]["arm_angle"] * 0.3,
                "arm_forward": 0.03,
                "elbow": 0.0,
            }
        )
    lift = 0.0
    # --- form / figure
    parts = body_mesh(body, kind, rng)
    form_col = form["colour"]
    if kind == "dress_form":
        skin = materials.fabric(
            "form_cover",
            {
                "pattern": str(rng.choice(["plain", "knit"])),
                "colours": [form_col] * 3,
                "scale": 1.0,
                "angle": 0.0,
                "roughness": 0.9,
                "sheen": 0.3,
                "bump": 0.2,
                "seed": 0.0,
            },
            rng,
        )
    elif kind == "mannequin":
        gl = form["glossy"]
        skin = materials.solid("mannequin", form_col, 0.2 if gl else 0.55, coat=0.5 if gl else 0.0)
    else:
        tone = (
            [0.95, 0.75, 0.6]
            if rng.uniform() < 0.5
            else list(rng.uniform([0.35, 0.22, 0.15], [0.8, 0.6, 0.48]))
        )
        skin = materials.solid("skin", tone, 0.5)
    hair = materials.solid(
        "hair",
        [[0.02, 0.015, 0.01], [0.15, 0.08, 0.04], [0.6, 0.45, 0.25], [0.3, 0.3, 0.3]][
            int(rng.integers(4))
        ],
        0.45,
    )
    accent = materials.solid(
        "accent", [0.3, 0.18, 0.1] if rng.uniform() < 0.5 else [0.03] * 3, 0.35
    )
    for name, md in parts.items():
        if name == "head" and form["headless"]:
            continue
        ob = mesh_object(f"form_{name}", md, root, recalc=name != "hair")
        ob.data.materials.append(accent if name == "knob" else hair if name == "hair" else skin)
        if name == "hair":
            add_cloth_modifiers(ob, 0.01, 0.8, rng)
        if name == "limbs" or name == "torso":
            sub = ob.modifiers.new("smooth", "SUBSURF")
            sub.levels = sub.render_levels = 1
        subj.objects.append(ob)
    # --- stand
    if form["stand"] != "none":
        top = 0.82 if kind == "dress_form" else 0.12
        st = stand_mesh(form["stand"] if kind == "dress_form" else "disc", rng, top)
        ob = mesh_object("stand", st, root, recalc=True)
        metal = rng.uniform() < 0.5 or form.get("stand_metal", False)
        ob.data.materials.append(
            materials.solid(
                "stand",
                [0.7] * 3 if metal else [0.03] * 3,
                0.25 if metal else 0.4,
                metallic=1.0 if metal else 0.0,
            )
        )
        subj.objects.append(ob)
        if kind != "dress_form":
            lift = 0.032
    # --- garment
    g = garments_mod.build(
        spec["garment"],
        body,
        rng,
        has_arms=kind != "dress_form",
        has_head=kind != "dress_form" and not form["headless"],
    )
    subj.garment_tags = g.tags
    mats = {
        "main": materials.fabric("fabric", spec["fabric"], rng),
        "trim": materials.fabric(
            "trim", spec["trim_fabric"] if rng.uniform() < 0.4 else spec["fabric"], rng
        ),
        "lining": materials.fabric("lining", spec["lining_fabric"], rng),
        "detail": materials.solid("buttons", list(rng.uniform(0, 1, 3)), 0.3),
    }
    for p in g.parts:
        ob = mesh_object(f"garment_{p.name}", p.mesh, root)
        ob.data.materials.append(mats[p.role])
        add_cloth_modifiers(ob, p.thickness, p.displace, rng, subdiv=1 if p.role != "detail" else 0)
        subj.objects.append(ob)
        subj.garment_objects.append(ob)
    if lift:
        for ob in subj.objects:
            if not ob.name.startswith("stand"):
                ob.location.z += lift
    return subj
