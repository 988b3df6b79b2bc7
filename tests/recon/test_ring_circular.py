"""A ring incremental SfM cannot register is solved as circular motion from the masks
(segcore.recon.run._circular_ring): a camera carried round the garment at one height sees the
garment turn about an axis, as on a turntable, with the room moving behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.bench_recon import pose_errors

RING = Path(__file__).resolve().parents[2] / "tests" / "data" / "recon_ring"


def test_a_ring_sfm_cannot_register_is_solved_as_circular_motion(tmp_path, monkeypatch):
    """Incremental SfM made to register nothing (as on a close-up garment before a plain
    room): ``--mapper auto`` solves the ring from the masks instead, says so in recon.json,
    and the cameras turn as the true ones do. Accuracy here is poor and recorded as such:
    2.2 degrees median on these 400x300 frames over a quarter turn, where the outlines say
    little about the step (3.8 before the room's vertical edges of every frame fixed the
    tilt; with them, a mirrored start once slid to a camera that barely turns, 179 degrees
    off, which now ranks last); the 24-frame rings of the benchmark are measured in
    docs/recon.md. The bound guards against a regression."""
    pytest.importorskip("pycolmap")
    if not (RING / "cameras.json").exists():
        pytest.skip("tests/data/recon_ring is missing")
    from segcore.recon import load_result, run
    from segcore.recon.turntable import colmap as tt_colmap

    mapped, sifts = [], []
    monkeypatch.setattr(run, "map_frames", lambda *a, **k: mapped.append(k) or {})
    extract = run.extract_features

    def spy_features(*a):
        sifts.append(a[-1])  # the SIFT kind asked for
        return extract(*a)

    monkeypatch.setattr(run, "extract_features", spy_features)
    calls = []

    def spy(*a, **k):
        calls.append(k.get("still"))
        return tt_colmap.turntable_model(*a, **k)

    monkeypatch.setattr(run, "turntable_model", spy)
    cams = json.loads((RING / "cameras.json").read_text())
    ws = tmp_path / "ws"
    run.run_reconstruction(
        RING / "images",
        RING / "masks",
        ws,
        voxels=48,
        quality="high",
        focal_px=cams["frames"][0]["K"][0][0],
    )
    assert calls == [False]  # the room moves: no still-background terms
    # over the whole frame plain SIFT (DSP-SIFT is for smooth fabric inside the masks), and
    # one model: the even ring takes over from whatever SfM leaves below 95 %
    assert sifts == ["fast"] and [k["one_model"] for k in mapped] == [True]
    res = load_result(ws)
    opts = res.options
    assert opts["capture"] == "moving camera" and opts["mapper"] == "turntable"
    assert opts["ring_circular"].startswith("incremental SfM registered 0 of 12 frames")
    assert not any("still background" in n for n in opts["turntable"])
    e = pose_errors(res, cams)
    assert e["registered"] == len(cams["frames"])
    assert e["rot_median_deg"] < 6.0, (e, opts["turntable"])
    summary = json.loads((ws / "recon.json").read_text())["summary"]
    verdict = summary["verdict"]
    assert verdict["status"] == "doubtful", verdict  # only as right as the ring was even
    assert any("circular motion" in r for r in verdict["reasons"]), verdict


def test_a_ring_whose_sfm_cameras_fail_the_verdict_is_solved_again_as_circular(
    tmp_path, monkeypatch
):
    """SfM can register every frame of a close-up ring and still be wrong (the mesh carves
    to nothing): with ``--mapper auto`` the ring is then solved as circular motion, which
    replaces the failed solve, and the first solve's time is counted."""
    from types import SimpleNamespace

    from segcore.recon import run

    calls = []

    def fake_reconstruct(frames, masks, ws, mapper="auto", circular_because=None, **kw):
        calls.append((mapper, circular_because))
        circular = mapper == "turntable"
        opts = {
            "mapper": mapper if circular else "incremental",
            "mapper_asked": "auto",
            "capture": "moving camera",
            "ring_circular": circular_because,
        }
        return SimpleNamespace(
            options=opts,
            masks_dir=tmp_path,
            timings={"features": 20.0, "total": 30.0},
            verdict=None,
            circular=circular,
        )

    def fake_carve(result, ws, hull, voxels, report, should_stop):
        result.verdict = (
            {"status": "doubtful", "reasons": ["a ring solved as circular motion"]}
            if result.circular
            else {"status": "failed", "reasons": ["no garment mesh: carved to nothing"]}
        )
        return None, {}

    monkeypatch.setattr(run, "reconstruct", fake_reconstruct)
    monkeypatch.setattr(run, "_carve_and_judge", fake_carve)
    monkeypatch.setattr(run, "write_transforms", lambda *a: None)
    monkeypatch.setattr(run, "write_result_json", lambda *a: None)
    result, _ = run.run_reconstruction(tmp_path, tmp_path, tmp_path / "ws")
    assert [m for m, _ in calls] == ["auto", "turntable"]
    assert "no garment mesh" in calls[1][1] and result.circular
    assert result.timings["features"] == 40.0  # both solves' time


def test_a_first_model_stuck_at_its_initial_pair_is_mapped_again_on_one_thread(tmp_path):
    """COLMAP on several threads sometimes settles for an initial pair no further frame
    registers against; asked for one model, mapping runs again on one thread."""
    from types import SimpleNamespace

    from segcore.recon.sfm import Stages, map_frames

    threads, seeds = [], []

    class Model:
        def __init__(self, k):
            self.k = k

        def num_reg_images(self):
            return self.k

    def incremental_mapping(db, images, out, opts, **kw):
        threads.append(opts.num_threads)
        return {0: Model(2 if len(threads) == 1 else 12)}

    fake = SimpleNamespace(
        IncrementalPipelineOptions=lambda: SimpleNamespace(mapper=SimpleNamespace()),
        incremental_mapping=incremental_mapping,
        set_random_seed=seeds.append,
    )
    run = Stages(SimpleNamespace(cancel=lambda: None), lambda: False)
    args = (fake, run, lambda *a: None, tmp_path, 12, "incremental", 2, 0)
    models = map_frames(*args, one_model=True)
    assert threads == [2, 1] and models[0].num_reg_images() == 12 and seeds == [0]
    threads.clear()
    assert map_frames(*args, one_model=False)[0].num_reg_images() == 2  # COLMAP goes on itself
    assert threads == [2]
