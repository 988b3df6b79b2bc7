"""Procedural shader-node materials: fabrics, forms and stands, backgrounds, photo textures.

Every fabric is a Principled BSDF driven by object-space procedural textures (stripes, checks,
plaid, dots, floral-ish noise prints, knits, denim twill, leather, velvet sheen, satin, camo,
chest prints from real photos), so patterns stay glued to the garment when it turns.
Colours in specs are sRGB; they are converted to linear here.
"""

from __future__ import annotations

import functools
import glob
import os
import warnings

import bpy
import cv2
import numpy as np

from .spec import srgb_to_linear


def _lin(c, a=1.0):
    return (*[float(x) for x in srgb_to_linear(c)], a)


@functools.lru_cache(maxsize=1)
def photo_paths() -> tuple[str, ...]:
    """Real photographs shipped with installed packages (scikit-image, matplotlib)."""
    roots = []
    try:
        import skimage

        roots.append(os.path.join(os.path.dirname(skimage.__file__), "data"))
    except ImportError:
        pass
    try:
        import matplotlib

        roots.append(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data"))
    except ImportError:
        pass
    out = []
    for root in roots:
        for p in sorted(
            glob.glob(os.path.join(root, "*.png")) + glob.glob(os.path.join(root, "*.jpg"))
        ):
            im = cv2.imread(p, cv2.IMREAD_UNCHANGED)
            if im is not None and min(im.shape[:2]) >= 200:
                out.append(p)
    return tuple(out)


def use_nodes(idblock) -> None:
    """Node trees are the default in Blender 5 (the flag is deprecated); set it for older builds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if not idblock.use_nodes:
            idblock.use_nodes = True


class Nodes:
    """Tiny helper around a material node tree."""

    def __init__(self, name: str):
        self.mat = bpy.data.materials.new(name)
        use_nodes(self.mat)
        self.nt = self.mat.node_tree
        self.bsdf = self.nt.nodes["Principled BSDF"]

    def new(self, kind, **props):
        n = self.nt.nodes.new(kind)
        for k, v in props.items():
            setattr(n, k, v)
        return n

    def link(self, a, b):
        self.nt.links.new(a, b)

    def coords(self, scale=(1, 1, 1), rot=(0, 0, 0), kind="Object"):
        tc = self.new("ShaderNodeTexCoord")
        mp = self.new("ShaderNodeMapping")
        mp.inputs["Scale"].default_value = scale
        mp.inputs["Rotation"].default_value = rot
        self.link(tc.outputs[kind], mp.inputs["Vector"])
        return mp.outputs["Vector"]

    def swizzle_uv(self, vec):
        """UV (u, v, 0) -> (u, 0, v) so 'X' bands run along the garment, 'Z' bands around it."""
        sep = self.new("ShaderNodeSeparateXYZ")
        self.link(vec, sep.inputs[0])
        comb = self.new("ShaderNodeCombineXYZ")
        self.link(sep.outputs[0], comb.inputs[0])
        self.link(sep.outputs[1], comb.inputs[2])
        return comb.outputs[0]

    def math(self, op, a, b=None, clamp=False):
        m = self.new("ShaderNodeMath", operation=op, use_clamp=clamp)
        for i, v in enumerate((a, b)):
            if v is None:
                continue
            if isinstance(v, (int, float)):
                m.inputs[i].default_value = v
            else:
                self.link(v, m.inputs[i])
        return m.outputs[0]

    def mix(self, fac, a, b):
        m = self.new("ShaderNodeMix", data_type="RGBA")
        for sock, v in ((m.inputs[0], fac), (m.inputs[6], a), (m.inputs[7], b)):
            if isinstance(v, (int, float, tuple)):
                sock.default_value = v
            else:
                self.link(v, sock)
        return m.outputs[2]

    def wave(self, vec, scale, direction="X", profile="SIN", distortion=0.0):
        w = self.new(
            "ShaderNodeTexWave", wave_type="BANDS", bands_direction=direction, wave_profile=profile
        )
        w.inputs["Scale"].default_value = scale
        w.inputs["Distortion"].default_value = distortion
        w.inputs["Detail"].default_value = 0.0
        self.link(vec, w.inputs["Vector"])
        return w.outputs["Factor"]

    def noise(self, vec, scale, detail=2.0, distortion=0.0):
        n = self.new("ShaderNodeTexNoise")
        n.inputs["Scale"].default_value = scale
        n.inputs["Detail"].default_value = detail
        n.inputs["Distortion"].default_value = distortion
        self.link(vec, n.inputs["Vector"])
        return n.outputs["Factor"]

    def bump(self, height, strength, distance=0.002):
        b = self.new("ShaderNodeBump")
        b.inputs["Strength"].default_value = strength
        b.inputs["Distance"].default_value = distance
        self.link(height, b.inputs["Height"])
        self.link(b.outputs["Normal"], self.bsdf.inputs["Normal"])

    def set(self, **inputs):
        for k, v in inputs.items():
            sock = self.bsdf.inputs[k.replace("_", " ")]
            if isinstance(v, (int, float, tuple)):
                sock.default_value = v
            else:
                self.link(v, sock)

    def ramp(self, fac, stops, interpolation="CONSTANT"):
        r = self.new("ShaderNodeValToRGB")
        r.color_ramp.interpolation = interpolation
        els = r.color_ramp.elements
        while len(els) < len(stops):
            els.new(0.5)
        for e, (pos, col) in zip(els, stops):
            e.position, e.color = pos, col
        self.link(fac, r.inputs["Fac"])
        return r.outputs["Color"]


def fabric(name: str, fab: dict, rng: np.random.Generator) -> bpy.types.Material:
    """A fabric material from a spec made by ``spec.sample_fabric``."""
    n = Nodes(name)
    c1, c2, c3 = (_lin(c) for c in fab["colours"])
    s, p = fab["scale"], fab["pattern"]
    # patterns live on the cloth's surface coordinates (metres along and around the garment)
    vec = n.coords(
        rot=(0, 0, fab["angle"] if p in ("stripes", "checks", "plaid") else 0), kind="UV"
    )
    vec = n.swizzle_uv(vec)
    col = c1
    weave = n.wave(vec, 220 / s, "Z")
    height = n.math("MULTIPLY", weave, 0.3)
    n.set(Roughness=fab["roughness"], Sheen_Weight=fab["sheen"], Sheen_Roughness=0.5)
    if p == "stripes":
        t = n.math("GREATER_THAN", n.wave(vec, 14 / s, "Z"), float(rng.uniform(0.3, 0.7)))
        col = n.mix(t, c1, c2)
    elif p in ("checks", "plaid"):
        f = 14 / s if p == "checks" else 7 / s
        a = n.math("GREATER_THAN", n.wave(vec, f, "X"), 0.5)
        b = n.math("GREATER_THAN", n.wave(vec, f, "Z"), 0.5)
        col = n.mix(n.math("MULTIPLY", n.math("ADD", a, b), 0.5), c1, c2)
        if p == "plaid":
            thin = n.math("GREATER_THAN", n.wave(vec, f * 3, "X"), 0.85)
            thin2 = n.math("GREATER_THAN", n.wave(vec, f * 3, "Z"), 0.85)
            col = n.mix(n.math("MAXIMUM", thin, thin2), col, c3)
    elif p == "dots":
        v = n.new("ShaderNodeTexVoronoi")
        v.inputs["Scale"].default_value = 40 / s
        v.inputs["Randomness"].default_value = float(rng.choice([0.0, 0.0, 0.6]))
        n.link(vec, v.inputs["Vector"])
        col = n.mix(
            n.math("LESS_THAN", v.outputs["Distance"], float(rng.uniform(0.15, 0.35))), c1, c2
        )
    elif p in ("floral", "camo"):
        f = n.noise(vec, (9 if p == "floral" else 4) / s, 3.0, 0.8 if p == "floral" else 0.0)
        stops = (
            [(0, c1), (0.52, c2), (0.6, c3)]
            if p == "floral"
            else [(0, c1), (0.45, c2), (0.55, c3), (0.62, _lin((0.05, 0.05, 0.04)))]
        )
        col = n.ramp(f, stops)
    elif p == "knit":
        k = n.new("ShaderNodeVectorMath", operation="MULTIPLY")
        k.inputs[1].default_value = (90 / s, 90 / s, 60 / s)
        n.link(vec, k.inputs[0])
        k = k.outputs[0]
        v = n.new("ShaderNodeTexVoronoi", feature="F1")
        v.inputs["Randomness"].default_value = 0.1
        n.link(k, v.inputs["Vector"])
        height = n.math("MULTIPLY", v.outputs["Distance"], 1.0)
        col = n.mix(n.math("MULTIPLY", v.outputs["Distance"], 0.6), c1, tuple(x * 0.6 for x in c1))
        n.set(Roughness=1.0, Sheen_Weight=0.6)
    elif p == "denim":
        tw = n.wave(vec, 260, "X")
        tw.node.bands_direction = "DIAGONAL"
        fade = n.noise(vec, 3.0, 4.0)
        light = tuple(min(1.0, x * 2.2 + 0.05) for x in c1[:3]) + (1.0,)
        col = n.mix(
            n.math("MULTIPLY", n.math("ADD", n.math("MULTIPLY", tw, 0.25), fade), 0.55), c1, light
        )
        height = tw
        n.set(Roughness=0.9, Sheen_Weight=0.2)
    elif p == "leather":
        g = n.noise(n.coords(), 180, 2.0)
        height = g
        n.set(
            Roughness=float(rng.uniform(0.28, 0.45)),
            Coat_Weight=float(rng.uniform(0, 0.4)),
            Sheen_Weight=0.0,
            Specular_IOR_Level=0.6,
        )
    elif p == "velvet":
        n.set(
            Roughness=1.0,
            Sheen_Weight=1.0,
            Sheen_Roughness=0.3,
            Sheen_Tint=tuple(min(1, x * 2.5 + 0.1) for x in c1[:3]) + (1.0,),
        )
    elif p == "satin":
        n.set(Roughness=float(rng.uniform(0.18, 0.32)), Anisotropic=0.6, Sheen_Weight=0.0)
    elif p == "print":
        paths = photo_paths()
        if paths:
            img = n.new("ShaderNodeTexImage", extension="CLIP")
            img.image = bpy.data.images.load(
                paths[int(rng.integers(len(paths)))], check_existing=True
            )
            w = float(rng.uniform(0.14, 0.24))
            m = n.coords(scale=(1 / w, 1, 1 / w), kind="Object")
            mp = m.node
            sep = n.new("ShaderNodeSeparateXYZ")
            n.link(m, sep.inputs[0])
            uvw = n.new("ShaderNodeCombineXYZ")
            n.link(sep.outputs[0], uvw.inputs[0])
            n.link(sep.outputs[2], uvw.inputs[1])
            n.link(uvw.outputs[0], img.inputs["Vector"])
            front = n.math("LESS_THAN", sep.outputs[1], 0.0)
            col = n.mix(n.math("MULTIPLY", img.outputs["Alpha"], front), c1, img.outputs["Color"])
            mp.inputs["Location"].default_value = (0.5, 0.0, -float(rng.uniform(1.08, 1.2)) / w)
            mp.inputs["Scale"].default_value = (1 / w, 1.0, 1 / w)
    n.set(Base_Color=col)
    n.bump(height, fab["bump"] * (1.0 if p in ("knit", "denim") else 0.5))
    return n.mat


def solid(name, colour, roughness=0.6, metallic=0.0, coat=0.0, noise=0.0, scale=3.0):
    """Plain painted / plastic / metal surface; ``noise`` adds tone variation (paper, walls)."""
    n = Nodes(name)
    c = _lin(colour)
    col = c
    if noise > 0:
        f = n.noise(n.coords(), scale, 4.0)
        col = n.mix(n.math("MULTIPLY", f, noise), c, tuple(x * 0.55 for x in c[:3]) + (1,))
        n.bump(n.noise(n.coords(), scale * 40, 2.0), 0.05)
    n.set(Base_Color=col, Roughness=roughness, Metallic=metallic, Coat_Weight=coat)
    return n.mat


def mask_override() -> bpy.types.Material:
    """Flat emission used as view-layer override during the label pass.

    The emitted colour is each object's own ``color`` (Object Info), so one render gives every
    class at once: ``render.LABEL_COLOURS`` sets garment red, figure green, support blue.
    """
    m = bpy.data.materials.new("__mask__")
    use_nodes(m)
    nt = m.node_tree
    nt.nodes.clear()
    info = nt.nodes.new("ShaderNodeObjectInfo")
    e = nt.nodes.new("ShaderNodeEmission")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(info.outputs["Color"], e.inputs["Color"])
    nt.links.new(e.outputs[0], out.inputs[0])
    return m
