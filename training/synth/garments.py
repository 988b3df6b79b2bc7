"""Procedural garments as ring-grid shells around a ``BodyShape`` (pure numpy).

Each builder returns ``Garment`` parts: the main shell (body of the garment), sleeves or legs,
trims (collars, cuffs, rib bands, waistbands), and details (buttons, pockets, straps, hoods).
The pieces come from ``cloth.py``; ``scene.py`` adds thickness (solidify), noise displacement
and subdivision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .body import (
    LEG_RADII,
    Z_BUST,
    Z_HIP,
    Z_NECK,
    Z_WAIST,
    BodyShape,
    bust_bump,
    limb_radii,
)
from .cloth import band, buttons, fold_field, front_points, shell, sleeve
from .geometry import MeshData, radial_offset, resample, ring_grid, superellipse

KINDS = ("tshirt", "shirt", "dress", "skirt", "trousers", "jacket", "coat", "hoodie")
NEEDS_LEGS = ("trousers",)


@dataclass
class Part:
    name: str
    mesh: MeshData
    role: str = "main"  # main | trim | detail | lining
    thickness: float = 0.004
    displace: float = 1.0  # scale of the noise displacement

    def __post_init__(self):
        if self.role == "trim":
            self.displace = min(self.displace, 0.15)


@dataclass
class Garment:
    kind: str
    parts: list[Part] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def _sleeves(g, body, rng, length, ease, hang, cuff, fold=0.008):
    for side in (-1.0, 1.0):
        grid, path, r = sleeve(
            body, rng, side, length, ease, hang, fold, end_scale=0.9 if cuff else 1
        )
        g.parts.append(Part(f"sleeve{int(side):+d}", MeshData().add_grid(grid)))
        if cuff:
            k = max(3, len(path) // 10)
            cp = path[-k:]
            cr = r[-k:] * 0.93 + 0.003
            cg, _ = ring_grid(cp, cr, cr * (0.55 if hang else 0.92), 28, ref=(0, 1, 0))
            g.parts.append(Part(f"cuff{int(side):+d}", MeshData().add_grid(cg), "trim", 0.005))


def build(kind: str, body: BodyShape, rng: np.random.Generator, has_arms: bool, has_head: bool):
    """One garment of ``kind`` fitted to ``body``; randomised by ``rng``."""
    g = Garment(kind)
    hang = not has_arms
    u = rng.uniform
    if kind in ("tshirt", "shirt", "hoodie", "jacket", "coat"):
        loose = {"tshirt": u(0.6, 1), "shirt": u(0.4, 0.9), "hoodie": 1.0}.get(kind, u(0.7, 1))
        ease = {"tshirt": u(0.012, 0.03), "shirt": u(0.012, 0.025), "hoodie": u(0.03, 0.05)}.get(
            kind, u(0.03, 0.045)
        )
        hem = {
            "tshirt": u(0.80, 0.92),
            "shirt": u(0.74, 0.86),
            "hoodie": u(0.80, 0.88),
            "jacket": u(0.74, 0.84),
            "coat": u(0.35, 0.62),
        }[kind]
        top = Z_NECK - 0.005 + (0.01 if kind in ("jacket", "coat") else 0)
        gap = None
        if kind in ("jacket", "coat"):
            open_front = u() < 0.4
            g.tags.append("open" if open_front else "buttoned")
            lap = u(1.08, 1.22)
            base = u(0.3, 0.7) if open_front else 0.0
            gap = lambda z, lap=lap, base=base: base + np.clip((z - lap) / (top - lap), 0, 1) * 1.0  # noqa: E731
        dip = {"tshirt": u(0.02, 0.09), "shirt": 0.03, "hoodie": 0.03}.get(kind, 0.0)
        flare = u(0.05, 0.25) if kind == "coat" else 0.0
        grid, theta, closed = shell(
            body,
            rng,
            hem,
            top,
            ease=ease,
            loose=loose,
            fold=u(0.006, 0.016),
            neck_dip=dip,
            gap=gap,
            flare=flare,
            z_hang=Z_BUST if kind != "coat" else Z_HIP,
            hem_curve=u(0.0, 0.05) if kind == "shirt" else 0.0,
            hem_wave=u(0, 0.01),
        )
        thick = {"jacket": 0.009, "coat": 0.012, "hoodie": 0.007}.get(kind, 0.004)
        g.parts.append(Part("body", MeshData().add_grid(grid, closed=closed), "main", thick))
        length = {"tshirt": u(0.22, 0.4), "shirt": 1.0 if u() < 0.75 else u(0.3, 0.45)}.get(
            kind, 1.0
        )
        _sleeves(g, body, rng, length, ease * 0.8 + 0.01, hang, length > 0.9 and kind != "tshirt")
        centre = np.array([0, body.profile(np.array([top]))[2][0], top])
        if kind == "tshirt":
            g.parts.append(
                Part(
                    "neckband",
                    MeshData().add_grid(band(grid[-1], centre, 0.012, -0.004)),
                    "trim",
                    0.004,
                )
            )
        if kind == "shirt":
            col = band(grid[-1], centre, u(0.025, 0.04), u(0.015, 0.03))
            col[-1, :, 2] -= 0.03 * np.clip(-np.sin(theta[-1]), 0, None) ** 4
            g.parts.append(Part("collar", MeshData().add_grid(col), "trim", 0.004))
            zs = np.linspace(hem + 0.08, top - 0.06, rng.integers(5, 8))
            p, nrm = front_points(body, zs, ease)
            g.parts.append(Part("buttons", buttons(p, nrm, 0.0055), "detail", 0.0, 0.0))
        if kind == "hoodie":
            rib = band(grid[0], np.array([0, 0, hem]), -0.05, -0.006)[::-1]
            g.parts.append(Part("rib", MeshData().add_grid(rib), "trim", 0.007))
            if has_head and u() < 0.6:
                hz = np.linspace(top - 0.03, 1.83, 16)
                t = (hz - hz[0]) / (hz[-1] - hz[0])
                r = 0.12 * np.sin(np.pi * (0.25 + 0.7 * t)) + 0.015
                c = np.stack([0 * hz, 0.02 + 0.03 * t, hz], 1)
                hg, _ = ring_grid(c, r * 0.9, r, 40, gap=np.pi * (0.55 + 0.3 * t))
                g.parts.append(Part("hood", MeshData().add_grid(hg, closed=False), "main", 0.007))
            else:
                _, ryb, cyb = body.profile(np.array([1.40]))
                hz = np.linspace(1.49, 1.28, 10)
                c = np.stack(
                    [
                        0 * hz,
                        cyb[0] + ryb[0] + 0.02 + 0.015 * np.sin(np.pi * np.linspace(0, 1, 10)),
                        hz,
                    ],
                    1,
                )
                r = 0.13 * np.sin(np.pi * np.linspace(0.25, 0.95, 10)) + 0.02
                hg, _ = ring_grid(c, r, r * 0.3, 32, ref=(1, 0, 0))
                g.parts.append(
                    Part("hood", MeshData().add_grid(hg, cap_start=False), "main", 0.007)
                )
            pg = grid[8:18, :, :][:, np.abs(np.angle(np.exp(1j * (theta[0] + np.pi / 2)))) < 0.7]
            pc = np.stack([np.zeros(len(pg)), np.zeros(len(pg)), pg[:, 0, 2]], 1)
            g.parts.append(
                Part(
                    "pocket",
                    MeshData().add_grid(
                        radial_offset(pg, pc, np.full(pg.shape[:2], 0.004)), closed=False
                    ),
                    "main",
                    0.004,
                )
            )
        if kind in ("jacket", "coat"):
            col = band(grid[-1], centre, u(0.03, 0.05), u(0.03, 0.05))
            g.parts.append(Part("collar", MeshData().add_grid(col, closed=False), "trim", thick))
            if "buttoned" in g.tags:
                zs = np.linspace(hem + 0.1, 1.12, rng.integers(2, 5))
                p, nrm = front_points(body, zs, ease + 0.012)
                g.parts.append(Part("buttons", buttons(p, nrm, 0.009), "detail", 0.0, 0.0))
            # a shirt or tee underneath shows in the V
            under = build("tshirt" if u() < 0.5 else "shirt", body, rng, False, False)
            for p in under.parts:
                if not p.name.startswith(("sleeve", "cuff")):
                    p.role, p.name = "lining", "under_" + p.name
                    g.parts.append(p)
    elif kind in ("dress", "skirt"):
        hem = u(0.25, 0.65) if kind == "dress" else u(0.40, 0.78)
        flare = u(0.0, 0.45)
        z_hang = Z_HIP if flare < 0.2 else Z_WAIST + 0.03
        if kind == "skirt":
            top = Z_WAIST + u(-0.01, 0.03)
            grid, theta, _ = shell(
                body,
                rng,
                hem,
                top,
                ease=u(0.004, 0.01),
                loose=1.0,
                z_hang=z_hang,
                flare=flare,
                fold=u(0.01, 0.03),
                hem_wave=u(0, 0.02),
            )
            g.parts.append(Part("body", MeshData().add_grid(grid), "main", 0.004))
            wb = band(grid[-1], np.array([0, 0, top]), 0.035, -0.002)
            g.parts.append(Part("waistband", MeshData().add_grid(wb), "trim", 0.005))
        else:
            straps = u() < 0.5
            top = 1.33 if straps else Z_NECK - 0.005
            grid, theta, _ = shell(
                body,
                rng,
                hem,
                top,
                ease=u(0.006, 0.015),
                loose=1.0,
                z_hang=z_hang,
                flare=flare,
                fold=u(0.01, 0.03),
                neck_dip=u(0.03, 0.07),
                hem_wave=u(0, 0.02),
                n=56,
            )
            # a dress is fitted above the waist: pull the bodice in
            zc = grid[..., 2]
            pull = np.clip((zc - Z_WAIST + 0.05) / 0.1, 0, 1) * (zc > Z_WAIST - 0.05)
            rx, ry, cy = body.profile(zc.ravel())
            cs, sn = superellipse(theta.ravel(), 2.6)
            fitted = np.stack([rx * cs, cy + ry * sn, zc.ravel()], 1).reshape(grid.shape)
            fitted[..., 1] -= bust_bump(body, zc, theta, 1.3) * 1.05
            fitted = radial_offset(
                fitted,
                np.stack([0 * zc[:, 0], 0 * zc[:, 0], zc[:, 0]], 1),
                np.full(zc.shape, 0.012),
            )
            grid = grid + (fitted - grid) * pull[..., None]
            g.parts.append(Part("body", MeshData().add_grid(grid), "main", 0.004))
            if straps:
                for side in (-1, 1):
                    zs = np.array([1.30, 1.40, 1.47, 1.40, 1.30])
                    ys = np.array([-1, -0.8, 0, 0.8, 1.0])
                    rxp, ryp, cyp = body.profile(zs)
                    pts = np.stack(
                        [side * np.full(5, 0.095 * body.width), cyp + ys * (ryp + 0.006), zs], 1
                    )
                    pts[2, 2] = body.profile(np.array([1.46]))[0][0] * 0 + 1.478
                    sp = resample(pts, 20)
                    sg, _ = ring_grid(sp, 0.012, 0.003, 10, ref=(1, 0, 0))
                    g.parts.append(
                        Part(
                            f"strap{side:+d}",
                            MeshData().add_grid(sg, cap_start=True, cap_end=True),
                            "trim",
                            0.0,
                            0.0,
                        )
                    )
            elif u() < 0.6:
                _sleeves(g, body, rng, u(0.15, 1.0), 0.02, hang, False)
    elif kind == "trousers":
        top = Z_WAIST + u(-0.04, 0.01)
        ease = u(0.008, 0.02)
        grid, _, _ = shell(
            body, rng, 0.74, top, n=16, ease=ease, loose=1.0, z_hang=Z_HIP, fold=0.005
        )
        g.parts.append(Part("body", MeshData().add_grid(grid, cap_start=True), "main", 0.005))
        wide = u(0.0, 0.05)
        for side in (-1.0, 1.0):
            path = body.leg_path(side)
            path = np.vstack([path[0] + [0, 0, 0.05], path])
            path = resample(path, 50)
            r = limb_radii(LEG_RADII, 50, body.width)
            r = np.maximum.accumulate(r[::-1])[::-1] * 0.0 + np.maximum(
                r, np.linspace(0.095, 0.07, 50)
            )
            r = r + ease + wide * np.linspace(0, 1, 50)
            lg, th = ring_grid(path, r, r * 0.95, 32, ref=(1, 0, 0))
            off = fold_field(rng, 50, th, np.linspace(0.004, 0.012, 50), 0.5, (2, 6))
            wr = 0.5 + 0.5 * np.sin(np.linspace(0, u(20, 40), 50)[:, None] + np.sin(2 * th))
            off += 0.006 * wr * np.linspace(0, 1, 50)[:, None] ** 2
            g.parts.append(
                Part(
                    f"leg{int(side):+d}",
                    MeshData().add_grid(radial_offset(lg, path, off)),
                    "main",
                    0.005,
                )
            )
        wb = band(grid[-1], np.array([0, 0, top]), 0.04, -0.003)
        g.parts.append(Part("waistband", MeshData().add_grid(wb), "trim", 0.005))
    else:
        raise ValueError(f"unknown garment kind {kind!r}; expected one of {KINDS}")
    return g
