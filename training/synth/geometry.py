"""Pure-numpy mesh building blocks: ring grids lofted along paths, and their faces.

A *ring grid* is an array ``(N, S, 3)``: N cross-section rings of S points each, lofted along a
centre path. Garments, bodies, limbs and stands are all ring grids that the builders bend,
displace and cut before turning them into vertices and quad faces. No bpy here.
"""

from __future__ import annotations

import numpy as np


def _normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def path_frames(centres: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangents, u and v axes along a polyline by parallel transport of ``ref`` (u at start)."""
    c = np.asarray(centres, float)
    tan = np.gradient(c, axis=0) if len(c) > 1 else np.array([[0.0, 0.0, 1.0]])
    tan = _normalize(tan)
    u = np.zeros_like(c)
    u0 = np.asarray(ref, float) - np.dot(ref, tan[0]) * tan[0]
    u[0] = _normalize(u0)
    for i in range(1, len(c)):
        ui = u[i - 1] - np.dot(u[i - 1], tan[i]) * tan[i]
        u[i] = _normalize(ui)
    v = np.cross(tan, u)
    return tan, u, v


def superellipse(theta: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin of a superellipse (power 2 = ellipse, larger = boxier)."""
    c, s = np.cos(theta), np.sin(theta)
    e = 2.0 / power
    return np.sign(c) * np.abs(c) ** e, np.sign(s) * np.abs(s) ** e


def ring_grid(
    centres: np.ndarray,
    rx: np.ndarray,
    ry: np.ndarray,
    segments: int,
    ref=(1.0, 0.0, 0.0),
    power: float = 2.0,
    gap: np.ndarray | float = 0.0,
    gap_at: float = -np.pi / 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Loft ellipses of radii (rx, ry) along ``centres``; returns (grid (N,S,3), theta (N,S)).

    ``theta`` 0 points along u (``ref``), pi/2 along v = tangent x u. With a vertical path and
    ref = +x, v = +y... so theta = -pi/2 is the front (-y). ``gap`` (radians, per ring) leaves an
    opening centred on ``gap_at``; then each ring is an open strip (``grid_faces(closed=False)``).
    """
    centres = np.asarray(centres, float)
    n = len(centres)
    rx = np.broadcast_to(np.asarray(rx, float), (n,))
    ry = np.broadcast_to(np.asarray(ry, float), (n,))
    gap = np.broadcast_to(np.asarray(gap, float), (n,))
    _, u, v = path_frames(centres, np.asarray(ref, float))
    j = np.arange(segments)
    if np.any(gap > 0):
        t = j / (segments - 1)
        start = gap_at + gap[:, None] / 2
        theta = start + t[None, :] * (2 * np.pi - gap[:, None])
    else:
        theta = np.broadcast_to(gap_at + 2 * np.pi * j / segments, (n, segments)).copy()
    cs, sn = superellipse(theta, power)
    grid = (
        centres[:, None, :]
        + (rx[:, None] * cs)[..., None] * u[:, None, :]
        + (ry[:, None] * sn)[..., None] * v[:, None, :]
    )
    return grid, theta


def radial_offset(grid: np.ndarray, centres: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Push each grid point away from its ring centre by ``amount`` (N,S)."""
    d = _normalize(grid - np.asarray(centres)[:, None, :])
    return grid + d * amount[..., None]


def grid_faces(n: int, s: int, closed: bool = True, offset: int = 0) -> list[tuple[int, ...]]:
    """Quad faces joining consecutive rings (outward normals for a counter-clockwise ring)."""
    faces = []
    cols = s if closed else s - 1
    for i in range(n - 1):
        for j in range(cols):
            j2 = (j + 1) % s
            a, b = offset + i * s + j, offset + i * s + j2
            c, d = offset + (i + 1) * s + j2, offset + (i + 1) * s + j
            faces.append((a, b, c, d))
    return faces


class MeshData:
    """Accumulates vertices and faces of several grids into one mesh."""

    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.uvs: list[np.ndarray] = []  # per vertex (u, v, u-period) in metres along the surface
        self.faces: list[tuple[int, ...]] = []
        self.count = 0

    def add_grid(self, grid: np.ndarray, closed=True, cap_start=False, cap_end=False, flip=False):
        n, s, _ = grid.shape
        faces = grid_faces(n, s, closed, self.count)
        if flip:
            faces = [f[::-1] for f in faces]
        self.verts.append(grid.reshape(-1, 3))
        self.uvs.append(grid_uv(grid, closed).reshape(-1, 3))
        base = self.count
        self.count += n * s
        for ring, at_start in ((0, True), (n - 1, False)):
            if (cap_start and at_start) or (cap_end and not at_start):
                centre = grid[ring].mean(axis=0)
                self.verts.append(centre[None])
                self.uvs.append(
                    np.array(
                        [
                            [
                                0.0,
                                self.uvs[-1][ring * s, 1] if ring == 0 else self.uvs[-1][-1, 1],
                                0.0,
                            ]
                        ]
                    )
                )
                ci = self.count
                self.count += 1
                for j in range(s):
                    a, b = base + ring * s + j, base + ring * s + (j + 1) % s
                    tri = (b, a, ci) if at_start != flip else (a, b, ci)
                    faces.append(tri)
        self.faces.extend(faces)
        return self

    def uv_array(self) -> np.ndarray:
        return np.concatenate(self.uvs) if self.uvs else np.zeros((0, 3))

    def array(self) -> np.ndarray:
        return np.concatenate(self.verts) if self.verts else np.zeros((0, 3))


def polyline(points, per_segment: int = 8) -> np.ndarray:
    """Densify a polyline with a Catmull-Rom spline through its points."""
    p = np.asarray(points, float)
    if len(p) < 3:
        t = np.linspace(0, 1, per_segment * (len(p) - 1) + 1)[:, None]
        return p[0] * (1 - t) + p[-1] * t
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        for t in np.linspace(0, 1, per_segment, endpoint=False):
            t2, t3 = t * t, t * t * t
            out.append(
                0.5
                * (
                    2 * p1
                    + (-p0 + p2) * t
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                    + (-p0 + 3 * p1 - 3 * p2 + p3) * t3
                )
            )
    out.append(p[-1])
    return np.array(out)


def resample(values: np.ndarray, n: int) -> np.ndarray:
    """Resample a polyline (K, D) to ``n`` points evenly spaced by arc length."""
    v = np.asarray(values, float)
    d = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(v, axis=0), axis=1))])
    t = np.linspace(0, d[-1], n)
    return np.stack([np.interp(t, d, v[:, k]) for k in range(v.shape[1])], axis=1)


def grid_uv(grid: np.ndarray, closed: bool) -> np.ndarray:
    """Surface coordinates of a ring grid in metres: u around the ring, v along the path.

    Returns (N, S, 3): u, v and the ring's perimeter (the u period of a closed ring, else 0),
    so fabric patterns follow the cloth instead of cutting through it.
    """
    n, s, _ = grid.shape
    step = np.linalg.norm(np.diff(grid, axis=1), axis=2)  # (N, S-1)
    u = np.concatenate([np.zeros((n, 1)), np.cumsum(step, axis=1)], axis=1)
    wrap = np.linalg.norm(grid[:, 0] - grid[:, -1], axis=1)
    period = (u[:, -1] + wrap) if closed else np.zeros(n)
    centre = grid.mean(axis=1)
    dv = np.linalg.norm(np.diff(grid, axis=0), axis=2).mean(axis=1) if n > 1 else np.zeros(0)
    v = np.concatenate([[0.0], np.cumsum(dv)]) + centre[0, 2] * 0.0
    # centre u on the ring's middle so the pattern is symmetric left/right
    u = u - u[:, s // 2 : s // 2 + 1]
    return np.stack(
        [u, np.broadcast_to(v[:, None], (n, s)), np.broadcast_to(period[:, None], (n, s))], axis=2
    )
