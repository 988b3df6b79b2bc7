"""The workspace's manifest: what a reconstruction wrote is recorded, so a second run into
the same workspace may replace it."""

from __future__ import annotations

from segcore.outputs import Manifest
from segcore.recon.workspace import settles


def test_nested_runs_record_what_the_outer_run_writes_after_the_inner_one(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()

    @settles
    def inner(frames, masks, workspace):  # as reconstruct: names everything it will write
        Manifest(workspace, "reconstruct").pending(["sparse/", "hull.ply", "recon.json"])
        (workspace / "sparse").mkdir(exist_ok=True)
        (workspace / "sparse" / "cameras.bin").write_bytes(b"c")

    @settles
    def outer(frames, masks, workspace):  # as run_reconstruction: the hull comes after
        inner(frames, masks, workspace)
        (workspace / "hull.ply").write_bytes(b"ply")
        (workspace / "recon.json").write_text("{}")

    outer(None, None, ws)
    owned = Manifest(ws, "reconstruct")
    for name in ("sparse/cameras.bin", "hull.ply", "recon.json"):
        assert owned.owns(ws / name), name
    assert not owned.foreign(["hull.ply", "recon.json", "sparse/"])  # a rerun may replace them

    outer(None, None, ws)  # the rerun: nothing refused, still all recorded
    assert Manifest(ws, "reconstruct").owns(ws / "hull.ply")
