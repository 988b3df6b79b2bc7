"""PLY files: the hull as a binary mesh with vertex colours (read back too), the sparse points
as an ascii point cloud (nerfstudio's ``sparse_pc.ply``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes
from .mesh import Mesh


def write_ply(path, mesh: Mesh) -> Path:
    """A binary little-endian PLY with vertex colours (Blender, MeshLab, CloudCompare)."""
    path = Path(path)
    v = np.asarray(mesh.vertices, "<f4")
    c = mesh.colors if mesh.colors is not None else np.full((len(v), 3), 200, np.uint8)
    head = (
        "ply\nformat binary_little_endian 1.0\ncomment segcore visual hull\n"
        f"element vertex {len(v)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(mesh.faces)}\n"
        "property list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    vd = np.zeros(len(v), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    vd["p"], vd["c"] = v, c
    fd = np.zeros(len(mesh.faces), dtype=[("n", "u1"), ("i", "<i4", 3)])
    fd["n"], fd["i"] = 3, mesh.faces
    atomic_write_bytes(path, head + vd.tobytes() + fd.tobytes())
    return path


def read_ply(path) -> Mesh:
    """Read back :func:`write_ply`'s format (binary little-endian, xyz + rgb, triangles)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    nv = nf = 0
    for line in header:
        if line.startswith("element vertex"):
            nv = int(line.split()[-1])
        elif line.startswith("element face"):
            nf = int(line.split()[-1])
    vd = np.frombuffer(data, dtype=[("p", "<f4", 3), ("c", "u1", 3)], count=nv, offset=end)
    fd = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", 3)], count=nf, offset=end + vd.nbytes)
    return Mesh(vd["p"].astype(np.float64), fd["i"].astype(np.int64), vd["c"].copy())


def write_ply_points(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """An ascii PLY point cloud with RGB colours."""
    head = (
        "ply\nformat ascii 1.0\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    rows = "".join(
        f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b}\n"
        for (x, y, z), (r, g, b) in zip(np.asarray(points, float), np.asarray(colors, int))
    )
    atomic_write_bytes(path, (head + rows).encode("ascii"))
