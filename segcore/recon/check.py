"""How the hull fits the masks: its silhouette rendered into a view, and a contact sheet of
both outlines with their IoU (``hull_check.png``)."""

from __future__ import annotations

import cv2
import numpy as np

from ..io import read_image
from ..sheet import EDGE_BGR, TRUTH_BGR, grid, overlay, titled
from .camera import View, project, scaled_view
from .mesh import HullError, Mesh


def render_silhouette(mesh: Mesh, view: View, supersample: int = 4) -> np.ndarray:
    """The mesh's silhouette in ``view``: bool (H, W), pixels whose area is mostly covered.

    Every triangle is filled (no depth test needed for a silhouette) on a ``supersample``
    times finer grid, then area-averaged, so edges are not dilated by the rasteriser.
    """
    uv, z = project(mesh.vertices, view)
    tri = mesh.faces[(z[mesh.faces] > 0).all(axis=1)]
    s = max(1, int(supersample))
    out = np.zeros((view.height * s, view.width * s), np.uint8)
    if len(tri):
        shift = 4  # sub-pixel precision for the rasteriser
        # fine-grid pixel centres sit at (i + 0.5) / s - 0.5 in frame pixels
        pts = np.round(((uv[tri] + 0.5) * s - 0.5) * (1 << shift)).astype(np.int64)
        lim = (1 << 30) >> shift
        pts = np.clip(pts, -lim, lim).astype(np.int32)
        for tri_px in pts:  # one by one: fillPoly's even-odd rule would cancel overlaps
            cv2.fillConvexPoly(out, tri_px, 1, lineType=cv2.LINE_4, shift=shift)
    if s > 1:
        cover = cv2.resize(
            out.astype(np.float32), (view.width, view.height), interpolation=cv2.INTER_AREA
        )
        return cover >= 0.5
    return out > 0


def view_fit(mesh: Mesh, view: View) -> tuple[float, np.ndarray]:
    """IoU of the mesh's silhouette in ``view`` with the view's mask (1 = identical), and
    the silhouette."""
    sil = render_silhouette(mesh, view, supersample=2)
    union = (sil | view.mask).sum()
    return (float((sil & view.mask).sum() / union) if union else 1.0), sil


def silhouette_fit(mesh: Mesh, views: list[View], long_side: int = 320) -> dict[str, float]:
    """The mesh's fit to every masked view (IoU per frame name, at ``long_side`` pixels):
    the verdict's mesh fit and its suspect masks (:mod:`segcore.recon.verdict`)."""
    return {
        v.name or str(i): round(view_fit(mesh, scaled_view(v, long_side))[0], 4)
        for i, v in enumerate(views)
        if v.mask is not None
    }


def silhouette_check(
    mesh: Mesh, views: list[View], frames: int = 8, long_side: int = 640, cols: int = 4
) -> tuple[np.ndarray, dict[str, float]]:
    """A contact sheet of how the hull fits the masks, and the IoU per frame shown.

    ``frames`` views spread over the sequence, each drawn with its mask's edge (magenta)
    and the hull's reprojected silhouette's edge (green), labelled with their IoU: where
    the two part, a mask missed or added something, or the cameras are off there.
    """
    shown = [v for v in views if v.mask is not None]
    if not shown:
        raise HullError("no view has a mask to check the hull against")
    idx = np.unique(np.linspace(0, len(shown) - 1, min(frames, len(shown))).round().astype(int))
    tiles, labels, ious = [], [], {}
    for i in idx:
        v = scaled_view(shown[i], long_side)
        iou, sil = view_fit(mesh, v)
        ious[v.name or str(i)] = round(iou, 4)
        if v.image is not None:
            bgr = cv2.resize(read_image(v.image), (v.width, v.height), interpolation=cv2.INTER_AREA)
        else:
            bgr = np.full((v.height, v.width, 3), 90, np.uint8)
        m8 = np.where(sil, 255, 0).astype(np.uint8)
        tiles.append(overlay(bgr, m8, np.where(v.mask, 255, 0).astype(np.uint8)))
        labels.append(f"{v.name}  IoU {iou:.3f}")
    sheet = grid(tiles, min(cols, len(tiles)), tile_w=min(320, long_side), labels=labels)
    lines = [
        f"How the garment mesh fits the masks: {len(tiles)} of {len(views)} views, the mesh "
        "seen from each frame's camera; IoU of the two outlines (1 = identical)",
        "Where they part, a mask missed or added a part there, or that camera is off",
    ]
    legend = [(EDGE_BGR, "mesh silhouette"), (TRUTH_BGR, "mask")]
    return titled(sheet, lines, legend), ious
