"""Whether a reconstruction can be trusted: the verdict every run computes.

A solve can register every frame and still be wrong (a turntable read as a camera that
barely turns, a ring whose cameras fold back on themselves): the count of registered
frames alone says little. The verdict looks at what a wrong solve cannot hide:

- **registered share**: the frames with a camera, of all frames;
- **reprojection error**: the sparse points' mean, in pixels;
- **mesh fit**: the visual hull carved from every mask, seen from each camera, against that
  frame's mask (IoU, mean over the registered frames). With wrong cameras the hull shrinks
  away from the masks (each view carves what the others keep), so a poor fit says the
  cameras and the silhouettes disagree; a fit far below the others' in one frame says
  that frame's mask (or camera) is off: a **suspect mask**;
- on a turntable (a still background), **the rotation steps**: the camera's turn between
  consecutive frames, as a rotation vector in the world, is the same step about the same
  axis in every frame; ``step_spread`` is the median deviation of the steps from their
  median, relative to its length (0 for the circular solver's model by construction, so
  it judges what other mappers found on a turntable);
- on a turntable solved with the room's vertical edges in view (door frames, shelves), **the
  axis against those edges**: a turntable stands upright, so a solved axis far from their
  vanishing direction is a wrong solve (the mirrored one above all: tilt and turn reversed,
  which the outlines alone cannot tell from the right one).

``status`` is ``ok``, ``doubtful`` (look at ``hull_check.png`` before trusting it) or
``failed``; ``reasons`` say why in one line each. The limits are below; the CLI exits 1 on
``failed`` (docs/recon.md).
"""

from __future__ import annotations

import numpy as np

FAIL_SHARE = 0.8  # registered share below this: failed
DOUBT_SHARE = 0.95  # ...below this: doubtful
FAIL_REPROJ_PX = 2.0  # mean reprojection error above this: failed
DOUBT_REPROJ_PX = 1.5
# mesh fit (mean IoU of the hull's silhouettes with the masks): on the benchmark's
# turntables 0.92-0.98 with right cameras and the model's masks; 0.53-0.75 on solves
# 90-160 degrees off. Thin parts' mask errors weigh as much as the cameras, so only a
# clear misfit fails
FAIL_FIT = 0.85
DOUBT_FIT = 0.92
SUSPECT_FIT_DROP = 0.12  # a frame fitting this much worse than the median one: suspect mask
SUSPECT_FIT = 0.8  # ...and below this
FAIL_STEP_SPREAD = 0.25  # turntable: steps' median relative deviation above this: failed
DOUBT_STEP_SPREAD = 0.1
# turntable: the solved axis this far (degrees) from the room's vertical edges: failed /
# doubtful (right solves: 0.7-2.2 deg with clean edges, 7 deg with noisy ones; a solve
# 180 deg off: 24 deg)
FAIL_AXIS_DEG = 15.0
DOUBT_AXIS_DEG = 8.0
MIN_STEP_DEG = 0.5  # turntable: a median turn per frame below this is a camera that stands still

STATUSES = ("ok", "doubtful", "failed")


def rotation_steps(rotations: list[np.ndarray], gaps: list[int] | None = None) -> np.ndarray:
    """(N - 1, 3) rotation vectors (radians) of the world-frame turn between consecutive
    world-to-camera rotations ``R_i^T R_j``, divided by the frame gap between them."""
    import cv2

    gaps = gaps or [1] * (len(rotations) - 1)
    out = []
    for a, b, g in zip(rotations, rotations[1:], gaps):
        v = cv2.Rodrigues(np.asarray(a, float).T @ np.asarray(b, float))[0].ravel()
        out.append(v / max(1, g))
    return np.array(out).reshape(-1, 3)


def step_consistency(steps: np.ndarray) -> dict:
    """``step_deg`` (the median step's length), ``step_spread`` (median of each step's
    distance to the median step, relative to its length) and ``worst_step`` (index)."""
    if len(steps) < 2:
        return {}
    med = np.median(steps, axis=0)
    size = float(np.linalg.norm(med))
    dev = np.linalg.norm(steps - med, axis=1) / max(size, 1e-9)
    return {
        "step_deg": round(float(np.degrees(size)), 3),
        "step_spread": round(float(np.median(dev)), 4),
        "worst_step": int(np.argmax(dev)),
        "worst_step_deviation": round(float(dev.max()), 4),
    }


def suspect_frames(fit: dict[str, float]) -> list[str]:
    """Frames whose mask the hull fits far worse than the others' (IoU per frame)."""
    if len(fit) < 4:
        return []
    med = float(np.median(list(fit.values())))
    return [n for n, v in fit.items() if v < SUSPECT_FIT and v < med - SUSPECT_FIT_DROP]


def judge(
    frames: int,
    registered: int,
    reprojection_px: float | None,
    fit: dict[str, float] | None = None,
    turntable: bool = False,
    steps: np.ndarray | None = None,
    suspects: list[str] | None = None,
    axis_off: float | None = None,
    failure: str | None = None,
    hull_error: str | None = None,
    circular_ring: bool = False,
) -> dict:
    """The verdict of a run (see the module): ``{"status", "reasons", "checks"}``.

    ``fit``: the mesh fit's IoU per registered frame (None: no hull); ``turntable``: the
    background stands still (the steps are judged); ``steps``: :func:`rotation_steps`;
    ``suspects``: frames the solver found suspect on its own (they are listed with those of
    the fit); ``hull_error``: why no mesh could be carved (the cameras and the masks
    contradict each other: failed); ``axis_off``: degrees between a turntable's solved axis
    and the room's vertical edges (None: not measured); ``failure``: the run stopped short
    (too few frames registered); ``circular_ring``: a moving camera solved as an even ring
    (circular motion), whose cameras are only as right as the ring was even: doubtful.
    """
    failed: list[str] = []
    doubts: list[str] = []
    share = registered / max(1, frames)
    checks: dict = {"registered": registered, "frames": frames, "registered_share": round(share, 4)}
    if failure:
        failed.append(failure)
    elif share < FAIL_SHARE:
        failed.append(f"only {registered} of {frames} frames registered")
    elif share < DOUBT_SHARE:
        doubts.append(f"{frames - registered} of {frames} frames not registered")
    if reprojection_px is not None and np.isfinite(reprojection_px):
        checks["mean_reprojection_error_px"] = round(float(reprojection_px), 3)
        if reprojection_px > FAIL_REPROJ_PX:
            failed.append(f"mean reprojection error {reprojection_px:.2f} px (above 2 px)")
        elif reprojection_px > DOUBT_REPROJ_PX:
            doubts.append(f"mean reprojection error {reprojection_px:.2f} px")
    suspect = list(suspects or [])
    if hull_error:
        failed.append(f"no garment mesh: {hull_error}")
    if fit:
        mean = float(np.mean(list(fit.values())))
        checks["mesh_fit_iou"] = round(mean, 4)
        checks["mesh_fit_worst"] = min(fit, key=fit.get)
        if mean < FAIL_FIT:
            failed.append(
                f"the garment mesh fits the masks at IoU {mean:.2f} (below {FAIL_FIT}): the "
                "cameras disagree with the masks' silhouettes"
            )
        elif mean < DOUBT_FIT:
            doubts.append(f"the garment mesh fits the masks at IoU {mean:.2f}")
        suspect += [n for n in suspect_frames(fit) if n not in suspect]
    if turntable and steps is not None and len(steps) >= 2:
        s = step_consistency(steps)
        checks.update(s)
        if s["step_deg"] < MIN_STEP_DEG:
            failed.append(
                f"a turntable solved as a camera that barely turns ({s['step_deg']:.2f} deg a "
                "frame)"
            )
        elif s["step_spread"] > FAIL_STEP_SPREAD:
            failed.append(
                f"the turntable's steps disagree (median deviation {s['step_spread']:.0%} of "
                "the step): not one turn about one axis"
            )
        elif s["step_spread"] > DOUBT_STEP_SPREAD:
            doubts.append(f"the turntable's steps vary by {s['step_spread']:.0%}")
    if (turntable or circular_ring) and axis_off is not None:
        # a turntable's axis and an even ring's both stand upright in the room
        what = "turntable's" if turntable else "ring's"
        checks["axis_to_verticals_deg"] = round(float(axis_off), 2)
        if axis_off > FAIL_AXIS_DEG:
            failed.append(
                f"the {what} axis is {axis_off:.0f} deg off the room's vertical edges: "
                + (
                    "a wrong solve (mirrored: tilt and turn reversed)"
                    if turntable
                    else "a wrong solve (not one height and one step, or the edges mislead)"
                )
            )
        elif axis_off > DOUBT_AXIS_DEG:
            doubts.append(f"the {what} axis is {axis_off:.0f} deg off the room's verticals")
    if circular_ring:
        doubts.append(
            "a ring solved as circular motion (SfM could not solve it): each camera is off "
            "by as much as it strayed from one height, distance and step (0.2-0.4 deg on "
            "close-up rendered rings with a room in view, 1.4-3.9 deg before a plain sweep)"
        )
    checks["suspect_masks"] = suspect
    if suspect and not failed:
        doubts.append(
            f"{len(suspect)} suspect mask{'s' if len(suspect) > 1 else ''} "
            f"({', '.join(suspect[:3])}{', ...' if len(suspect) > 3 else ''})"
        )
    status = "failed" if failed else "doubtful" if doubts else "ok"
    return {"status": status, "reasons": failed + doubts, "checks": checks}


def verdict_line(verdict: dict | None) -> str:
    """``ok``, ``doubtful: ...`` or ``failed: ...`` (the reasons, semicolon-separated)."""
    if not verdict:
        return "no verdict"
    if verdict["status"] == "ok":
        return "ok"
    return f"{verdict['status']}: " + "; ".join(verdict["reasons"])
