"""The add-on's reconstruction import, for real with the bpy wheel (never a mocked bpy)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="bpy-user-"))
bpy = pytest.importorskip("bpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage")

from segcore.recon import Intrinsics, Pose, ReconResult, View, hull_from_views  # noqa: E402
from segcore.recon.ply import write_ply  # noqa: E402
from segcore.recon.result import write_result_json  # noqa: E402
from training.synth.cameras import intrinsics, look_at, orbit_eye, world_to_camera  # noqa: E402

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parent.parent
BATCH = ROOT / "blender_addon" / "batch.py"
TURNTABLE = ROOT / "tests" / "data" / "recon_turntable"
W, H, N = 160, 120, 8
CENTRE = np.array([0.0, 0.0, 1.0])


def sphere_mask(v: View, radius=0.5) -> np.ndarray:
    u, w = np.meshgrid(np.arange(v.width), np.arange(v.height))
    d = np.stack([u, w, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(v.K).T @ v.R
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    oc = CENTRE - v.center
    along = d @ oc
    return ((oc @ oc - along**2 < radius**2) & (along > 0)).reshape(v.height, v.width)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A reconstruction of a sphere seen by 8 known cameras, written like segcore does.

    The SfM world is scrambled (rotated, scaled, moved) so the import has to stand the
    subject up by itself.
    """
    ws = tmp_path_factory.mktemp("ws")
    (ws / "images").mkdir()
    (ws / "masks").mkdir()
    (ws / "sparse" / "0").mkdir(parents=True)
    k = intrinsics(50.0, 36.0, W, H)
    q = np.array([[0, 0, 1.0], [1, 0, 0], [0, 1, 0]])  # world z-up becomes y-up...
    s = 0.3
    views, poses = [], []
    for i in range(N):
        eye = orbit_eye(CENTRE, 3.0, 2 * np.pi * i / N, 0.3)
        r, t = world_to_camera(look_at(eye, CENTRE))
        v = View(k, r, t, W, H)
        v.mask = sphere_mask(v)
        img = np.full((H, W, 3), (200, 120, 40), np.uint8)
        img[v.mask] = (30, 30, 220)
        name = f"{i:04d}.jpg"
        cv2.imwrite(str(ws / "images" / name), img)
        cv2.imwrite(str(ws / "masks" / f"{name}.png"), v.mask.astype(np.uint8) * 255)
        v.image = ws / "images" / name
        views.append(v)
        poses.append(Pose(name, 1, r @ q.T, s * t))  # ...and shrinks by s
    mesh = hull_from_views(views, voxels=40)
    mesh.vertices = s * mesh.vertices @ q.T
    cam = Intrinsics(1, "SIMPLE_RADIAL", W, H, k[0, 0], k[1, 1], k[0, 2], k[1, 2])
    pts = s * (CENTRE + np.random.default_rng(0).normal(0, 0.2, (60, 3))) @ q.T
    cols = np.tile(np.array([[220, 30, 30]], np.uint8), (60, 1))
    res = ReconResult(ws, {1: cam}, poses, pts, cols, [p.name for p in poses], 0.3)
    write_result_json(res, ws / "recon.json")
    _write_points3d(ws / "sparse" / "0" / "points3D.bin", pts, cols)
    write_ply(ws / "hull.ply", mesh)
    return ws, res, mesh


def _write_points3d(path: Path, pts, cols) -> None:
    import struct

    out = [struct.pack("<Q", len(pts))]
    for i, (p, c) in enumerate(zip(pts, cols)):
        out.append(struct.pack("<Q3d3BdQ", i + 1, *p, *c, 0.5, 2))
        out.append(struct.pack("<IIII", 1, i, 2, i))
    path.write_bytes(b"".join(out))


def test_import_creates_cameras_points_and_mesh(addon, workspace):
    from blender_addon import importer

    ws, res, mesh = workspace
    made = importer.import_workspace(bpy.context, ws)
    coll = made["collection"]
    assert coll.name == "Garment reconstruction"
    cams = [o for o in coll.all_objects if o.type == "CAMERA"]
    assert len(cams) == N == len(made["cameras"])
    points, garment = made["points"], made["mesh"]
    assert len(points.data.vertices) == 60 and len(points.data.polygons) == 0
    assert "Col" in points.data.color_attributes
    assert points.modifiers["Points"].node_group is not None  # drawn as points
    assert len(garment.data.polygons) == len(mesh.faces)
    assert len(garment.data.vertices) == len(mesh.vertices)
    col = garment.data.color_attributes["Col"]
    assert col.domain == "POINT" and garment.active_material is not None
    rgba = np.empty(len(garment.data.vertices) * 4, np.float32)
    col.data.foreach_get("color_srgb", rgba)
    assert np.median(rgba.reshape(-1, 4)[:, 0]) > 0.7  # the sphere's red, from the frames

    # upright at the origin, 1.7 tall, cameras level around it
    co = np.empty(len(garment.data.vertices) * 3)
    garment.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    assert co[:, 2].min() == pytest.approx(0, abs=1e-4)
    assert co[:, 2].max() == pytest.approx(1.7, abs=1e-3)
    assert np.allclose((co[:, :2].min(0) + co[:, :2].max(0)) / 2, 0, atol=1e-3)
    z = [c.matrix_world.translation.z for c in cams]
    assert np.ptp(z) < 1e-3 and min(z) > 0.85  # one ring, above the sphere's centre
    assert cams[0].matrix_world.translation.y < -1  # the first frame looks from the front


def recon_settings(ws, **kw):
    from blender_addon import importer

    return importer.ReconSettings(str(ws / "images"), str(ws / "masks"), str(ws), **kw)


def test_import_leaves_the_scene_camera_unless_asked(addon, workspace):
    from blender_addon import importer

    ws, res, _ = workspace
    scene = bpy.context.scene
    own = bpy.data.objects.new("Own camera", bpy.data.cameras.new("Own camera"))
    scene.collection.objects.link(own)
    scene.camera = own
    scene.render.resolution_x, scene.render.resolution_y = 1234, 567
    scene.render.resolution_percentage = 50
    made = importer.import_workspace(bpy.context, ws)  # the default: leave them
    assert scene.camera == own
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1234, 567)
    assert scene.render.resolution_percentage == 50
    made = importer.import_workspace(bpy.context, ws, recon_settings(ws, set_camera=True))
    assert scene.camera == made["cameras"][0]
    assert (scene.render.resolution_x, scene.render.resolution_y) == (W, H)
    assert scene.render.resolution_percentage == 100


@pytest.mark.parametrize("height", [2.5, 0.0])
def test_import_height_is_an_option(addon, workspace, height):
    from blender_addon import importer
    from segcore.recon import placement

    ws, res, mesh = workspace
    made = importer.import_workspace(bpy.context, ws, recon_settings(ws, height=height))
    co = np.array([v.co[:] for v in made["mesh"].data.vertices])
    # 0: the solver's own units (the fixture's world is scaled by 0.3)
    want = height or 1.0 / placement(res, mesh.vertices, 1.0).scale
    assert co[:, 2].max() - co[:, 2].min() == pytest.approx(want, rel=1e-4)
    assert co[:, 2].min() == pytest.approx(0, abs=1e-4)


def test_cameras_have_the_intrinsics_and_see_the_garment(addon, workspace):
    from blender_addon import importer

    ws, res, _ = workspace
    made = importer.import_workspace(bpy.context, ws, recon_settings(ws, set_camera=True))
    scene = bpy.context.scene
    assert (scene.render.resolution_x, scene.render.resolution_y) == (W, H)
    cam = made["cameras"][3]
    assert cam.data.sensor_fit == "HORIZONTAL"
    assert cam.data.lens == pytest.approx(50.0, rel=1e-6)
    assert abs(cam.data.shift_x) < 1e-9 and abs(cam.data.shift_y) < 1e-9
    assert cam.data.show_background_images and cam.data.background_images[0].image is not None
    # the garment's centre projects to the frame centre, like the sphere's did
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    garment = made["mesh"]
    co = np.array([v.co[:] for v in garment.data.vertices])
    centre = Vector(((co.min(0) + co.max(0)) / 2).tolist())
    ndc = world_to_camera_view(scene, cam, centre)
    assert ndc.x == pytest.approx(0.5, abs=0.03) and ndc.y == pytest.approx(0.5, abs=0.03)
    assert ndc.z > 0


@pytest.mark.parametrize("size", [(160, 120), (120, 160)])  # landscape, portrait
def test_camera_projection_matches_opencv(addon, tmp_path, size):
    """Blender's own projection of the imported camera lands where K, R, t put the point:
    lens, sensor fit and lens shift (an off-centre principal point) and the axes."""
    from bpy_extras.object_utils import world_to_camera_view

    from blender_addon import importer
    from segcore.recon import placement

    w, h = size
    r, t = world_to_camera(look_at(orbit_eye(CENTRE, 3.0, 0.7, 0.3), CENTRE))
    cam = Intrinsics(1, "PINHOLE", w, h, 210.0, 210.0, w / 2 + 17.25, h / 2 - 9.5)
    pts = CENTRE + np.random.default_rng(2).normal(0, 0.3, (20, 3))
    res = ReconResult(tmp_path, {1: cam}, [Pose("a.jpg", 1, r, t)], pts, np.zeros((20, 3)), [], 0)
    settings = importer.ReconSettings(str(tmp_path), None, str(tmp_path), set_camera=True)
    made = importer.import_reconstruction(bpy.context, res, None, settings)
    uv = (pts @ r.T + t) @ cam.K.T
    uv = uv[:, :2] / uv[:, 2:]
    from mathutils import Vector

    scene = bpy.context.scene
    place = placement(res)
    for p, (u, v) in zip(place.apply(pts), uv):
        ndc = world_to_camera_view(scene, made["cameras"][0], Vector(p.tolist()))
        # Blender: (0, 0) is the frame's bottom-left corner; OpenCV: the top-left pixel's centre
        assert ndc.x * w - 0.5 == pytest.approx(u, abs=1e-3)
        assert (1 - ndc.y) * h - 0.5 == pytest.approx(v, abs=1e-3)


def test_panel_draws_the_reconstruct_section(addon):
    from blender_addon import panels

    class Layout:  # records what the panel asks the real property group for
        def __init__(self):
            self.props = []

        def __getattr__(self, name):
            return lambda *a, **k: self

        def prop(self, data, name, **kw):
            assert hasattr(data, name), name
            self.props.append(name)
            return self

    layout = Layout()
    layout.use_property_split = layout.use_property_decorate = layout.active = True
    panels._draw_reconstruct(layout, bpy.context.scene.garment_seg)
    assert {"recon_source", "recon_workspace", "recon_voxels", "recon_height",
            "recon_set_camera", "recon_features", "recon_matcher"} <= set(layout.props)  # fmt: skip


def test_reconstruct_choices_are_uppercase_and_read_old_files(addon):
    """IDs in capitals like every other choice; a .blend stores the item's number, which
    stayed, so a file saved with the lowercase IDs reads the same choice."""
    from blender_addon.properties import read_recon_settings

    s = bpy.context.scene.garment_seg
    old = {"recon_matcher": ("auto", "exhaustive", "sequential"),
           "recon_quality": ("high", "fast"),
           "recon_mapper": ("auto", "incremental", "global", "turntable")}  # fmt: skip
    for name, ids in old.items():
        items = s.bl_rna.properties[name].enum_items
        assert [i.identifier for i in items][: len(ids)] == [i.upper() for i in ids]
        assert [i.value for i in items] == list(range(len(items)))
    s.recon_source, s.recon_frames_dir, s.output_dir = "FOLDERS", "/frames", "/out"
    s["recon_mapper"] = 3  # what a file saved with ("turntable", ...) holds
    s["recon_quality"] = 1
    assert s.recon_mapper == "TURNTABLE" and s.recon_quality == "FAST"
    got = read_recon_settings(bpy.context)
    assert (got.mapper, got.quality, got.matcher) == ("turntable", "fast", "auto")
    assert got.height == pytest.approx(1.7) and got.set_camera is False


def test_reconstruct_offers_every_choice_of_segcore_reconstruct(addon):
    """The box offers each choice the command line has (ring matching, where features are
    taken), and the chosen one reaches the run."""
    from blender_addon.properties import read_recon_settings
    from segcore import options

    s = bpy.context.scene.garment_seg
    choices = {"recon_matcher": options.MATCHERS, "recon_mapper": options.MAPPERS,
               "recon_quality": options.QUALITIES,
               "recon_features": options.FEATURE_AREAS}  # fmt: skip
    for name, ids in choices.items():
        items = s.bl_rna.properties[name].enum_items
        assert [i.identifier for i in items] == [c.upper() for c in ids], name
    s.recon_source, s.recon_frames_dir, s.output_dir = "FOLDERS", "/frames", "/out"
    assert read_recon_settings(bpy.context).options()["features"] == "auto"
    s.recon_matcher, s.recon_features = "RING", "WHOLE"
    got = read_recon_settings(bpy.context).options()
    assert (got["matcher"], got["features"]) == ("ring", "whole")


def test_reconstruct_operator_reports_bad_input(addon, tmp_path):
    s = bpy.context.scene.garment_seg
    s.recon_source = "SEGMENTATION"
    s.output_dir = str(tmp_path / "nothing_here")
    with pytest.raises(RuntimeError, match="no report.json"):
        bpy.ops.garment_seg.reconstruct()
    s.recon_source = "FOLDERS"
    s.recon_frames_dir = ""
    with pytest.raises(RuntimeError, match="no frames folder set"):
        bpy.ops.garment_seg.reconstruct()


def test_reconstruct_operator_runs_and_imports(addon, tmp_path):
    pytest.importorskip("pycolmap")
    if not (TURNTABLE / "cameras.json").exists():
        pytest.skip("tests/data/recon_turntable is missing")
    s = bpy.context.scene.garment_seg
    s.recon_source = "FOLDERS"
    s.recon_frames_dir = str(TURNTABLE / "images")
    s.recon_masks_dir = str(TURNTABLE / "masks")
    s.recon_workspace = str(tmp_path / "ws")
    s.recon_voxels = 48
    s.recon_quality = "FAST"
    assert bpy.ops.garment_seg.reconstruct() == {"FINISHED"}
    coll = bpy.data.collections["Garment reconstruction"]
    cams = [o for o in coll.all_objects if o.type == "CAMERA"]
    frames = len(list((TURNTABLE / "images").iterdir()))
    assert len(cams) >= 0.8 * frames
    assert len(bpy.data.objects["Garment"].data.polygons) > 200
    assert (tmp_path / "ws" / "hull.ply").is_file()
    assert (tmp_path / "ws" / "transforms.json").is_file()


def test_reconstruct_operator_says_plainly_when_the_verdict_failed(addon, workspace, monkeypatch):
    """A failed verdict (every frame registered, the mesh fitting the masks poorly) is still
    imported, to look at, and reported as an error, which a script calling the operator
    receives as Blender's RuntimeError."""
    from blender_addon import importer
    from segcore.recon.verdict import judge

    ws, res, mesh = workspace
    res.verdict = judge(N, N, 0.3, {p.name: 0.53 for p in res.poses})
    monkeypatch.setattr(importer, "run_reconstruction", lambda *a, **k: (res, mesh))
    s = bpy.context.scene.garment_seg
    s.recon_source = "FOLDERS"
    s.recon_frames_dir = str(ws / "images")
    s.recon_masks_dir = str(ws / "masks")
    s.recon_workspace = str(ws)
    before = {c.name for c in bpy.data.collections}
    with pytest.raises(RuntimeError, match="Reconstruction failed: the garment mesh fits"):
        bpy.ops.garment_seg.reconstruct()
    made = {c.name for c in bpy.data.collections} - before
    assert any(n.startswith("Garment reconstruction") for n in made)  # imported all the same
    level, line = importer.verdict_report(res, recon_settings(ws))
    assert level == "ERROR" and "IoU 0.53" in line
    res.verdict = judge(N, N, 0.3, {p.name: 0.97 for p in res.poses})
    assert importer.verdict_report(res, recon_settings(ws)) is None


def test_batch_reconstruct_flags_are_checked(tmp_path):
    def batch(*args):
        return subprocess.run(
            [sys.executable, str(BATCH), "--", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = batch("--input", tmp_path, "--output", tmp_path / "o", "--save", tmp_path / "a.blend")
    assert r.returncode == 2 and "--save needs --reconstruct" in r.stderr
    r = batch("--input", tmp_path, "--output", tmp_path / "o", "--reconstruct", "--formats", "rgba")
    assert r.returncode == 2 and "needs the mask format" in r.stderr
