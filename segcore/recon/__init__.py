"""Photogrammetry from the masks: cameras by structure from motion (pycolmap, or the
turntable solver), a garment mesh carved from the silhouettes, nerfstudio's input, and the
placement of it all in a Blender scene.

    from segcore.recon import run_reconstruction, load_result
    result, mesh = run_reconstruction("shoot/", "out/masks", "work/")  # `segcore reconstruct`
    result.poses[0].R, result.poses[0].t      # world-to-camera, OpenCV axes

Modules, in the order a run uses them:

- :mod:`.result`: :class:`ReconResult` (cameras, poses, points), ``recon.json``, the errors;
- :mod:`.workspace`: frames and masks into the workspace, what may be written there;
- :mod:`.sfm` and :mod:`.colmap`: pycolmap's features, matching, mapping, distortion;
- :mod:`.turntable`: the circular-motion solver for a still background;
- :mod:`.run`: :func:`reconstruct` (SfM) and :func:`run_reconstruction` (all of it);
- :mod:`.camera`, :mod:`.carve`, :mod:`.mesh`, :mod:`.colour`, :mod:`.check`: the visual
  hull (views, carving, meshing, vertex colours, how it fits the masks);
- :mod:`.ply`, :mod:`.nerfstudio`: the files for other tools;
- :mod:`.place`: the scene placement and camera data the Blender add-on uses.

pycolmap and scikit-image are needed only to run a reconstruction or mesh a hull; reading a
result back (:func:`load_result`, :func:`read_ply`) needs numpy alone.
"""

from ..options import DEFAULT_VOXELS, MAPPERS, MATCHERS, QUALITIES
from .camera import View, views_from_result
from .carve import hull_from_views, visual_hull
from .check import silhouette_check
from .mesh import HullError, Mesh
from .nerfstudio import write_transforms
from .place import Placement, blender_camera, placement
from .ply import read_ply, write_ply
from .result import (
    CancelledError,
    Intrinsics,
    Pose,
    ReconResult,
    ReconstructionError,
    load_result,
)
from .run import STAGE_LABELS, reconstruct, run_reconstruction
from .workspace import inputs_from_segmentation, prepare_workspace

__all__ = [
    "DEFAULT_VOXELS",
    "MAPPERS",
    "MATCHERS",
    "QUALITIES",
    "STAGE_LABELS",
    "CancelledError",
    "HullError",
    "Intrinsics",
    "Mesh",
    "Placement",
    "Pose",
    "ReconResult",
    "ReconstructionError",
    "View",
    "blender_camera",
    "hull_from_views",
    "inputs_from_segmentation",
    "load_result",
    "placement",
    "prepare_workspace",
    "read_ply",
    "reconstruct",
    "run_reconstruction",
    "silhouette_check",
    "views_from_result",
    "visual_hull",
    "write_ply",
    "write_transforms",
]
