"""Random description of one synthetic capture (pure Python + numpy, no bpy).

``sample_spec(seed, index)`` draws everything a sequence needs — garment, form, fabrics,
background, lights, camera rig, camera realism — from an RNG seeded by ``(seed, index)``, so
any shard reproduces the same sequence. The spec is plain JSON-able data; ``meta.json`` is its
summary and the renderer follows it exactly.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np

from .garments import KINDS, NEEDS_LEGS

FORMS = ("dress_form", "mannequin", "figure")
PATTERNS = (
    "plain",
    "stripes",
    "checks",
    "plaid",
    "dots",
    "floral",
    "knit",
    "denim",
    "leather",
    "velvet",
    "satin",
    "camo",
    "print",
)
BACKGROUNDS = ("sweep", "wall", "clutter", "photo")
STUDIO = {
    "white": (0.85, 0.85, 0.84),
    "grey": (0.35, 0.35, 0.36),
    "black": (0.025, 0.025, 0.025),
    "green": (0.05, 0.45, 0.12),
    "blue": (0.05, 0.18, 0.55),
}
NEUTRALS = [
    (0.92, 0.92, 0.9),
    (0.85, 0.82, 0.75),
    (0.7, 0.7, 0.7),
    (0.45, 0.45, 0.46),
    (0.2, 0.2, 0.21),
    (0.04, 0.04, 0.045),
    (0.08, 0.1, 0.22),
    (0.76, 0.68, 0.52),
    (0.55, 0.5, 0.35),
    (0.35, 0.22, 0.14),
]


def srgb_to_linear(c):
    c = np.asarray(c, float)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def random_colour(rng: np.random.Generator) -> list[float]:
    """An sRGB colour: neutrals often, saturated hues otherwise."""
    if rng.uniform() < 0.4:
        c = np.array(NEUTRALS[rng.integers(len(NEUTRALS))]) + rng.normal(0, 0.02, 3)
    else:
        c = np.array(
            colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.25, 0.95), rng.uniform(0.2, 0.95))
        )
    return [float(x) for x in np.clip(c, 0.01, 0.98)]


def jitter(rng, c, amount):
    return [float(x) for x in np.clip(np.asarray(c) + rng.normal(0, amount, 3), 0.01, 0.98)]


def _choice(rng, items, weights=None):
    w = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    return items[int(rng.choice(len(items), p=w))]


def sample_fabric(rng, garment: str, base: list[float] | None = None) -> dict[str, Any]:
    w = {p: 1.0 for p in PATTERNS}
    w["plain"] = 2.5
    if garment in ("trousers", "jacket", "skirt"):
        w["denim"] = 2.5
    if garment in ("jacket", "skirt", "coat"):
        w["leather"] = 1.2
    if garment in ("hoodie", "coat"):
        w["knit"] = 2.0
    if garment not in ("tshirt", "hoodie"):
        w["print"] = 0.0
    pattern = _choice(rng, list(w), list(w.values()))
    c1 = base if base is not None else random_colour(rng)
    if pattern == "denim":
        c1 = jitter(rng, [0.12, 0.2, 0.38] if rng.uniform() < 0.8 else [0.1, 0.1, 0.11], 0.05)
    if pattern == "leather":
        c1 = jitter(
            rng, _choice(rng, [[0.05, 0.04, 0.035], [0.3, 0.16, 0.08], [0.5, 0.35, 0.2]]), 0.03
        )
    return {
        "pattern": pattern,
        "colours": [c1, random_colour(rng), random_colour(rng)],
        "scale": float(rng.uniform(0.6, 1.8)),
        "angle": float(rng.choice([0.0, 0.0, np.pi / 2, rng.uniform(0, np.pi)])),
        "roughness": float(rng.uniform(0.55, 0.95)),
        "sheen": float(rng.uniform(0.0, 0.6)),
        "bump": float(rng.uniform(0.05, 0.4)),
        "seed": float(rng.uniform(0, 100)),
    }


def sample_spec(seed: int, index: int, kinds=("ring", "turntable")) -> dict[str, Any]:
    rng = np.random.default_rng([int(seed), int(index)])
    u = rng.uniform
    capture = _choice(rng, list(kinds))
    garment = _choice(rng, list(KINDS), [1.3, 1.2, 1.2, 0.8, 0.8, 1.0, 0.7, 0.9])
    forms = [f for f in FORMS if not (garment in NEEDS_LEGS and f == "dress_form")]
    form = _choice(
        rng,
        forms,
        [0.45 if f == "dress_form" else 0.35 if f == "mannequin" else 0.2 for f in forms],
    )
    tags: list[str] = []
    fabric = sample_fabric(rng, garment)
    bg_kind = _choice(rng, list(BACKGROUNDS), [0.3, 0.2, 0.25, 0.25])
    bg: dict[str, Any] = {"kind": bg_kind, "seed": int(rng.integers(1 << 30))}
    if bg_kind == "sweep":
        name = _choice(rng, list(STUDIO) + ["colour"], [3, 2, 1.5, 1, 0.5, 1])
        bg["studio"] = name
        bg["colour"] = jitter(rng, STUDIO[name], 0.02) if name in STUDIO else random_colour(rng)
    else:
        bg["colour"] = random_colour(rng)
    bg["floor_colour"] = random_colour(rng)
    hard = u()
    if hard < 0.12:
        tags.append("similar_colour")
        bg["colour"] = jitter(rng, fabric["colours"][0], 0.04)
        bg["floor_colour"] = jitter(rng, fabric["colours"][0], 0.06)
        if bg_kind != "sweep":
            bg["kind"] = bg_kind = "sweep"
            bg["studio"] = "colour"
    elif hard < 0.18:
        tags.append("white_on_white")
        fabric["colours"][0] = jitter(rng, [0.9, 0.9, 0.88], 0.02)
        fabric["pattern"] = _choice(rng, ["plain", "knit", "satin"])
        bg.update(kind="sweep", studio="white", colour=jitter(rng, STUDIO["white"], 0.02))
    elif hard < 0.24:
        tags.append("black_on_black")
        fabric["colours"][0] = jitter(rng, [0.03, 0.03, 0.03], 0.01)
        fabric["pattern"] = _choice(rng, ["plain", "knit", "leather", "velvet"])
        bg.update(kind="sweep", studio="black", colour=jitter(rng, STUDIO["black"], 0.005))
    bg_kind = bg["kind"]
    bg["reflective_floor"] = bool(u() < 0.15)
    if bg["reflective_floor"]:
        tags.append("reflective_floor")
    lights = _choice(rng, ["softbox3", "softbox2", "window", "hard", "even"], [3, 2, 1.5, 1, 1])
    if lights == "hard":
        tags.append("strong_shadow")
    light = {
        "setup": lights,
        "kelvin": float(u(3000, 6800)),
        "mixed": bool(u() < 0.2),
        "ambient": float(u(0.05, 0.5)),
        "azimuth": float(u(-np.pi, np.pi)),
        "seed": int(rng.integers(1 << 30)),
    }
    close = u() < 0.3
    camera = {
        "focal_mm": float(
            _choice(rng, [24, 28, 35, 50, 70, 85], [0.5, 1, 2, 2.5, 1.5, 1]) * u(0.95, 1.05)
        ),
        "fill": float(u(0.75, 1.0)) if not close else float(u(1.3, 2.0)),
        "close": bool(close),
        "elevations": sorted(float(x) for x in rng.uniform(-0.05, 0.5, 1 if u() < 0.5 else 2)),
        "azimuth0": float(u(0, 2 * np.pi)),
        "jitter": float(u(0.0, 0.03)),
        "sweep": float(u(0.6, 1.0)) if capture == "turntable" else 1.0,
    }
    form_spec = {
        "kind": form,
        "headless": bool(form == "mannequin" and u() < 0.5),
        "stand": _choice(rng, ["tripod", "cross", "disc"]) if form != "figure" else "none",
        "colour": random_colour(rng)
        if u() < 0.4
        else _choice(rng, [[0.85, 0.83, 0.78], [0.05, 0.05, 0.05], [0.8, 0.62, 0.5]]),
        "glossy": bool(form == "mannequin" and u() < 0.5),
        "turntable": bool(u() < (0.7 if capture == "turntable" else 0.1)),
    }
    post = {
        "noise": float(u(0.002, 0.02)),
        "blur": float(u(0.0, 0.8)),
        "jpeg": int(rng.integers(85, 96)),
        "vignette": float(u(0.0, 0.35)),
        "wb": [float(x) for x in rng.normal(1, 0.03, 3)],
        "sharpen": float(u(0, 0.6)) if u() < 0.5 else 0.0,
        "exposure": float(rng.normal(0, 0.3)),
        "target": float(u(0.32, 0.5)),
    }
    return {
        "version": 1,
        "seed": int(seed),
        "index": int(index),
        "capture": capture,
        "name": f"seq_{index:05d}_{capture}",
        "garment": garment,
        "form": form_spec,
        "fabric": fabric,
        "trim_fabric": sample_fabric(rng, garment),
        "lining_fabric": sample_fabric(rng, "tshirt"),
        "body": {
            "width": float(u(0.88, 1.1)),
            "depth": float(u(0.9, 1.1)),
            "waist": float(u(0.9, 1.12)),
            "hips": float(u(0.92, 1.12)),
            "bust": float(u(0, 1)),
            "arm_angle": float(u(0.12, 0.45)),
            "arm_forward": float(u(-0.05, 0.25)),
            "elbow": float(u(0.0, 0.5)),
            "leg_spread": float(u(0.0, 0.09)),
        },
        "background": bg,
        "light": light,
        "camera": camera,
        "post": post,
        "difficulty": tags,
        "geometry_seed": int(rng.integers(1 << 30)),
    }


FOCUS = ("stand", "behind", "feet")
BEHIND_KINDS = ("ball", "ball", "bin", "lamp", "form", "cabinet")


def focus_spec(spec: dict[str, Any], focus: str) -> dict[str, Any]:
    """``spec`` redrawn towards one hard case, for targeted training data.

    ``"stand"``: the form stands on a chrome disc base over a dark floor, seen from above, so
    the base's rim mirrors the floor (the rim the model missed on benchmark turntables).

    ``"behind"``: the benchmark's own framing of that case: a turntable in a room (a wall or
    clutter), the form on a chrome disc base over a darkish floor, seen from about eye level,
    with one or two props (balls, bins, lamps, bare forms, cabinets) on the line from the
    camera through the stand, beyond it, so they show next to the pole and the base in
    every frame (``stage.behind``).

    ``"feet"``: a mannequin on its disc base, its feet in view (``_feet_spec``): the feet
    the model took for the base.

    The changes are drawn from their own generator, seeded by the spec's seed and index, so
    the rest of the spec is the same as without ``focus``.
    """
    if focus not in FOCUS:
        raise ValueError(f"unknown focus {focus!r}; choose from {', '.join(FOCUS)}")
    if focus == "behind":
        return _behind_spec(spec)
    if focus == "feet":
        return _feet_spec(spec)
    rng = np.random.default_rng([spec["seed"], spec["index"], 7919])
    spec = _on_metal_disc(spec, rng, platter_share=0.5)
    bg, cam = spec["background"], spec["camera"]
    value = rng.uniform(0.03, 0.15)
    bg["floor_colour"] = [float(x) for x in np.clip(value * rng.uniform(0.7, 1.3, 3), 0.01, 0.98)]
    bg["reflective_floor"] = bool(rng.uniform() < 0.5)
    cam["elevations"] = sorted(float(x) for x in rng.uniform(0.1, 0.45, len(cam["elevations"])))
    if cam["close"]:
        cam["close"], cam["fill"] = False, float(rng.uniform(0.75, 1.0))
    spec["difficulty"] = [*spec["difficulty"], "metal_disc_stand"]
    return spec


def _feet_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` worn by a mannequin whose feet stand on its disc base (chrome or
    black, on a platter one time in three), seen from the whole frame: the feet are figure
    and the disc under them support, a boundary with no edge of its own on a dark or
    mirroring base."""
    rng = np.random.default_rng([spec["seed"], spec["index"], 104729])
    spec = _on_metal_disc(spec, rng, platter_share=0.33)
    form, cam = spec["form"], spec["camera"]
    form["kind"] = "mannequin"
    form["headless"] = bool(rng.uniform() < 0.5)
    form["glossy"] = bool(rng.uniform() < 0.5)
    form["stand_metal"] = bool(rng.uniform() < 0.6)
    if cam["close"]:
        cam["close"], cam["fill"] = False, float(rng.uniform(0.75, 1.0))
    spec["difficulty"] = [*spec["difficulty"], "feet_on_disc"]
    return spec


def _on_metal_disc(spec: dict[str, Any], rng, platter_share: float) -> dict[str, Any]:
    """A copy of ``spec`` whose form (never a bare figure) stands on a chrome disc base, on a
    platter with probability ``platter_share``."""
    spec = {k: dict(v) if isinstance(v, dict) else v for k, v in spec.items()}
    form = spec["form"]
    if form["kind"] == "figure":
        form["kind"] = "mannequin"
        form["headless"] = bool(rng.uniform() < 0.5)
    form["stand"] = "disc"
    form["stand_metal"] = True
    form["turntable"] = bool(rng.uniform() < platter_share)
    return spec


def _behind_spec(spec: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng([spec["seed"], spec["index"], 7927])
    spec = _on_metal_disc(spec, rng, platter_share=0.3)
    bg, cam = spec["background"], spec["camera"]
    spec["capture"] = "turntable"
    spec["name"] = f"seq_{spec['index']:05d}_turntable"
    bg["kind"] = _choice(rng, ["clutter", "wall"], [0.6, 0.4])
    bg.pop("studio", None)
    value = rng.uniform(0.04, 0.3)
    bg["floor_colour"] = [float(x) for x in np.clip(value * rng.uniform(0.7, 1.3, 3), 0.01, 0.98)]
    bg["reflective_floor"] = bool(rng.uniform() < 0.25)
    bg["behind"] = [
        {
            "kind": _choice(rng, list(BEHIND_KINDS)),
            "distance": float(rng.uniform(0.6, 3.0)),
            "offset": float(rng.normal(0, 0.12)),
            "colour": random_colour(rng),
            "roughness": float(rng.uniform(0.2, 0.9)),
            "metallic": float(rng.uniform() < 0.15),
            "seed": int(rng.integers(1 << 30)),
        }
        for _ in range(1 if rng.uniform() < 0.6 else 2)
    ]
    cam["elevations"] = sorted(float(x) for x in rng.uniform(-0.05, 0.3, len(cam["elevations"])))
    if cam["close"]:
        cam["close"], cam["fill"] = False, float(rng.uniform(0.7, 0.95))
    spec["difficulty"] = [*spec["difficulty"], "metal_disc_stand", "prop_behind_stand"]
    return spec


def meta_from_spec(spec: dict[str, Any], garment_tags=()) -> dict[str, Any]:
    """The summary written to ``meta.json`` (held-out splits by garment/background)."""
    return {
        "version": 1,
        "name": spec["name"],
        "seed": spec["seed"],
        "index": spec["index"],
        "kind": spec["capture"],
        "garment": spec["garment"],
        "garment_tags": list(garment_tags),
        "form": spec["form"]["kind"],
        "stand": spec["form"]["stand"],
        "fabric": spec["fabric"]["pattern"],
        "background": spec["background"]["kind"],
        "studio": spec["background"].get("studio"),
        "difficulty": spec["difficulty"],
        "light": spec["light"]["setup"],
        "kelvin": round(spec["light"]["kelvin"]),
        "focal_mm": round(spec["camera"]["focal_mm"], 1),
        "family": spec.get("family"),
        "spec": spec,
    }
