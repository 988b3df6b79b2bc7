"""The hull's triangle mesh: marching cubes on the carved field, the pieces kept, Taubin
smoothing, vertex-clustering decimation, normals."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SegcoreError, optional_import

DEFAULT_SMOOTH = 3  # Taubin iterations (each vertex moves at most SMOOTH_CLAMP voxels)
SMOOTH_CLAMP = 0.25  # voxels
KEEP_SHARE = 0.05  # pieces of the hull kept: at least this share of the largest one's faces


class HullError(SegcoreError):
    """The visual hull could not be built (no masks, nothing left after carving)."""


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    colors: np.ndarray | None = None  # (V, 3) uint8 RGB
    info: dict = field(default_factory=dict)

    def volume(self) -> float:
        v = self.vertices[self.faces]
        return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)

    def area(self) -> float:
        v = self.vertices[self.faces]
        return float(np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum())


def largest_component(vertices: np.ndarray, faces: np.ndarray, share: float = 0.0):
    """Keep the connected component with the most faces, and any other with at least
    ``share`` of its faces (a stand's base cut off by a gap in the pole is not debris)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(vertices)
    if len(faces) == 0:
        return vertices, faces
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    ncomp, labels = connected_components(adj, directed=False)
    if ncomp <= 1:
        return vertices, faces
    flab = labels[faces[:, 0]]
    counts = np.bincount(flab)
    faces = faces[counts[flab] >= max(1.0, share * counts.max())]
    return compact(vertices, faces)


def compact(vertices: np.ndarray, faces: np.ndarray, *extra):
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    out = (vertices[used], remap[faces])
    return out + tuple(x[used] for x in extra) if extra else out


def taubin_smooth(
    vertices: np.ndarray, faces: np.ndarray, iterations: int = 10, lam=0.5, mu=-0.53
) -> np.ndarray:
    """Taubin's lambda/mu smoothing with the uniform Laplacian (keeps the volume)."""
    from scipy.sparse import coo_matrix, diags

    n = len(vertices)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    a = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(axis=1)).ravel()
    w = diags(1.0 / np.maximum(deg, 1)) @ a
    v = vertices.copy()
    for _ in range(iterations):
        v = v + lam * (w @ v - v)
        v = v + mu * (w @ v - v)
    return v


def cluster_decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int, cell: float):
    """Vertex-clustering decimation: merge vertices per grid cell until <= ``max_faces``."""
    v, f = vertices, faces
    c = cell
    for _ in range(12):
        if len(f) <= max_faces:
            break
        c = c * max(1.15, float(np.sqrt(len(f) / max_faces)))
        keys = np.floor((vertices - vertices.min(axis=0)) / c).astype(np.int64)
        _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        inv = inv.ravel()
        nv = len(counts)
        v = np.zeros((nv, 3))
        np.add.at(v, inv, vertices)
        v /= counts[:, None]
        f = inv[faces]
        f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
        key = np.sort(f, axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        f = f[np.sort(first)]
        v, f = compact(v, f)
    return v, f


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    fv = vertices[faces]
    fn = np.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0])  # area-weighted
    vn = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(vn, faces[:, i], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def mesh_from_field(
    fld: np.ndarray,
    origin: np.ndarray,
    h: float,
    smooth: int = DEFAULT_SMOOTH,
    max_faces: int = 60000,
) -> Mesh:
    """Marching cubes at 0 (field > 0 inside), large components, smoothing, decimation."""
    measure = optional_import("skimage.measure", "scikit-image")
    pad = np.pad(fld, 1, constant_values=-3 * h)  # closes the surface at the grid's edge
    if not (pad > 0).any():
        raise HullError("nothing is left after carving: the silhouettes do not intersect")
    verts, faces, _, _ = measure.marching_cubes(pad, level=0.0, spacing=(h, h, h))
    verts = verts.astype(np.float64) + origin - h
    faces = faces.astype(np.int64)
    verts, faces = largest_component(verts, faces, KEEP_SHARE)
    mesh = Mesh(verts, faces)
    if mesh.volume() < 0:  # make the winding counter-clockwise from outside
        faces = faces[:, ::-1].copy()
    if smooth > 0:
        # smoothing takes out the grid's terracing; each vertex moves at most ``SMOOTH_CLAMP``
        # voxels, so thin parts (a sleeve, a stand's pole) keep their silhouette
        moved = taubin_smooth(verts, faces, smooth) - verts
        norm = np.linalg.norm(moved, axis=1, keepdims=True)
        verts = verts + moved * np.minimum(1.0, SMOOTH_CLAMP * h / np.maximum(norm, 1e-12))
    verts, faces = cluster_decimate(verts, faces, max_faces, h)
    return Mesh(verts, faces)
