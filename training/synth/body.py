"""Body shape shared by the forms, mannequins and figures and by the garments that dress them.

Units are metres in the subject frame (z up, origin at the base centre, the front faces -y).
``BodyShape`` samples a torso profile (half-width rx, half-depth ry, centre offset cy per height)
so that a garment built with ``torso_rings(..., ease=e)`` wraps the same body with a margin.
Limbs are paths with radii. Everything here is numpy; ``scene.py`` turns it into objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import MeshData, polyline, resample, ring_grid

# Torso keyframes: z, rx, ry, cy (centre y; + is the back). Crotch to the top of the neck.
_TORSO = np.array(
    [
        [0.76, 0.150, 0.115, 0.005],
        [0.84, 0.172, 0.128, 0.010],
        [0.92, 0.178, 0.128, 0.008],
        [1.02, 0.140, 0.098, 0.000],
        [1.14, 0.150, 0.108, -0.005],
        [1.24, 0.166, 0.125, -0.014],
        [1.33, 0.172, 0.118, -0.006],
        [1.40, 0.192, 0.098, 0.006],
        [1.435, 0.188, 0.088, 0.010],
        [1.462, 0.160, 0.078, 0.012],
        [1.482, 0.115, 0.068, 0.014],
        [1.497, 0.072, 0.060, 0.016],
        [1.510, 0.058, 0.056, 0.016],
        [1.590, 0.054, 0.054, 0.012],
    ]
)
# Indices into _TORSO for landmarks used by garments.
Z_HIP, Z_WAIST, Z_BUST, Z_UNDERARM, Z_SHOULDER, Z_NECK = 0.90, 1.02, 1.24, 1.33, 1.42, 1.505


@dataclass(frozen=True)
class BodyShape:
    """Proportions of one body; all garments on it are built from the same numbers."""

    width: float = 1.0  # scales rx
    depth: float = 1.0  # scales ry
    waist: float = 1.0  # extra scale at the waist
    hips: float = 1.0  # extra scale at the hips
    bust: float = 0.0  # 0..1 bust bumps (female forms)
    arm_angle: float = 0.25  # radians from vertical, outward
    arm_forward: float = 0.1  # radians, arms swing forward
    elbow: float = 0.2  # radians, forearm bend forward
    leg_spread: float = 0.05  # radians, legs apart

    def profile(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """rx, ry, cy of the torso at heights ``z``."""
        k = _TORSO
        rx = np.interp(z, k[:, 0], k[:, 1]) * self.width
        ry = np.interp(z, k[:, 0], k[:, 2]) * self.depth
        w = np.exp(-(((z - Z_WAIST) / 0.08) ** 2)) * (self.waist - 1.0)
        h = np.exp(-(((z - Z_HIP) / 0.07) ** 2)) * (self.hips - 1.0)
        rx, ry = rx * (1 + w + h), ry * (1 + w + 0.6 * h)
        return rx, ry, np.interp(z, k[:, 0], k[:, 3])

    def shoulder_point(self, side: float) -> np.ndarray:
        return np.array([side * 0.175 * self.width, 0.008, 1.405])

    def arm_path(self, side: float, length: float = 1.0) -> np.ndarray:
        """Shoulder joint -> elbow -> wrist (a fraction ``length`` of the whole arm)."""
        a, f = self.arm_angle, self.arm_forward
        d1 = np.array([side * np.sin(a), -np.sin(f) * np.cos(a), -np.cos(a) * np.cos(f)])
        elbow = self.shoulder_point(side) + 0.29 * d1
        f2 = f + self.elbow
        d2 = np.array([side * np.sin(a * 0.8), -np.sin(f2), -np.cos(f2)])
        d2 /= np.linalg.norm(d2)
        wrist = elbow + 0.25 * d2
        pts = polyline([self.shoulder_point(side), elbow, wrist], 10)
        pts = resample(pts, 40)
        return pts[: max(2, int(round(40 * length)))]

    def leg_path(self, side: float) -> np.ndarray:
        s = self.leg_spread
        hip = np.array([side * 0.088 * self.width * self.hips, 0.0, 0.86])
        d = np.array([side * np.sin(s), 0.0, -np.cos(s)])
        knee = hip + 0.40 * d + np.array([0, -0.01, 0])
        ankle = hip + 0.78 * d
        return resample(polyline([hip, knee, ankle], 10), 40)


ARM_RADII = np.array([[0.0, 0.050], [0.35, 0.042], [0.5, 0.036], [0.75, 0.033], [1.0, 0.026]])
LEG_RADII = np.array([[0.0, 0.085], [0.35, 0.066], [0.52, 0.047], [0.7, 0.050], [1.0, 0.033]])


def limb_radii(table: np.ndarray, n: int, scale: float = 1.0) -> np.ndarray:
    return np.interp(np.linspace(0, 1, n), table[:, 0], table[:, 1]) * scale


def torso_rings(body: BodyShape, z: np.ndarray, ease=0.0, segments=64, power=2.6, gap=0.0):
    """Ring grid of the torso between heights ``z`` grown by ``ease`` metres (array or scalar)."""
    z = np.asarray(z, float)
    rx, ry, cy = body.profile(z)
    ease = np.broadcast_to(np.asarray(ease, float), z.shape)
    centres = np.stack([np.zeros_like(z), cy, z], axis=1)
    grid, theta = ring_grid(centres, rx + ease, ry + ease * 0.9, segments, power=power, gap=gap)
    grid[..., 1] -= bust_bump(body, np.broadcast_to(z[:, None], theta.shape), theta)
    return grid, theta, centres


def bust_bump(body: BodyShape, z: np.ndarray, theta: np.ndarray, spread: float = 1.0) -> np.ndarray:
    """Forward (-y) offset of two soft bumps at the front; garments apply it too (wider)."""
    if body.bust <= 0:
        return np.zeros_like(theta)
    bz = np.exp(-(((z - Z_BUST) / (0.06 * spread)) ** 2))
    out = np.zeros_like(theta)
    for side in (-1, 1):
        ang = np.angle(np.exp(1j * (theta - (-np.pi / 2 + side * 0.45))))
        out += np.exp(-((ang / (0.32 * spread)) ** 2)) * bz * 0.035 * body.bust
    return out


def torso_heights(z0: float, z1: float, n: int) -> np.ndarray:
    """Heights from z0 to z1, denser around the shoulders where the profile turns."""
    k = _TORSO
    zs = np.linspace(z0, z1, 400)
    rx = np.interp(zs, k[:, 0], k[:, 1])
    pts = resample(np.stack([rx * 1.5, zs], axis=1), n)
    return np.sort(pts[:, 1])


def body_mesh(body: BodyShape, kind: str, rng: np.random.Generator) -> dict[str, MeshData]:
    """Meshes of a dress form / mannequin / figure, keyed by part (``torso``, ``limbs``, ...)."""
    parts: dict[str, MeshData] = {}
    if kind == "dress_form":
        z = torso_heights(0.80, 1.56, 44)
        grid, _, _ = torso_rings(body, z)
        parts["torso"] = MeshData().add_grid(grid, cap_start=True, cap_end=True)
        cap = MeshData()
        knob = np.linspace(1.56, 1.63, 6)
        r = 0.04 * np.sqrt(np.clip(1 - ((knob - 1.56) / 0.072) ** 2, 0.05, 1))
        g, _ = ring_grid(np.stack([0 * knob, 0 * knob + 0.012, knob], 1), r, r, 24)
        cap.add_grid(g, cap_end=True, cap_start=True)
        parts["knob"] = cap
        return parts
    z = torso_heights(0.74, 1.59, 48)
    grid, _, _ = torso_rings(body, z)
    parts["torso"] = MeshData().add_grid(grid, cap_start=True, cap_end=True)
    limbs = MeshData()
    for side in (-1.0, 1.0):
        path = body.arm_path(side)
        r = limb_radii(ARM_RADII, len(path), body.width)
        g, _ = ring_grid(path, r, r * 0.9, 20, ref=(0, 1, 0))
        limbs.add_grid(g, cap_start=True, cap_end=True)
        hand = path[-1] + (path[-1] - path[-3]) / np.linalg.norm(path[-1] - path[-3]) * 0.05
        hp = resample(np.array([path[-1], hand, hand + (hand - path[-1]) * 0.9]), 10)
        hr = 0.032 * np.sqrt(np.clip(np.sin(np.linspace(0.25, np.pi, 10)), 0.05, 1))
        g, _ = ring_grid(hp, hr * 0.55, hr, 16, ref=(0, 1, 0))
        limbs.add_grid(g, cap_start=True, cap_end=True)
        leg = body.leg_path(side)
        lr = limb_radii(LEG_RADII, len(leg), body.width)
        g, _ = ring_grid(leg, lr, lr * 0.95, 24, ref=(1, 0, 0))
        limbs.add_grid(g, cap_start=True, cap_end=True)
        ank = leg[-1]
        fp = np.array([ank + [0, 0.02, -0.02], ank + [0, -0.06, -0.05], ank + [0, -0.16, -0.06]])
        fp[:, 2] = np.maximum(fp[:, 2], 0.035)
        fp = resample(polyline(fp, 6), 12)
        fr = 0.04 * np.sqrt(np.clip(np.sin(np.linspace(0.3, np.pi, 12)), 0.1, 1))
        g, _ = ring_grid(fp, fr, fr * 0.7, 16, ref=(1, 0, 0))
        limbs.add_grid(g, cap_start=True, cap_end=True)
    parts["limbs"] = limbs
    head = MeshData()
    hz = np.linspace(1.565, 1.79, 18)
    t = (hz - 1.565) / (1.79 - 1.565)
    prof = np.sqrt(np.clip(np.sin(np.pi * np.clip(t * 0.92 + 0.08, 0, 1)), 0, 1))
    r = 0.088 * prof * (1 - 0.12 * t)
    cy = 0.012 - 0.02 * t
    g, _ = ring_grid(np.stack([0 * hz, cy, hz], 1), r * 0.85, r, 28)
    head.add_grid(g, cap_start=True, cap_end=True)
    parts["head"] = head
    if kind == "figure":
        # hair: a shell over the top and back of the head, open at the face, sometimes long
        low = 1.60 if rng.uniform() < 0.6 else float(rng.uniform(1.38, 1.5))
        hz = np.linspace(low, 1.79, 16)
        t = np.clip((hz - 1.565) / (1.79 - 1.565), 0, 1)
        prof = np.sqrt(np.clip(np.sin(np.pi * np.clip(t * 0.92 + 0.08, 0, 1)), 0, 1))
        r = np.maximum(0.088 * prof * (1 - 0.12 * t), 0.07 * (hz < 1.62)) + 0.012
        gap = np.clip((1.735 - hz) / 0.08, 0, 1) * np.pi * 0.95
        g, _ = ring_grid(
            np.stack([0 * hz, 0.012 - 0.02 * t + 0.012 * (hz < 1.6), hz], 1),
            r * 0.85,
            r,
            28,
            gap=gap + 1e-3,
        )
        parts["hair"] = MeshData().add_grid(g, closed=False, cap_end=False)
    return parts


def stand_mesh(kind: str, rng: np.random.Generator, top: float) -> MeshData:
    """Pole + base of a form (``tripod``, ``disc``, ``cross``) reaching height ``top``."""
    m = MeshData()
    zs = np.linspace(0.03, top, 6)
    r = 0.011 if kind != "disc" else 0.014
    g, _ = ring_grid(np.stack([0 * zs, 0 * zs + 0.01, zs], 1), r, r, 16)
    m.add_grid(g, cap_end=True)
    if kind == "disc":
        zs = np.array([0.0, 0.025, 0.032])
        rr = np.array([0.24, 0.24, 0.2])
        g, _ = ring_grid(np.stack([0 * zs, 0 * zs + 0.01, zs], 1), rr, rr, 48)
        m.add_grid(g, cap_start=True, cap_end=True)
    else:
        n = 3 if kind == "tripod" else 4
        a0 = rng.uniform(0, 2 * np.pi)
        for i in range(n):
            a = a0 + 2 * np.pi * i / n
            d = np.array([np.cos(a), np.sin(a), 0.0])
            p = np.array([[0, 0.01, 0.16], *(d * 0.33 + [0, 0.01, 0.02])[None]])
            p[0] += d * 0.01
            g, _ = ring_grid(resample(p, 6), 0.012, 0.008, 10, ref=(0, 0, 1))
            m.add_grid(g, cap_start=True, cap_end=True)
        zs = np.linspace(0.12, 0.2, 3)
        g, _ = ring_grid(np.stack([0 * zs, 0 * zs + 0.01, zs], 1), 0.022, 0.022, 16)
        m.add_grid(g, cap_start=True, cap_end=True)
    return m
