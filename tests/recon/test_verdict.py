"""The verdict of a reconstruction (segcore.recon.verdict): a solve that registered every
frame but whose cameras disagree with the masks is a failure, said plainly, with exit 1."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from segcore.recon.verdict import judge, rotation_steps, step_consistency, verdict_line

from .test_reconstruct import known_result


def _turn(n: int, step_deg: float, jitter_deg: float = 0.0, seed: int = 0) -> list[np.ndarray]:
    """World-to-camera rotations of a camera turning about the world's z axis."""
    rng = np.random.default_rng(seed)
    tilt = cv2.Rodrigues(np.array([1.2, 0.0, 0.0]))[0]
    angles = np.radians(step_deg * np.arange(n) + rng.normal(0, jitter_deg, n))
    return [tilt @ cv2.Rodrigues(np.array([0.0, 0.0, -a]))[0] for a in angles]


def test_steps_of_one_turn_about_one_axis_agree():
    steps = rotation_steps(_turn(24, 10.0))
    s = step_consistency(steps)
    assert s["step_deg"] == pytest.approx(10.0, abs=1e-6) and s["step_spread"] < 1e-6
    # a frame missing: the step is divided by the gap
    rs = _turn(24, 10.0)
    gapped = rotation_steps(rs[:5] + rs[6:], [1, 1, 1, 1, 2] + [1] * 18)
    assert step_consistency(gapped)["step_spread"] < 1e-6
    # steps that wander (a generic mapper's guess at a turntable) do not agree
    assert step_consistency(rotation_steps(_turn(24, 10.0, jitter_deg=4.0)))["step_spread"] > 0.25


def test_every_frame_registered_but_a_poor_mesh_fit_is_a_failure():
    fit = {f"{i:04d}.jpg": 0.53 for i in range(24)}
    v = judge(24, 24, 0.6, fit, turntable=True, steps=rotation_steps(_turn(24, 15.0)))
    assert v["status"] == "failed"
    assert verdict_line(v).startswith("failed: the garment mesh fits the masks at IoU 0.53")
    assert v["checks"]["registered_share"] == 1.0 and v["checks"]["mesh_fit_iou"] == 0.53


def test_the_verdict_names_each_failure():
    good = {f"{i:04d}.jpg": 0.96 for i in range(24)}
    assert judge(24, 24, 0.5, good)["status"] == "ok"
    assert judge(24, 18, 0.5, good)["reasons"] == ["only 18 of 24 frames registered"]
    assert judge(24, 22, 0.5, good)["status"] == "doubtful"  # below 95 %
    assert "reprojection error 2.60 px" in verdict_line(judge(24, 24, 2.6, good))
    # a turntable solved as a camera that stands still
    still = judge(24, 24, 0.5, good, turntable=True, steps=rotation_steps(_turn(24, 0.1)))
    assert still["status"] == "failed" and "barely turns" in still["reasons"][0]
    # the same wandering steps on a moving camera (a ring) are not judged
    wander = rotation_steps(_turn(24, 10.0, jitter_deg=4.0))
    assert judge(24, 24, 0.5, good, steps=wander)["status"] == "ok"
    assert judge(24, 24, 0.5, good, turntable=True, steps=wander)["status"] == "failed"


def test_one_frame_fitting_far_worse_than_the_others_is_a_suspect_mask():
    fit = {f"{i:04d}.jpg": 0.96 for i in range(24)}
    fit["0007.jpg"] = 0.41
    v = judge(24, 24, 0.5, fit)
    assert v["status"] == "doubtful" and v["checks"]["suspect_masks"] == ["0007.jpg"]
    assert "1 suspect mask (0007.jpg)" in verdict_line(v)


@pytest.mark.parametrize("status, code", [("ok", 0), ("doubtful", 0), ("failed", 1)])
def test_reconstruct_exits_1_on_a_failed_verdict(tmp_path, monkeypatch, capsys, status, code):
    import segcore.recon as recon
    from segcore.cli import main

    res = known_result(tmp_path)
    fit = {"ok": 0.97, "doubtful": 0.9, "failed": 0.62}[status]
    res.verdict = judge(8, 8, 0.4, {p.name: fit for p in res.poses})
    assert res.verdict["status"] == status
    mesh = type("Mesh", (), {"faces": np.zeros((10, 3)), "info": {}})()
    monkeypatch.setattr(recon, "run_reconstruction", lambda *a, **k: (res, mesh))
    assert main(["reconstruct", str(tmp_path), "-o", str(tmp_path / "ws"), "-q"]) == code
    err = capsys.readouterr().err
    if status == "failed":  # said with -q too: it is an error
        assert "error: reconstruction failed: the garment mesh fits the masks at IoU 0.62" in err
    else:
        assert "error" not in err


def test_recon_json_carries_the_verdict_and_reads_it_back(tmp_path):
    from segcore.recon import load_result
    from segcore.recon.result import write_result_json

    res = known_result(tmp_path)
    res.verdict = judge(8, 5, 0.4)
    (tmp_path / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "sparse" / "0" / "points3D.bin").write_bytes(np.uint64(0).tobytes())
    write_result_json(res, tmp_path / "recon.json")
    assert json.loads((tmp_path / "recon.json").read_text())["summary"]["verdict"] == res.verdict
    back = load_result(tmp_path)
    assert back.verdict["status"] == "failed"
    assert back.summary_line().endswith("; verdict: failed")


def test_masks_the_turntable_solver_left_out_are_listed_in_the_verdict(tmp_path):
    from segcore.recon.run import result_verdict

    res = known_result(tmp_path)
    res.options = {"capture": "turntable", "turntable_suspects": ["frame_003.jpg"]}
    v = result_verdict(res, {p.name: 0.95 for p in res.poses})
    assert v["checks"]["suspect_masks"] == ["frame_003.jpg"] and v["status"] == "doubtful"
    assert v["checks"]["step_deg"] == pytest.approx(45.0, abs=0.5)  # 8 cameras round a circle


def test_an_axis_far_from_the_rooms_verticals_fails_a_turntable():
    good = {f"{i:04d}.jpg": 0.95 for i in range(24)}
    steps = rotation_steps(_turn(24, 15.0))
    mirrored = judge(24, 24, 0.7, good, turntable=True, steps=steps, axis_off=23.8)
    assert (
        mirrored["status"] == "failed"
        and "24 deg off the room's vertical edges" in (mirrored["reasons"][0])
    )
    assert mirrored["checks"]["axis_to_verticals_deg"] == 23.8
    assert judge(24, 24, 0.7, good, turntable=True, steps=steps, axis_off=10)["status"] == (
        "doubtful"
    )
    assert judge(24, 24, 0.7, good, turntable=True, steps=steps, axis_off=0.8)["status"] == "ok"
    # a moving camera's axis is not judged, but an even ring's is: it turns about the
    # upright (a ring of two heights solved as one, 112 deg off, had it 39 deg off)
    assert judge(24, 24, 0.7, good, axis_off=40)["status"] == "ok"
    ring = judge(24, 24, 0.7, good, axis_off=38.9, circular_ring=True)
    assert ring["status"] == "failed" and "ring's axis is 39 deg off" in ring["reasons"][0]
    assert judge(24, 24, 0.7, good, axis_off=0.1, circular_ring=True)["status"] == "doubtful"


def test_a_hull_carved_to_nothing_is_a_failed_verdict_with_the_cameras_kept(
    tmp_path, monkeypatch, capsys
):
    import segcore.recon.run as run
    from segcore.cli import main
    from segcore.recon import HullError

    ws = tmp_path / "ws"
    res = known_result(ws)
    res.options = {"capture": "moving camera"}
    monkeypatch.setattr(run, "reconstruct", lambda *a, **k: res)
    monkeypatch.setattr(run, "views_from_result", lambda r: [])

    def carve_nothing(*a, **k):
        raise HullError("nothing is left after carving: the silhouettes do not intersect")

    monkeypatch.setattr(run, "hull_from_views", carve_nothing)
    (ws / "hull.ply").write_text("a mesh from an earlier run")
    out, mesh = run.run_reconstruction(tmp_path, tmp_path, ws)
    assert mesh is None and out.verdict["status"] == "failed"
    assert out.verdict["reasons"] == [
        "no garment mesh: nothing is left after carving: the silhouettes do not intersect"
    ]
    summary = json.loads((ws / "recon.json").read_text())["summary"]
    assert summary["verdict"]["status"] == "failed"
    assert (ws / "transforms.json").is_file() and not (ws / "hull.ply").exists()
    # the command says so and exits 1 (not a traceback)
    assert main(["reconstruct", str(tmp_path), str(tmp_path), "-o", str(ws), "-q"]) == 1
    assert "error: reconstruction failed: no garment mesh" in capsys.readouterr().err
