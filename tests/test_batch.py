"""``segcore segment-many`` (segcore.batch): many sequences on a local process pool or on a
local Ray cluster, the same files as ``segcore segment``, a worker killed mid-run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import pytest

from segcore.batch import BatchJob, find_sequences
from segcore.batch_workers import EXIT_HOOK
from segcore.cli import main
from segcore.errors import InputError, OutputError
from segcore.pipeline import SegmentOptions, SequenceJob

from .conftest import ROOT

FORMATS = ("mask", "rgba")


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """Two 4-frame captures at 240x180 from the bundled example: one holding its frames,
    one in the data-set layout (<capture>/images/)."""
    root = tmp_path_factory.mktemp("captures")
    src = sorted((ROOT / "examples" / "garment_ring" / "images").glob("*.jpg"))[:4]
    for name, sub, flip in (("coat", "", False), ("dress", "images", True)):
        d = root / name / sub
        d.mkdir(parents=True)
        for k, p in enumerate(src):
            img = cv2.resize(cv2.imread(str(p)), (240, 180), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(d / f"{name}_{k}.png"), img[:, ::-1] if flip else img)
    return root


@pytest.fixture(scope="module")
def reference(captures, tmp_path_factory):
    """What `segcore segment` writes for each capture, file by file."""
    out = tmp_path_factory.mktemp("reference")
    files = {}
    for s in find_sequences(captures):
        job = SequenceJob(s.input, out / s.name, SegmentOptions(formats=FORMATS))
        assert all(r.status == "ok" for r in job.run())
        for f in sorted((out / s.name).glob("*/*.png")):
            files[f"{s.name}/{f.parent.name}/{f.name}"] = f.read_bytes()
    assert len(files) == 16
    return files


def outputs(out: Path) -> dict[str, bytes]:
    return {
        f"{f.parent.parent.name}/{f.parent.name}/{f.name}": f.read_bytes()
        for f in sorted(out.glob("*/*/*.png"))
    }


def check_reports(out: Path, ok: int, skipped: int = 0) -> dict:
    """Every frame once in its sequence's report; the summary adds them up."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["ok"] == ok and summary["totals"]["skipped"] == skipped
    assert summary["totals"]["failed"] == summary["totals"]["not_run"] == 0
    for row in summary["sequences"]:
        report = json.loads((out / row["name"] / "report.json").read_text())
        paths = [f["path"] for f in report["frames"]]
        assert len(paths) == len(set(paths)) == 4
        assert report["summary"]["ok"] + report["summary"]["skipped"] == 4
        assert (out / row["name"] / "contact_sheet.png").is_file()
    return summary


def test_sequences_from_a_folder_and_from_manifests(captures, tmp_path):
    seqs = find_sequences(captures)
    assert [(s.name, s.input.name) for s in seqs] == [("coat", "coat"), ("dress", "images")]
    text = tmp_path / "list.txt"
    text.write_text(f"# shoot of the day\n{captures / 'dress' / 'images'}\n\n{captures / 'coat'}\n")
    assert [s.name for s in find_sequences(text)] == ["dress", "coat"]
    js = tmp_path / "list.json"
    js.write_text(json.dumps([{"path": str(captures / "coat"), "name": "coat2"}]))
    assert [s.name for s in find_sequences(js)] == ["coat2"]
    js.write_text(json.dumps([str(captures / "coat"), str(captures / "coat")]))
    with pytest.raises(InputError, match="two sequences are named 'coat'"):
        find_sequences(js)
    with pytest.raises(OutputError, match="inside it"):
        BatchJob(captures, captures / "out", SegmentOptions(formats=FORMATS))


def test_ray_missing_is_said_before_anything_is_written(captures, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ImportError
    code = main(["segment-many", str(captures), "-o", str(tmp_path / "out"), "--ray"])
    assert code == 2 and not (tmp_path / "out").exists()


def test_local_pool_writes_what_segment_writes_and_resumes(captures, reference, tmp_path):
    out = tmp_path / "out"
    code = main(["segment-many", str(captures), "-o", str(out), "--formats", "mask,rgba",
                 "--workers", "2", "-q"])  # fmt: skip
    assert code == 0
    assert outputs(out) == reference
    assert check_reports(out, ok=8)["backend"] == "local"
    before = {f: f.stat().st_mtime_ns for f in out.glob("*/*/*.png")}
    # a rerun refuses to touch the outputs; --skip-existing keeps every frame
    assert main(["segment-many", str(captures), "-o", str(out), "-q"]) == 1
    code = main(["segment-many", str(captures), "-o", str(out), "--formats", "mask,rgba",
                 "--skip-existing", "-q"])  # fmt: skip
    assert code == 0
    check_reports(out, ok=0, skipped=8)
    assert {f: f.stat().st_mtime_ns for f in out.glob("*/*/*.png")} == before


def test_local_pool_worker_killed_after_a_frame(captures, reference, tmp_path, monkeypatch):
    """A worker process dies right after writing coat_1's outputs: the pool is replaced,
    the lost frames run again, coat_1 is kept as written (not written twice)."""
    mark = tmp_path / "died"
    monkeypatch.setenv(EXIT_HOOK, f"coat_1.png@{mark}")
    out = tmp_path / "out"
    job = BatchJob(captures, out, SegmentOptions(formats=FORMATS), workers=2)
    results = list(job.run())
    job.write_summary()
    assert mark.exists()  # a worker did die
    assert sorted(r.path for _, r in results) == sorted({r.path for _, r in results})
    assert outputs(out) == reference
    check_reports(out, ok=8)
    for f in (out / "coat").glob("*/coat_1.png"):
        assert f.stat().st_mtime_ns <= mark.stat().st_mtime_ns  # never written again


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster of 2 CPUs whose workers die once after writing dress_2."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")
    mark = tmp_path_factory.mktemp("ray") / "died"
    old = os.environ.get(EXIT_HOOK)
    os.environ[EXIT_HOOK] = f"dress_2.png@{mark}"  # the workers inherit it at init
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    finally:
        if old is None:
            os.environ.pop(EXIT_HOOK)
        else:
            os.environ[EXIT_HOOK] = old
    yield mark
    ray.shutdown()


def test_ray_worker_killed_mid_run_nothing_lost_nothing_twice(
    ray_cluster, captures, reference, tmp_path
):
    mark = ray_cluster
    out = tmp_path / "out"
    job = BatchJob(captures, out, SegmentOptions(formats=FORMATS), workers=2, ray="")
    results = list(job.run())
    job.write_summary()
    assert mark.exists()  # the actor died; Ray restarted it and retried its calls
    paths = [r.path for _, r in results]
    assert len(paths) == len(set(paths)) == 8
    assert outputs(out) == reference  # byte for byte what segment (and the pool) write
    assert check_reports(out, ok=8)["backend"] == "ray"
    for f in (out / "dress").glob("*/dress_2.png"):
        assert f.stat().st_mtime_ns <= mark.stat().st_mtime_ns
    # resumable on the cluster too
    job = BatchJob(captures, out, SegmentOptions(formats=FORMATS, skip_existing=True), ray="")
    assert [r.status for _, r in job.run()] == ["skipped"] * 8
