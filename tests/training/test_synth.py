"""Synthetic capture generator: files, exact masks, camera geometry, determinism, CLI."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
cv2 = pytest.importorskip("cv2")

from segcore.exif import exif_focal  # noqa: E402
from training.synth import cameras as cam  # noqa: E402
from training.synth import cli  # noqa: E402
from training.synth.render import render_sequence, sequence_complete  # noqa: E402
from training.synth.spec import focus_spec, sample_spec  # noqa: E402

W, H = 160, 120


def _spec(index, capture):
    spec = sample_spec(7, index, kinds=(capture,))
    spec["camera"]["close"] = False
    spec["camera"]["fill"] = 0.9
    return spec


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    seqs = []
    for index, capture in ((3, "ring"), (4, "turntable")):
        spec = _spec(index, capture)
        render_sequence(spec, str(out), W, H, 2, samples=2, threads=2, mask_samples=8)
        seqs.append(os.path.join(out, spec["name"]))
    return out, seqs


def _load(seq):
    with open(os.path.join(seq, "cameras.json")) as f:
        cams = json.load(f)
    frames = []
    for fr in cams["frames"]:
        img = cv2.imread(os.path.join(seq, "images", fr["image"]))
        mask = cv2.imread(
            os.path.join(seq, "masks", fr["image"][:-4] + ".png"), cv2.IMREAD_UNCHANGED
        )
        frames.append((fr, img, mask))
    return cams, frames


@pytest.mark.slow
def test_files_have_the_right_sizes_and_binary_masks(rendered):
    _, seqs = rendered
    for seq in seqs:
        cams, frames = _load(seq)
        assert cams["version"] == 1 and cams["width"] == W and cams["height"] == H
        assert len(frames) == 2
        for _, img, mask in frames:
            assert img.shape == (H, W, 3)
            assert mask.shape == (H, W) and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}
            share = (mask > 0).mean()
            assert 0.01 < share < 0.9, f"mask covers {share:.3f} of the frame"
        with open(os.path.join(seq, "meta.json")) as f:
            meta = json.load(f)
        for key in ("garment", "form", "fabric", "background", "difficulty", "light", "seed"):
            assert key in meta
        # the lens's focal length in every frame's EXIF, where reconstruct reads it
        for fr, _, _ in frames:
            got = exif_focal(os.path.join(seq, "images", fr["image"]))
            assert got.pixels == pytest.approx(fr["K"][0][0], rel=1e-4)


@pytest.mark.slow
def test_mask_lies_inside_the_projected_subject_bbox(rendered):
    _, seqs = rendered
    for seq in seqs:
        cams, frames = _load(seq)
        corners = cam.bbox_corners(cams["subject"]["bbox_min"], cams["subject"]["bbox_max"])
        for fr, _, mask in frames:
            uv, z = cam.project(corners, fr["K"], fr["R"], fr["t"])
            assert np.all(z > 0)
            ys, xs = np.nonzero(mask)
            assert xs.min() >= uv[:, 0].min() - 2 and xs.max() <= uv[:, 0].max() + 2
            assert ys.min() >= uv[:, 1].min() - 2 and ys.max() <= uv[:, 1].max() + 2


@pytest.mark.slow
def test_subject_points_reproject_onto_the_mask(rendered):
    _, seqs = rendered
    for seq in seqs:
        cams, frames = _load(seq)
        pts = np.array(cams["subject"]["points"])
        assert len(pts) >= 16
        for fr, _, mask in frames:
            uv, z = cam.project(pts, fr["K"], fr["R"], fr["t"])
            px = np.round(uv).astype(int)
            inside = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H) & (z > 0)
            assert inside.sum() >= 8
            slack = cv2.dilate(mask, np.ones((3, 3), np.uint8))  # one pixel of slack
            hits = slack[px[inside, 1], px[inside, 0]] == 255
            assert hits.mean() >= 0.95, (
                f"{seq}: only {hits.mean():.2%} of subject points on the mask"
            )


@pytest.mark.slow
def test_turntable_poses_orbit_a_static_subject(rendered):
    _, seqs = rendered
    cams, frames = _load(seqs[1])
    assert cams["kind"] == "turntable"
    centres = [-np.array(f["R"]).T @ np.array(f["t"]) for f, _, _ in frames]
    # the camera is static in the room, so relative to the turning subject it moves on a circle
    assert np.linalg.norm(centres[0] - centres[1]) > 0.05
    assert abs(np.linalg.norm(centres[0][:2]) - np.linalg.norm(centres[1][:2])) < 1e-3
    assert abs(centres[0][2] - centres[1][2]) < 1e-3


@pytest.mark.slow
def test_label_maps_split_the_mask_into_garment_and_figure_and_keep_the_support_out(rendered):
    _, seqs = rendered
    seen = set()
    for seq in seqs:
        for fr in _load(seq)[0]["frames"]:
            stem = fr["image"][:-4]
            lab = cv2.imread(os.path.join(seq, "labels", stem + ".png"), cv2.IMREAD_UNCHANGED)
            mask = cv2.imread(os.path.join(seq, "masks", stem + ".png"), cv2.IMREAD_UNCHANGED)
            assert lab.shape == mask.shape and lab.dtype == np.uint8 and lab.max() <= 3
            assert (lab == 1).any(), "every frame shows the garment"
            fg = (lab == 1) | (lab == 2)
            # the label map and the mask come from one render: they agree but on mixed pixels
            assert ((mask > 0) != fg).mean() < 0.005
            assert not ((mask > 0) & (lab == 3)).any()
            seen |= set(np.unique(lab).tolist())
    assert {1, 2, 3} <= seen, f"classes seen: {sorted(seen)}"


def test_labels_from_render_reads_coverage_per_class():
    from training.synth.render import labels_from_render

    px = np.zeros((1, 4, 4), np.float32)  # BGRA, straight alpha, sRGB
    px[0, 0] = (0, 0, 1, 1)  # garment
    px[0, 1] = (0, 1, 0, 0.8)  # figure, mostly covered
    px[0, 2] = (1, 0, 0, 1)  # support
    px[0, 3] = (0, 0, 1, 0.3)  # garment edge, mostly background
    labels, mask = labels_from_render(px)
    assert labels.tolist() == [[1, 2, 3, 0]]
    assert mask.tolist() == [[255, 255, 0, 0]]


@pytest.mark.slow
def test_a_sequence_without_label_maps_gets_the_label_pass_only(rendered, tmp_path):
    import shutil

    _, seqs = rendered
    seq = os.path.join(tmp_path, os.path.basename(seqs[1]))
    shutil.copytree(seqs[1], seq)
    shutil.rmtree(os.path.join(seq, "labels"))
    images = Path(seq) / "images"
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    stats = render_sequence(
        _spec(4, "turntable"), str(tmp_path), W, H, 2, samples=2, threads=2, mask_samples=8
    )
    assert stats.get("labels_only") and sequence_complete(seq, 2)
    for n, data in before.items():
        assert (images / n).read_bytes() == data
    for n in os.listdir(os.path.join(seq, "labels")):
        a = cv2.imread(os.path.join(seq, "labels", n), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(os.path.join(seqs[1], "labels", n), cv2.IMREAD_UNCHANGED)
        assert (a != b).mean() < 0.002


@pytest.mark.slow
def test_same_seed_gives_the_same_sequence_and_complete_ones_are_skipped(rendered, tmp_path):
    out, seqs = rendered
    spec = _spec(3, "ring")
    assert render_sequence(spec, str(out), W, H, 2, samples=2, threads=2)["skipped"]
    render_sequence(_spec(3, "ring"), str(tmp_path), W, H, 2, samples=2, threads=2, mask_samples=8)
    again = os.path.join(tmp_path, spec["name"])
    assert sequence_complete(again, 2)
    for name in ("meta.json", "cameras.json"):
        with open(os.path.join(seqs[0], name)) as a, open(os.path.join(again, name)) as b:
            assert a.read() == b.read()
    assert sample_spec(1, 5) == sample_spec(1, 5)
    assert sample_spec(1, 5) != sample_spec(2, 5)


def test_focus_stand_redraws_only_the_stand_floor_and_view():
    for index in range(12):
        spec = sample_spec(7, index, kinds=("turntable",))
        focused = focus_spec(spec, "stand")
        assert focused == focus_spec(spec, "stand")
        assert focused["form"]["stand"] == "disc" and focused["form"]["stand_metal"]
        assert focused["form"]["kind"] in ("dress_form", "mannequin")
        assert max(focused["background"]["floor_colour"]) < 0.2
        assert min(focused["camera"]["elevations"]) >= 0.1 and not focused["camera"]["close"]
        assert "metal_disc_stand" in focused["difficulty"]
        for key in ("garment", "fabric", "body", "light", "post", "geometry_seed"):
            assert focused[key] == spec[key]
        assert "stand_metal" not in spec["form"]  # the input spec is left alone
    with pytest.raises(ValueError, match="unknown focus"):
        focus_spec(spec, "hands")


def test_focus_feet_puts_a_mannequin_on_its_disc_base_and_nothing_in_a_held_out_family():
    from training.synth.families import families_of

    for index in range(12):
        spec = sample_spec(7, index)
        focused = focus_spec(spec, "feet")
        assert focused == focus_spec(spec, "feet")
        assert focused["form"]["kind"] == "mannequin" and focused["form"]["stand"] == "disc"
        assert not focused["camera"]["close"] and "feet_on_disc" in focused["difficulty"]
        for key in ("garment", "fabric", "body", "light", "post", "background"):
            assert focused[key] == spec[key]
        # a mannequin is never the held-out body figure family
        assert "body_figure" not in families_of(focused)


def test_focus_behind_puts_props_on_the_line_behind_the_stand():
    from training.synth import stage
    from training.synth.scene import reset_scene

    for index in range(12):
        spec = sample_spec(7, index)
        focused = focus_spec(spec, "behind")
        assert focused == focus_spec(spec, "behind")
        assert focused["capture"] == "turntable" and focused["name"].endswith("_turntable")
        assert focused["form"]["stand"] == "disc" and focused["form"]["stand_metal"]
        assert focused["background"]["kind"] in ("clutter", "wall")
        assert 1 <= len(focused["background"]["behind"]) <= 2
        assert "prop_behind_stand" in focused["difficulty"]
        for key in ("garment", "fabric", "body", "light", "post", "geometry_seed"):
            assert focused[key] == spec[key]
        assert "behind" not in spec["background"]
    # the props stand beyond the axis, opposite the camera, offset sideways as drawn
    reset_scene()
    az = 0.7
    look = dict(colour=[0.5, 0.3, 0.2], roughness=0.5, metallic=0.0)
    props = [
        dict(kind="ball", distance=1.5, offset=0.1, seed=3, **look),
        dict(kind="bin", distance=9.0, offset=0.0, seed=4, **look),
    ]
    obs = stage.behind(props, az, max_r=2.5)
    assert len(obs) == 2
    to_cam = np.array([np.cos(az), np.sin(az)])
    side = np.array([-np.sin(az), np.cos(az)])
    for ob, along, off in zip(obs, (-1.5, -2.5), (0.1, 0.0)):
        xy = np.array(ob.location[:2])
        assert np.isclose(xy @ to_cam, along) and np.isclose(xy @ side, -off)


def test_camera_conventions():
    k = cam.intrinsics(50.0, 36.0, 640, 480)
    m = cam.look_at([0, -3, 1], [0, 0, 1])
    r, t = cam.world_to_camera(m)
    uv, z = cam.project(np.array([[0, 0, 1.0], [0.1, 0, 1.2]]), k, r, t)
    assert np.allclose(uv[0], [319.5, 239.5]) and np.isclose(z[0], 3.0)
    assert uv[1, 0] > 319.5 and uv[1, 1] < 239.5  # +x is right, +z is up in the image


@pytest.mark.slow
def test_cli_renders_shards_and_a_preview(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--out",
            str(tmp_path),
            "--sequences",
            "2",
            "--frames",
            "1",
            "--size",
            "96x72",
            "--samples",
            "1",
            "--threads",
            "2",
            "--shard",
            "1/2",
            "--preview",
        ]
    )
    assert cli.run(args) == 0
    names = sorted(p for p in os.listdir(tmp_path) if p.startswith("seq_"))
    assert len(names) == 1 and names[0].startswith("seq_00001_")
    sheet = cv2.imread(str(tmp_path / "preview.png"))
    assert sheet is not None and sheet.shape[1] >= 96
