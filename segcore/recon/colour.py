"""Vertex colours of the hull from the frames: per vertex the median over the views that see
it (in frame, inside the mask, facing the camera, not hidden behind nearer parts of the mesh
by a coarse depth buffer)."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from ..errors import SegcoreError
from ..io import read_image
from .camera import View, project
from .mesh import Mesh, vertex_normals

log = logging.getLogger(__name__)


def color_vertices(mesh: Mesh, views: list[View], h: float) -> np.ndarray:
    """Per-vertex RGB: median over the views that see the vertex (see the module doc)."""
    V = len(mesh.vertices)  # noqa: N806
    normals = vertex_normals(mesh.vertices, mesh.faces)
    samples = np.full((V, len(views), 3), np.nan, np.float32)
    weights = np.zeros((V, len(views)), np.float32)
    for j, v in enumerate(views):
        if v.image is None:
            continue
        try:
            img = read_image(v.image)
        except SegcoreError as exc:
            log.warning("vertex colours: skipping %s (%s)", v.image, exc)
            continue
        uv, z = project(mesh.vertices, v)
        to_cam = v.center - mesh.vertices
        cosang = np.einsum("ij,ij->i", normals, to_cam) / np.maximum(
            np.linalg.norm(to_cam, axis=1), 1e-12
        )
        px = np.round(uv).astype(np.int64)
        ok = (
            (z > 0)
            & (cosang > 0.15)
            & (px[:, 0] >= 0)
            & (px[:, 0] < v.width)
            & (px[:, 1] >= 0)
            & (px[:, 1] < v.height)
        )
        if v.mask is not None:
            inner = cv2.erode(v.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            ok[ok] &= inner[px[ok, 1], px[ok, 0]]
        if not ok.any():
            continue
        # coarse depth buffer of the facing vertices: drop those behind nearer surface
        fpx = v.K[0, 0] * h / max(float(np.median(z[ok])), 1e-9)
        cell = max(2.0, 2.5 * fpx)
        gw, gh = int(v.width / cell) + 1, int(v.height / cell) + 1
        gx = (uv[ok, 0] / cell).astype(np.int64).clip(0, gw - 1)
        gy = (uv[ok, 1] / cell).astype(np.int64).clip(0, gh - 1)
        zb = np.full(gw * gh, np.inf)
        np.minimum.at(zb, gy * gw + gx, z[ok])
        vis = z[ok] <= zb[gy * gw + gx] + 2.5 * h
        sel = np.flatnonzero(ok)[vis]
        bgr = img[px[sel, 1], px[sel, 0]].astype(np.float32)
        samples[sel, j] = bgr[:, ::-1]
        weights[sel, j] = cosang[sel]
    colors = np.full((V, 3), 160, np.uint8)
    have = np.isfinite(samples[:, :, 0]).any(axis=1)
    if have.any():
        colors[have] = np.clip(np.nanmedian(samples[have], axis=1) + 0.5, 0, 255).astype(np.uint8)
    if (~have).any() and have.any():  # unseen vertices: the nearest seen vertex's colour
        from scipy.spatial import cKDTree

        _, nn = cKDTree(mesh.vertices[have]).query(mesh.vertices[~have])
        colors[~have] = colors[have][nn]
    return colors
