"""Reconstruction into the scene: cameras, sparse points and the garment mesh as objects.

The numbers come from segcore (``segcore.recon``: the placement that stands the
subject upright at the origin, Blender camera intrinsics, the mesh); this
module only turns them into Blender data:

- a new collection "Garment reconstruction" (numbered if it exists);
- one camera per registered frame, with the lens, sensor fit and shift of the SfM
  intrinsics and the (masked) frame as its background image;
- "Sparse points": a mesh of vertices only with a ``Col`` colour attribute, drawn as points
  by a Geometry Nodes modifier (Mesh to Points) and a material reading ``Col``;
- "Garment": the visual hull with its ``Col`` vertex colours and a simple material.

:class:`ReconSettings` and :func:`run_reconstruction` hold no bpy: the operator's worker
thread and the batch script call them, then :func:`import_reconstruction` on the main
thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import bpy

from . import runner

COLLECTION = "Garment reconstruction"
COLOR_ATTRIBUTE = "Col"


@dataclass
class ReconSettings:
    """What the panel (or the batch script) asks the reconstruction for."""

    frames_dir: str  # folder of frames
    masks_dir: str | None  # masks (255 = garment); None: none
    workspace: str  # where sparse/0, hull.ply, transforms.json, recon.json go
    matcher: str = "auto"
    mapper: str = "auto"  # turntable when the background stands still, else incremental
    hull: bool = True
    voxels: int = runner.options().DEFAULT_VOXELS
    backgrounds_dir: str | None = None  # camera backgrounds (e.g. rgba/); None: the frames
    quality: str = "high"  # features: "high" (DSP-SIFT, for smooth fabric) or "fast"
    plate: str = "auto"  # masks completed from a still background: "auto", "on" or "off"
    features: str = "auto"  # SfM features: in the masks on a turntable, else the whole frame
    focal_px: float | None = None  # the frames' focal length in pixels; None: their EXIF
    height: float = 1.7  # the imported garment's height in scene units; 0: the solver's scale
    set_camera: bool = False  # make the first camera the scene's, with its render resolution
    # the options run_reconstruction takes (the batch script's flags of the same names)
    KEYS: ClassVar[tuple[str, ...]] = (
        "matcher",
        "mapper",
        "hull",
        "voxels",
        "quality",
        "plate",
        "features",
        "focal_px",
    )

    def options(self) -> dict:
        """The keyword options of ``segcore.recon.run_reconstruction``."""
        return {k: getattr(self, k) for k in self.KEYS}


def settings_from_segmentation(
    output_dir: str, workspace: str | None = None, **kw
) -> ReconSettings:
    """Settings for a ``segcore segment`` output folder: its frames, masks and RGBA."""
    frames, masks = runner.segcore("recon").inputs_from_segmentation(output_dir)
    rgba = Path(output_dir) / "rgba"
    return ReconSettings(
        str(frames),
        str(masks),
        workspace or str(Path(output_dir) / "reconstruction"),
        backgrounds_dir=str(rgba) if rgba.is_dir() else None,
        **kw,
    )


def run_reconstruction(
    settings: ReconSettings,
    progress: Callable[[str, int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """``segcore.recon.run_reconstruction`` for ``settings`` (no bpy: thread-safe)."""
    InputError = runner.segcore("errors").InputError  # noqa: N806
    run = runner.segcore("recon").run_reconstruction
    if not settings.frames_dir.strip():
        raise InputError("no frames folder set; choose the folder that holds the frames")
    if not settings.workspace.strip():
        raise InputError("no reconstruction folder set; choose where the results should go")
    return run(
        settings.frames_dir,
        settings.masks_dir or None,
        settings.workspace,
        progress=progress,
        should_stop=should_stop,
        **settings.options(),
    )


def progress_text(stage: str, done: int, total: int) -> str:
    labels = runner.segcore("recon").STAGE_LABELS
    return f"{labels.get(stage, stage.title())} {done}/{total}"


def summary_line(result, mesh, made: dict, settings: ReconSettings) -> str:
    """One line for the operator's report and the batch script's console."""
    return (
        f'{result.summary_line(mesh)}; imported into "{made["collection"].name}", '
        f"files in {settings.workspace}"
    )


def verdict_report(result, settings: ReconSettings) -> tuple[str, str] | None:
    """``(level, line)`` when the verdict is not ``ok``: ``ERROR`` for a failed
    reconstruction, ``WARNING`` for a doubtful one (Blender's report levels); else None."""
    verdict = result.verdict or {}
    if verdict.get("status", "ok") == "ok":
        return None
    line = runner.segcore("recon.verdict").verdict_line(verdict)
    check = Path(settings.workspace) / runner.segcore("recon.result").HULL_CHECK
    look = f"; look at {check}" if check.is_file() else ""
    level = "ERROR" if verdict["status"] == "failed" else "WARNING"
    return level, f"Reconstruction {line}{look}"


# --------------------------------------------------------------------------- bpy


def _unique_collection(context, name: str):
    coll = bpy.data.collections.new(name)  # Blender numbers it (".001") if the name is taken
    context.scene.collection.children.link(coll)
    return coll


def _background_for(name: str, frames_dir: Path, backgrounds_dir: Path | None) -> Path | None:
    if backgrounds_dir is not None:
        for cand in (backgrounds_dir / f"{Path(name).stem}.png", backgrounds_dir / name):
            if cand.is_file():
                return cand
    p = frames_dir / name
    return p if p.is_file() else None


def _color_material(name: str, points: bool):
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # 5.0+ materials always use nodes (use_nodes deprecated)
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    attr = nodes.new("ShaderNodeAttribute")
    attr.attribute_name = COLOR_ATTRIBUTE
    attr.location = (bsdf.location.x - 300, bsdf.location.y)
    links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.8 if not points else 1.0
    return mat


def _points_modifier(obj, radius: float, material) -> None:
    """Geometry Nodes: Mesh to Points (radius) + Set Material, so the vertices render."""
    tree = bpy.data.node_groups.new(f"{obj.name} points", "GeometryNodeTree")
    if hasattr(tree, "interface"):  # Blender 4.0+
        tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
        tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = tree.nodes, tree.links
    gin, gout = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    to_points = nodes.new("GeometryNodeMeshToPoints")
    to_points.inputs["Radius"].default_value = radius
    set_mat = nodes.new("GeometryNodeSetMaterial")
    set_mat.inputs["Material"].default_value = material
    gin.location, to_points.location, set_mat.location, gout.location = (
        (-400, 0),
        (-200, 0),
        (0, 0),
        (200, 0),
    )
    links.new(gin.outputs[0], to_points.inputs["Mesh"])
    links.new(to_points.outputs["Points"], set_mat.inputs["Geometry"])
    links.new(set_mat.outputs["Geometry"], gout.inputs[0])
    mod = obj.modifiers.new("Points", "NODES")
    mod.node_group = tree


def _mesh_object(name: str, vertices, faces, colors, collection):
    import numpy as np

    me = bpy.data.meshes.new(name)
    v = np.asarray(vertices, np.float32).reshape(-1, 3)
    me.vertices.add(len(v))
    me.vertices.foreach_set("co", v.ravel())
    if faces is not None and len(faces):
        f = np.asarray(faces, np.int32).reshape(-1, 3)
        me.loops.add(f.size)
        me.loops.foreach_set("vertex_index", f.ravel())
        me.polygons.add(len(f))
        me.polygons.foreach_set("loop_start", np.arange(0, f.size, 3, dtype=np.int32))
        if hasattr(me.polygons[0], "loop_total") and bpy.app.version < (4, 0, 0):
            me.polygons.foreach_set("loop_total", np.full(len(f), 3, np.int32))
    if colors is not None and len(v):
        rgba = np.ones((len(v), 4), np.float32)
        rgba[:, :3] = np.asarray(colors, np.float32).reshape(-1, 3) / 255.0
        attr = me.color_attributes.new(COLOR_ATTRIBUTE, "BYTE_COLOR", "POINT")
        attr.data.foreach_set("color_srgb", rgba.ravel())
        me.color_attributes.active_color = attr
        me.color_attributes.render_color_index = me.color_attributes.active_color_index
    me.update(calc_edges=True)
    me.validate(verbose=False)
    obj = bpy.data.objects.new(name, me)
    collection.objects.link(obj)
    return obj


def import_reconstruction(context, result, mesh=None, settings: ReconSettings | None = None):
    """Objects for a ``ReconResult`` (+ hull ``Mesh``) in a new collection; returns a dict
    with ``collection``, ``cameras``, ``points`` and ``mesh`` (None without a hull).

    The garment is ``settings.height`` units tall (0: the solver's scale). The scene's camera
    and render resolution change only with ``settings.set_camera``.
    """
    import dataclasses

    import numpy as np
    from mathutils import Matrix

    recon = runner.segcore("recon")
    height = settings.height if settings is not None else ReconSettings.height
    place = recon.placement(result, mesh.vertices if mesh is not None else None, height or 1.0)
    if not height:  # upright and centred, in the solver's own units
        place = dataclasses.replace(place, scale=1.0)
    coll = _unique_collection(context, COLLECTION)
    frames_dir = Path(settings.frames_dir) if settings else result.images_dir
    bg_dir = Path(settings.backgrounds_dir) if settings and settings.backgrounds_dir else None

    cam_coll = bpy.data.collections.new("Cameras")
    coll.children.link(cam_coll)
    cameras = []
    for pose in result.poses:
        intr = result.camera(pose)
        params = recon.blender_camera(intr)
        data = bpy.data.cameras.new(pose.name)
        data.sensor_fit = params["sensor_fit"]
        data.sensor_width, data.sensor_height = params["sensor_width"], params["sensor_height"]
        data.lens = params["lens"]
        data.shift_x, data.shift_y = params["shift_x"], params["shift_y"]
        data.display_size = 0.15
        data.clip_start, data.clip_end = 0.01, 1000.0
        bg_path = _background_for(pose.name, frames_dir, bg_dir)
        if bg_path is not None:
            img = bpy.data.images.load(str(bg_path), check_existing=True)
            bg = data.background_images.new()
            bg.image = img
            bg.alpha = 1.0
            data.show_background_images = True
        obj = bpy.data.objects.new(pose.name, data)
        obj.matrix_world = Matrix(place.camera_matrix(pose).tolist())
        cam_coll.objects.link(obj)
        cameras.append(obj)
    if result.poses and settings is not None and settings.set_camera:
        first = result.camera(result.poses[0])
        render = context.scene.render
        render.resolution_x, render.resolution_y = first.width, first.height
        render.resolution_percentage = 100
        context.scene.camera = cameras[0]

    pts = place.apply(result.points) if len(result.points) else np.zeros((0, 3))
    points = _mesh_object("Sparse points", pts, None, result.colors, coll)
    _points_modifier(points, 0.004, _color_material("Sparse points", points=True))

    garment = None
    if mesh is not None:
        verts = place.apply(mesh.vertices)
        garment = _mesh_object("Garment", verts, mesh.faces, mesh.colors, coll)
        garment.data.polygons.foreach_set("use_smooth", [True] * len(garment.data.polygons))
        garment.data.materials.append(_color_material("Garment", points=False))
    return {"collection": coll, "cameras": cameras, "points": points, "mesh": garment}


def import_workspace(context, workspace: str | os.PathLike, settings=None):
    """Import what ``segcore reconstruct`` wrote to ``workspace`` (recon.json, hull.ply)."""
    result = runner.segcore("recon").load_result(workspace)
    hull = Path(workspace) / "hull.ply"
    mesh = runner.segcore("recon").read_ply(hull) if hull.is_file() else None
    return import_reconstruction(context, result, mesh, settings)
