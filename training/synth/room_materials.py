"""Background surfaces: textured walls, floors, real-photo prints, the world, light colour.

Photos come from packages already installed (``materials.photo_paths``).
"""

from __future__ import annotations

import math

import bpy
import numpy as np

from .materials import Nodes, _lin, use_nodes
from .spec import srgb_to_linear


def wall(name, colour, rng):
    """Textured wall: plaster, brick, wallpaper stripes or wood panels."""
    kind = str(rng.choice(["plaster", "brick", "wallpaper", "panels", "concrete"]))
    n = Nodes(name)
    c = _lin(colour)
    if kind == "brick":
        b = n.new("ShaderNodeTexBrick")
        b.inputs["Scale"].default_value = float(rng.uniform(2, 5))
        b.inputs["Color1"].default_value = c
        b.inputs["Color2"].default_value = tuple(x * 0.6 for x in c[:3]) + (1,)
        b.inputs["Mortar"].default_value = _lin(rng.uniform(0.5, 0.8, 3))
        n.link(n.coords(kind="Generated", scale=(4, 4, 4)), b.inputs["Vector"])
        n.set(Base_Color=b.outputs["Color"], Roughness=0.9)
        n.bump(b.outputs["Factor"], 0.3, 0.01)
    elif kind == "wallpaper":
        t = n.wave(n.coords(), float(rng.uniform(8, 30)), "X", distortion=float(rng.uniform(0, 3)))
        n.set(
            Base_Color=n.mix(n.math("MULTIPLY", t, 0.35), c, _lin(rng.uniform(0.2, 0.9, 3))),
            Roughness=0.7,
        )
    elif kind == "panels":
        t = n.wave(n.coords(), float(rng.uniform(3, 8)), "X", "SAW")
        n.set(Base_Color=n.mix(n.math("MULTIPLY", t, 0.25), c, (0.1, 0.06, 0.03, 1)), Roughness=0.5)
        n.bump(t, 0.2)
    else:
        f = n.noise(n.coords(), float(rng.uniform(1, 6)), 5.0)
        n.set(
            Base_Color=n.mix(n.math("MULTIPLY", f, 0.5), c, tuple(x * 0.5 for x in c[:3]) + (1,)),
            Roughness=0.85,
        )
        n.bump(n.noise(n.coords(), 60, 3.0), 0.15 if kind == "concrete" else 0.08)
    return n.mat


def floor(name, colour, rng, reflective=False):
    """Wood planks, tiles, concrete or carpet; ``reflective`` makes it a glossy floor."""
    kind = str(rng.choice(["planks", "tiles", "concrete", "carpet"]))
    n = Nodes(name)
    c = _lin(colour)
    if kind in ("planks", "tiles"):
        b = n.new("ShaderNodeTexBrick")
        b.inputs["Scale"].default_value = 1.0
        b.inputs["Brick Width"].default_value = 1.2 if kind == "planks" else 0.5
        b.inputs["Row Height"].default_value = 0.15 if kind == "planks" else 0.5
        b.inputs["Mortar Size"].default_value = 0.004
        b.inputs["Color1"].default_value = c
        b.inputs["Color2"].default_value = tuple(x * 0.7 for x in c[:3]) + (1,)
        b.inputs["Mortar"].default_value = tuple(x * 0.4 for x in c[:3]) + (1,)
        n.link(n.coords(), b.inputs["Vector"])
        n.set(Base_Color=b.outputs["Color"], Roughness=0.45)
        n.bump(b.outputs["Factor"], 0.2, 0.005)
    else:
        f = n.noise(n.coords(), 30 if kind == "carpet" else 2, 6.0)
        n.set(
            Base_Color=n.mix(n.math("MULTIPLY", f, 0.6), c, tuple(x * 0.6 for x in c[:3]) + (1,)),
            Roughness=0.95 if kind == "carpet" else 0.7,
        )
    if reflective:
        n.set(Roughness=float(rng.uniform(0.02, 0.12)), Coat_Weight=1.0)
    return n.mat


def photo(name, path, emission=0.0):
    """A real photograph as an image texture on the object's UVs."""
    n = Nodes(name)
    img = n.new("ShaderNodeTexImage")
    img.image = bpy.data.images.load(path, check_existing=True)
    uv = n.new("ShaderNodeTexCoord")
    n.link(uv.outputs["UV"], img.inputs["Vector"])
    n.set(Base_Color=img.outputs["Color"], Roughness=0.8)
    if emission:
        n.link(img.outputs["Color"], n.bsdf.inputs["Emission Color"])
        n.set(Emission_Strength=emission)
    return n.mat


def world(colour, strength):
    w = bpy.data.worlds.new("world")
    use_nodes(w)
    bg = w.node_tree.nodes["Background"]
    bg.inputs[0].default_value = _lin(colour)
    bg.inputs[1].default_value = strength
    return w


def kelvin_rgb(k: float) -> tuple[float, float, float]:
    """Approximate blackbody colour (linear, max 1) for a colour temperature in kelvin."""
    t = k / 100.0
    r = 255 if t <= 66 else 329.7 * (t - 60) ** -0.1332
    g = 99.47 * math.log(t) - 161.1 if t <= 66 else 288.1 * (t - 60) ** -0.0755
    b = 255 if t >= 66 else (0 if t <= 19 else 138.5 * math.log(t - 10) - 305.0)
    c = np.clip(np.array([r, g, b]) / 255.0, 0, 1)
    c = srgb_to_linear(c)
    return tuple(float(x) for x in c / c.max())
