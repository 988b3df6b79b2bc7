"""Silhouette coherence as a smooth residual per outline point (:class:`RayCoherence`), and
what is left out of it: outlines bounding a leak onto the still background, and outlines that
are the same in every frame (a stand)."""

from __future__ import annotations

import cv2
import numpy as np

from ...geometry import silhouette_sdf
from ...plate import clear_of, plate_of
from .circular import axis_direction
from .silhouettes import resized_masks, shared_pool

RAY_LONG_SIDE = (512, 1024)  # outline rays on masks of this size (smaller ones upsampled)
STILL_OUTLINE_PX = 8  # an outline is still where, this far in/out, every frame agrees...
STILL_SHARE = 0.15  # ...but for this share of the frames (the masks' own errors),
STILL_GREY = 6.0  # or where the frames barely change on both sides (grey levels, std)
STILL_KEEP = 0.3  # still outlines are kept when dropping them would leave less than this


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


def _sdf_atlas(sdfs) -> tuple[np.ndarray, np.ndarray]:
    """The SDFs as tiles of one float32 image (a grid, so that pixel positions stay within
    OpenCV's 16-bit remap range), each tile with a one-pixel border of its own edge (what
    ``BORDER_REPLICATE`` gives a single image): the atlas and each tile's origin (x, y)."""
    n = len(sdfs)
    h, w = sdfs[0].shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    atlas = np.zeros((rows * (h + 2), cols * (w + 2)), np.float32)
    origin = np.zeros((n, 2), np.int64)
    for j, sdf in enumerate(sdfs):
        y, x = divmod(j, cols)
        y, x = y * (h + 2), x * (w + 2)
        atlas[y : y + h + 2, x : x + w + 2] = np.pad(sdf, 1, mode="edge")
        origin[j] = (x + 1, y + 1)
    return atlas, origin


def _remap_grid(coord: np.ndarray, out: np.ndarray | None = None, where=True) -> np.ndarray:
    """Pixel coordinates as ``cv2.remap`` uses them (float32, on a 1/32-pixel grid), so that
    a tile's integer offset in the atlas samples exactly what the tile alone would give.
    ``out``: a float32 array to fill (where ``where``; elsewhere it keeps its values)."""
    if out is None:
        out = np.zeros(np.shape(coord), np.float32)
    np.multiply(coord, 32.0, out=out, where=where, casting="same_kind")
    np.rint(out, out=out)
    out /= np.float32(32)
    return out


def pixel_at(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``img`` at the nearest pixel of each point (x, y), clipped into the image."""
    q = np.rint(xy).astype(int)
    h, w = img.shape[:2]
    return img[np.clip(q[:, 1], 0, h - 1), np.clip(q[:, 0], 0, w - 1)]


def _still_outline(pts, inward, occ, std) -> np.ndarray:
    """Which outline points (``inward``: unit normals into the mask) lie on a still outline:
    ``STILL_OUTLINE_PX`` inside, nearly every frame's mask covers the point, outside nearly
    none (``occ``: the share of frames masked); or the frames barely change on either side
    (``std``: the per-pixel standard deviation over the frames, blurred)."""
    at, d = pixel_at, STILL_OUTLINE_PX
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
    view's mask error; ``ignore``: views whose masks take no part, the suspect masks of
    :func:`suspect_views`). With consistent cameras and masks an outline ray grazes the hull:
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
        ignore=(),
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
                leak = pixel_at(still[i], pts + 3 * g)
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
        # suspect masks (the others disagree with them): no outline rays, and they carve
        # nothing (inside everywhere), so the fit is the other views' alone
        for i in ignore:
            outlines[i] = outlines[i][:0]
            self.sdf[i] = np.full_like(self.sdf[i], trunc)
        self.outline = outlines
        # every view's SDF in one image, so that one look-up samples all the other views
        self.atlas, self.tile_origin = _sdf_atlas(self.sdf)
        self.sdf = [self.atlas[y : y + h, x : x + w] for x, y in self.tile_origin]
        ys, xs = np.nonzero(np.any(small, axis=0))
        self.x_range = (
            ((xs.min() - self.K[0, 2]) / self.K[0, 0], (xs.max() - self.K[0, 2]) / self.K[0, 0])
            if len(xs)
            else (-1.0, 1.0)
        )

    def _hull_depth(self, i, Y, rot, c) -> np.ndarray:
        """For points ``Y`` (camera ``i`` coordinates minus ``c``): the ``robust``-th
        smallest signed distance to the other views' silhouettes (-inf where unseen).
        All the other views at once: one projection, one look-up in the atlas."""
        n = len(self.sdf)
        w, h = self.size
        others = np.array([j for j in range(n) if j != i])
        # camera j's pixels of Y: K (rot[j - i] Y + c), all j in one product whose columns
        # are x for every j, then y, then z (the third row of K is (0, 0, 1))
        P = np.stack([self.K @ rot[j - i] for j in others])  # (n - 1, 3, 3)
        px = Y @ P.transpose(2, 1, 0).reshape(3, -1) + np.repeat(self.K @ c, len(others))
        x, y, z = np.split(px, 3, axis=1)  # (len(Y), n - 1) each
        zc = np.maximum(z, 1e-9)
        uvx = x / zc
        uvy = y / zc
        ok = (z > 1e-6) & (uvx >= -0.5) & (uvx <= w - 0.5) & (uvy >= -0.5) & (uvy <= h - 0.5)
        origin = self.tile_origin[others].astype(np.float32)
        # the remap's own map arrays, filled in place (float32, on its 1/32-pixel grid)
        m = ok.size
        cols = 1024
        rows = -(-m // cols)
        mx = np.zeros(rows * cols, np.float32)
        my = np.zeros(rows * cols, np.float32)
        for uv, o, dst in ((uvx, origin[:, 0], mx), (uvy, origin[:, 1], my)):
            _remap_grid(uv, dst[:m].reshape(ok.shape), ok)[...] += o  # 0 + origin if unseen
        vals = cv2.remap(
            self.atlas,
            mx.reshape(rows, cols),
            my.reshape(rows, cols),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        ).reshape(-1)[:m]
        vals = vals.reshape(ok.shape)
        vals[~ok] = np.inf
        k = min(self.robust, n - 2)
        kth = np.partition(vals, k, axis=1)[:, k]
        kth[~np.isfinite(kth)] = -np.inf
        return kth

    def residuals(self, params) -> np.ndarray:
        """One residual per outline point (pixels of the masks as used)."""
        return self.evaluate(params)[0]

    def evaluate(self, params, around=None) -> tuple[np.ndarray, dict]:
        """``(residuals, windows)``. Each ray's value is searched coarsely over its depth
        through the cylinder, then finely around the deepest sample; ``windows`` holds, per
        view, each ray's deepest depth and the coarse spacing. Given them as ``around``, the
        coarse search is skipped and only the fine window is sampled (a quarter of the
        look-ups): for a finite-difference Jacobian, whose small steps barely move a ray's
        deepest point. At the point that gave ``around`` the result is the same as without
        it (the fine window holds the deepest coarse sample)."""
        e, r, u, v, th = params
        a = axis_direction(e, r)
        c = np.array([u, v, 1.0])
        n = len(self.sdf)
        rad = 1.3 * max(abs(self.x_range[0] - u), abs(self.x_range[1] - u))
        rot = {d: cv2.Rodrigues((a * (d * th)).reshape(3, 1))[0] for d in range(-(n - 1), n)}
        views = [i for i in range(n) if len(self.outline[i])]

        def view(i):
            win = None if around is None else around[i]
            return self._view_residuals(i, a, c, rad, rot, win)

        # the views are independent: numpy and OpenCV release the GIL, so the cores share them
        out = list(shared_pool().map(view, views))
        res = np.concatenate([o[0] for o in out]) if out else np.zeros(0)
        windows = {i: o[1] for i, o in zip(views, out)}
        return np.where(np.isfinite(res), res, -20.0), windows

    def _view_residuals(self, i, a, c, rad, rot, window=None):
        """View ``i``'s outline rays: each one's largest hull depth (:meth:`_hull_depth`),
        and where along the ray it was found (:meth:`evaluate`'s ``windows``)."""
        D, F = self.depth_samples, self.fine_samples
        pts = self.outline[i]
        ray = np.hstack([pts, np.ones((len(pts), 1))]) @ self.Kinv.T
        ray /= np.linalg.norm(ray, axis=1, keepdims=True)
        if window is None:
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
            tc = ts[np.arange(len(pts)), best.argmax(axis=1)]
            coarse = best.max(axis=1)
        else:
            tc, dt = window
            coarse = -np.inf
        tf = tc[:, None] + dt[:, None] * np.linspace(-1.0, 1.0, F)[None]
        Y = (ray[:, None, :] * tf[:, :, None]).reshape(-1, 3) - c
        fine = self._hull_depth(i, Y, rot, c).reshape(len(pts), F)
        return np.maximum(coarse, fine.max(axis=1)), (tc, dt)
