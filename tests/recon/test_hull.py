"""Visual hull: a sphere seen by known cameras with analytic masks comes back as a sphere."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.geometry import silhouette_sdf
from segcore.recon import HullError, View, hull_from_views, read_ply, write_ply
from segcore.recon.camera import project
from segcore.recon.carve import carve
from segcore.recon.check import render_silhouette
from segcore.recon.mesh import cluster_decimate
from training.synth.cameras import intrinsics, look_at, orbit_eye, world_to_camera

pytest.importorskip("skimage")

W, H = 200, 150
CENTRE = np.array([0.2, -0.1, 1.0])
RADIUS = 0.5


def sphere_mask(view: View, centre=CENTRE, radius=RADIUS) -> np.ndarray:
    """Exact silhouette: pixels whose ray passes within ``radius`` of ``centre``."""
    u, v = np.meshgrid(np.arange(view.width), np.arange(view.height))
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).astype(float)
    d = pix @ np.linalg.inv(view.K).T @ view.R  # ray directions in the world
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    oc = centre - view.center
    along = d @ oc
    return ((oc @ oc - along**2 < radius**2) & (along > 0)).reshape(view.height, view.width)


def sphere_views(n: int = 12, dist: float = 3.0, size=(W, H), images=None) -> list[View]:
    w, h = size
    k = intrinsics(50.0, 36.0, w, h)
    views = []
    for i in range(n):
        eye = orbit_eye(CENTRE, dist, 2 * np.pi * i / n, 0.45 if i % 2 else -0.15)
        r, t = world_to_camera(look_at(eye, CENTRE))
        v = View(k, r, t, w, h, name=f"{i:04d}")
        v.mask = sphere_mask(v)
        views.append(v)
    return views


@pytest.fixture(scope="module")
def sphere_hull():
    views = sphere_views()
    return views, hull_from_views(views, voxels=64, colors=False)


def test_sphere_radius_and_volume(sphere_hull):
    views, mesh = sphere_hull
    r = np.linalg.norm(mesh.vertices - CENTRE, axis=1)
    # a visual hull encloses the object: never inside it by more than a voxel's fraction,
    # and with 12 views it bulges out by only a few per cent between them
    assert abs(np.median(r) - RADIUS) < 0.02 * RADIUS
    assert r.min() > 0.97 * RADIUS and r.max() < 1.10 * RADIUS
    true_volume = 4 / 3 * np.pi * RADIUS**3
    assert 0.99 * true_volume < mesh.volume() < 1.06 * true_volume
    assert mesh.volume() > 0  # faces wind counter-clockwise seen from outside
    assert mesh.info["views"] == 12 and mesh.info["faces"] == len(mesh.faces)


def test_silhouettes_reproject_onto_the_masks(sphere_hull):
    views, mesh = sphere_hull
    ious = []
    for v in views:
        s = render_silhouette(mesh, v)
        ious.append((s & v.mask).sum() / (s | v.mask).sum())
    assert min(ious) > 0.97


def test_the_hull_check_sheet_has_a_legend(sphere_hull):
    from segcore.recon.check import silhouette_check
    from segcore.sheet import EDGE_BGR, TRUTH_BGR

    views, mesh = sphere_hull
    sheet, ious = silhouette_check(mesh, views, frames=4)
    assert len(ious) == 4 and min(ious.values()) > 0.97
    head = sheet[:80]  # the header above the tiles: a swatch of each outline's colour
    for colour in (EDGE_BGR, TRUTH_BGR):
        assert (np.abs(head.astype(int) - colour).sum(axis=2) == 0).sum() > 50, colour


def test_mesh_is_watertight_and_one_piece(sphere_hull):
    _, mesh = sphere_hull
    e = np.sort(
        np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]]),
        axis=1,
    )
    _, counts = np.unique(e, axis=0, return_counts=True)
    assert (counts == 2).mean() > 0.99  # (vertex clustering may pinch a rare edge)
    v, f = len(mesh.vertices), len(mesh.faces)
    assert abs((v - 3 * f // 2 + f) - 2) <= 4  # Euler characteristic of a sphere


def test_a_bad_mask_does_not_bite_a_hole():
    views = sphere_views()
    views[3].mask = np.zeros_like(views[3].mask)  # one view says "nothing here"
    mesh = hull_from_views(views, voxels=48, colors=False, outlier_share=0.1)
    true_volume = 4 / 3 * np.pi * RADIUS**3
    assert mesh.volume() > 0.95 * true_volume


def test_vertex_colours_come_from_the_frames(tmp_path):
    import cv2

    views = sphere_views(n=8, size=(120, 90))
    for v in views:  # the sphere is red on a blue background
        img = np.zeros((v.height, v.width, 3), np.uint8)
        img[:] = (200, 40, 0)  # BGR blue
        img[v.mask] = (0, 0, 220)  # BGR red
        v.image = tmp_path / f"{v.name}.png"
        cv2.imwrite(str(v.image), img)
    mesh = hull_from_views(views, voxels=40)
    assert mesh.colors is not None and mesh.colors.shape == (len(mesh.vertices), 3)
    med = np.median(mesh.colors, axis=0)
    assert med[0] > 180 and med[2] < 40  # RGB: red, not the blue background
    path = write_ply(tmp_path / "hull.ply", mesh)
    back = read_ply(path)
    assert back.faces.shape == mesh.faces.shape and np.array_equal(back.colors, mesh.colors)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")


def test_projection_with_distortion_matches_opencv():
    import cv2

    v = sphere_views(n=1)[0]
    v.dist = np.array([-0.12, 0.03, 0.001, -0.002])
    pts = CENTRE + np.random.default_rng(0).normal(0, 0.3, (50, 3))
    uv, _ = project(pts, v)
    ref, _ = cv2.projectPoints(pts, cv2.Rodrigues(v.R)[0], v.t, v.K, v.dist)
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6)


def test_sdf_sign_and_edge():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    d = silhouette_sdf(m)
    assert d[10, 10] > 0 and d[0, 0] < 0
    assert d[5, 10] == pytest.approx(0.5) and d[4, 10] == pytest.approx(-0.5)


def test_empty_or_disagreeing_masks_raise_one_line_errors():
    views = sphere_views(n=4)
    for v in views:
        v.mask = np.zeros_like(v.mask)
    with pytest.raises(HullError, match="do not intersect"):
        hull_from_views(views, bounds=(CENTRE - 1, CENTRE + 1), voxels=24)
    with pytest.raises(HullError, match="needs masks"):
        carve([View(np.eye(3), np.eye(3), np.zeros(3), 4, 4)], np.zeros(3), np.ones(3), 8)


def test_decimation_respects_the_face_budget(sphere_hull):
    _, mesh = sphere_hull
    v, f = cluster_decimate(mesh.vertices, mesh.faces, 2000, mesh.info["voxel_size"])
    assert len(f) <= 2000 and len(v) < len(mesh.vertices)
    r = np.linalg.norm(v - CENTRE, axis=1)
    assert abs(np.median(r) - RADIUS) < 0.05 * RADIUS


def _rod_mask(view: View, top, bottom, radius) -> np.ndarray:
    """Exact silhouette of a thin vertical rod (a cylinder from ``top`` to ``bottom``)."""
    u, v = np.meshgrid(np.arange(view.width), np.arange(view.height))
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).astype(float)
    d = pix @ np.linalg.inv(view.K).T @ view.R
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    a = (bottom - top) / np.linalg.norm(bottom - top)
    w0 = view.center - top
    # closest approach of each ray to the rod's axis, within the rod's length
    b, dd, e = d @ a, d @ w0, w0 @ a
    den = np.maximum(1 - b**2, 1e-9)
    s = (b * e - dd) / den  # along the ray
    t = (e - b * dd) / den  # along the axis
    t = np.clip(t, 0, np.linalg.norm(bottom - top))
    p = view.center + s[:, None] * d
    q = top + t[:, None] * a
    return ((np.linalg.norm(p - q, axis=1) < radius) & (s > 0)).reshape(view.height, view.width)


def test_a_rod_thinner_than_a_voxel_stays_whole():
    # a sphere on a pole a quarter of a voxel thick, a pixel or less wide in the masks (a
    # garment on a stand's pole)
    top, bottom = CENTRE + [0, RADIUS * 0.9, 0], CENTRE + [0, RADIUS * 2.6, 0]
    views = sphere_views(n=16)
    for v in views:
        v.mask = v.mask | _rod_mask(v, top, bottom, 0.006)
    got = {}
    for reach in (0.0, 0.3):
        mesh = hull_from_views(views, voxels=48, colors=False, thin_reach=reach)
        low = mesh.vertices[:, 1] > CENTRE[1] + RADIUS * 1.2
        got[reach] = float(np.ptp(mesh.vertices[low, 1])) if low.any() else 0.0
        if reach:
            off_axis = np.linalg.norm((mesh.vertices[low] - top)[:, [0, 2]], axis=1)
            assert np.median(off_axis) < mesh.info["voxel_size"]  # thin still, if fatter
    length = RADIUS * 2.6 - RADIUS * 1.2
    assert got[0.3] > 0.9 * length  # the whole pole below the sphere
    assert got[0.0] < 0.5 * got[0.3]  # beads or nothing without it


def test_a_fine_grid_carved_in_a_narrow_band_is_the_full_carve():
    """Fine grids are carved only near a coarse carve's surface: the same field (a sphere
    on a pole thinner than a coarse voxel included), not an approximation."""
    top, bottom = CENTRE + [0, RADIUS * 0.9, 0], CENTRE + [0, RADIUS * 2.6, 0]
    views = sphere_views(n=8)
    for v in views:
        v.mask = v.mask | _rod_mask(v, top, bottom, 0.006)
    box = (CENTRE - [0.6, 0.6, 0.6], CENTRE + [0.6, 1.4, 0.6])
    band, _, h = carve(views, *box, 96, 0.05)
    full, _, _ = carve(views, *box, 96, 0.05, band=False)
    assert np.abs(band - full).max() < 1e-6 * h
    assert (full > 0).sum() > 1000
