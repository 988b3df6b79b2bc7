"""Cloth pieces lofted around a ``BodyShape`` (pure numpy): draped shells, sleeves, bands.

Shells follow the body with ease, hang straight below the widest point (drape), flare, and
carry fold fields (vertical folds deepening toward hems, wrinkles along sleeves).
"""

from __future__ import annotations

import numpy as np

from .body import ARM_RADII, Z_BUST, BodyShape, bust_bump, limb_radii
from .geometry import MeshData, radial_offset, resample, ring_grid, superellipse


def fold_field(rng, n, theta, amp, vertical=0.85, count=(5, 14)):
    """(N,S) outward offsets: a few sinusoidal folds drifting along the rings, 0..amp."""
    out = np.zeros_like(theta)
    waves = 3
    for _ in range(waves):
        k = rng.integers(*count)
        drift = np.cumsum(rng.normal(0, 1 - vertical, n)) * 0.6
        out += (0.5 + 0.5 * np.sin(k * theta + rng.uniform(0, 6.3) + drift[:, None])) ** 1.5 * (
            rng.uniform(0.4, 1.0)
        )
    return out / waves * np.asarray(amp)[:, None]


def _drape(body: BodyShape, z: np.ndarray, ease, loose: float, z_hang: float, flare: float):
    """Garment rx, ry, cy at heights z: body + ease, hanging from the widest point above."""
    rx, ry, cy = body.profile(z)
    order = np.argsort(-z)  # top to bottom
    hang = z <= z_hang
    rxm, rym = rx.copy(), ry.copy()
    rxm[order] = np.maximum.accumulate(np.where(hang, rx, 0)[order])
    rym[order] = np.maximum.accumulate(np.where(hang, ry, 0)[order])
    rx = np.where(hang, rx + loose * (rxm - rx), rx)
    ry = np.where(hang, ry + loose * (rym - ry), ry)
    below = np.clip(z_hang - z, 0, None) * flare
    return rx + ease + below, ry + ease * 0.9 + below * 0.85, cy


def shell(
    body,
    rng,
    z0,
    z1,
    n=40,
    s=72,
    ease=0.02,
    loose=0.8,
    z_hang=Z_BUST,
    flare=0.0,
    fold=0.012,
    neck_dip=0.0,
    hem_wave=0.0,
    gap=None,
    power=2.6,
    hem_curve=0.0,
):
    """Tube from hem z0 to top z1 as a grid (N,S,3); ``gap(z)`` opens the front (radians)."""
    zi = np.linspace(z0, z1, n)
    if gap is None:
        theta = np.broadcast_to(-np.pi / 2 + 2 * np.pi * np.arange(s) / s, (n, s)).copy()
        closed = True
    else:
        g = np.asarray(gap(zi), float)
        t = np.arange(s) / (s - 1)
        theta = -np.pi / 2 + g[:, None] / 2 + t[None] * (2 * np.pi - g[:, None])
        closed = False
    z = np.broadcast_to(zi[:, None], (n, s)).copy()
    front = np.clip(-np.sin(theta), 0, None)
    if neck_dip:
        w = np.clip((zi - (z1 - 2.5 * neck_dip)) / (2.5 * neck_dip), 0, 1)[:, None] ** 1.3
        z -= neck_dip * front**3 * w
    if hem_wave or hem_curve:
        w = np.clip(1 - (zi - z0) / 0.12, 0, 1)[:, None]
        wave = hem_wave * np.sin(rng.integers(3, 9) * theta + rng.uniform(0, 6.3))
        z += (wave + hem_curve * np.abs(np.cos(theta))) * w
    flat = z.ravel()
    rx, ry, cy = _drape(body, flat, ease, loose, z_hang, flare)
    cs, sn = superellipse(theta.ravel(), power)
    grid = np.stack([rx * cs, cy + ry * sn, flat], axis=1).reshape(n, s, 3)
    grid[..., 1] -= bust_bump(body, z, theta, 1.3) * 1.05
    depth = np.clip((z_hang - zi) / max(z_hang - z0, 1e-3), 0, 1)
    amp = fold * (0.25 + 0.75 * depth + 0.3 * flare)
    centres = np.stack([np.zeros(n), body.profile(zi)[2], zi], axis=1)
    grid = radial_offset(grid, centres, fold_field(rng, n, theta, amp))
    return grid, theta, closed


def sleeve(body, rng, side, length, ease=0.025, hang=False, fold=0.008, s=28, end_scale=1.0):
    """Sleeve tube along the arm path, starting inside the shoulder; flat when no arm is inside."""
    path = body.arm_path(side, length)
    start = body.shoulder_point(side) + np.array([-side * 0.05, 0, 0.012])
    path = np.vstack([start, path])
    path = resample(path, max(8, int(60 * length)))
    n = len(path)
    r = limb_radii(ARM_RADII, n, body.width) + ease
    r[0] = max(r[0], 0.07)
    r[: n // 6] = np.maximum(r[: n // 6], np.linspace(0.075, r[n // 6], n // 6))
    r[-max(2, n // 8) :] *= end_scale
    ry = r * (0.55 if hang else 0.92)
    grid, theta = ring_grid(path, r, ry, s, ref=(0, 1, 0))
    arc = np.linspace(0, 1, n)
    wr = np.sin(arc[:, None] * rng.uniform(25, 45) + 1.5 * np.sin(theta * 2 + rng.uniform(0, 6)))
    off = (
        fold_field(rng, n, theta, np.full(n, fold), vertical=0.6, count=(2, 6))
        + fold * 0.5 * (0.5 + 0.5 * wr) * arc[:, None]
    )
    return radial_offset(grid, path, off), path, r


def band(top_grid_ring: np.ndarray, centre: np.ndarray, up: float, grow: float, rings: int = 5):
    """Strip continuing an edge ring upward (collars, rib trims, waistbands), gently curved."""
    r0 = top_grid_ring
    out = []
    for t in np.linspace(0, 1, rings):
        g = grow * t**1.5  # rises first, then rolls outward like a turned collar
        r = radial_offset(r0[None], centre[None], np.full((1, len(r0)), g))[0]
        out.append(r + [0, 0, up * np.sin(t * np.pi / 2)])
    return np.stack(out)


def buttons(points: np.ndarray, normals: np.ndarray, radius=0.007) -> MeshData:
    m = MeshData()
    for p, nrm in zip(points, normals):
        c = np.array([p, p + nrm * 0.004])
        g, _ = ring_grid(c, radius, radius, 12, ref=(0, 0, 1))
        m.add_grid(g, cap_start=True, cap_end=True)
    return m


def front_points(body, zs, ease, out=0.003):
    rx, ry, cy = _drape(body, np.asarray(zs), ease, 0.8, Z_BUST, 0.0)
    pts = np.stack([np.zeros_like(zs), cy - ry - out, zs], 1)
    return pts, np.tile([0.0, -1.0, 0.0], (len(zs), 1))
