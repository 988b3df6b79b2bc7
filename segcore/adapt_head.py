"""The per-sequence head of :mod:`segcore.adapt`: features of each pixel at the network's
scale, the head (a linear model plus a small tanh layer, started as the network and pulled
back to it), its fit with scipy's L-BFGS on the corrected frames' pixels and the confident
pixels of others. numpy and scipy only, so it runs inside Blender."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .infer import sigmoid
from .preprocess import fit_size

FEATURES_VERSION = 1  # bump when :func:`pixel_features` changes: saved heads are refitted

HIDDEN = 12  # tanh units of the head's non-linear part
HARD = 8000  # a corrected frame's pixels the network gets wrong or are near an edge, at most
EASY = 3000  # and of its other pixels
OTHERS = 6  # other frames whose confident pixels join the fit, at most
PER_OTHER = 6000  # confident pixels of each, at most
OTHERS_WEIGHT = 0.5  # their total weight against the corrected pixels' total
CONFIDENT = 0.03  # network probability below this or above 1 - this ...
CONFIDENT_DIST = 3.0  # ... and this many network pixels from its boundary: confident
RIDGE = 1e-5  # regulariser: pulls the head back to the network (per corrected frame); chosen
# on 24-frame validation-family rings (1e-3, 1e-4, 1e-5: the largest garment-alone loss 0.011,
# 0.006, 0.0045; the garment figure +0.0026, +0.0030, +0.0031 IoU with one correction)
MAX_ITER = 250
SMOOTH = 1.0  # Gaussian sigma (network pixels) on the head's logit (2, 3: no better)
SLIVER = 3  # the head's changes thinner than this many network pixels are left to the network


# --- features -------------------------------------------------------------------------


def network_grid(bgr_or_source: np.ndarray, frame_hw, input_size: int) -> np.ndarray:
    """The frame (or its reduced copy) area-resized to the network's grid (h, w)."""
    geo = fit_size(tuple(frame_hw), input_size)
    h, w = geo.scaled_hw
    if bgr_or_source.shape[:2] == (h, w):
        return bgr_or_source
    return cv2.resize(bgr_or_source, (w, h), interpolation=cv2.INTER_AREA)


def _box(img: np.ndarray, k: int) -> np.ndarray:
    return cv2.boxFilter(img, -1, (k, k), borderType=cv2.BORDER_REFLECT)


def pixel_features(small_bgr: np.ndarray, prob: np.ndarray, thr: float) -> np.ndarray:
    """(h * w, F) float32 features of each network pixel: Lab colour, its 5x5 mean and
    spread, its 15x15 mean, the gradient and its 5x5 mean, the network's probability and
    logit, the signed distance to the network's boundary and the position in the network
    mask's bounding box."""
    h, w = prob.shape
    lab = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2LAB).astype(np.float32) / 255.0
    m5 = _box(lab, 5)
    sd5 = np.sqrt(np.maximum(_box(lab * lab, 5) - m5 * m5, 0.0))
    m15 = _box(lab, 15)
    L = np.ascontiguousarray(lab[..., 0])
    grad = np.hypot(cv2.Sobel(L, cv2.CV_32F, 1, 0), cv2.Sobel(L, cv2.CV_32F, 0, 1))
    p = np.clip(prob.astype(np.float32), 1e-4, 1 - 1e-4)
    logit = np.log(p / (1 - p)) / 4.0
    inside = (prob > thr).astype(np.uint8)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3) - cv2.distanceTransform(
        1 - inside, cv2.DIST_L2, 3
    )
    dist = np.clip(dist, -24, 24) / 24.0
    ys, xs = np.nonzero(inside)
    if ys.size:
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    else:
        y0, y1, x0, x1 = 0, h, 0, w
    ry = (np.arange(h, dtype=np.float32) - y0) / max(1, y1 - y0)
    rx = (np.arange(w, dtype=np.float32) - 0.5 * (x0 + x1)) / max(1, x1 - x0)
    ry = np.broadcast_to(np.clip(ry, -0.5, 1.5)[:, None], (h, w))
    rx = np.broadcast_to(np.clip(rx, -1.0, 1.0)[None, :], (h, w))
    planes = [lab, m5, sd5, m15, grad[..., None], _box(grad, 5)[..., None]]
    planes += [x[..., None] for x in (p, logit, dist, ry, rx)]
    return np.concatenate(planes, axis=2).reshape(h * w, -1)


LOGIT_FEATURE = 15  # index of the network's logit (/ 4) in :func:`pixel_features`


# --- the head ---------------------------------------------------------------------------


@dataclass
class Head:
    """logit = x . lin + b + v . tanh(W x + c), on features standardised by (mu, sd)."""

    mu: np.ndarray
    sd: np.ndarray
    lin: np.ndarray
    b: float
    W: np.ndarray
    c: np.ndarray
    v: np.ndarray

    def logit(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mu) / self.sd
        return z @ self.lin + self.b + np.tanh(z @ self.W.T + self.c) @ self.v

    def probability(self, small_bgr: np.ndarray, prob: np.ndarray, thr: float) -> np.ndarray:
        """The adapted probability (h, w) of one frame: the head's (its logit smoothed by
        :data:`SMOOTH` network pixels, against speckle) where it decides otherwise than the
        network over a region at least :data:`SLIVER` network pixels wide, the network's own
        elsewhere. A change one network pixel wide along the outline (four frame pixels at
        1280x960) is the head's coarse grid, not a correction: there the network's soft
        profile goes on to the upsampling and the full-resolution edge refinement."""
        x = pixel_features(small_bgr, prob, thr)
        q = sigmoid(cv2.GaussianBlur(self.logit(x).reshape(prob.shape), (0, 0), SMOOTH))
        changed = ((q > thr) != (prob > thr)).astype(np.uint8)
        changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((SLIVER, SLIVER), np.uint8))
        return np.where(changed > 0, q, prob).astype(np.float32)

    def to_dict(self) -> dict:
        return {k: np.asarray(v, np.float64).tolist() for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Head:
        arr = {k: np.asarray(d[k], np.float32) for k in ("mu", "sd", "lin", "W", "c", "v")}
        return cls(b=float(d["b"]), **arr)


def _unpack(theta: np.ndarray, n_in: int):
    i = 0
    lin = theta[i : i + n_in]
    i += n_in
    b = theta[i]
    i += 1
    W = theta[i : i + HIDDEN * n_in].reshape(HIDDEN, n_in)
    i += HIDDEN * n_in
    c = theta[i : i + HIDDEN]
    i += HIDDEN
    return lin, b, W, c, theta[i : i + HIDDEN]


def fit_head(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, ridge: float, seed: int = 0
) -> tuple[Head, dict]:
    """Fit a :class:`Head` on features ``x`` (n, F), soft targets ``y`` in [0, 1] and sample
    weights; ``ridge`` pulls it back towards the network (logit feature weight 1)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    x = x.astype(np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-3
    z = ((x - mu) / sd).astype(np.float32)  # float32 products: twice as fast
    y = y.astype(np.float32)
    n, f = z.shape
    rng = np.random.default_rng(seed)
    prior_lin = np.zeros(f, np.float32)
    prior_lin[LOGIT_FEATURE] = 4.0 * sd[LOGIT_FEATURE]  # logit = 4 x feature: the network
    prior_b = np.float32(4.0 * mu[LOGIT_FEATURE])
    theta0 = np.concatenate(
        [prior_lin, [prior_b], rng.normal(0, 0.3 / np.sqrt(f), HIDDEN * f), np.zeros(HIDDEN),
         rng.normal(0, 0.01, HIDDEN)]
    )  # fmt: skip
    wsum = float(weight.sum())
    wn = (weight / wsum).astype(np.float32)

    def loss(theta64):
        theta = theta64.astype(np.float32)
        lin, b, W, c, v = _unpack(theta, f)
        a = np.tanh(z @ W.T + c)
        s = z @ lin + b + a @ v
        # weighted binary cross-entropy with soft targets, numerically stable
        ce = np.logaddexp(np.float32(0), s) - y * s
        r = ridge / wsum
        dl, dv = lin - prior_lin, v
        val = float(wn @ ce) + r * float(dl @ dl + dv @ dv + 0.1 * (W * W).sum())
        g = wn * (expit(s) - y)
        gl = z.T @ g + 2 * r * dl
        gb = g.sum()
        gv = a.T @ g + 2 * r * dv
        ga = np.outer(g, v) * (1 - a * a)
        gW = ga.T @ z + 0.2 * r * W
        gc = ga.sum(axis=0)
        return val, np.concatenate([gl, [gb], gW.ravel(), gc, gv]).astype(np.float64)

    t0 = time.perf_counter()
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITER})
    lin, b, W, c, v = _unpack(res.x, f)
    f32 = np.float32
    head = Head(mu.astype(f32), sd.astype(f32), lin.astype(f32), float(b), W.astype(f32),
                c.astype(f32), v.astype(f32))  # fmt: skip
    stats = {
        "samples": int(n),
        "iterations": int(res.nit),
        "loss": round(float(res.fun), 5),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return head, stats


# --- corrections ----------------------------------------------------------------------


def corrected_sample(x: np.ndarray, p: np.ndarray, target: np.ndarray, rng):
    """(indices, weights summing to 1) of a corrected frame's pixels for the fit: every hard
    pixel (the network wrong, or near its boundary or the correction's) up to :data:`HARD`,
    and :data:`EASY` of the rest, each weighted by how many pixels it stands for."""
    near = np.abs(x[:, LOGIT_FEATURE + 1]) * 24.0 < 6.0
    hard = (np.abs(target - p) > 0.25) | near | ((target > 0) & (target < 1))
    picked, weights = [], []
    for pool, most in ((np.flatnonzero(hard), HARD), (np.flatnonzero(~hard), EASY)):
        if pool.size == 0:
            continue
        sel = rng.choice(pool, most, replace=False) if pool.size > most else pool
        picked.append(sel)
        weights.append(np.full(sel.size, pool.size / sel.size))
    w = np.concatenate(weights)
    return np.concatenate(picked), w / w.sum()
