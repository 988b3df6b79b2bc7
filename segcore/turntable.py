"""Circular-motion structure from motion for turntable captures.

On a turntable the camera stands still and the garment turns about one vertical axis by the
same step between frames. Generic incremental SfM does not know that, and on garments it
fails in a characteristic way (docs/recon.md): near frames constrain the turn per frame
poorly (a small subject seen over a few degrees: the bas-relief ambiguity trades rotation
against depth), and repeated prints, mirrored outlines and the stand's pole on the axis
make "the camera barely moves" a consistent explanation. Both are fixed by the capture's
own model, with five unknowns in all:

- the axis direction (tilt towards the camera ``e``, roll ``r``), a point on it ``c = (u, v,
  1)`` in the first frame's camera coordinates (its depth fixes the scale), and the step
  ``theta``: frame ``i`` sees ``x = R(a, i theta) (X - c) + c``;
- **silhouette coherence** (Hernández, Schmitt and Cipolla, "Silhouette coherence for camera
  calibration under circular motion", PAMI 2007) pins down ``theta`` and the axis position:
  with the right cameras the visual hull carved from all the masks reprojects onto every
  mask; with wrong ones it shrinks away from them. Masks are what this project makes, so
  this costs no extra input. As a grid measure (:class:`Silhouettes`) it gives the coarse
  start; as a residual per outline point (:class:`RayCoherence`: the outline's viewing ray
  must graze the hull of the other views) it is smooth enough for least squares;
- **feature tracks** between frames up to three apart (SIFT inside the masks, ratio test,
  a fundamental-matrix check) fix the axis direction well, the step poorly (their
  adjustment's cost is flat in it);
- the **vertical edges of the still background** (a room's corners, a table's legs) meet at
  the vanishing point of the axis, which stands upright on a level floor; and outlines that
  are the same in every frame (a stand's base) are left out of the outline term: they say
  nothing about the turn, and a mask's error there, the same in every frame, reads as a tilt.

Coarse ``theta`` and tilt from the silhouettes; the axis from the vertical edges (when there
are six or more) and from features with that step held (when there are tracks); from each
of these starts (of the cheapest one's turn direction) a robust least-squares fit of tilt,
roll, axis position and step to the tracks (points eliminated, :class:`CircularFit`), the
outline rays and the vertical edges together, and one from the winner's mirror (tilt and
turn reversed, :func:`mirrored`, which the outlines alone cannot tell from the truth); the
lowest cost wins; last, a Nelder-Mead polish (:meth:`CircularFit.polish`) steps over the
shallow pits the outline term has below a pixel, where least squares stops. A plain garment
with no tracks is solved from its outlines alone. One and a half to three minutes for 36
frames at 768x1024.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from .hull import resize_mask, sample_bilinear, scaled_intrinsics, silhouette_sdf
from .plate import clear_of, plate_of

log = logging.getLogger(__name__)

MAX_GAP = 3  # frames matched with the next MAX_GAP frames
RATIO = 0.8  # Lowe's ratio test
MIN_MATCHES = 15
MIN_TRACKS = 30  # fewer: the axis comes from the silhouettes alone
RAY_LONG_SIDE = (512, 1024)  # outline rays on masks of this size (smaller ones upsampled)
STILL_PX = 1.0  # a track moving less than this per frame is dropped
COARSE_TILTS = (0.0, 0.15, -0.15, 0.3, -0.3)  # axis tilts (radians) of the coarse step search
STILL_OUTLINE_PX = 8  # an outline is still where, this far in/out, every frame agrees...
STILL_SHARE = 0.15  # ...but for this share of the frames (the masks' own errors),
STILL_GREY = 6.0  # or where the frames barely change on both sides (grey levels, std)
STILL_KEEP = 0.3  # still outlines are kept when dropping them would leave less than this
ALT_MARGIN = 1.3  # the other turn direction is refined on while its cost is below this x
VERTICAL_MIN = 6  # fewer vertical background edges: no vertical-direction term
VERTICAL_MAX = 40  # the longest this many are used
VERTICAL_LEN = 0.025  # shortest edge, share of the frame's long side
VERTICAL_DEG = 20.0  # largest angle to the image's vertical
VERTICAL_WEIGHT = 20.0  # a vertical edge's pixel against an outline's
FREE = (0, 1, 2, 4)  # the fitted parameters: all but v, the scale gauge
# the last step's simplex (tilt, roll, axis x, step): about half a degree, a pixel or two
POLISH_SIMPLEX = (np.radians(0.5), np.radians(0.5), 0.002, np.radians(0.05))
POLISH_EVALS = 300  # at most this many cost evaluations (about half a minute)


@dataclass
class TurntableFit:
    theta: float  # radians per frame (the sign says the turning direction)
    elevation: float  # axis tilt towards the camera (radians)
    roll: float  # axis roll in the image (radians)
    centre: np.ndarray  # a point on the axis, first camera's coordinates (z = 1)
    R: np.ndarray  # (N, 3, 3) world-to-camera rotations; world = the first camera's frame
    t: np.ndarray  # (N, 3)
    points: np.ndarray  # (T, 3) track points, world
    tracks: list  # per point: [(frame, (x, y) OpenCV pixel)]
    inliers: np.ndarray  # (T,) bool: reprojection error < 2 px in every observation
    reprojection_px: float  # mean over inlier observations
    coherence: float  # mean IoU of the hull's silhouettes with the masks (reduced size)
    log: list = field(default_factory=list)


def axis_direction(e: float, r: float) -> np.ndarray:
    """The turntable's axis in the first camera's coordinates: image-up (-y), tilted by
    ``e`` towards the camera (about x), rolled by ``r`` (about z)."""
    rx = cv2.Rodrigues(np.array([e, 0.0, 0.0]))[0]
    rz = cv2.Rodrigues(np.array([0.0, 0.0, r]))[0]
    return rz @ rx @ np.array([0.0, -1.0, 0.0])


def mirrored(params) -> np.ndarray:
    """The mirror hypothesis of ``params``: the axis tilted the other way, the turn
    reversed. In orthographic projection it explains the outlines and the tracks exactly as
    well (the depth-reversed scene, the Necker reversal); only perspective tells them apart."""
    return np.asarray(params, float) * [-1, 1, 1, 1, -1]


def circular_poses(n: int, params) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) world-to-camera for ``n`` frames of ``params = (e, r, u, v, theta)``."""
    e, r, u, v, th = params
    a = axis_direction(e, r)
    c = np.array([u, v, 1.0])
    rs = np.array([cv2.Rodrigues((a * (k * th)).reshape(3, 1))[0] for k in range(n)])
    ts = c[None] - rs @ c
    return rs, ts


# --------------------------------------------------------------------------- features


def feature_tracks(grays, masks, max_gap: int = MAX_GAP, nfeatures: int = 4000) -> list:
    """Tracks (lists of (frame, (x, y))) from SIFT inside the masks, frames <= max_gap apart."""
    sift = cv2.SIFT_create(nfeatures=nfeatures)
    feats = []
    for g, m in zip(grays, masks):
        kp, des = sift.detectAndCompute(g, m.astype(np.uint8) * 255)
        feats.append((np.array([k.pt for k in kp], np.float64).reshape(-1, 2), des))
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    n = len(grays)
    offs = np.cumsum([0] + [len(f[0]) for f in feats])
    parent = np.arange(offs[-1])

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    linked = []
    for i in range(n):
        for j in range(i + 1, min(n, i + max_gap + 1)):
            (pi, di), (pj, dj) = feats[i], feats[j]
            if di is None or dj is None or len(di) < 8 or len(dj) < 8:
                continue
            good = [
                m[0]
                for m in matcher.knnMatch(di, dj, k=2)
                if len(m) == 2 and m[0].distance < RATIO * m[1].distance
            ]
            if len(good) < MIN_MATCHES:
                continue
            a = np.array([m.queryIdx for m in good])
            b = np.array([m.trainIdx for m in good])
            f, inl = cv2.findFundamentalMat(pi[a], pj[b], cv2.FM_RANSAC, 1.5, 0.999)
            if f is None or inl is None or int(inl.sum()) < MIN_MATCHES:
                continue
            keep = inl.ravel().astype(bool)
            for u, v in zip(a[keep] + offs[i], b[keep] + offs[j]):
                ru, rv = find(u), find(v)
                if ru != rv:
                    parent[ru] = rv
                linked.append(u)
                linked.append(v)
    groups: dict[int, set] = {}
    for u in set(linked):
        groups.setdefault(find(u), set()).add(u)
    tracks = []
    for nodes in groups.values():
        frames = [int(np.searchsorted(offs, u, side="right") - 1) for u in nodes]
        if len(frames) < 2 or len(set(frames)) != len(frames):
            continue  # two keypoints of one frame in a track: ambiguous, dropped
        tracks.append(sorted((f, tuple(feats[f][0][u - offs[f]])) for f, u in zip(frames, nodes)))
    return tracks


def _track_motion(track) -> float:
    """Largest image displacement per frame between consecutive observations of a track."""
    best = 0.0
    for (f0, p0), (f1, p1) in zip(track, track[1:]):
        best = max(best, float(np.hypot(p1[0] - p0[0], p1[1] - p0[1])) / max(1, f1 - f0))
    return best


def triangulate(K, rs, ts, tracks) -> np.ndarray:
    """Linear (DLT) triangulation of each track with the given poses."""
    out = np.zeros((len(tracks), 3))
    ps = [K @ np.hstack([r, t[:, None]]) for r, t in zip(rs, ts)]
    for n, tr in enumerate(tracks):
        rows = []
        for f, (x, y) in tr:
            p = ps[f]
            rows += [x * p[2] - p[0], y * p[2] - p[1]]
        _, _, vt = np.linalg.svd(np.array(rows))
        out[n] = vt[-1, :3] / (vt[-1, 3] if abs(vt[-1, 3]) > 1e-12 else 1e-12)
    return out


def _observations(tracks):
    t = np.array([k for k, tr in enumerate(tracks) for _ in tr], np.int64)
    f = np.array([fr for tr in tracks for fr, _ in tr], np.int64)
    x = np.array([p for tr in tracks for _, p in tr], np.float64).reshape(-1, 2)
    return t, f, x


def _project(K, rs, ts, X, frames):
    xc = np.einsum("nij,nj->ni", rs[frames], X) + ts[frames]
    z = xc[:, 2:3]
    px = xc @ K.T
    return px[:, :2] / np.where(np.abs(z) < 1e-9, 1e-9, z), z[:, 0]


def adjust_axis(K, n, tracks, theta, start=None, max_nfev: int = 200, hold_u=None):
    """(e, r, u, v) and the track points by robust bundle adjustment, ``theta`` held.

    ``start``: (e, r, u, v) to start from; None searches the tilt (both turning directions)
    on a subset of tracks first. ``hold_u``: keep the axis' horizontal position too (found
    from the silhouettes). Returns (params, points, per-observation residuals).
    """
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix

    obs_t, obs_f, obs_x = _observations(tracks)
    if start is None:
        rng = np.random.default_rng(0)
        sub = rng.choice(len(tracks), min(300, len(tracks)), replace=False)
        subtracks = [tracks[k] for k in sub]
        st, sf, sx = _observations(subtracks)
        best = None
        for e in np.radians(np.arange(-40, 41, 2)):
            for th in (theta, -theta):
                rs, ts = circular_poses(n, (e, 0.0, 0.0, 0.0, th))
                X = triangulate(K, rs, ts, subtracks)
                pr, z = _project(K, rs, ts, X[st], sf)
                d = np.linalg.norm(pr - sx, axis=1)
                d[~np.isfinite(d) | (z <= 0)] = 100.0
                cost = float(np.mean(np.minimum(d, 10.0)))
                if best is None or cost < best[0]:
                    best = (cost, (e, 0.0, 0.0, 0.0), th)
        start, theta = best[1], best[2]
    g0 = np.array(start, float)
    if hold_u is not None:
        g0[2] = hold_u
    rs, ts = circular_poses(n, (*g0, theta))
    X0 = triangulate(K, rs, ts, tracks)
    T = len(tracks)
    free = [0, 1, 3] if hold_u is not None else [0, 1, 2, 3]
    ng = len(free)

    def full(x):
        g = g0.copy()
        g[free] = x[:ng]
        return g

    def resid(x):
        rs, ts = circular_poses(n, (*full(x), theta))
        pr, _ = _project(K, rs, ts, x[ng:].reshape(T, 3)[obs_t], obs_f)
        return (pr - obs_x).ravel()

    jac = lil_matrix((2 * len(obs_t), ng + 3 * T), dtype=np.int8)
    jac[:, :ng] = 1
    for k, ti in enumerate(obs_t):
        jac[2 * k : 2 * k + 2, ng + 3 * ti : ng + 3 + 3 * ti] = 1
    res = least_squares(
        resid,
        np.concatenate([g0[free], X0.ravel()]),
        jac_sparsity=jac,
        loss="soft_l1",
        f_scale=1.5,
        x_scale="jac",
        max_nfev=max_nfev,
    )
    return (*full(res.x), theta), res.x[ng:].reshape(T, 3), res.fun.reshape(-1, 2)


# --------------------------------------------------------------------------- silhouettes


def resized_masks(masks, K, long_side: int):
    """The masks with ``long_side`` pixels along their long side (area-averaged, then cut at
    half), the intrinsics to match (OpenCV's pixel centres) and the size (w, h)."""
    H, W = masks[0].shape
    s = long_side / max(H, W)
    size = (max(1, round(W * s)), max(1, round(H * s)))
    return [resize_mask(m, size) for m in masks], scaled_intrinsics(K, s, s), size


class Silhouettes:
    """The masks at a reduced size, and the coherence of a circular-motion hypothesis."""

    def __init__(self, masks, K, long_side: int = 160, grid: int = 48, misses: int = 0):
        small, self.K, _ = resized_masks(masks, K, long_side)
        self.m = np.array(small)
        self.grid = grid
        self.misses = misses  # a voxel survives outside this many masks (robustness)
        h, w = self.m.shape[1:]
        ys, xs = np.nonzero(self.m.any(axis=0))
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        # the subject's extent on the plane z = 1 of the first camera
        self.x_range = ((xs.min() - cx) / fx, (xs.max() - cx) / fx) if len(xs) else (-1, 1)
        self.y_range = ((ys.min() - cy) / fy, (ys.max() - cy) / fy) if len(ys) else (-1, 1)
        self.hw = (h, w)

    def coherence(self, params) -> float:
        """Mean IoU of the hull's reprojections with the masks (0 when the hull vanishes)."""
        n = len(self.m)
        h, w = self.hw
        e, r, u, v, _ = params
        rs, ts = circular_poses(n, params)
        a = axis_direction(e, r)
        c = np.array([u, v, 1.0])
        rad = 1.3 * max(abs(self.x_range[0] - u), abs(self.x_range[1] - u))
        h0, h1 = 1.2 * self.y_range[0], 1.2 * self.y_range[1]
        e1 = np.cross(a, [0.0, 0.0, 1.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(a, e1)
        g = self.grid
        lin = (np.arange(g) + 0.5) / g
        A, B, C = np.meshgrid(lin * 2 - 1, lin * 2 - 1, lin, indexing="ij")
        inside_cyl = A**2 + B**2 <= 1
        heights = (h0 + (h1 - h0) * C[inside_cyl]) - v
        V = c + rad * (A[inside_cyl, None] * e1 + B[inside_cyl, None] * e2)
        V = V - heights[:, None] * a
        outside = np.zeros(len(V), np.int32)
        proj = []
        for i in range(n):
            xc = V @ rs[i].T + ts[i]
            z = np.maximum(xc[:, 2], 1e-6)
            px = np.rint(self.K[0, 0] * xc[:, 0] / z + self.K[0, 2]).astype(np.int64)
            py = np.rint(self.K[1, 1] * xc[:, 1] / z + self.K[1, 2]).astype(np.int64)
            ok = (xc[:, 2] > 0.05) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
            inside = np.zeros(len(V), bool)
            inside[ok] = self.m[i][py[ok], px[ok]]
            outside += ~inside
            proj.append((px, py, ok))
        alive = outside <= self.misses
        if alive.sum() < 20:
            return 0.0
        k = max(1, int(np.ceil(2 * rad / g * self.K[0, 0])))
        kernel = np.ones((k, k), np.uint8)
        ious = []
        for i in range(n):
            px, py, ok = proj[i]
            sel = alive & ok
            img = np.zeros((h, w), np.uint8)
            img[py[sel], px[sel]] = 1
            sil = cv2.dilate(img, kernel) > 0
            union = (sil | self.m[i]).sum()
            ious.append((sil & self.m[i]).sum() / union if union else 1.0)
        return float(np.mean(ious))


def background_like(grays, masks, tol: float = 8.0, min_seen: int = 3) -> list[np.ndarray]:
    """Per frame, where a masked pixel shows the still background (a mask's leak).

    On a turntable the background stands still: its plate (:func:`segcore.plate.plate_of`)
    is the per-pixel median of the frames in which the pixel is clear of the (dilated) mask.
    A masked pixel that matches the plate (mean absolute difference over 5 x 5 pixels below
    ``tol`` grey levels) is background; where fewer than ``min_seen`` frames show the plate,
    nothing is said.
    """
    stack = np.array(grays, np.float32)
    plate, seen = plate_of(stack, clear_of(masks, 3), min_seen)
    known = seen >= min_seen
    out = []
    for g, m in zip(stack, masks):
        diff = cv2.blur(np.abs(g - plate), (5, 5))
        out.append(known & m & (diff < tol))
    return out


def _pixel_at(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``img`` at the nearest pixel of each point (x, y), clipped into the image."""
    q = np.rint(xy).astype(int)
    h, w = img.shape[:2]
    return img[np.clip(q[:, 1], 0, h - 1), np.clip(q[:, 0], 0, w - 1)]


def _still_outline(pts, inward, occ, std) -> np.ndarray:
    """Which outline points (``inward``: unit normals into the mask) lie on a still outline:
    ``STILL_OUTLINE_PX`` inside, nearly every frame's mask covers the point, outside nearly
    none (``occ``: the share of frames masked); or the frames barely change on either side
    (``std``: the per-pixel standard deviation over the frames, blurred)."""
    at, d = _pixel_at, STILL_OUTLINE_PX
    same = (at(occ, pts + d * inward) >= 1 - STILL_SHARE) & (
        at(occ, pts - d * inward) <= STILL_SHARE
    )
    quiet = (at(std, pts + 4 * inward) < STILL_GREY) & (at(std, pts - 4 * inward) < STILL_GREY)
    return same | quiet


class RayCoherence:
    """Silhouette coherence as a smooth residual per outline point (the refinement's term).

    For sample points on the outline of every mask, the viewing ray is followed through the
    turntable's cylinder; at each depth the other views' signed distances to their
    silhouettes are looked up, and the ray's value is the largest, over depth, of the
    ``robust``-th smallest of them (0: the visual hull of the other views; 1 forgives one
    view's mask error). With consistent cameras and masks an outline ray grazes the hull:
    its value is 0. Positive means the others' hull reaches beyond this outline, negative
    that the ray misses it. The residuals are in pixels of the masks as used (``long_side``,
    by default the frames' own size within ``RAY_LONG_SIDE``) and vary smoothly with the
    five parameters (bilinear look-ups; each ray's maximum is searched coarsely, then finely
    around the best sample), so a least-squares fit can use them.
    """

    def __init__(
        self,
        masks,
        K,
        long_side: int | None = None,
        samples: int = 80,
        depth_samples: int = 48,
        fine_samples: int = 17,
        trunc: float = 12.0,
        robust: int = 1,
        frames=None,
        still_tol: float = 8.0,
    ):
        # the outlines' accuracy is the fit's: full resolution, within RAY_LONG_SIDE
        side = long_side or int(np.clip(max(masks[0].shape), *RAY_LONG_SIDE))
        small, self.K, size = resized_masks(masks, K, side)
        self.Kinv = np.linalg.inv(self.K)
        self.size = size
        self.sdf = [np.clip(silhouette_sdf(m), -trunc, trunc).astype(np.float32) for m in small]
        self.depth_samples = depth_samples
        self.fine_samples = fine_samples
        self.robust = robust
        w, h = size
        still = None
        if frames is not None:  # the background plate: where a mask covers it, it leaks
            grays = [
                cv2.resize(np.asarray(f, np.float32), size, interpolation=cv2.INTER_AREA)
                for f in frames
            ]
            still = background_like(grays, small, still_tol)
        self.dropped = 0
        self.still = 0
        occ = std = None
        if frames is not None:
            occ = np.mean(small, axis=0, dtype=np.float32)  # the share of frames masked
            std = np.std([cv2.blur(g, (5, 5)) for g in grays], axis=0)
        outlines, stills = [], []
        for i, m in enumerate(small):
            cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            pts = np.concatenate([c.reshape(-1, 2) for c in cs]) if cs else np.zeros((0, 2))
            pts = pts[
                (pts[:, 0] > 2) & (pts[:, 0] < w - 3) & (pts[:, 1] > 2) & (pts[:, 1] < h - 3)
            ].astype(np.float64)
            # onto the edge itself (the SDF's zero), half a pixel out of the last inside pixel
            gy, gx = np.gradient(self.sdf[i])
            ix, iy = pts[:, 0].astype(int), pts[:, 1].astype(int)
            g = np.stack([gx[iy, ix], gy[iy, ix]], axis=1)
            g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
            if still is not None and len(pts):
                # an outline whose inside looks like the still background bounds a leak
                leak = _pixel_at(still[i], pts + 3 * g)
                self.dropped += int(leak.sum())
                pts, g = pts[~leak], g[~leak]
            pts = pts - self.sdf[i][pts[:, 1].astype(int), pts[:, 0].astype(int), None] * g
            if len(pts) > samples:
                keep = np.linspace(0, len(pts) - 1, samples).astype(int)
                pts, g = pts[keep], g[keep]
            outlines.append(pts)
            if occ is not None:
                stills.append(_still_outline(pts, g, occ, std))
        # outlines that are the same in every frame (a stand's round base, its pole) carry no
        # turn, and a mask's error there is the same in every frame, so it reads as a tilt of
        # the axis; they are left out unless they are most of what there is
        n_still = sum(int(st.sum()) for st in stills)
        total = sum(len(o) for o in outlines)
        if stills and total - n_still >= STILL_KEEP * total:
            outlines = [o[~st] for o, st in zip(outlines, stills)]
            self.still = n_still
        self.outline = outlines
        ys, xs = np.nonzero(np.any(small, axis=0))
        self.x_range = (
            ((xs.min() - self.K[0, 2]) / self.K[0, 0], (xs.max() - self.K[0, 2]) / self.K[0, 0])
            if len(xs)
            else (-1.0, 1.0)
        )

    def _hull_depth(self, i, Y, rot, c) -> np.ndarray:
        """For points ``Y`` (camera ``i`` coordinates minus ``c``): the ``robust``-th
        smallest signed distance to the other views' silhouettes (-inf where unseen)."""
        n = len(self.sdf)
        w, h = self.size
        vals = np.full((n - 1, len(Y)), np.inf, np.float32)
        row = 0
        for j in range(n):
            if j == i:
                continue
            xj = Y @ rot[j - i].T + c
            z = xj[:, 2]
            px = xj @ self.K.T
            uvx = px[:, 0] / np.maximum(z, 1e-9)
            uvy = px[:, 1] / np.maximum(z, 1e-9)
            ok = (z > 1e-6) & (uvx >= -0.5) & (uvx <= w - 0.5) & (uvy >= -0.5) & (uvy <= h - 0.5)
            if ok.any():
                vals[row, ok] = sample_bilinear(self.sdf[j], np.stack([uvx[ok], uvy[ok]], axis=1))
            row += 1
        k = min(self.robust, n - 2)
        kth = np.partition(vals, k, axis=0)[k]
        kth[~np.isfinite(kth)] = -np.inf
        return kth

    def residuals(self, params) -> np.ndarray:
        e, r, u, v, th = params
        a = axis_direction(e, r)
        c = np.array([u, v, 1.0])
        n = len(self.sdf)
        rad = 1.3 * max(abs(self.x_range[0] - u), abs(self.x_range[1] - u))
        rot = {d: cv2.Rodrigues((a * (d * th)).reshape(3, 1))[0] for d in range(-(n - 1), n)}
        D, F = self.depth_samples, self.fine_samples
        out = []
        for i in range(n):
            pts = self.outline[i]
            if len(pts) == 0:
                continue
            ray = np.hstack([pts, np.ones((len(pts), 1))]) @ self.Kinv.T
            ray /= np.linalg.norm(ray, axis=1, keepdims=True)
            # the ray (from the camera centre, the origin here) through the cylinder about
            # the axis: |(t ray - c) - ((t ray - c).a) a| <= rad
            p = ray - (ray @ a)[:, None] * a
            q = -c + (c @ a) * a
            A = (p * p).sum(1)
            B = 2 * (p @ q)
            C = q @ q - rad**2
            disc = np.maximum(B * B - 4 * A * C, 0.0)
            t0 = (-B - np.sqrt(disc)) / (2 * A)
            t1 = (-B + np.sqrt(disc)) / (2 * A)
            dt = (t1 - t0) / D
            ts = t0[:, None] + dt[:, None] * (np.arange(D) + 0.5)[None]
            Y = (ray[:, None, :] * ts[:, :, None]).reshape(-1, 3) - c
            best = self._hull_depth(i, Y, rot, c).reshape(len(pts), D)
            # then finely around each ray's deepest sample: the ray's value is a maximum,
            # which coarse samples underestimate (and with it, bias the fit)
            k = best.argmax(axis=1)
            tc = ts[np.arange(len(pts)), k]
            tf = tc[:, None] + dt[:, None] * np.linspace(-1.0, 1.0, F)[None]
            Y = (ray[:, None, :] * tf[:, :, None]).reshape(-1, 3) - c
            fine = self._hull_depth(i, Y, rot, c).reshape(len(pts), F)
            out.append(np.maximum(best.max(axis=1), fine.max(axis=1)))
        res = np.concatenate(out) if out else np.zeros(0)
        return np.where(np.isfinite(res), res, -20.0)


# --------------------------------------------------------------------------- verticals


def vertical_edges(grays, masks) -> np.ndarray:
    """(N, 4) straight edges (x1, y1, x2, y2) of the still background near the image's
    vertical: walls' corners, door frames, table legs, a lamp's pole.

    A turntable stands on a level floor, so its axis is vertical, and so are such edges: they
    meet at the image of the axis direction (the vertical vanishing point), which fixes the
    axis' tilt and roll without the subject. Taken from the background plate (the frames'
    per-pixel median where the subject is clear, :func:`segcore.plate.plate_of`) with OpenCV's
    line segment detector, away from every frame's mask; at most ``VERTICAL_MAX``, the longest.
    Empty when OpenCV has no line segment detector.
    """
    if not hasattr(cv2, "createLineSegmentDetector"):
        return np.zeros((0, 4))
    h, w = masks[0].shape
    plate, seen = plate_of(np.array(grays, np.float32), clear_of(masks, 3), 3)
    try:
        segs = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD).detect(
            np.clip(plate, 0, 255).astype(np.uint8)
        )[0]
    except cv2.error:  # builds without the detector raise on use
        return np.zeros((0, 4))
    if segs is None:
        return np.zeros((0, 4))
    segs = segs.reshape(-1, 4).astype(np.float64)
    d = segs[:, 2:] - segs[:, :2]
    length = np.linalg.norm(d, axis=1)
    upright = np.degrees(np.arctan2(np.abs(d[:, 0]), np.abs(d[:, 1]))) <= VERTICAL_DEG
    pad = max(3, round(0.02 * max(h, w)))
    subject = cv2.dilate(
        np.any(masks, axis=0).astype(np.uint8), np.ones((2 * pad + 1,) * 2, np.uint8)
    )
    away = (subject == 0) & (seen >= 3)
    clear = np.ones(len(segs), bool)
    for t in np.linspace(0.0, 1.0, 5):  # the ends, the middle and between
        clear &= _pixel_at(away, segs[:, :2] + t * d)
    keep = upright & clear & (length >= VERTICAL_LEN * max(h, w))
    segs, length = segs[keep], length[keep]
    return segs[np.argsort(-length)[:VERTICAL_MAX]]


def vertical_residuals(K, edges, params) -> np.ndarray:
    """Per edge, how far (pixels) its first end lies from the line through its middle and
    the vanishing point of the axis of ``params``: 0 when the edge points along the axis."""
    v = K @ axis_direction(params[0], params[1])
    a, b = edges[:, :2], edges[:, 2:]
    m = np.hstack([(a + b) / 2, np.ones((len(a), 1))])
    line = np.cross(m, v[None])
    line /= np.maximum(np.linalg.norm(line[:, :2], axis=1, keepdims=True), 1e-12)
    return line[:, 0] * a[:, 0] + line[:, 1] * a[:, 1] + line[:, 2]


def vertical_axis(K, edges) -> tuple[float, float, float]:
    """(tilt, roll, median residual in pixels) of the axis that the vertical edges alone
    give (robust least squares from upright)."""
    from scipy.optimize import least_squares

    res = least_squares(
        lambda x: vertical_residuals(K, edges, (x[0], x[1])), [0.0, 0.0], loss="cauchy"
    )
    r = np.abs(vertical_residuals(K, edges, res.x))
    return float(res.x[0]), float(res.x[1]), float(np.median(r))


def triangulate_batched(K, rs, ts, obs_t, obs_f, obs_x, n_tracks: int) -> np.ndarray:
    """Linear (DLT) triangulation of every track at once (normalised coordinates)."""
    xn = (obs_x - K[[0, 1], [2, 2]]) / K[[0, 1], [0, 1]]
    P = np.concatenate([rs, ts[:, :, None]], axis=2)[obs_f]  # (O, 3, 4)
    r1 = xn[:, :1] * P[:, 2] - P[:, 0]
    r2 = xn[:, 1:] * P[:, 2] - P[:, 1]
    M = np.einsum("oi,oj->oij", r1, r1) + np.einsum("oi,oj->oij", r2, r2)
    A = np.zeros((n_tracks, 4, 4))
    np.add.at(A, obs_t, M)
    _, vecs = np.linalg.eigh(A)
    v = vecs[:, :, 0]
    w = v[:, 3:]
    return v[:, :3] / np.where(np.abs(w) < 1e-12, 1e-12, w)


def polish_points(K, rs, ts, X, obs_t, obs_f, obs_x, iterations: int = 3, f_scale: float = 2.0):
    """Gauss-Newton steps on every track point at once (Cauchy-weighted): the points that a
    bundle adjustment would give for these poses, not the algebraic (DLT) ones. With them
    the reprojection error, as a function of the poses, is the adjustment's own cost, free
    of the DLT's bias (which favours a larger step)."""
    X = X.copy()
    fx, fy = K[0, 0], K[1, 1]
    R = rs[obs_f]
    for _ in range(iterations):
        xc = np.einsum("oij,oj->oi", R, X[obs_t]) + ts[obs_f]
        z = np.where(np.abs(xc[:, 2]) < 1e-9, 1e-9, xc[:, 2])
        r = np.stack([fx * xc[:, 0] / z + K[0, 2], fy * xc[:, 1] / z + K[1, 2]], 1) - obs_x
        dproj = np.zeros((len(z), 2, 3))
        dproj[:, 0, 0] = fx / z
        dproj[:, 0, 2] = -fx * xc[:, 0] / z**2
        dproj[:, 1, 1] = fy / z
        dproj[:, 1, 2] = -fy * xc[:, 1] / z**2
        J = dproj @ R  # (O, 2, 3)
        w = 1.0 / (1.0 + (r**2).sum(1) / f_scale**2)
        JtJ = np.zeros((len(X), 3, 3))
        Jtr = np.zeros((len(X), 3))
        np.add.at(JtJ, obs_t, w[:, None, None] * np.einsum("oki,okj->oij", J, J))
        np.add.at(Jtr, obs_t, w[:, None] * np.einsum("oki,ok->oi", J, r))
        damp = 1e-6 * np.trace(JtJ, axis1=1, axis2=2)[:, None, None] * np.eye(3) + 1e-12 * np.eye(3)
        X -= np.linalg.solve(JtJ + damp, Jtr[:, :, None])[:, :, 0]
    return X


class CircularFit:
    """The cost of a circular-motion hypothesis: feature tracks and outline rays together.

    The track points are eliminated (triangulated, then polished as a bundle adjustment
    would), so the only unknowns are the five circular-motion parameters; ``v`` slides the
    scene along the axis (a gauge) and is held. Residuals are in full-resolution pixels with
    one robust (Cauchy) loss for all terms; ``sil_weight`` scales the outline term. With
    few tracks (a plain garment) the outlines carry the fit on their own. ``verticals``: the
    background's vertical edges (:func:`vertical_edges`), a third term that holds the axis
    to their vanishing point, weighted ``VERTICAL_WEIGHT``.
    """

    def __init__(
        self, K, tracks, rays: RayCoherence, sil_weight: float = 1.0, f_scale=2.0, verticals=None
    ):
        self.K = K
        self.verticals = verticals if verticals is not None and len(verticals) else None
        self.n_tracks = len(tracks)
        self.obs = _observations(tracks)
        self.rays = rays
        self.sil_weight = sil_weight
        self.f_scale = f_scale
        self.up = K[0, 0] / rays.K[0, 0]  # outline residuals to full-resolution pixels

    def residuals(self, params) -> np.ndarray:
        obs_t, obs_f, obs_x = self.obs
        rs, ts = circular_poses(len(self.rays.sdf), params)
        out = [self.sil_weight * self.up * self.rays.residuals(params)]
        if self.n_tracks:
            X = triangulate_batched(self.K, rs, ts, obs_t, obs_f, obs_x, self.n_tracks)
            X = polish_points(self.K, rs, ts, X, obs_t, obs_f, obs_x)
            pr, _ = _project(self.K, rs, ts, X[obs_t], obs_f)
            fr = (pr - obs_x).ravel()
            out.insert(0, np.where(np.isfinite(fr), fr, 100.0))
        if self.verticals is not None:
            out.append(VERTICAL_WEIGHT * vertical_residuals(self.K, self.verticals, params))
        return np.concatenate(out)

    def cost(self, params) -> float:
        """The robust cost least squares minimises (scipy's Cauchy ``rho``, halved)."""
        z = (self.residuals(params) / self.f_scale) ** 2
        return float(0.5 * self.f_scale**2 * np.log1p(z).sum())

    def refine(self, params, free=FREE, max_nfev: int = 30, progress=None):
        """(e, r, u, theta) (``free``) by robust least squares from ``params``;
        ``progress(done, total)`` after each iteration."""
        from scipy.optimize import least_squares

        p0 = np.array(params, float)
        free = list(free)
        steps = np.array([2e-3, 2e-3, 1e-3, 1e-3, 5e-4])[free]  # about half a pixel each
        last: dict = {}
        done = [0]

        def full(x):
            p = p0.copy()
            p[free] = x
            return p

        def fun(x):
            last["x"], last["f"] = x.copy(), self.residuals(full(x))
            return last["f"]

        def jac(x):  # forward differences from the residuals least squares just computed
            f0 = last["f"] if np.array_equal(last.get("x"), x) else fun(x)
            J = np.empty((len(f0), len(x)))
            for k in range(len(x)):
                xk = x.copy()
                xk[k] += steps[k]
                J[:, k] = (self.residuals(full(xk)) - f0) / steps[k]
            done[0] += 1
            if progress is not None:
                progress(min(done[0], max_nfev), max_nfev)
            return J

        res = least_squares(
            fun,
            p0[free],
            jac=jac,
            loss="cauchy",
            f_scale=self.f_scale,
            x_scale=steps,
            max_nfev=max_nfev,
        )
        return full(res.x), res

    def polish(
        self, params, max_evals: int = POLISH_EVALS, progress=None
    ) -> tuple[np.ndarray, float, float, int]:
        """(e, r, u, theta) by Nelder-Mead from ``params``, a simplex of ``POLISH_SIMPLEX``:
        ``(params, cost before, cost after, evaluations)``; never a higher cost.
        ``progress(done, max_evals)`` after each evaluation.

        The outline term is rough below a pixel (a binary mask's edge is a staircase, each
        ray's maximum over depth is sampled), so least squares, which follows the local
        gradient, stops in shallow pits of an almost flat valley: the tilt and roll that
        the tracks and outlines barely tell apart. From the pit it stopped in on two
        held-out turntables, a least-squares refinement started at the true cameras ends
        lower (cost 1913 against 1920, 3440 against 3442). A simplex half a degree wide
        steps over such pits, and its cost decides, not the gradient.
        """
        from scipy.optimize import minimize

        base = np.array(params, float)
        free = list(FREE)
        scale = np.array(POLISH_SIMPLEX)

        def at(x):
            p = base.copy()
            p[free] = base[free] + x * scale
            return p

        costs: list[float] = []  # the first is the start's: the simplex's first vertex

        def cost(x):
            costs.append(self.cost(at(x)))
            if progress is not None:
                progress(min(len(costs), max_evals), max_evals)
            return costs[-1]

        res = minimize(
            cost,
            np.zeros(4),
            method="Nelder-Mead",
            options={
                "initial_simplex": np.vstack([np.zeros(4), np.eye(4)]),
                "xatol": 0.02,
                "fatol": 0.05,
                "maxfev": max_evals,
            },
        )
        before = costs[0]
        if res.fun < before:
            return at(res.x), before, float(res.fun), int(res.nfev)
        return base, before, before, int(res.nfev)


# --------------------------------------------------------------------------- the solver


def solve_turntable(
    grays: list[np.ndarray],
    masks: list[np.ndarray],
    K: np.ndarray,
    progress: Callable[[str, int, int], None] | None = None,
    silhouettes: list[np.ndarray] | None = None,
    leaks: bool = True,
) -> TurntableFit:
    """Circular-motion calibration of a turntable sequence (frames in capture order).

    ``grays``: uint8 frames; ``masks``: bool (subject True), eroded as for SfM (features are
    taken inside them); ``silhouettes``: the masks as they are, for the outline term (default
    ``masks``); ``K``: the intrinsics in OpenCV's pixel convention; ``leaks``: outline
    points where a mask covers the still background are left out. Raises ValueError when the
    silhouettes say nothing (empty masks).
    """
    report = progress or (lambda stage, done, total: None)
    n = len(grays)
    if n < 6:
        raise ValueError(f"{n} frames: a turntable solve needs 6 or more")
    sils = masks if silhouettes is None else silhouettes
    if sum(int(np.count_nonzero(m)) for m in sils) == 0:
        raise ValueError("the masks are empty")
    notes: list[str] = []
    report("turntable features", 0, 1)
    tracks = feature_tracks(grays, masks)
    # still tracks are the background seen through a mask's leak, or the axis itself
    # (a stand's pole): they carry no turn and pull the axis; drop them
    moving = [tr for tr in tracks if _track_motion(tr) >= STILL_PX]
    notes.append(f"{len(moving)} tracks ({len(tracks) - len(moving)} still ones dropped)")
    tracks = moving
    report("turntable features", 1, 1)
    # 1. coarse step and tilt from the silhouettes alone
    coarse = Silhouettes(sils, K, long_side=160, grid=48)
    cands = []
    steps = np.radians(np.arange(2.0, 20.5, 1.0))
    total = len(steps) * 2 * len(COARSE_TILTS)
    for k, (deg, sign, e) in enumerate(
        (d, s, e) for d in steps for s in (1, -1) for e in COARSE_TILTS
    ):
        p = (e, 0.0, float(np.mean(coarse.x_range)), 0.0, sign * deg)
        cands.append((coarse.coherence(p), p))
        report("turntable step", k + 1, total)
    c0, p0 = max(cands, key=lambda c: c[0])
    notes.append(
        f"coarse: step {np.degrees(abs(p0[4])):.1f} deg, tilt {np.degrees(p0[0]):.1f} deg "
        f"(coherence {c0:.3f})"
    )
    rays = RayCoherence(sils, K, frames=grays if leaks else None)
    if rays.dropped:
        notes.append(f"{rays.dropped} outline points on the still background left out")
    if rays.still:
        notes.append(f"{rays.still} outline points on still parts (a stand) left out")
    edges = vertical_edges(grays, sils)
    starts = {"silhouettes": np.array(p0, float)}
    if len(edges) >= VERTICAL_MIN:
        ve, vr, vres = vertical_axis(K, edges)
        notes.append(
            f"{len(edges)} vertical background edges: tilt {np.degrees(ve):.2f} deg, "
            f"roll {np.degrees(vr):.2f} deg (median {vres:.2f} px)"
        )
        starts["verticals"] = np.array([ve, vr, p0[2], p0[3], p0[4]], float)
    else:
        edges = None
    fit = CircularFit(K, tracks, rays, verticals=edges)
    # 2. the axis from the feature tracks with that step held (both directions tried); a
    # plain garment gives too few tracks, or wrong ones: the joint cost arbitrates
    if len(tracks) >= MIN_TRACKS:
        report("turntable axis", 0, 1)
        axis, _, _ = adjust_axis(K, n, tracks, abs(p0[4]), max_nfev=100)
        starts["feature axis"] = np.array(axis, float)
        report("turntable axis", 1, 1)
    costs = {name: fit.cost(p) for name, p in starts.items()}
    best = min(costs, key=costs.get)
    params = starts[best]
    if len(starts) > 1:
        notes.append(f"start: {best} (costs {', '.join(f'{c:.0f}' for c in costs.values())})")
    # 3. everything but the gauge at once: the tracks' reprojection and the outline rays.
    # Every start of the best one's turn direction is refined and the lowest refined cost
    # kept: the joint cost at a start does not rank the minima the starts lead to (a held-out
    # turntable: the silhouettes' start, the cheapest, refined to 3623 and 1.7 deg off; the
    # verticals' and the features' both to 3282 and 0.13 deg)
    # (least squares' own cost at its result: CircularFit.cost, without evaluating it again)
    report("turntable refine", 0, 40)
    refined = {}
    for name in sorted(starts, key=costs.get):
        if np.sign(starts[name][4]) != np.sign(params[4]):
            continue
        show = (lambda d, t: report("turntable refine", d, 40)) if name == best else None
        q, res = fit.refine(starts[name], progress=show)
        refined[name] = (q, res.cost)
    best = min(refined, key=lambda k: refined[k][1])
    params, c1 = refined[best]
    if len(refined) > 1:
        notes.append("refined: " + ", ".join(f"{k} {c:.0f}" for k, (_, c) in refined.items()))
    # the mirror of a start (tilt and turn reversed) explains the outlines almost as well
    # (exactly so in orthographic projection: Necker reversal); the best start of the other
    # turn direction, or the mirror of the best, is refined too and the lower cost kept
    # (a few iterations first: it goes on only while it is not far worse)
    other = {k: p for k, p in starts.items() if np.sign(p[4]) != np.sign(starts[best][4])}
    if other:
        alt_name = min(other, key=costs.get)
        alt = other[alt_name]
    else:
        alt_name, alt = f"{best} mirrored", mirrored(starts[best])
    alt, res = fit.refine(
        alt, max_nfev=10, progress=lambda d, t: report("turntable refine", 30 + d, 40)
    )
    if res.cost < ALT_MARGIN * c1:
        alt, res = fit.refine(alt, max_nfev=20)
    c2 = res.cost
    notes.append(f"refined costs: {best} {c1:.0f}, {alt_name} {c2:.0f}")
    if c2 < c1:
        params = alt
    report("turntable refine", 40, 40)
    # 4. a derivative-free polish over the pits least squares stops in
    report("turntable polish", 0, POLISH_EVALS)
    params, before, after, evals = fit.polish(
        params, progress=lambda d, t: report("turntable polish", d, t)
    )
    notes.append(f"polished: cost {before:.1f} -> {after:.1f} ({evals} evaluations)")
    report("turntable polish", POLISH_EVALS, POLISH_EVALS)
    notes.append(
        f"final: step {np.degrees(params[4]):.3f} deg, tilt {np.degrees(params[0]):.2f} deg, "
        f"roll {np.degrees(params[1]):.2f} deg, axis x {params[2]:.4f}"
    )
    rs, ts = circular_poses(n, params)
    obs_t, obs_f, obs_x = _observations(tracks)
    X = triangulate_batched(K, rs, ts, obs_t, obs_f, obs_x, len(tracks))
    X = polish_points(K, rs, ts, X, obs_t, obs_f, obs_x)
    pr, z = _project(K, rs, ts, X[obs_t], obs_f)
    err = np.linalg.norm(pr - obs_x, axis=1)
    err[~np.isfinite(err) | (z <= 0)] = np.inf
    worst = np.zeros(len(tracks))
    np.maximum.at(worst, obs_t, err)
    inl = worst < 2.0
    return TurntableFit(
        theta=float(params[4]),
        elevation=float(params[0]),
        roll=float(params[1]),
        centre=np.array([params[2], params[3], 1.0]),
        R=rs,
        t=ts,
        points=X,
        tracks=tracks,
        inliers=inl,
        reprojection_px=float(err[inl[obs_t]].mean()) if inl.any() else float("nan"),
        coherence=float(c0),
        log=notes,
    )


def write_colmap_text(folder, fit: TurntableFit, names, size_wh, K, colours=None) -> None:
    """A COLMAP text model (cameras.txt, images.txt, points3D.txt) of the inlier tracks.

    COLMAP's pixel centres are at +0.5 (OpenCV's at 0), hence the shift; one SIMPLE_RADIAL
    camera with k = 0.
    """
    from pathlib import Path

    from scipy.spatial.transform import Rotation

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size_wh
    f = 0.5 * (K[0, 0] + K[1, 1])
    (folder / "cameras.txt").write_text(
        f"1 SIMPLE_RADIAL {w} {h} {f!r} {K[0, 2] + 0.5!r} {K[1, 2] + 0.5!r} 0\n"
    )
    keep = [k for k in range(len(fit.tracks)) if fit.inliers[k]]
    obs: list[list[tuple[float, float, int]]] = [[] for _ in names]
    pts = []
    for pid, k in enumerate(keep, start=1):
        track = []
        for fr, (x, y) in fit.tracks[k]:
            obs[fr].append((x + 0.5, y + 0.5, pid))
            track.append((fr + 1, len(obs[fr]) - 1))
        rgb = colours[k] if colours is not None else (128, 128, 128)
        frames = np.array([fr for fr, _ in fit.tracks[k]])
        seen = np.array([p for _, p in fit.tracks[k]], np.float64)
        pr, _ = _project(K, fit.R, fit.t, np.repeat(fit.points[k][None], len(frames), 0), frames)
        err = float(np.linalg.norm(pr - seen, axis=1).mean())
        pts.append((pid, fit.points[k], rgb, track, err))
    lines = []
    for i, name in enumerate(names):
        qx, qy, qz, qw = Rotation.from_matrix(fit.R[i]).as_quat()
        tx, ty, tz = fit.t[i]
        lines.append(f"{i + 1} {qw!r} {qx!r} {qy!r} {qz!r} {tx!r} {ty!r} {tz!r} 1 {name}")
        lines.append(" ".join(f"{x!r} {y!r} {pid}" for x, y, pid in obs[i]))
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    plines = []
    for pid, X, rgb, track, err in pts:
        tr = " ".join(f"{im} {idx}" for im, idx in track)
        plines.append(
            f"{pid} {X[0]!r} {X[1]!r} {X[2]!r} {int(rgb[0])} {int(rgb[1])} {int(rgb[2])} "
            f"{err!r} {tr}"
        )
    (folder / "points3D.txt").write_text("\n".join(plines) + ("\n" if plines else ""))
