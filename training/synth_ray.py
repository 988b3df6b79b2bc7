"""Render a synthetic data set on a Ray cluster: one ``training synth --shard i/n`` per task.

    python -m training.synth_ray --shards 16 --cpus 4 -- --out /shared/data/synth \\
        --trainable --sequences 400 --frames 6 --seed 1

Everything after ``--`` goes to ``python -m training synth`` unchanged; task ``i`` adds
``--shard i/N``, so the N tasks render disjoint sequences and together all of them (sequence
``k`` is seeded by (seed, k): the data set is the same for any N). Each task is one Blender
(bpy) process in a subprocess, reserving ``--cpus`` CPUs (give the same to ``--threads``).
``--out`` must be a folder every node writes to at the same path. A task whose Blender
process fails (or whose node is lost) is retried by Ray (``--retries``); sequences already
complete (their ``meta.json`` written) are skipped, so a retried task, or a rerun of the
whole job, finishes what is left.

``--address``: as ``ray.init`` takes it (default: ``$RAY_ADDRESS``, else Ray on this
machine). As a Ray job: ``ray job submit --address http://HEAD:8265 --working-dir . --
python -m training.synth_ray --shards 16 -- ...``. Every node needs this project and the
bpy wheel installed (``pip install -e ".[train,cluster]" bpy==5.0.1``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def render_shard(shard: str, synth_args: list[str]) -> float:
    """Run one shard's ``training synth`` to its end; its seconds. A failed run raises (the
    last lines of its output), so Ray retries the task."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "training", "synth", *synth_args, "--shard", shard]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-3:])
        raise RuntimeError(f"training synth --shard {shard} exited {r.returncode}:\n{tail}")
    return time.time() - t0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    own, synth_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    p = argparse.ArgumentParser(
        prog="python -m training.synth_ray",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shards", type=int, required=True, help="tasks (Blender processes) in all")
    p.add_argument("--cpus", type=float, default=1, help="CPUs each task reserves (default 1)")
    p.add_argument("--address", default=None, help="the Ray cluster (default: as ray.init)")
    p.add_argument("--retries", type=int, default=2, help="retries of a task whose process died")
    args = p.parse_args(own)
    if args.shards < 1 or not synth_args or "--shard" in synth_args:
        p.error("give --shards N >= 1 and the synth arguments after --, without --shard")
    try:
        import ray
    except ImportError:
        print('error: Ray is not installed: pip install "segcore[cluster]"', file=sys.stderr)
        return 2
    ray.init(address=args.address, logging_level="WARNING")
    task = ray.remote(num_cpus=args.cpus, max_retries=args.retries, retry_exceptions=True)
    shards = {
        task(render_shard).remote(f"{i}/{args.shards}", synth_args): f"{i}/{args.shards}"
        for i in range(args.shards)
    }
    pending, failed = list(shards), 0
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            print(f"shard {shards[done[0]]}: done in {ray.get(done[0]):.0f} s", file=sys.stderr)
        except ray.exceptions.RayError as exc:
            failed += 1
            print(f"shard {shards[done[0]]}: FAILED: {exc}", file=sys.stderr)
    print(f"{args.shards - failed} of {args.shards} shards rendered", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
