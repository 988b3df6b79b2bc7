"""Faults mid-run and resuming (docs/reliability.md, "Faults and resume"): a write fault stops
the run once with one message, frames finished at an interrupt are counted, and a run resumed
with --skip-existing ends with the files of an uninterrupted one (--temporal and --plate on
included); damaged outputs are not taken for done; long names work."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import segcore.io
import segcore.pipeline
import segcore.run_report
from segcore.cli import main
from segcore.pipeline import CHAIN_STATES, SegmentOptions, SequenceJob
from segcore.plate_pass import PLATE_RECORD, PLATE_SAVED

from .conftest import blob_image
from .test_reliability import _cli, _no_temporaries, _report


def _frames(d: Path, n: int, size=(128, 96)) -> Path:
    """A blob moving a little from frame to frame (a sequence the temporal chain follows)."""
    d.mkdir(parents=True)
    base = blob_image(96, 128, seed=3)[0]
    for i in range(n):
        img = np.roll(base, 3 * i, axis=1)
        cv2.imwrite(str(d / f"f{i:02d}.png"), cv2.resize(img, size))
    return d


# the untrained network's probabilities lie within 0.39-0.43: at this threshold its masks
# have edges, so smoothing and the plate have something to change
THRESHOLD = 0.41


def _segment(model, inp, out, *extra) -> int:
    return main(["segment", str(inp), "-o", str(out), "--model", str(model["card"]), "-q", *extra])


def _outputs(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for sub in ("masks", "rgba")
        if (out / sub).is_dir()
        for p in sorted((out / sub).iterdir())
    }


def _complete(out: Path) -> int:
    """Frames whose outputs (mask and RGBA) are both on disk and whole."""
    return sum(
        segcore.io.png_is_whole(p) and segcore.io.png_is_whole(out / "rgba" / p.name)
        for p in (out / "masks").glob("*.png")
    )


def _on_frame(monkeypatch, k: int, action) -> None:
    """Call ``action()`` when the ``k``-th frame (1-based) starts to be segmented."""
    calls = []
    real = segcore.pipeline.segment_frame

    def segment_frame(*a, **kw):
        calls.append(1)
        if len(calls) == k:
            action()
        return real(*a, **kw)

    monkeypatch.setattr(segcore.pipeline, "segment_frame", segment_frame)


# --- 5. a write fault mid-run -------------------------------------------------------------


def _stops_once(err: str, out: Path, folder: str, what: str) -> dict:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, err  # the frame that met the fault, then the one stop message
    assert f"{out / folder}: {what}" in errors[1] and "--skip-existing" in errors[1]
    assert "Traceback" not in err
    rep = _report(out)["summary"] if (out / "report.json").exists() else None
    return rep


@pytest.mark.parametrize(
    "code,what,advice",
    [
        (errno.EPERM, "Operation not permitted", "chattr -i"),
        (errno.EROFS, "Read-only file system", "remount it writable"),
        (errno.ENOSPC, "No space left on device", "free space"),
        (errno.EACCES, "Permission denied", "chmod u+w"),
    ],
    ids=["EPERM", "EROFS", "ENOSPC", "EACCES"],
)
def test_write_fault_mid_run_stops_once_with_one_message(
    random_model, tmp_path, capsys, monkeypatch, code, what, advice
):
    frames, out = _frames(tmp_path / "frames", 8), tmp_path / "out"
    real = segcore.io.atomic_write_bytes
    broken = []

    def atomic_write_bytes(path, data):  # the rgba folder turns unwritable from frame 3 on
        if Path(path).parent.name == "rgba" and len(list((out / "rgba").iterdir())) >= 2:
            broken.append(path)
            raise OSError(code, os.strerror(code), str(Path(path).with_name(".segcore-x.tmp")))
        real(path, data)

    monkeypatch.setattr(segcore.io, "atomic_write_bytes", atomic_write_bytes)
    assert _segment(random_model, frames, out, "--workers", "1") == 1
    err = capsys.readouterr().err
    rep = _stops_once(err, out, "rgba", what)
    assert advice in err
    assert len(broken) == 1  # no frame after the first fault was tried
    assert rep["ok"] == 2 and rep["failed"] == 1 and rep["not_run"] == 5
    assert "rgba" in rep["stopped_by"] and "--skip-existing" in rep["stopped_by"]
    monkeypatch.setattr(segcore.io, "atomic_write_bytes", real)
    assert _segment(random_model, frames, out, "--skip-existing") == 0
    assert _complete(out) == 8


def test_report_that_cannot_be_written_is_a_warning(random_model, tmp_path, capsys, monkeypatch):
    frames, out = _frames(tmp_path / "frames", 3), tmp_path / "out"
    real = segcore.run_report.atomic_write_bytes

    def atomic_write_bytes(path, data):
        if Path(path).name == "report.json":
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real(path, data)

    monkeypatch.setattr(segcore.run_report, "atomic_write_bytes", atomic_write_bytes)
    assert _segment(random_model, frames, out) == 0
    err = capsys.readouterr().err
    assert f"warning: {out / 'report.json'}: not written (Read-only file system)" in err
    assert "Traceback" not in err and not (out / "report.json").exists()


def _mounted_tmpfs(mnt: Path, size: str = "16m") -> None:
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       capture_output=True)  # fmt: skip
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")


def test_file_system_turned_read_only_mid_run(random_model, tmp_path, capsys, monkeypatch):
    mnt = tmp_path / "disk"
    _mounted_tmpfs(mnt)
    try:
        frames, out = _frames(tmp_path / "frames", 6), mnt / "out"

        def remount():
            r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True)
            if r.returncode:
                pytest.skip(f"cannot remount read-only here: {r.stderr.decode().strip()}")

        _on_frame(monkeypatch, 3, remount)
        assert _segment(random_model, frames, out, "--workers", "1") == 1
        err = capsys.readouterr().err
        assert "Read-only file system; the file system turned read-only" in err
        assert "--skip-existing" in err and "Traceback" not in err
        assert f"warning: {out / 'report.json'}: not written (Read-only file system)" in err
        assert err.count("error:") == 2  # the frame, then the stop
        assert _no_temporaries(out) and _complete(out) == 2
    finally:
        subprocess.run(["umount", str(mnt)])


def test_immutable_output_folder_mid_run(random_model, tmp_path, capsys, monkeypatch):
    frames, out = _frames(tmp_path / "frames", 6), tmp_path / "out"

    def freeze():
        r = subprocess.run(["chattr", "+i", str(out / "masks")], capture_output=True)
        if r.returncode:
            pytest.skip(f"chattr +i does not work here: {r.stderr.decode().strip()}")

    _on_frame(monkeypatch, 3, freeze)
    try:
        assert _segment(random_model, frames, out, "--workers", "1", "--formats", "mask") == 1
    finally:
        subprocess.run(["chattr", "-i", str(out / "masks")])
    err = capsys.readouterr().err
    rep = _stops_once(err, out, "masks", "Operation not permitted")
    assert rep["ok"] == 2 and rep["not_run"] == 3 and "chattr -i" in rep["stopped_by"]


# --- 6. frames in flight at an interrupt --------------------------------------------------


def test_frames_finished_at_an_interrupt_are_counted(random_model, tmp_path):
    frames, out = _frames(tmp_path / "frames", 10, (320, 240)), tmp_path / "out"
    job = SequenceJob(frames, out, SegmentOptions(model=str(random_model["card"]), workers=3))
    results = job.run()
    with pytest.raises(KeyboardInterrupt):
        for _ in results:
            raise KeyboardInterrupt  # lands in the caller, frames still in flight
    results.close()  # what the CLI does: they finish their writes and are counted
    s = job.summary()
    assert s["interrupted"] and s["ok"] > 1
    assert s["ok"] == _complete(out) and s["not_run"] == 10 - s["processed"]
    assert _no_temporaries(out)


def test_interrupt_counts_match_the_files_on_disk(random_model, tmp_path):
    frames, out = _frames(tmp_path / "frames", 60, (640, 480)), tmp_path / "out"
    p = _cli(["segment", str(frames), "-o", str(out), "--model", str(random_model["card"]),
              "--workers", "2", "-q"])  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "rgba").glob("*.png"))) < 3:
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    s = _report(out)["summary"]
    assert s["ok"] == _complete(out) and s["not_run"] == 60 - s["processed"] > 0
    assert f"interrupted: {s['ok']} frames written, {s['not_run']} not run" in err


# --- 7. --temporal resumed -----------------------------------------------------------------


def _stop_after(k: int):
    seen = []
    return lambda: seen.append(1) or len(seen) >= k


@pytest.mark.parametrize("workers", [1, 2])
def test_temporal_resume_equals_an_uninterrupted_run(random_model, tmp_path, workers):
    frames = _frames(tmp_path / "frames", 12)
    opts = SegmentOptions(model=str(random_model["card"]), workers=workers, temporal=True,
                          plate="off", threshold=THRESHOLD)  # fmt: skip
    ref = tmp_path / "ref"
    list(SequenceJob(frames, ref, opts).run())
    assert not (ref / CHAIN_STATES).exists()  # finished: no chain state left behind
    out, cut = tmp_path / "out", tmp_path / "cut"
    for folder in (out, cut):
        job = SequenceJob(frames, folder, opts)
        list(job.run(should_stop=_stop_after(5)))
        assert job.interrupted and 0 < _complete(folder) < 12
        assert len(list((folder / CHAIN_STATES).glob("*.npz"))) <= workers + 1
    for p in (cut / CHAIN_STATES).iterdir():
        p.unlink()  # without the saved state the chain starts again: the files differ
    for folder in (out, cut):
        list(SequenceJob(frames, folder, replace(opts, skip_existing=True)).run())
    assert _outputs(out) == _outputs(ref)
    assert _outputs(cut) != _outputs(ref)  # what the saved state makes equal
    assert not (out / CHAIN_STATES).exists()


# --- 8. --plate on resumed ------------------------------------------------------------------


def _turntable_frames(d: Path) -> Path:
    from .test_plate import _turntable

    d.mkdir(parents=True)
    frames, _, _ = _turntable()
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"f{i:02d}.png"), f)
    return d


def test_plate_on_is_idempotent_and_an_interrupted_pass_resumes(
    random_model, tmp_path, capsys, monkeypatch
):
    frames = _turntable_frames(tmp_path / "frames")
    ref, out = tmp_path / "ref", tmp_path / "out"

    def plate_on(out, *extra):
        return _segment(
            random_model, frames, out, "--plate", "on", "--threshold", str(THRESHOLD), *extra
        )

    assert plate_on(ref) == 0
    plate = _report(ref)["plate"]
    assert plate["frames_changed"] > 0 and plate["stopped"] is False
    first = _outputs(ref)
    real, calls, stop_at = SequenceJob._complete_frame, [], []

    def complete_frame(self, i, *a):
        if len(calls) in stop_at:
            raise KeyboardInterrupt
        calls.append(i)
        return real(self, i, *a)

    monkeypatch.setattr(SequenceJob, "_complete_frame", complete_frame)
    # idempotent: a rerun with --skip-existing completes no mask a second time
    assert plate_on(ref, "--skip-existing") == 0
    assert calls == [] and _outputs(ref) == first and _report(ref)["plate"] == plate
    # SIGINT during "Completing masks", after 3 frames
    stop_at.append(3)
    capsys.readouterr()
    assert plate_on(out) == 130
    assert "3 masks completed" in capsys.readouterr().err
    rep = _report(out)
    assert rep["summary"]["interrupted"] is True
    assert rep["plate"]["stopped"] is True and rep["plate"]["frames_completed"] == 3
    assert (out / PLATE_SAVED).exists()
    stop_at.clear()
    assert plate_on(out, "--skip-existing") == 0
    assert calls == list(range(len(first) // 2))  # each frame completed once
    assert _outputs(out) == first  # the same plate went on: as if never stopped
    assert _report(out)["plate"] == plate and not (out / PLATE_SAVED).exists()
    assert len(json.loads((out / PLATE_RECORD).read_text())["frames"]) == len(first) // 2


def test_full_disk_during_the_plate_pass_stops_it_once(random_model, tmp_path, capsys, monkeypatch):
    frames = _turntable_frames(tmp_path / "frames")
    ref, out = tmp_path / "ref", tmp_path / "out"
    opts = ["--plate", "on", "--threshold", str(THRESHOLD), "--formats", "mask"]
    assert _segment(random_model, frames, ref, *opts) == 0
    real_write, real_complete, writes = (
        segcore.io.atomic_write_bytes,
        SequenceJob._complete_frame,
        [],
    )

    def complete_frame(self, i, *a):  # the disk fills up at the second mask the pass rewrites
        writes.append(i)
        return real_complete(self, i, *a)

    def atomic_write_bytes(path, data):
        if writes and Path(path).parent.name == "masks" and len(writes) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(SequenceJob, "_complete_frame", complete_frame)
    monkeypatch.setattr(segcore.io, "atomic_write_bytes", atomic_write_bytes)
    capsys.readouterr()
    assert _segment(random_model, frames, out, *opts) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"{out / 'masks'}: No space left on device" in err
    rep = _report(out)
    assert "--skip-existing" in rep["summary"]["stopped_by"] and rep["plate"]["stopped"]
    monkeypatch.undo()
    assert _segment(random_model, frames, out, *opts, "--skip-existing") == 0
    assert _outputs(out) == _outputs(ref)


def test_should_stop_during_the_plate_pass_marks_the_run_interrupted(random_model, tmp_path):
    frames = _turntable_frames(tmp_path / "frames")
    opts = SegmentOptions(model=str(random_model["card"]), plate="on", workers=1)
    job = SequenceJob(frames, tmp_path / "out", opts)
    n = len(job.frames)
    list(job.run(should_stop=_stop_after(n + 2)))  # polled after each frame, then each mask
    assert job.interrupted and job.plate["stopped"] and job.plate["frames_completed"] == 1
    assert job.report()["summary"]["interrupted"] is True


# --- 9. damaged outputs and dead runs' temporaries ------------------------------------------


def test_skip_existing_redoes_empty_and_truncated_outputs(random_model, tmp_path):
    frames, out = _frames(tmp_path / "frames", 5), tmp_path / "out"
    assert _segment(random_model, frames, out, "--plate", "off") == 0
    good = _outputs(out)
    (out / "masks" / "f01.png").write_bytes(b"")  # 0 bytes
    rgba = (out / "rgba" / "f03.png").read_bytes()
    (out / "rgba" / "f03.png").write_bytes(rgba[: len(rgba) // 2])  # cut short
    (out / "rgba" / "f04.png").write_bytes(rgba[:-1])  # one byte short: IEND incomplete
    assert _segment(random_model, frames, out, "--plate", "off", "--skip-existing") == 0
    status = {Path(r["path"]).stem: r["status"] for r in _report(out)["frames"]}
    assert status == {"f00": "skipped", "f01": "ok", "f02": "skipped", "f03": "ok", "f04": "ok"}
    assert _outputs(out) == good


def test_dead_runs_temporaries_in_out_are_removed(random_model, tmp_path):
    frames, out = _frames(tmp_path / "frames", 2), tmp_path / "out"
    assert _segment(random_model, frames, out) == 0
    dead = 2**22 + 12345  # above any pid_max: no such process
    stale = [
        out / f".segcore-{dead}-0123abcd-report.json.tmp",  # an older run's naming
        out / f".segcore-{dead}-0123456789ab.tmp",
        out / f".segcore-{dead}-0123456789ab-probe.tmp",
        out / "masks" / f".segcore-{dead}-0123456789ab.tmp",
    ]
    for p in stale:
        p.write_bytes(b"partial")
    live = out / f".segcore-{os.getpid()}-0123456789ab.tmp"  # a running process's: kept
    live.write_bytes(b"in progress")
    assert _segment(random_model, frames, out, "--skip-existing") == 0
    assert not any(p.exists() for p in stale) and live.exists()


# --- 10. long file names --------------------------------------------------------------------


def test_names_of_228_to_255_bytes(random_model, tmp_path, capsys):
    d = tmp_path / "frames"
    d.mkdir()
    img = cv2.imencode(".jpg", blob_image(48, 64, seed=1)[0])[1].tobytes()
    names = ["a" * 224 + ".jpg", "b" * 240 + ".jpg", "é" * 125 + "c.jpg"]  # 228, 244, 255
    for name in names:
        (d / name).write_bytes(img)
    assert [len(os.fsencode(n)) for n in names] == [228, 244, 255]
    out = tmp_path / "out"
    assert _segment(random_model, d, out) == 0, capsys.readouterr().err
    for name in names:
        stem = name.rsplit(".", 1)[0]
        assert segcore.io.png_is_whole(out / "masks" / f"{stem}.png", 0)
        assert segcore.io.png_is_whole(out / "rgba" / f"{stem}.png", 6)
    assert _no_temporaries(out)
    # a format that lengthens the name past the limit: refused before any frame, named
    code = _segment(random_model, d, tmp_path / "o2", "--formats", "colmap")
    err = capsys.readouterr().err
    assert code == 2 and "259 bytes, over the output folder's limit of 255" in err
    assert not (tmp_path / "o2" / "colmap_masks").exists()
