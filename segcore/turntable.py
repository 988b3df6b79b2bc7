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
  calibration under circular motion", PAMI 2007) pins down ``theta``: with the right step
  the visual hull carved from all the masks reprojects onto every mask; with a wrong one it
  shrinks away from them. Masks are what this project makes, so this costs no extra input;
- **feature tracks** between frames up to three apart (SIFT inside the masks, ratio test,
  a fundamental-matrix check) fix the axis direction and position, with ``theta`` held:
  a robust (soft L1) bundle adjustment of the five parameters and the track points.

Coarse ``theta`` from silhouettes, the axis tilt from features, then ``theta`` and the axis'
horizontal position jointly from silhouettes at a finer scale (features bias that position
when a mask leaks onto a still background), then the final adjustment with both held.
Everything runs at a reduced size on the CPU in a few minutes for 36 frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

log = logging.getLogger(__name__)

MAX_GAP = 3  # frames matched with the next MAX_GAP frames
RATIO = 0.8  # Lowe's ratio test
MIN_MATCHES = 15
STILL_PX = 1.0  # a track moving less than this per frame is dropped


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


class Silhouettes:
    """The masks at a reduced size, and the coherence of a circular-motion hypothesis."""

    def __init__(self, masks, K, long_side: int = 160, grid: int = 48, misses: int = 0):
        H, W = masks[0].shape
        s = long_side / max(H, W)
        size = (max(1, round(W * s)), max(1, round(H * s)))
        self.m = np.array(
            [
                cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
                for m in masks
            ]
        )
        self.K = K.copy()
        self.K[:2] *= s
        self.K[0, 2] = (K[0, 2] + 0.5) * s - 0.5
        self.K[1, 2] = (K[1, 2] + 0.5) * s - 0.5
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


# --------------------------------------------------------------------------- the solver


def solve_turntable(
    grays: list[np.ndarray],
    masks: list[np.ndarray],
    K: np.ndarray,
    progress: Callable[[str, int, int], None] | None = None,
) -> TurntableFit:
    """Circular-motion calibration of a turntable sequence (frames in capture order).

    ``grays``: uint8 frames; ``masks``: bool (subject True), eroded as for SfM; ``K``: the
    intrinsics in OpenCV's pixel convention. Raises ValueError when too little matches.
    """
    report = progress or (lambda stage, done, total: None)
    n = len(grays)
    if n < 6:
        raise ValueError(f"{n} frames: a turntable solve needs 6 or more")
    notes: list[str] = []
    report("turntable features", 0, 1)
    tracks = feature_tracks(grays, masks)
    # still tracks are the background seen through a mask's leak, or the axis itself
    # (a stand's pole): they carry no turn and pull the axis; drop them
    moving = [tr for tr in tracks if _track_motion(tr) >= STILL_PX]
    notes.append(f"{len(tracks) - len(moving)} still tracks dropped")
    tracks = moving
    report("turntable features", 1, 1)
    if len(tracks) < 30:
        raise ValueError(f"only {len(tracks)} feature tracks inside the masks")
    notes.append(f"{len(tracks)} tracks")
    coarse = Silhouettes(masks, K, long_side=160, grid=48)
    # 1. coarse step from the silhouettes alone (axis upright or tilted +-11 degrees)
    cands = []
    steps = np.radians(np.arange(2.0, 20.5, 1.0))
    total = len(steps) * 6
    for k, (deg, sign, e) in enumerate(
        (d, s, e) for d in steps for s in (1, -1) for e in (0.0, 0.2, -0.2)
    ):
        p = (e, 0.0, float(np.mean(coarse.x_range)), 0.0, sign * deg)
        cands.append((coarse.coherence(p), p))
        report("turntable step", k + 1, total)
    c0, p0 = max(cands, key=lambda c: c[0])
    theta = abs(p0[4])
    notes.append(f"coarse step {np.degrees(theta):.2f} deg (coherence {c0:.3f})")
    # 2. the axis from the feature tracks, that step held (both directions tried)
    report("turntable axis", 0, 2)
    axis, _, _ = adjust_axis(K, n, tracks, theta, max_nfev=100)
    report("turntable axis", 1, 2)
    # 3. the fine step from sharper silhouettes with the axis held, and the axis again with
    # that step (the two are coupled: a shifted axis prefers another step)
    fine = Silhouettes(masks, K, long_side=320, grid=64)
    e, r, u0, v0, th0 = axis
    sign = np.sign(th0)
    grid = [
        (abs(th0) + np.radians(dt), u0 + du)
        for dt in np.arange(-0.8, 0.81, 0.1)
        for du in np.arange(-0.015, 0.0151, 0.003)
    ]
    best = (-1.0, abs(th0), u0)
    for k, (th, u) in enumerate(grid):
        c = fine.coherence((e, r, u, v0, sign * th))
        if c > best[0]:
            best = (c, th, u)
        report("turntable step", k + 1, len(grid))
    for dt in np.arange(-0.1, 0.101, 0.02):  # finer in the step around the best cell
        th = best[1] + np.radians(dt)
        c = fine.coherence((e, r, best[2], v0, sign * th))
        if c > best[0]:
            best = (c, th, best[2])
    notes.append(
        f"step {np.degrees(best[1]):.3f} deg, axis x {best[2]:.4f} (coherence {best[0]:.3f})"
    )
    params, X, res = adjust_axis(
        K, n, tracks, sign * best[1], start=(e, r, best[2], v0), hold_u=best[2]
    )
    report("turntable axis", 2, 2)
    rs, ts = circular_poses(n, params)
    err = np.linalg.norm(res, axis=1)
    obs_t, _, _ = _observations(tracks)
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
        coherence=float(best[0]),
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
