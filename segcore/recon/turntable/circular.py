"""The turntable's circular motion: five parameters (axis tilt ``e`` and roll ``r``, a point
``(u, v, 1)`` on the axis in the first camera's coordinates, the step ``theta``) and the
cameras they give; :class:`TurntableFit`, the solver's result."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


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
    suspects: list = field(default_factory=list)  # frames whose masks the others disagree with
    # degrees between the solved axis and the one the background's vertical edges give (None:
    # too few edges); a turntable stands upright, so a large angle is a wrong solve
    axis_to_verticals_deg: float | None = None


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
