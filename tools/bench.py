"""``python build.py bench``: speed and memory of the whole pipeline on this machine.

Prints, and writes to ``docs/benchmarks.md``:
- a per-stage breakdown (median of several frames) at 1280x960, 4000x3000 and 6000x4000;
- end-to-end throughput of ``SequenceJob`` on a 60-frame sequence, masks only and masks + RGBA
  (and a 60-frame portrait sequence at 960x1280);
- peak resident memory of a 10-frame and a 300-frame run (must not grow with length);
- GrabCut (rectangle init) and the FCN-style baseline network side by side, as ratios;
- ``segcore segment-many`` on 2 sequences of 12 frames at 1280x960: the local process pool
  and Ray actors, 1 and 2 workers (``python build.py bench many``: this section alone);
- ``segcore adapt`` on 36 frames at 1280x960 with one corrected frame, through ONNX Runtime
  and OpenCV's DNN (``python build.py bench adapt``: this section alone).

Frames are synthesised from the bundled example (upscaled, with sensor-like noise, JPEG q92)
so the benchmark needs nothing but the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = ((1280, 960), (4000, 3000), (6000, 4000))
PORTRAIT = (960, 1280)  # end to end only


def make_frames(folder: Path, size: tuple[int, int], n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEG frames of ``size`` (W, H) made from the bundled example images (the
    landscape ring's, or for a portrait size the portrait turntable's)."""
    from segcore.io import discover_frames

    folder.mkdir(parents=True, exist_ok=True)
    W, H = size
    capture = "garment_turntable" if H > W else "garment_ring"
    src_dir = ROOT / "examples" / capture / "images"
    sources = [cv2.imread(str(p)) for p in discover_frames(src_dir)] if src_dir.exists() else []
    rng = np.random.default_rng(seed)
    paths = []
    base = []
    for s in sources or [None]:
        if s is None:
            s = np.full((480, 640, 3), 200, np.uint8)
            cv2.ellipse(s, (320, 240), (90, 180), 0, 0, 360, (40, 60, 150), -1)
        big = cv2.resize(s, (W, H), interpolation=cv2.INTER_CUBIC)
        noise = rng.normal(0, 3, (H // 4, W // 4, 3)).astype(np.float32)
        big = np.clip(big + cv2.resize(noise, (W, H)), 0, 255).astype(np.uint8)
        base.append(cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    for i in range(n):
        p = folder / f"frame_{i:04d}.jpg"
        if not p.exists():
            p.write_bytes(base[i % len(base)])
        paths.append(p)
    return paths


def stage_breakdown(seg, post, paths: list[Path]) -> dict[str, float]:
    """Median seconds per stage over ``paths`` (one thread, as in one worker)."""
    from segcore.io import decode_image, encode_png, read_bytes
    from segcore.pipeline import segment_frame

    rows = []
    for p in paths:
        t = {}
        data = read_bytes(p)
        t0 = time.perf_counter()
        bgr = decode_image(data, p)
        t["decode"] = time.perf_counter() - t0
        fm = segment_frame(bgr, seg, post)
        t.update(fm.timings)
        t0 = time.perf_counter()
        rgba = fm.rgba(bgr)  # soft alpha, rim defringed: what the rgba writer encodes
        t["mask op"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        encode_png(fm.mask)
        t["encode mask"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        encode_png(rgba)
        t["encode rgba"] = time.perf_counter() - t0
        rows.append(t)
    keys = list(rows[0])
    return {k: statistics.median(r[k] for r in rows) for k in keys}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB since it started (or last exec'd).

    Reads ``VmHWM`` on Linux: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a child
    started by a big parent (pytest, this benchmark) would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # not on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, else KiB


def run_job(
    frames_dir: Path,
    formats: str,
    workers: int,
    model: str | None,
    temporal: bool = False,
    backend: str | None = None,
) -> dict:
    """One ``segcore segment`` run in a fresh process: seconds, frames/s and peak RSS (MB).
    ``backend``: ``SEGCORE_BACKEND`` for the run (``opencv``: the graphs Blender runs)."""
    out = Path(tempfile.mkdtemp(prefix="segcore-bench-out-"))
    code = (
        "import time\n"
        "from segcore.io import keep_freed_memory\n"
        "from tools.bench import peak_rss_mb\n"
        "keep_freed_memory()  # as the command line does\n"
        "from segcore.pipeline import SegmentOptions, SequenceJob\n"
        f"job = SequenceJob({str(frames_dir)!r}, {str(out)!r}, SegmentOptions(model={model!r}, "
        f"formats={tuple(formats.split(','))!r}, workers={workers}, overwrite=True, "
        f"temporal={temporal!r}, plate='off'))\n"
        "t = time.perf_counter()\n"
        "n = sum(r.status == 'ok' for r in job.run())\n"
        "dt = time.perf_counter() - t\n"
        "print(n, dt, peak_rss_mb())\n"
    )
    env = {**os.environ, **({"SEGCORE_BACKEND": backend} if backend else {})}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    n, dt, rss = r.stdout.split()[-3:]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "frames": int(n),
        "seconds": float(dt),
        "fps": int(n) / float(dt),
        "peak_mb": float(rss),
    }


MANY_RUN = """
import json, sys, time
from segcore.batch import BatchJob
from segcore.pipeline import SegmentOptions
src, out, workers, ray, model = sys.argv[1:6]
t0 = time.perf_counter()
job = BatchJob(src, out, SegmentOptions(model=model or None, overwrite=True, plate="off"),
               workers=int(workers), ray=None if ray == "-" else ray)
times = [time.perf_counter() - t0 for _ in job.run()]
job.write_summary()
n = len(times)
print(json.dumps({"frames": n, "seconds": time.perf_counter() - t0, "first": times[0],
                  "steady": (n - 1) / (times[-1] - times[0]) if n > 1 else None}))
"""


def _scratch_run(script: str, src: Path, rest: list[str], name: str, env=None) -> dict:
    """Run ``script`` in a fresh Python as ``script SRC OUT *rest`` (OUT a scratch folder,
    removed after) and return the JSON of its last printed line."""
    out = Path(tempfile.mkdtemp(prefix=f"segcore-bench-{name}-"))
    try:
        r = subprocess.run(
            [sys.executable, "-c", script, str(src), str(out), *rest],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def many_section(workdir: Path, model: str | None, frames: int = 12, sequences: int = 2) -> str:
    """``segment-many`` on ``sequences`` x ``frames`` frames at 1280x960 (masks + RGBA): the
    local process pool and Ray, 1 and 2 workers, each in a fresh process (worker start-up and
    model loads included), against ``segcore segment`` on each sequence in turn."""
    src = workdir / "many"
    for k in range(sequences):
        make_frames(src / f"seq_{k}", (1280, 960), frames, seed=k)
        _trim(src / f"seq_{k}", frames)
    rows = [
        "| run | workers | frames | seconds | frames/s | first frame back (s) | "
        "frames/s after the first |",
        "|---|---|---|---|---|---|---|",
    ]
    t = 0.0
    for k in range(sequences):
        r = run_job(src / f"seq_{k}", "mask,rgba", 2, model)
        t += r["seconds"]
    rows.append(
        f"| `segcore segment`, one sequence after the other | 2 threads | {frames * sequences} | "
        f"{t:.1f} | {frames * sequences / t:.2f} | - | - |"
    )
    print(rows[-1])
    try:
        import ray  # noqa: F401

        backends = [("local process pool", "-"), ("Ray on this machine", "")]
    except ImportError:
        backends = [("local process pool", "-")]
        print("Ray is not installed: the Ray rows are left out (pip install ray)")
    for label, ray_arg in backends:
        for workers in (1, 2):
            m = _scratch_run(MANY_RUN, src, [str(workers), ray_arg, model or ""], "many")
            rows.append(
                f"| {label} | {workers} | {m['frames']} | {m['seconds']:.1f} | "
                f"{m['frames'] / m['seconds']:.2f} | {m['first']:.1f} | {m['steady']:.2f} |"
            )
            print(rows[-1])
    return (
        f"## Many sequences (`segcore segment-many`, {sequences} x {frames} frames at "
        "1280x960, masks + RGBA)\n\n" + "\n".join(rows) + "\n"
    )


ADAPT_RUN = """
import json, sys, time
from segcore.adapt import AdaptJob
from segcore.pipeline import SegmentOptions, SequenceJob
frames, out, corrected, model = sys.argv[1:5]
opts = SegmentOptions(model=model or None, formats=("mask", "rgba"), workers=2, plate="off")
t0 = time.perf_counter()
n = sum(r.status == "ok" for r in SequenceJob(frames, out, opts).run())
segment = time.perf_counter() - t0
t0 = time.perf_counter()
job = AdaptJob(frames, out, corrected, opts)
job.fit()
fit = time.perf_counter() - t0
n2 = sum(r.status == "ok" for r in job.run())
print(json.dumps({"frames": n, "adapted": n2, "segment": segment, "fit": fit,
                  "total": time.perf_counter() - t0}))
"""


def adapt_section(workdir: Path, model: str | None, frames: int = 36) -> str:
    """``segcore adapt`` on ``frames`` frames at 1280x960 with one corrected frame (the bundled
    ring's true mask, scaled up): the fit and the fit + re-segmentation (masks + RGBA), through
    ONNX Runtime and through OpenCV's DNN (what Blender runs), each in a fresh process."""
    from segcore.io import read_label, write_png

    src = workdir / f"adapt{frames}"
    make_frames(src, (1280, 960), frames)
    _trim(src, frames)
    corrected = workdir / f"adapt{frames}_corrected"
    corrected.mkdir(parents=True, exist_ok=True)
    truth = read_label(ROOT / "examples" / "garment_ring" / "masks" / "0000.png")
    big = cv2.resize(truth.astype(np.uint8) * 255, (1280, 960), interpolation=cv2.INTER_LINEAR)
    write_png(corrected / "frame_0000.png", np.where(big > 127, 255, 0).astype(np.uint8))
    rows = [
        "| inference | frames | `segment` s | load + fit s | load, fit and re-segment s |",
        "|---|---|---|---|---|",
    ]
    for label, backend in (("ONNX Runtime", None), ("OpenCV's DNN (Blender)", "opencv")):
        env = {**os.environ, **({"SEGCORE_BACKEND": backend} if backend else {})}
        m = _scratch_run(ADAPT_RUN, src, [str(corrected), model or ""], "adapt", env)
        rows.append(
            f"| {label} | {m['adapted']} | {m['segment']:.1f} | {m['fit']:.1f} | {m['total']:.1f} |"
        )
        print(rows[-1])
    return (
        f"## Correct one frame, adapt the sequence (`segcore adapt`, {frames} frames at "
        "1280x960, masks + RGBA, 2 workers)\n\n" + "\n".join(rows) + "\n"
    )


def compare_baselines(seg, post, paths: list[Path]) -> dict:
    """Seconds per frame of our pipeline, GrabCut (rect init) and the FCN-style baseline."""
    from dataclasses import replace

    from segcore.config import BASELINE
    from segcore.infer import Segmenter
    from segcore.io import read_image
    from segcore.pipeline import segment_frame

    imgs = [read_image(p) for p in paths]

    def timed(f):
        ts = []
        for im in imgs:
            t0 = time.perf_counter()
            f(im)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    ours = timed(lambda im: segment_frame(im, seg, post))

    def grabcut(im):
        h, w = im.shape[:2]
        k = min(1.0, 640 / max(h, w))
        small = cv2.resize(im, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        m = np.zeros(small.shape[:2], np.uint8)
        r = (
            small.shape[1] // 20,
            small.shape[0] // 20,
            small.shape[1] * 9 // 10,
            small.shape[0] * 9 // 10,
        )
        cv2.grabCut(small, m, r, np.zeros((1, 65)), np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_RECT)
        return cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)

    out = {"ours": ours, "grabcut": timed(grabcut)}
    try:
        import torch  # noqa: F401

        from segcore.export import export_onnx
        from segcore.model import GarmentNet

        d = Path(tempfile.mkdtemp(prefix="segcore-bench-fcn-"))
        export_onnx(GarmentNet(BASELINE).eval(), d / "fcn.onnx")
        extra = {k: v for k, v in seg.card.extra.items() if k not in ("classes", "edge_refiner")}
        card = replace(seg.card, arch=BASELINE, onnx_path=d / "fcn.onnx", name="fcn", extra=extra)
        fcn = Segmenter(card)
        out["fcn baseline"] = timed(lambda im: segment_frame(im, fcn, post))
    except ImportError:
        pass
    return out


def spline_check(src_hw=(256, 384), out_hw=(4000, 6000), repeat: int = 3) -> dict:
    """Our cubic B-spline upsampling of a 384-px map to 24 MP against scipy's order-3 zoom."""
    from scipy import ndimage

    from segcore.upsample import spline_upsample

    rng = np.random.default_rng(0)
    p = cv2.GaussianBlur(rng.random(src_hw).astype(np.float32), (0, 0), 3)
    times, reuse = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        ours = spline_upsample(p, out_hw)  # a fresh 96 MB output: page faults included
        times.append(time.perf_counter() - t)
    buf = np.empty(out_hw, np.float32)
    spline_upsample(p, out_hw, out=buf)
    for _ in range(repeat):
        t = time.perf_counter()
        spline_upsample(p, out_hw, out=buf)  # into a reused buffer: the arithmetic alone
        reuse.append(time.perf_counter() - t)
    t = time.perf_counter()
    zoom = (out_hw[0] / src_hw[0], out_hw[1] / src_hw[1])
    ref = ndimage.zoom(p, zoom, order=3, mode="reflect", grid_mode=True)
    t_scipy = time.perf_counter() - t
    t = time.perf_counter()
    cv2.resize(p, out_hw[::-1], interpolation=cv2.INTER_CUBIC)
    t_cv = time.perf_counter() - t
    return {
        "ours_s": statistics.median(times),
        "ours_reused_s": statistics.median(reuse),
        "scipy_s": t_scipy,
        "opencv_bicubic_s": t_cv,
        "max_abs_diff": float(np.abs(ours - ref).max()),
    }


def spline_check_isolated(repeat: int = 5) -> dict:
    """:func:`spline_check` in a fresh process. In this one, after GrabCut and segmentation,
    the 24 MP product runs slower (measured: 34 ms fresh, 60 ms after a GrabCut and three
    frames; the whole bench printed 119 ms in-process where a fresh process takes 20-35)."""
    code = (
        "import json\nfrom tools.bench import spline_check\n"
        f"print(json.dumps(spline_check(repeat={int(repeat)})))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def fmt_ms(s: float) -> str:
    return f"{1000 * s:.0f}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["recon"]:  # python build.py bench recon: SfM + visual hull benchmark
        from tools.bench_recon import main as bench_recon

        return bench_recon(argv[1:])
    if argv[:1] == ["adapt"]:  # python build.py bench adapt: the adapt section alone
        workdir = Path(tempfile.gettempdir()) / "segcore-bench"
        print(f"load average {os.getloadavg()[0]:.2f} (1 min)")
        print(adapt_section(workdir, argv[1] if len(argv) > 1 else None))
        return 0
    if argv[:1] == ["many"]:  # python build.py bench many: the segment-many section alone
        workdir = Path(tempfile.gettempdir()) / "segcore-bench"
        print(many_section(workdir, argv[1] if len(argv) > 1 else None))
        return 0
    p = argparse.ArgumentParser(
        prog="python build.py bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None)
    p.add_argument("--repeat", type=int, default=5, help="frames per size for the breakdown")
    p.add_argument("--quick", action="store_true", help="small runs only (smoke test)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "segcore-bench")
    args = p.parse_args(argv)

    from segcore.pipeline import SegmentOptions, load_segmenter

    seg, post = load_segmenter(SegmentOptions(model=args.model))
    lines = [
        f"# Benchmarks\n\nMachine: {os.cpu_count()} CPU cores, "
        f"{platform_line()}; model `{seg.card.name}` (input "
        f"{seg.card.preprocess.input_size} px), refinement "
        f"{'on' if post.refine else 'off'}, flip averaging {'on' if post.flip else 'off'}, "
        f"edges {'learned' if seg.edges is not None else 'guided'}, inference through "
        f"{backend_line(seg)}; load "
        f"average at the start {os.getloadavg()[0]:.2f} (1 min). Command: "
        "`python build.py bench`.\n"
    ]
    print(lines[0])
    sizes = SIZES[:1] if args.quick else SIZES
    # 1. per-stage breakdown
    table = [
        "| stage (ms, median) | " + " | ".join(f"{w}x{h}" for w, h in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    results = {}
    for w, h in sizes:
        paths = make_frames(args.workdir / f"{w}x{h}", (w, h), args.repeat)
        results[(w, h)] = stage_breakdown(seg, post, paths)
    for k in results[sizes[0]]:
        table.append(f"| {k} | " + " | ".join(fmt_ms(results[s][k]) for s in sizes) + " |")
    tot_mask = {
        s: sum(v for k, v in results[s].items() if k not in ("mask op", "encode rgba"))
        for s in sizes
    }
    tot_all = {s: sum(results[s].values()) for s in sizes}
    table.append(
        "| **total, masks only** | " + " | ".join(fmt_ms(tot_mask[s]) for s in sizes) + " |"
    )
    table.append(
        "| **total, masks + RGBA** | " + " | ".join(fmt_ms(tot_all[s]) for s in sizes) + " |"
    )
    section = "## Per-stage time, one frame, one worker\n\n" + "\n".join(table) + "\n"
    print(section)
    lines.append(section)
    # 2. end-to-end throughput
    n = 12 if args.quick else 60
    seq_rows = [
        "| sequence | outputs | frames | seconds | frames/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    # a portrait sequence too: the same pixels a frame, the network's input turned
    for w, h in sizes if args.quick else (*sizes, PORTRAIT):
        k = n if (w, h) in ((1280, 960), PORTRAIT) else max(6, n // 6)
        d = args.workdir / f"{w}x{h}"
        make_frames(d, (w, h), k)
        _trim(d, k)
        if (w, h) == PORTRAIT:
            runs = [("mask,rgba", False, None)]
        else:
            runs = [("mask", False, None), ("mask,rgba", False, None)]
        if (w, h) == (1280, 960):
            # the same run with the float graphs through OpenCV's DNN: what Blender runs
            runs += [("mask,rgba", True, None), ("mask,rgba", False, "opencv")]
        # every run three times (median seconds): one run moves by a tenth with what else
        # the machine does
        repeat = 1 if args.quick else 3
        for formats, temporal, backend in runs:
            tries = [run_job(d, formats, 2, args.model, temporal, backend) for _ in range(repeat)]
            r = sorted(tries, key=lambda x: x["seconds"])[len(tries) // 2]
            how = (", --temporal" if temporal else "") + (
                ", OpenCV's DNN (Blender)" if backend == "opencv" else ""
            )
            seq_rows.append(
                f"| {w}x{h} x{k} | {formats}{how} | "
                f"{r['frames']} | {r['seconds']:.1f} | {r['fps']:.2f} | {r['peak_mb']:.0f} |"
            )
            print(seq_rows[-1])
    section = (
        "## End to end (`SequenceJob`, 2 workers, decode to encode)\n\n"
        "Each row: the median of three runs.\n\n" + "\n".join(seq_rows) + "\n"
    )
    lines.append(section)
    # 3. memory does not grow with length
    mem_rows = ["| run | frames | peak RSS (MB) |", "|---|---|---|"]
    for k in (10, 40) if args.quick else (10, 300):
        d = args.workdir / f"len{k}"
        make_frames(d, (1280, 960), k)
        r = run_job(d, "mask,rgba", 2, args.model)
        mem_rows.append(f"| 1280x960, masks + RGBA | {k} | {r['peak_mb']:.0f} |")
        print(mem_rows[-1])
    lines.append("## Peak memory against sequence length\n\n" + "\n".join(mem_rows) + "\n")
    # 4. baselines
    paths = make_frames(args.workdir / "1280x960", (1280, 960), args.repeat)
    b = compare_baselines(seg, post, paths[: args.repeat])
    rows = ["| method | ms/frame (1280x960) | time vs ours |", "|---|---|---|"]
    for name, s in b.items():
        rows.append(f"| {name} | {fmt_ms(s)} | {s / b['ours']:.2f}x |")
    section = "## Side by side\n\n" + "\n".join(rows) + "\n"
    print(section)
    lines.append(section)
    # 5. many sequences: the local pool and Ray
    section = many_section(args.workdir, args.model, frames=6 if args.quick else 12)
    print(section)
    lines.append(section)
    # 6. correct one frame, adapt the sequence
    section = adapt_section(args.workdir, args.model, frames=12 if args.quick else 36)
    print(section)
    lines.append(section)
    # 7. the spline upsampling against scipy
    sp = spline_check_isolated(repeat=1 if args.quick else 5)
    section = (
        "## Cubic B-spline upsampling, 384x256 map to 6000x4000\n\n"
        "| implementation | ms | max abs difference to scipy |\n|---|---|---|\n"
        f"| segcore `spline_upsample` (separable, banded) | {fmt_ms(sp['ours_s'])} | "
        f"{sp['max_abs_diff']:.1e} |\n"
        f"| the same into a reused output buffer (`out=`) | {fmt_ms(sp['ours_reused_s'])} | "
        f"{sp['max_abs_diff']:.1e} |\n"
        f"| `scipy.ndimage.zoom(order=3, grid_mode=True)` | {fmt_ms(sp['scipy_s'])} | 0 |\n"
        f"| OpenCV `resize` bicubic (a different kernel) | {fmt_ms(sp['opencv_bicubic_s'])} "
        "| - |\n"
    )
    print(section)
    lines.append(section)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines))
        print(f"wrote {args.out}")
    print(
        json.dumps(
            {
                f"{w}x{h}": {k: round(v * 1000, 1) for k, v in results[(w, h)].items()}
                for w, h in sizes
            }
        )
    )
    return 0


def _trim(folder: Path, k: int) -> None:
    for p in sorted(folder.glob("frame_*.jpg"))[k:]:
        p.unlink()


def backend_line(seg) -> str:
    """Which backend runs the network (``SEGCORE_BACKEND``, :mod:`segcore.backend`)."""
    if seg.backend.name != "onnxruntime":
        return "OpenCV's DNN"
    import onnxruntime

    runtime = seg.card.runtime_onnx
    if runtime is None or not runtime.exists():
        return f"ONNX Runtime {onnxruntime.__version__} (OpenCV's DNN for other input sizes)"
    return f"ONNX Runtime {onnxruntime.__version__} (the model's runtime graph, {runtime.name})"


def platform_line() -> str:
    """The CPU (model and whether it has VNNI, which int8 inference needs to be fast and
    exact: ``docs/results.md``) and the OpenCV version."""
    import platform

    arch = platform.processor() or platform.machine()
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux
        pass
    cpu = f"{model} ({arch})" if model else arch
    if flags:
        cpu += ", VNNI" if flags & {"avx512_vnni", "avx_vnni"} else ", no VNNI"
    return f"{cpu}, OpenCV {cv2.__version__}"


if __name__ == "__main__":
    sys.exit(main())
