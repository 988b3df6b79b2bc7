"""Feature tracks inside the masks (SIFT, ratio test, a fundamental-matrix check), their
triangulation and projection, and the axis by bundle adjustment with the step held."""

from __future__ import annotations

import cv2
import numpy as np

from .circular import circular_poses

MAX_GAP = 3  # frames matched with the next MAX_GAP frames
RATIO = 0.8  # Lowe's ratio test
MIN_MATCHES = 15


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


def track_motion(track) -> float:
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


def observations(tracks):
    t = np.array([k for k, tr in enumerate(tracks) for _ in tr], np.int64)
    f = np.array([fr for tr in tracks for fr, _ in tr], np.int64)
    x = np.array([p for tr in tracks for _, p in tr], np.float64).reshape(-1, 2)
    return t, f, x


def reproject(K, rs, ts, X, frames):
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

    obs_t, obs_f, obs_x = observations(tracks)
    if start is None:
        rng = np.random.default_rng(0)
        sub = rng.choice(len(tracks), min(300, len(tracks)), replace=False)
        subtracks = [tracks[k] for k in sub]
        st, sf, sx = observations(subtracks)
        best = None
        for e in np.radians(np.arange(-40, 41, 2)):
            for th in (theta, -theta):
                rs, ts = circular_poses(n, (e, 0.0, 0.0, 0.0, th))
                X = triangulate(K, rs, ts, subtracks)
                pr, z = reproject(K, rs, ts, X[st], sf)
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
        pr, _ = reproject(K, rs, ts, x[ng:].reshape(T, 3)[obs_t], obs_f)
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
