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
  the vanishing point of the axis, which stands upright on a level floor (on an even ring
  of a moving camera, every frame's edges, pooled: the axis stays put in each camera); and
  outlines that are the same in every frame (a stand's base) are left out of the outline
  term: they say nothing about the turn, and a mask's error there, the same in every frame,
  reads as a tilt.

Masks the other frames disagree with (an area far from the median mask's, or a poor fit to
the hull carved from the others: silhouette coherence per view, :func:`.solve.suspect_views`)
are left out of the coarse search and the outline term, and reported (``TurntableFit.suspects``).
Coarse ``theta`` and tilt from the silhouettes; the axis from the vertical edges (when there
are six or more) and from features with that step held (when there are tracks); from each
of these starts (of the cheapest one's turn direction) a robust least-squares fit of tilt,
roll, axis position and step to the tracks (points eliminated, :class:`CircularFit`), the
outline rays and the vertical edges together, and one from the winner's mirror (tilt and
turn reversed, :func:`mirrored`, which the outlines alone cannot tell from the truth); the
lowest cost wins; last, a Nelder-Mead polish (:meth:`CircularFit.polish`) steps over the
shallow pits the outline term has below a pixel, where least squares stops. A plain garment
with no tracks is solved from its outlines alone. About two minutes for 36 frames at
768x1024 on two cores.

Modules: :mod:`.circular` (the motion model), :mod:`.tracks` (features and their
adjustment), :mod:`.silhouettes` (the coarse grid coherence), :mod:`.coherence` (outline
rays), :mod:`.verticals` (the background's vertical edges), :mod:`.fit` (the joint cost),
:mod:`.solve` (the steps above), :mod:`.colmap` (the fit as a COLMAP model).
"""

from .circular import TurntableFit, axis_direction, circular_poses, mirrored
from .coherence import RayCoherence, background_like
from .colmap import turntable_model, write_colmap_text
from .fit import CircularFit
from .silhouettes import Silhouettes
from .solve import solve_turntable
from .tracks import adjust_axis, feature_tracks, triangulate, triangulate_batched
from .verticals import ring_vertical_edges, vertical_axis, vertical_edges, vertical_residuals

__all__ = [
    "CircularFit",
    "RayCoherence",
    "Silhouettes",
    "TurntableFit",
    "adjust_axis",
    "axis_direction",
    "background_like",
    "circular_poses",
    "feature_tracks",
    "mirrored",
    "solve_turntable",
    "triangulate",
    "triangulate_batched",
    "turntable_model",
    "vertical_axis",
    "vertical_edges",
    "ring_vertical_edges",
    "vertical_residuals",
    "write_colmap_text",
]
