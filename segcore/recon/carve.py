"""The garment's mesh from its silhouettes: a visual hull, carved, meshed, cleaned, coloured.

    mesh = visual_hull(result)              # result: segcore.recon.ReconResult
    write_ply("hull.ply", mesh)             # segcore.recon.ply

Silhouettes give a watertight shape even where the fabric has too little texture for stereo.

1. **Carve** a voxel grid with the masks of the registered frames. Rather than a binary
   inside/outside test per voxel, each view contributes the signed distance of the voxel's
   projection to the silhouette's edge (pixels, positive inside, scaled to world units by
   depth / focal length); the hull's field is the k-th smallest over the views that see the
   voxel (k = ``outlier_share`` of them, so one bad mask does not bite a hole), which puts the
   surface between voxels with sub-voxel accuracy. A voxel out of frame in a view is not
   constrained by it (close-ups crop the subject); one in frame in fewer than
   ``min_view_share`` of the views is dropped.
2. **Bounds**: the sparse points that fall inside the masks (2nd-98th percentiles, padded),
   then a coarse carve shrinks (or grows) that box to the silhouettes' intersection.
3. **Mesh**: parts thinner than a voxel thickened a little (:func:`keep_thin`: a stand's pole
   would otherwise break into beads), marching cubes (scikit-image), the largest connected
   component and any piece at least ``KEEP_SHARE`` its size (a stand's base cut off where a
   mask misses the thin pole), Taubin smoothing (each vertex moves at most ``SMOOTH_CLAMP``
   voxels), vertex-clustering decimation to at most ``max_faces`` triangles
   (:mod:`segcore.recon.mesh`).
4. **Colour** (:mod:`segcore.recon.colour`): per vertex the median over the views that see
   it (in frame, inside the mask, facing the camera, not hidden behind nearer parts of the
   mesh by a coarse depth buffer).
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from ..geometry import sample_bilinear, silhouette_sdf
from ..options import DEFAULT_VOXELS
from .camera import View, camera_focus, project, views_from_result
from .colour import color_vertices
from .mesh import DEFAULT_SMOOTH, HullError, Mesh, mesh_from_field

THIN_REACH = 0.3  # voxels: how far parts thinner than a voxel are thickened (keep_thin)
CHUNK = 1 << 17  # voxels evaluated at once: CHUNK x views float32 stay small
# grids this fine or finer are carved in a narrow band: a grid BAND_COARSE times coarser
# first, then only the voxels within BAND_MARGIN of its surface (the rest are deep inside or
# far outside, where the field is truncated anyway): the same field, a fraction of the work
BAND_MIN_VOXELS = 96
BAND_COARSE = 4
BAND_MARGIN = 3.0 + 1.5 * BAND_COARSE  # fine voxels: the truncation plus the coarse sampling


def grid_for(bmin, bmax, voxels: int) -> tuple[np.ndarray, float, tuple[int, int, int]]:
    """(origin, voxel size, shape) of a grid over the box with ``voxels`` on its long side."""
    bmin, bmax = np.asarray(bmin, float), np.asarray(bmax, float)
    h = float((bmax - bmin).max()) / max(1, voxels - 1)
    shape = tuple(int(np.ceil((bmax[i] - bmin[i]) / h)) + 1 for i in range(3))
    return bmin, h, shape


def carve(
    views: list[View],
    bmin,
    bmax,
    voxels: int = DEFAULT_VOXELS,
    outlier_share: float = 0.05,
    min_view_share: float = 0.5,
    band: bool = True,
    sdfs: list | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The hull's field on a grid over [bmin, bmax]: (field (nx, ny, nz), origin, voxel size).

    The field is in world units, > 0 inside the hull, truncated to +- 3 voxels. ``band``:
    grids of ``BAND_MIN_VOXELS`` or more are evaluated only near the surface of a coarser
    carve (``BAND_MARGIN``); elsewhere the field is its truncation, with the coarse sign.
    """
    from scipy import ndimage

    views = [v for v in views if v.mask is not None]
    if not views:
        raise HullError("the visual hull needs masks; none of the views has one")
    origin, h, shape = grid_for(bmin, bmax, voxels)
    trunc = np.float32(3 * h)
    sdfs = sdfs if sdfs is not None else [silhouette_sdf(v.mask) for v in views]
    coarse = None
    if band and voxels >= BAND_MIN_VOXELS:
        cfld, corigin, ch = carve(
            views, bmin, bmax, voxels // BAND_COARSE, outlier_share, min_view_share, False, sdfs
        )
        coarse = (cfld, corigin, ch)
    fmeans = [0.5 * (v.K[0, 0] + v.K[1, 1]) for v in views]
    nv = len(views)
    min_views = max(2, int(np.ceil(min_view_share * nv)))
    out = np.empty(int(np.prod(shape)), np.float32)
    axes = [origin[i] + h * np.arange(shape[i]) for i in range(3)]
    total = out.size
    for s in range(0, total, CHUNK):
        idx = np.arange(s, min(total, s + CHUNK))
        ii, jj, kk = np.unravel_index(idx, shape)
        pts = np.stack([axes[0][ii], axes[1][jj], axes[2][kk]], axis=1)
        if coarse is not None:  # far from the coarse surface: the truncation, its sign
            cfld, corigin, ch = coarse
            near = ndimage.map_coordinates(cfld, ((pts - corigin) / ch).T, order=1, mode="nearest")
            far = np.abs(near) >= BAND_MARGIN * h
            out[idx[far]] = np.where(near[far] > 0, trunc, -trunc)
            idx, pts = idx[~far], pts[~far]
            if not len(idx):
                continue
        vals = np.full((len(idx), nv), np.inf, np.float32)
        for j, (v, sdf, f) in enumerate(zip(views, sdfs, fmeans)):
            uv, z = project(pts, v)
            ok = (
                (z > 1e-9)
                & (uv[:, 0] >= -0.5)
                & (uv[:, 0] <= v.width - 0.5)
                & (uv[:, 1] >= -0.5)
                & (uv[:, 1] <= v.height - 0.5)
            )
            if not ok.any():
                continue
            d = sample_bilinear(sdf, uv[ok]) * (z[ok] / f)
            vals[ok, j] = np.clip(d, -trunc, trunc)
        seen = np.isfinite(vals).sum(axis=1)
        vals.sort(axis=1)
        k = np.floor(outlier_share * seen).astype(np.int64)
        res = np.take_along_axis(vals, k[:, None], axis=1)[:, 0]
        res[seen < min_views] = -trunc
        out[idx] = res
    return out.reshape(shape), origin, h


def keep_thin(fld: np.ndarray, h: float, reach: float = THIN_REACH) -> np.ndarray:
    """The field with parts thinner than a voxel thickened by ``reach`` voxels.

    A stand's pole or a leg a few pixels wide is thinner than a voxel: its field is positive
    at one voxel centre of a slice, barely negative at the next, so marching cubes breaks it
    into beads that the clean-up then drops as specks (or it vanishes between centres).
    Where no voxel nearby is more than a voxel deep inside (no thick part within two voxels)
    but the surface is near (field > -0.87 voxel: a cell's corners reach it), the field is
    raised by ``reach`` voxels: thin parts come out whole and a little fat, thick parts keep
    their sub-voxel surface. On the benchmark's turntables with the model's masks, hull IoU
    0.869 -> 0.941 where the stand's pole and legs had vanished, 0.990 unchanged where
    nothing is thin; with the renderer's masks at most -0.003 (slightly fat poles).
    """
    from scipy import ndimage

    if reach <= 0:
        return fld
    thick = ndimage.binary_dilation(fld > h, np.ones((3, 3, 3), bool), iterations=2)
    thin = (fld > -0.87 * h) & ~thick
    out = fld.copy()
    out[thin] += np.float32(reach * h)
    return out


def _occupied_box(fld: np.ndarray, origin: np.ndarray, h: float):
    occ = np.argwhere(fld > 0)
    if len(occ) == 0:
        return None
    lo, hi = occ.min(axis=0), occ.max(axis=0)
    touches = (lo == 0) | (hi == np.array(fld.shape) - 1)
    return origin + h * lo, origin + h * hi, touches, len(occ)


def fit_bounds(
    views: list[View], bmin, bmax, coarse: int = 40, tries: int = 3, outlier_share: float = 0.05
):
    """Shrink (or grow) the box to the silhouettes' intersection with a coarse carve."""
    bmin, bmax = np.asarray(bmin, float), np.asarray(bmax, float)
    for _ in range(tries):
        fld, origin, h = carve(views, bmin, bmax, coarse, outlier_share)
        # conservative: a cell is occupied if the silhouettes reach its corners (a stand's
        # pole, thinner than a coarse cell, falls between the cells' centres otherwise)
        box = _occupied_box(fld + np.float32(0.87 * h), origin, h)
        if box is None:
            raise HullError(
                "the silhouettes do not intersect: the masks and the cameras disagree "
                "(check the masks, or that enough frames registered)"
            )
        lo, hi, touches, _ = box
        if not touches.any():
            pad = 2.5 * h
            return lo - pad, hi + pad
        ext = bmax - bmin
        grow = np.where(touches, 0.5 * ext, 0.0)
        bmin, bmax = bmin - grow, bmax + grow
    return lo - 2.5 * h, hi + 2.5 * h


def initial_bounds(views: list[View], points: np.ndarray | None = None):
    """A box around the subject: masked sparse points (robust), else the cameras' focus."""
    pts = np.asarray(points if points is not None else np.zeros((0, 3)), float).reshape(-1, 3)
    if len(pts):
        inside = np.zeros(len(pts))
        seen = np.zeros(len(pts))
        for v in views:
            uv, z = project(pts, v)
            px = np.round(uv).astype(np.int64)
            ok = (
                (z > 0)
                & (px[:, 0] >= 0)
                & (px[:, 0] < v.width)
                & (px[:, 1] >= 0)
                & (px[:, 1] < v.height)
            )
            seen += ok
            inside[ok] += v.mask[px[ok, 1], px[ok, 0]]
        pts = pts[(seen >= 2) & (inside >= 0.5 * seen)]
    if len(pts) >= 20:
        lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
        ext = max(float((hi - lo).max()), 1e-6)
        pad = 0.25 * ext
        return lo - pad, hi + pad
    # the point nearest to every camera's optical axis, and half the mean camera distance
    centers = np.array([v.center for v in views])
    focus = camera_focus(centers, np.array([np.asarray(v.R)[2] for v in views]))
    r = 0.6 * float(np.mean(np.linalg.norm(centers - focus, axis=1)))
    return focus - r, focus + r


def hull_from_views(
    views: list[View],
    bounds=None,
    points: np.ndarray | None = None,
    voxels: int = DEFAULT_VOXELS,
    smooth: int = DEFAULT_SMOOTH,
    max_faces: int = 60000,
    outlier_share: float = 0.05,
    colors: bool = True,
    thin_reach: float = THIN_REACH,
) -> Mesh:
    """The visual hull of calibrated, masked views (the core of :func:`visual_hull`)."""
    if voxels < 8:
        raise InputError(f"--voxels {voxels} is too small; use 64 to 256")
    t0 = time.perf_counter()
    views = [v for v in views if v.mask is not None]
    if len(views) < 2:
        raise HullError(f"the visual hull needs 2 or more masked views, got {len(views)}")
    if bounds is None:
        b0 = initial_bounds(views, points)
        bounds = fit_bounds(views, *b0, coarse=min(40, voxels), outlier_share=outlier_share)
    bmin, bmax = (np.asarray(b, float) for b in bounds)
    t1 = time.perf_counter()
    fld, origin, h = carve(views, bmin, bmax, voxels, outlier_share)
    fld = keep_thin(fld, h, thin_reach)
    t2 = time.perf_counter()
    mesh = mesh_from_field(fld, origin, h, smooth, max_faces)
    t3 = time.perf_counter()
    if colors and any(v.image is not None for v in views):
        mesh.colors = color_vertices(mesh, views, h)
    t4 = time.perf_counter()
    mesh.info = {
        "voxel_size": h,
        "grid": list(fld.shape),
        "bounds": [bmin.tolist(), bmax.tolist()],
        "views": len(views),
        "vertices": len(mesh.vertices),
        "faces": len(mesh.faces),
        "timings_s": {
            "bounds": round(t1 - t0, 3),
            "carve": round(t2 - t1, 3),
            "mesh": round(t3 - t2, 3),
            "colour": round(t4 - t3, 3),
        },
    }
    return mesh


def visual_hull(result, voxels: int = DEFAULT_VOXELS, **kw) -> Mesh:
    """The visual hull of a reconstruction's registered, masked frames."""
    if result.masks_dir is None:
        raise HullError("the visual hull needs masks; reconstruct with a MASKS_DIR")
    views = views_from_result(result)
    return hull_from_views(views, points=result.points, voxels=voxels, **kw)
