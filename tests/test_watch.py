"""Tethered capture: `segcore segment --watch` takes each frame once the camera has written
it, with the outputs, report and resume of any run (segcore.watch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from segcore.cli import main
from segcore.pipeline import SegmentOptions
from segcore.watch import WatchJob

from .conftest import ROOT, blob_image


def _jpeg(seed: int) -> bytes:
    return cv2.imencode(".jpg", blob_image(seed=seed)[0])[1].tobytes()


def slow_writer(folder: Path, names: list[str], pieces: int = 4, pause: float = 0.25):
    """A camera: each frame written in ``pieces`` chunks ``pause`` seconds apart, one after
    the other (a half-written JPEG sits in the folder for a while)."""

    def write():
        for k, name in enumerate(names):
            data = _jpeg(k)
            step = -(-len(data) // pieces)
            with open(folder / name, "wb") as f:
                for i in range(0, len(data), step):
                    f.write(data[i : i + step])
                    f.flush()
                    time.sleep(pause)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def test_frames_are_taken_whole_as_they_arrive(tmp_path, random_model):
    shoot, out = tmp_path / "shoot", tmp_path / "out"
    shoot.mkdir()
    names = [f"IMG_{i}.jpg" for i in range(1, 5)]
    opts = SegmentOptions(model=str(random_model["card"]), workers=2)
    job = WatchJob(shoot, out, opts, settle=0.6, idle=2.5, poll=0.05)
    writer = slow_writer(shoot, names)
    seen = [r.path for r in job.run()]
    writer.join()
    job.write_report()
    assert [Path(p).name for p in seen] == names  # each once, in order, none half-written
    assert all(r.status == "ok" for r in job.results), [r.error for r in job.results]
    for n in names:
        assert cv2.imread(str(out / "masks" / n.replace(".jpg", ".png"))).shape[:2] == (96, 128)
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["ok"] == 4 and report["summary"]["watch"]["ended_by"] == "idle"
    assert all(f["confidence"] is not None for f in report["frames"])
    assert (out / "contact_sheet.png").exists()
    assert not list(out.rglob(".segcore-*"))


def test_a_stopped_watch_goes_on_with_skip_existing(tmp_path, random_model):
    shoot, out = tmp_path / "shoot", tmp_path / "out"
    shoot.mkdir()
    for i in range(3):
        (shoot / f"a_{i}.jpg").write_bytes(_jpeg(i))
    opts = SegmentOptions(model=str(random_model["card"]), workers=1)
    job = WatchJob(shoot, out, opts, settle=0.0, poll=0.05)
    for _ in job.run(should_stop=lambda: len(job.results) >= 3):
        pass
    job.write_report()
    assert job.ended_by == "stop" and len(job.results) == 3
    assert "watch was stopped" in json.loads((out / "report.json").read_text())["plate_note"]
    (shoot / "a_3.jpg").write_bytes(_jpeg(3))
    with pytest.raises(Exception, match="--skip-existing"):  # outputs there: say how to go on
        WatchJob(shoot, out, opts)
    job = WatchJob(shoot, out, SegmentOptions(**{**vars(opts), "skip_existing": True}),
                   settle=0.0, idle=0.5, poll=0.05)  # fmt: skip
    statuses = {Path(r.path).name: r.status for r in job.run()}
    assert statuses == {"a_0.jpg": "skipped", "a_1.jpg": "skipped", "a_2.jpg": "skipped",
                        "a_3.jpg": "ok"}  # fmt: skip


def test_watch_needs_a_folder_and_no_temporal(tmp_path, random_model, capsys):
    card = str(random_model["card"])
    (tmp_path / "one.jpg").write_bytes(_jpeg(0))
    for target, extra, said in (
        (tmp_path / "one.jpg", [], "needs a folder"),
        (tmp_path / "missing", [], "no such folder"),
        (tmp_path, ["--temporal"], "--temporal"),
    ):
        code = main(["segment", "--watch", str(target), "-o", str(tmp_path / "o"), "--model", card,
                     *extra])  # fmt: skip
        assert code == 2 and said in capsys.readouterr().err


def test_ctrl_c_ends_the_watch_with_the_report(tmp_path, random_model):
    shoot, out = tmp_path / "shoot", tmp_path / "out"
    shoot.mkdir()
    cmd = [sys.executable, "-m", "segcore", "segment", "--watch", str(shoot), "-o", str(out),
           "--model", str(random_model["card"]), "--settle", "0.3"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # a background job ignores SIGINT and its children inherit that: give the child the
    # terminal's default back, as a user's shell does
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        writer = slow_writer(shoot, ["s1.jpg", "s2.jpg"], pause=0.1)
        writer.join()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((out / "masks").glob("*.png"))) < 2:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "watch ended (Ctrl-C): 2 written" in err and "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["ok"] == 2 and report["summary"]["watch"]["ended_by"] == "interrupt"
    assert (out / "contact_sheet.png").exists()
