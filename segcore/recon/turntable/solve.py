"""The turntable solver's steps (see :mod:`segcore.recon.turntable`): coarse step and tilt
from the silhouettes, starts from the vertical edges and the feature axis, the joint
refinement of the best start and of its mirror, the polish."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .circular import TurntableFit, axis_direction, circular_poses, mirrored
from .coherence import RayCoherence
from .fit import POLISH_EVALS, CircularFit
from .silhouettes import Silhouettes, shared_pool
from .tracks import (
    adjust_axis,
    feature_tracks,
    observations,
    polish_points,
    reproject,
    track_motion,
    triangulate_batched,
)
from .verticals import VERTICAL_MIN, ring_vertical_edges, vertical_axis, vertical_edges

MIN_TRACKS = 30  # fewer: the axis comes from the silhouettes alone
# suspect masks: a mask whose area is this far (a factor) from the median mask's, or that the
# hull carved from the others (one bad view forgiven) fits SUSPECT_DROP worse than the median
# view and below SUSPECT_IOU (coarse grid), is left out of the fit and reported
SUSPECT_AREA = 2.5
SUSPECT_DROP = 0.15
SUSPECT_IOU = 0.75
STILL_PX = 1.0  # a track moving less than this per frame is dropped
COARSE_TILTS = (0.0, 0.15, -0.15, 0.3, -0.3)  # axis tilts (radians) of the coarse step search
ALT_MARGIN = 1.3  # the other turn direction is refined on while its cost is below this x
MIN_STEP_DEG = 1.0  # a solution turning less a frame ranks after every one that turns
COARSE_MAX_STEP_DEG = 60.0  # the coarse search's largest step (six frames a turn)


def solve_turntable(
    grays: list[np.ndarray],
    masks: list[np.ndarray],
    K: np.ndarray,
    progress: Callable[[str, int, int], None] | None = None,
    silhouettes: list[np.ndarray] | None = None,
    still: bool = True,
) -> TurntableFit:
    """Circular-motion calibration of a turntable sequence (frames in capture order).

    ``grays``: uint8 frames; ``masks``: bool (subject True), eroded as for SfM (features are
    taken inside them); ``silhouettes``: the masks as they are, for the outline term (default
    ``masks``); ``K``: the intrinsics in OpenCV's pixel convention; ``still``: the background
    stands still (a turntable): outline points where a mask covers it (a leak) or that are
    the same in every frame are left out, and its vertical edges give the axis; False for a
    camera carried round the garment on an even ring, where the room moves behind it (every
    frame's vertical edges give the axis then). Raises ValueError when the silhouettes say
    nothing (empty masks).
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
    moving = [tr for tr in tracks if track_motion(tr) >= STILL_PX]
    notes.append(f"{len(moving)} tracks ({len(tracks) - len(moving)} still ones dropped)")
    tracks = moving
    report("turntable features", 1, 1)
    # 1. coarse step and tilt from the silhouettes alone, without the masks that disagree
    # with the others (an empty or blob mask would carve the hull away or say nothing true)
    suspects = suspect_areas(sils)
    c0, p0 = coarse_search(sils, K, suspects, report)
    found = suspect_views(sils, K, p0, suspects)
    if set(found) - set(suspects):  # the frames' agreement found more: search again
        suspects = sorted(set(suspects) | set(found))
        c0, p0 = coarse_search(sils, K, suspects, report)
    notes.append(
        f"coarse: step {np.degrees(abs(p0[4])):.1f} deg, tilt {np.degrees(p0[0]):.1f} deg "
        f"(coherence {c0:.3f})"
    )
    if suspects:
        notes.append(f"suspect masks left out of the fit: frames {suspects}")
    rays = RayCoherence(sils, K, frames=grays if still else None, ignore=suspects)
    if rays.dropped:
        notes.append(f"{rays.dropped} outline points on the still background left out")
    if rays.still:
        notes.append(f"{rays.still} outline points on still parts (a stand) left out")
    # the room's vertical edges: a turntable's still background's, or on an even ring every
    # frame's (the axis stays put in every camera of a circular motion)
    edges = vertical_edges(grays, sils) if still else ring_vertical_edges(grays, sils)
    vertical = None  # the axis the room's vertical edges give: (tilt, roll)
    starts = {"silhouettes": np.array(p0, float)}
    if len(edges) >= VERTICAL_MIN:
        ve, vr, vres = vertical_axis(K, edges)
        notes.append(
            f"{len(edges)} vertical {'background' if still else 'room'} edges: tilt "
            f"{np.degrees(ve):.2f} deg, "
            f"roll {np.degrees(vr):.2f} deg (median {vres:.2f} px)"
        )
        vertical = (ve, vr)
        # the edges fix the tilt's sign, not the turn's: the silhouettes' step may come from
        # their mirror (tilt and turn reversed), so both turns start from the edges' axis
        starts["verticals"] = np.array([ve, vr, p0[2], p0[3], p0[4]], float)
        starts["verticals, turn reversed"] = np.array([ve, vr, p0[2], p0[3], -p0[4]], float)
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
    best = min(refined, key=lambda k: _ranked(*refined[k]))
    params, c1 = refined[best]
    if len(refined) > 1:
        notes.append("refined: " + ", ".join(f"{k} {c:.0f}" for k, (_, c) in refined.items()))
    # the mirror of a start (tilt and turn reversed) explains the outlines almost as well
    # (exactly so in orthographic projection: Necker reversal); the best start of the other
    # turn direction, or the mirror of the best, is refined too and the lower cost kept
    # (a few iterations first: it goes on only while it is not far worse)
    # (both when they differ: a start of the other turn can lie in a worse basin than the
    # mirror, which on a held-out coat led from a wrong coarse tilt to the true cameras)
    other = {k: p for k, p in starts.items() if np.sign(p[4]) != np.sign(starts[best][4])}
    alts = {f"{best} mirrored": mirrored(starts[best])}
    if other:
        name = min(other, key=costs.get)
        alts = {name: other[name], **alts}
    done = {}
    span = 10 / len(alts)  # the progress bar's last 10 steps, shared by the alternatives
    for j, (alt_name, alt) in enumerate(alts.items()):

        def show(d, t, j=j):
            report("turntable refine", 30 + round((j + d / t) * span), 40)

        alt, res = fit.refine(alt, max_nfev=10, progress=show)
        if res.cost < ALT_MARGIN * c1:
            alt, res = fit.refine(alt, max_nfev=20)
        done[alt_name] = (alt, res.cost)
    alt_name = min(done, key=lambda k: _ranked(*done[k]))
    alt, c2 = done[alt_name]
    notes.append(
        f"refined costs: {best} {c1:.0f}, "
        + ", ".join(f"{k} {c:.0f}" for k, (_, c) in done.items())
    )
    if _ranked(alt, c2) < _ranked(params, c1):
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
    off = None if vertical is None else axis_angle(params[:2], vertical)
    if off is not None:
        notes.append(f"axis {off:.1f} deg from the vertical edges' axis")
    # the final cameras: which masks do the others disagree with? (reported, recon.json)
    final = suspect_views(sils, K, params)
    if final:
        notes.append(f"suspect masks at the solution: frames {final}")
    rs, ts = circular_poses(n, params)
    obs_t, obs_f, obs_x = observations(tracks)
    X = triangulate_batched(K, rs, ts, obs_t, obs_f, obs_x, len(tracks))
    X = polish_points(K, rs, ts, X, obs_t, obs_f, obs_x)
    pr, z = reproject(K, rs, ts, X[obs_t], obs_f)
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
        suspects=sorted(set(suspects) | set(final)),
        axis_to_verticals_deg=off,
    )


def _ranked(params, cost) -> tuple[bool, float]:
    """How a refined solution ranks: by cost, after every one that turns. A step below
    ``MIN_STEP_DEG`` (below the coarse search's range) is the degenerate "the camera barely
    moves" answer, whose outlines all agree because they are nearly one view (a ring's room
    edges, which fix the tilt, once let a mirrored start slide into it: 0.14 deg a frame)."""
    return bool(abs(params[4]) < np.radians(MIN_STEP_DEG)), float(cost)


def axis_angle(a, b) -> float:
    """Degrees between the axes of two (tilt, roll) pairs."""
    da, db = axis_direction(*a), axis_direction(*b)
    return float(np.degrees(np.arccos(np.clip(abs(float(da @ db)), 0.0, 1.0))))


def suspect_areas(masks) -> list[int]:
    """Frames whose mask's area is ``SUSPECT_AREA`` times the median mask's or more, or as
    many times less (an empty-ish mask, a blob): on a turntable the garment's silhouette
    changes its area far less than that from one frame to the next."""
    area = np.array([np.count_nonzero(m) for m in masks], float)
    med = float(np.median(area))
    if med <= 0:
        return []
    return [
        int(i) for i in np.nonzero((area * SUSPECT_AREA < med) | (area > SUSPECT_AREA * med))[0]
    ]


def suspect_views(masks, K, params, ignore=()) -> list[int]:
    """Frames whose mask the visual hull of the others fits far worse than the median frame
    (coarse grid, one bad view forgiven in the carving): silhouette coherence per view."""
    if len(masks) < 6:
        return []
    grid = Silhouettes(masks, K, long_side=160, grid=48, misses=1, ignore=ignore)
    iou = grid.per_view(params)
    keep = [i for i in range(len(iou)) if i not in set(ignore)]
    med = float(np.median(iou[keep])) if keep else 0.0
    bad = (iou < med - SUSPECT_DROP) & (iou < SUSPECT_IOU)
    return [int(i) for i in np.nonzero(bad)[0] if i not in set(ignore)]


def coarse_steps_deg(n: int) -> np.ndarray:
    """The coarse search's steps a frame (degrees, 1 apart): 2 to 20, and on to a whole turn's
    step where ``n`` frames need more (12 frames of one turn: 30 degrees a frame), at most 60."""
    top = min(COARSE_MAX_STEP_DEG, max(20.0, float(np.ceil(360.0 / max(n, 1)))))
    return np.arange(2.0, top + 0.5, 1.0)


def coarse_search(masks, K, ignore, report):
    """The coarse step and tilt (silhouette coherence over a grid of hypotheses, the
    ``ignore`` views left out): ``(best coherence, best params)``."""
    coarse = Silhouettes(masks, K, long_side=160, grid=48, ignore=ignore)
    steps = np.radians(coarse_steps_deg(len(masks)))
    hyps = [
        (e, 0.0, coarse.x_centre, 0.0, sign * deg)
        for deg in steps
        for sign in (1, -1)
        for e in COARSE_TILTS
    ]
    cands = []
    for k, score in enumerate(shared_pool().map(coarse.coherence, hyps)):  # in order
        cands.append((score, hyps[k]))
        report("turntable step", k + 1, len(hyps))
    return max(cands, key=lambda c: c[0])
