"""Temporal consistency for sequences: motion-compensated smoothing of the network's output.

Neighbouring frames of a turntable or a camera ring change smoothly, but a network that sees
each frame alone decides a low-contrast rim a little differently every time: the mask
flickers. :func:`smooth_step` blends a frame's probability (at network scale) with the
previous frame's smoothed probability *warped onto this frame* by dense optical flow (DIS,
a few milliseconds at network scale). The blend weight falls where the warped previous frame
does not match this frame's pixels (occlusions, flow errors, fast motion), so real motion is
followed, not blurred; where the flow is right, the estimate averages over frames.

:class:`SequenceSmoother` runs that recursion in frame order while the pipeline processes
frames on several threads: frame ``i`` waits only for frame ``i - 1``'s smoothed map, which
is ready as soon as that frame's inference is done, so the frames in flight still overlap.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

#: weight of the warped previous estimate where the flow explains the pixels perfectly
WEIGHT = 0.5
#: grey-level difference (0..255, after a light blur) at which that weight has fallen to 1/e
SIGMA = 12.0


def network_gray(bgr_small: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The frame as uint8 grey at the network-scale grid ``hw`` (what the flow runs on)."""
    g = bgr_small if bgr_small.ndim == 2 else cv2.cvtColor(bgr_small, cv2.COLOR_BGR2GRAY)
    if g.shape != hw:
        g = cv2.resize(g, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(g)


def _flow() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def smooth_step(
    prev_gray: np.ndarray,
    prev_prob: np.ndarray,
    gray: np.ndarray,
    prob: np.ndarray,
    weight: float = WEIGHT,
    sigma: float = SIGMA,
    flow: cv2.DISOpticalFlow | None = None,
) -> np.ndarray:
    """This frame's probability blended with the previous estimate warped onto this frame.

    All maps share one (h, w) network-scale grid; ``gray`` uint8, ``prob`` float32 in [0, 1].
    Returns float32 (h, w).
    """
    h, w = prob.shape
    if prev_prob.shape != (h, w) or prev_gray.shape != (h, w):
        return prob  # a frame of another size: the chain starts again
    f = (flow or _flow()).calc(gray, prev_gray, None)  # gray(x) ~ prev_gray(x + f(x))
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + f[..., 0], gy + f[..., 1]
    warped_p = cv2.remap(prev_prob, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped_g = cv2.remap(prev_gray, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    diff = cv2.GaussianBlur(cv2.absdiff(gray, warped_g).astype(np.float32), (5, 5), 1.0)
    wgt = np.float32(weight) * np.exp(-((diff / np.float32(sigma)) ** 2)) * inside
    out = prob + wgt * (warped_p - prob)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


class SequenceSmoother:
    """:func:`smooth_step` along a sequence of ``n`` frames processed on several threads.

    Every frame index must be settled exactly once, by :meth:`smooth`, by :meth:`resume`
    (a frame done by an earlier run, with the state it saved) or by :meth:`skip` (a frame
    that failed, or was skipped without a state, breaks the chain: the next starts afresh).
    A frame waits for its predecessor only, and takes its state: only the states of frames
    in flight are held, so memory does not grow with the sequence.
    """

    def __init__(self, n: int, weight: float = WEIGHT, sigma: float = SIGMA):
        self.weight, self.sigma = weight, sigma
        self._ready = [threading.Event() for _ in range(n)]
        self._state: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _prev(self, i: int):
        """Frame ``i - 1``'s state, once settled; only frame ``i`` reads it, so it goes."""
        if i == 0:
            return None
        self._ready[i - 1].wait()
        with self._lock:
            return self._state.pop(i - 1, None)

    def _settle(self, i: int, state) -> None:
        with self._lock:
            if state is not None:
                self._state[i] = state
        self._ready[i].set()

    def smooth(self, i: int, bgr_small: np.ndarray, prob: np.ndarray) -> np.ndarray:
        """Frame ``i``'s smoothed probability; ``bgr_small`` is the frame at any size."""
        return self.smooth_state(i, bgr_small, prob)[1]

    def smooth_state(self, i: int, bgr_small: np.ndarray, prob: np.ndarray):
        """:meth:`smooth`, returning the state the next frame starts from: (the frame's
        grey at network scale, its smoothed probability)."""
        if self._ready[i].is_set():
            raise RuntimeError(f"frame {i} was already settled")
        try:
            gray = network_gray(bgr_small, prob.shape)
            prev = self._prev(i)
            out = prob
            if prev is not None:
                flow = getattr(self._local, "flow", None)
                if flow is None:
                    flow = self._local.flow = _flow()
                out = smooth_step(*prev, gray, prob, self.weight, self.sigma, flow)
        except BaseException:
            self.skip(i)
            raise
        self._settle(i, (gray, out))
        return gray, out

    def resume(self, i: int, state: tuple[np.ndarray, np.ndarray]) -> None:
        """Settle frame ``i`` with a state :meth:`smooth_state` gave an earlier run (a frame
        done then and skipped now): the next frame goes on as if the chain had not stopped."""
        if not self._ready[i].is_set():
            self._settle(i, state)

    def skip(self, i: int) -> None:
        """Frame ``i`` has no estimate (failed, skipped): settle it so the next can go on."""
        if not self._ready[i].is_set():
            with self._lock:
                self._state.pop(i - 1, None)  # its only reader will not read it
            self._settle(i, None)
