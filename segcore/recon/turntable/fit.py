"""The joint cost of a circular-motion hypothesis (tracks, outline rays, vertical edges), its
least-squares refinement and its Nelder-Mead polish."""

from __future__ import annotations

import numpy as np

from .circular import circular_poses
from .coherence import RayCoherence
from .tracks import observations, polish_points, reproject, triangulate_batched
from .verticals import VERTICAL_WEIGHT, vertical_residuals

FREE = (0, 1, 2, 4)  # the fitted parameters: all but v, the scale gauge
# the last step's simplex (tilt, roll, axis x, step): about half a degree, a pixel or two
POLISH_SIMPLEX = (np.radians(0.5), np.radians(0.5), 0.002, np.radians(0.05))
POLISH_EVALS = 300  # at most this many cost evaluations (about half a minute)


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
        self.obs = observations(tracks)
        self.rays = rays
        self.sil_weight = sil_weight
        self.f_scale = f_scale
        self.up = K[0, 0] / rays.K[0, 0]  # outline residuals to full-resolution pixels

    def residuals(self, params) -> np.ndarray:
        return self.evaluate(params)[0]

    def evaluate(self, params, around=None) -> tuple[np.ndarray, dict]:
        """``(residuals, the outline rays' windows)``: :meth:`RayCoherence.evaluate`."""
        obs_t, obs_f, obs_x = self.obs
        rs, ts = circular_poses(len(self.rays.sdf), params)
        rays, windows = self.rays.evaluate(params, around)
        out = [self.sil_weight * self.up * rays]
        if self.n_tracks:
            X = triangulate_batched(self.K, rs, ts, obs_t, obs_f, obs_x, self.n_tracks)
            X = polish_points(self.K, rs, ts, X, obs_t, obs_f, obs_x)
            pr, _ = reproject(self.K, rs, ts, X[obs_t], obs_f)
            fr = (pr - obs_x).ravel()
            out.insert(0, np.where(np.isfinite(fr), fr, 100.0))
        if self.verticals is not None:
            out.append(VERTICAL_WEIGHT * vertical_residuals(self.K, self.verticals, params))
        return np.concatenate(out), windows

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
            f, win = self.evaluate(full(x))
            last.update(x=x.copy(), f=f, win=win)
            return f

        def jac(x):
            # forward differences from the residuals least squares just computed, each
            # outline ray sampled only around the deepest point they found on it (at the
            # base point that window gives exactly those residuals: RayCoherence.evaluate)
            if not np.array_equal(last.get("x"), x):
                fun(x)
            f0, win = last["f"], last["win"]
            J = np.empty((len(f0), len(x)))
            for k in range(len(x)):
                xk = x.copy()
                xk[k] += steps[k]
                J[:, k] = (self.evaluate(full(xk), win)[0] - f0) / steps[k]
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
