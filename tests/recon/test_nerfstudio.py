"""nerfstudio's transforms.json (segcore.recon.nerfstudio): paths, masks, intrinsics, and
camera matrices that cast the rays nerfstudio casts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segcore.recon import nerfstudio

from .test_reconstruct import known_result


def test_transforms_json_paths_masks_and_intrinsics(tmp_path):
    res = known_result(tmp_path)
    path = nerfstudio.write_transforms(res)
    data = json.loads(path.read_text())
    assert path == tmp_path / "transforms.json"
    assert data["camera_model"] == "OPENCV"
    cam = res.cameras[1]
    assert (data["w"], data["h"]) == (160, 120)
    assert data["fl_x"] == pytest.approx(cam.fx) and data["fl_y"] == pytest.approx(cam.fy)
    # nerfstudio (like COLMAP) puts the top-left pixel's centre at (0.5, 0.5)
    assert data["cx"] == pytest.approx(80.0) and data["cy"] == pytest.approx(60.0)
    assert data["k1"] == pytest.approx(-0.05) and data["k2"] == data["p1"] == data["p2"] == 0
    assert [f["file_path"] for f in data["frames"]] == [f"images/{p.name}" for p in res.poses]
    # COLMAP's mask naming, reused: 0 = ignore (nerfstudio reads the mask as bool)
    assert [f["mask_path"] for f in data["frames"]] == [f"masks/{p.name}.png" for p in res.poses]
    assert np.allclose(data["applied_transform"], nerfstudio.APPLIED_TRANSFORM)
    ply = (tmp_path / data["ply_file_path"]).read_text().splitlines()
    assert ply[2] == "element vertex 40" and len(ply) == 10 + 40


def test_transforms_json_without_masks_has_no_mask_paths(tmp_path):
    data = nerfstudio.transforms(known_result(tmp_path, masked=False))
    assert all("mask_path" not in f for f in data["frames"])


def test_transform_matrix_is_opengl_camera_to_world_and_round_trips(tmp_path):
    res = known_result(tmp_path)
    data = nerfstudio.transforms(res)
    target = np.array([0.0, 0.0, 1.0])
    a = nerfstudio.APPLIED_TRANSFORM
    for p, f in zip(res.poses, data["frames"]):
        m = np.array(f["transform_matrix"])
        assert m.shape == (4, 4) and np.allclose(m[3], [0, 0, 0, 1])
        # the camera's centre, in ns-process-data's re-oriented world (x, z, -y)
        assert np.allclose(m[:3, 3], a[:, :3] @ p.center)
        # OpenGL axes: the camera looks down its -Z column, +Y column is up
        look = -m[:3, 2]
        to_target = a[:, :3] @ target - m[:3, 3]
        assert look @ to_target / np.linalg.norm(to_target) > 0.999
        up_world = a[:, :3] @ np.array([0, 0, 1.0])  # z-up world becomes y-up... then -y
        assert m[:3, 1] @ up_world > 0.9
        r, t = nerfstudio.w2c_opencv(m)
        np.testing.assert_allclose(r, p.R, atol=1e-12)
        np.testing.assert_allclose(t, p.t, atol=1e-12)
    # without the world change it is COLMAP's c2w with columns 1 and 2 negated
    p = res.poses[2]
    m = nerfstudio.c2w_opengl(p.R, p.t, applied=None)
    c2w = np.linalg.inv(np.vstack([np.c_[p.R, p.t], [0, 0, 0, 1]]))
    c2w[0:3, 1:3] *= -1
    np.testing.assert_allclose(m, c2w, atol=1e-12)


def test_nerfstudio_rays_hit_the_projected_point(tmp_path):
    """A ray cast nerfstudio's way through a pixel lands on the point projected there."""
    res = known_result(tmp_path)
    data = nerfstudio.transforms(res)
    cam = res.cameras[1]
    x = np.array([0.1, -0.2, 1.1])
    p = res.poses[1]
    xc = p.R @ x + p.t
    u = cam.fx * xc[0] / xc[2] + cam.cx  # OpenCV pixel (no distortion in this check)
    v = cam.fy * xc[1] / xc[2] + cam.cy
    # nerfstudio: coords = pixel index + 0.5; dir = ((x - cx)/fx, -(y - cy)/fy, -1) in GL
    d = np.array(
        [(u + 0.5 - data["cx"]) / data["fl_x"], -(v + 0.5 - data["cy"]) / data["fl_y"], -1]
    )
    m = np.array(data["frames"][1]["transform_matrix"])
    ray = m[:3, :3] @ d
    origin = m[:3, 3]
    target = nerfstudio.APPLIED_TRANSFORM[:, :3] @ x
    s = (target - origin) @ ray / (ray @ ray)
    assert np.linalg.norm(origin + s * ray - target) < 1e-9
