"""Families: whole kinds of capture held out of training, so a test measures generalisation.

A test split drawn from the same generator settings as the training data measures memory. A
*family* is a kind of capture (a background, a figure, a fabric, a garment kind, a matched
colour case) that training never sees: every training sequence is drawn so that it belongs
to no held-out family, and every test sequence is drawn inside one.

- ``TEST`` families judge a model; nothing is trained or tuned on them.
- ``VALIDATION`` families pick checkpoints and tune thresholds.
- Everything else may be trained on.

``family_spec(spec, name)`` redraws a spec into a family (like ``focus_spec``: from its own
generator, seeded by the spec's seed and index); ``families_of(spec)`` names the held-out
families a spec belongs to, which is how training data is kept out of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import STUDIO, jitter, random_colour


@dataclass(frozen=True)
class Family:
    name: str
    role: str  # "test" or "validation"
    description: str
    member: Callable[[dict[str, Any]], bool]  # does a spec belong to it?
    force: Callable[[dict[str, Any], np.random.Generator], None]  # redraw a spec into it


def _bg(spec):
    return spec["background"]


def _force_clutter(spec, rng):
    bg = _bg(spec)
    bg["kind"] = "clutter"
    bg.pop("studio", None)
    bg["colour"] = random_colour(rng)
    spec["difficulty"] = [d for d in spec["difficulty"] if d not in _MATCHED]


def _force_figure(spec, rng):
    form = spec["form"]
    form.update(kind="figure", stand="none", headless=False, glossy=False)
    if spec["garment"] == "trousers" and rng.uniform() < 0.5:
        spec["garment"] = "dress"


def _force_busy(spec, rng):
    spec["garment"] = str(rng.choice(["tshirt", "hoodie", "jacket", "shirt", "dress"]))
    fabric = spec["fabric"]
    fabric["pattern"] = str(rng.choice(["floral", "camo", "print"]))
    if fabric["pattern"] == "print" and spec["garment"] not in ("tshirt", "hoodie"):
        fabric["pattern"] = "floral"
    fabric["scale"] = float(rng.uniform(0.5, 1.2))
    if spec["form"]["kind"] == "dress_form" and spec["garment"] == "trousers":
        spec["garment"] = "jacket"


def _force_coat(spec, rng):
    spec["garment"] = "coat"
    if spec["fabric"]["pattern"] == "print":
        spec["fabric"]["pattern"] = "plain"


def _matched(colour, studio):
    def force(spec, rng):
        fabric, bg = spec["fabric"], _bg(spec)
        fabric["colours"][0] = jitter(rng, colour, 0.02 if studio == "white" else 0.008)
        fabric["pattern"] = str(rng.choice(["plain", "knit", "satin", "velvet"]))
        bg.update(kind="sweep", studio=studio, colour=jitter(rng, STUDIO[studio], 0.02))
        bg["floor_colour"] = jitter(rng, STUDIO[studio], 0.03)
        tag = f"{studio}_on_{studio}"
        spec["difficulty"] = [d for d in spec["difficulty"] if d not in _MATCHED] + [tag]

    return force


def _force_photo(spec, rng):
    bg = _bg(spec)
    bg["kind"] = "photo"
    bg.pop("studio", None)
    spec["difficulty"] = [d for d in spec["difficulty"] if d not in _MATCHED]


def _force_plaid(spec, rng):
    spec["fabric"]["pattern"] = str(rng.choice(["plaid", "checks"]))


def _force_similar(spec, rng):
    bg = _bg(spec)
    c = spec["fabric"]["colours"][0]
    bg.update(kind="sweep", studio="colour", colour=jitter(rng, c, 0.04))
    bg["floor_colour"] = jitter(rng, c, 0.06)
    spec["difficulty"] = [d for d in spec["difficulty"] if d not in _MATCHED] + ["similar_colour"]


_MATCHED = ("similar_colour", "white_on_white", "black_on_black")

FAMILIES: tuple[Family, ...] = (
    Family(
        "clutter_room",
        "test",
        "furnished rooms: shelves, lamps, tables, stands and props around the subject",
        lambda s: _bg(s)["kind"] == "clutter",
        _force_clutter,
    ),
    Family(
        "body_figure",
        "test",
        "a whole body figure (head, hands, legs) wears the garment, no stand",
        lambda s: s["form"]["kind"] == "figure",
        _force_figure,
    ),
    Family(
        "busy_print",
        "test",
        "busy prints: floral, camouflage and printed graphics",
        lambda s: s["fabric"]["pattern"] in ("floral", "camo", "print"),
        _force_busy,
    ),
    Family(
        "coat",
        "test",
        "a garment kind: long coats",
        lambda s: s["garment"] == "coat",
        _force_coat,
    ),
    Family(
        "white_on_white",
        "test",
        "a white or cream garment on a white sweep",
        lambda s: "white_on_white" in s["difficulty"],
        _matched((0.9, 0.9, 0.88), "white"),
    ),
    Family(
        "black_on_black",
        "test",
        "a black garment on a black sweep",
        lambda s: "black_on_black" in s["difficulty"],
        _matched((0.03, 0.03, 0.03), "black"),
    ),
    Family(
        "photo_wall",
        "validation",
        "photographs as the walls behind the subject",
        lambda s: _bg(s)["kind"] == "photo",
        _force_photo,
    ),
    Family(
        "plaid",
        "validation",
        "plaid and checked fabrics",
        lambda s: s["fabric"]["pattern"] in ("plaid", "checks"),
        _force_plaid,
    ),
    Family(
        "similar_colour",
        "validation",
        "a plain sweep in the garment's own colour",
        lambda s: "similar_colour" in s["difficulty"],
        _force_similar,
    ),
)
BY_NAME = {f.name: f for f in FAMILIES}
ROLES = ("test", "validation")


def names(role: str | None = None) -> list[str]:
    return [f.name for f in FAMILIES if role is None or f.role == role]


def families_of(spec: dict[str, Any]) -> list[str]:
    """The held-out families ``spec`` belongs to (empty: it may be trained on)."""
    return [f.name for f in FAMILIES if f.member(spec)]


def family_spec(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``spec`` redrawn into family ``name``; ``spec["family"]`` names it."""
    if name not in BY_NAME:
        raise ValueError(f"unknown family {name!r}; choose from {', '.join(BY_NAME)}")
    fam = BY_NAME[name]
    spec = {k: _copy(v) for k, v in spec.items()}
    rng = np.random.default_rng([spec["seed"], spec["index"], 104729])
    fam.force(spec, rng)
    if not fam.member(spec):  # a bug in a force function, not a user error
        raise AssertionError(f"family {name}: the redrawn spec is not a member")
    spec["family"] = name
    return spec


def trainable(spec: dict[str, Any]) -> bool:
    return not families_of(spec)


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v
