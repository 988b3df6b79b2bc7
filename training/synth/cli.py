"""``python -m training synth`` / ``python -m training.synth.cli``: render synthetic captures.

Example::

    python -m training.synth.cli --out data/synth --sequences 400 --frames 6 \\
        --size 512x384 --seed 1 --threads 1 --preview
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time

from .families import BY_NAME as FAMILIES
from .spec import FOCUS


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size expects WxH like 512x384, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"--size {text!r} is too small (minimum 16x16)")
    return w, h


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects i/n like 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (one subfolder per sequence)")
    parser.add_argument("--sequences", type=int, default=10, help="number of sequences")
    parser.add_argument("--frames", type=int, default=8, help="frames per sequence")
    parser.add_argument("--size", type=_size, default=(512, 384), help="WxH (default 512x384)")
    parser.add_argument("--seed", type=int, default=0, help="sequence k is seeded by (seed, k)")
    parser.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        help="i/n: render the sequences whose index k has k %% n == i",
    )
    parser.add_argument("--kinds", default="ring,turntable", help="capture kinds to draw from")
    parser.add_argument(
        "--focus",
        choices=FOCUS,
        default=None,
        help="targeted data: 'stand' = every form on a chrome disc base over a dark floor, "
        "seen from above; 'behind' = turntables in a room, a chrome disc base, props on the "
        "line behind the stand; 'feet' = a mannequin's feet on its disc base",
    )
    parser.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        default=None,
        help="draw every sequence inside this held-out family (test or validation data; "
        "training/synth/families.py)",
    )
    parser.add_argument(
        "--trainable",
        action="store_true",
        help="training data: skip every spec that falls in a held-out family; --sequences "
        "counts the sequences kept",
    )
    parser.add_argument("--samples", type=int, default=5, help="Cycles samples (denoised)")
    parser.add_argument("--threads", type=int, default=None, help="render threads (default: all)")
    parser.add_argument("--start", type=int, default=0, help="first sequence index")
    parser.add_argument(
        "--preview", action="store_true", help="write <out>/preview.png contact sheet"
    )
    parser.add_argument("--preview-count", type=int, default=24, help="frames on the contact sheet")
    parser.add_argument("--verbose", action="store_true", help="show Blender's own output")


def write_preview(out: str, count: int = 24, path: str | None = None, thumb: int = 200) -> str:
    """Contact sheet of frame 0 of up to ``count`` sequences, mask edges in green."""
    import cv2

    from .postfx import contact_sheet

    images, masks, labels = [], [], []
    for seq in sorted(glob.glob(os.path.join(out, "seq_*")))[:count]:
        ims = sorted(glob.glob(os.path.join(seq, "images", "*.jpg")))
        if not ims:
            continue
        pick = ims[len(ims) // 2]
        m = os.path.join(seq, "masks", os.path.basename(pick)[:-4] + ".png")
        if not os.path.exists(m):
            continue
        images.append(cv2.imread(pick))
        masks.append(cv2.imread(m, cv2.IMREAD_GRAYSCALE))
        labels.append(os.path.basename(seq)[4:9])
    sheet = contact_sheet(images, masks, cols=6, thumb_width=thumb, labels=labels)
    path = path or os.path.join(out, "preview.png")
    from .postfx import write_image

    write_image(path, sheet)
    return path


def _specs(args, kinds):
    """The specs to render, in order: ``--sequences`` of them from index ``--start`` on."""
    from .families import families_of, family_spec, names, trainable

    test, validation = set(names("test")), set(names("validation"))
    from .spec import focus_spec, sample_spec

    k, kept = args.start, 0
    while kept < args.sequences:
        spec = sample_spec(args.seed, k, kinds)
        k += 1
        if args.focus:
            spec = focus_spec(spec, args.focus)
        if args.family:
            spec = family_spec(spec, args.family)
            if args.family in validation and set(families_of(spec)) & test:
                continue  # validation data never falls inside a test family
        elif args.trainable and not trainable(spec):
            continue
        kept += 1
        yield spec


def run(args) -> int:
    from tqdm import tqdm

    from .render import render_sequence

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = [k for k in kinds if k not in ("ring", "turntable")]
    if bad or not kinds:
        print(f"--kinds: unknown {bad}; use ring and/or turntable", file=sys.stderr)
        return 2
    if args.frames < 1 or args.sequences < 0:
        print("--frames must be >= 1 and --sequences >= 0", file=sys.stderr)
        return 2
    if args.family and (args.trainable or args.focus):
        print("--family cannot be combined with --trainable or --focus", file=sys.stderr)
        return 2
    w, h = args.size
    i, n = args.shard
    specs = list(_specs(args, kinds))
    todo = [spec for spec in specs if spec["index"] % n == i]
    os.makedirs(args.out, exist_ok=True)
    bar = tqdm(total=len(todo) * args.frames, unit="frame", dynamic_ncols=True, file=sys.stderr)
    frame_times: list[float] = []
    failures = 0
    t0 = time.time()
    for spec in todo:
        bar.set_description(f"{spec['name']} {spec['garment']}/{spec['form']['kind']}")

        def on_frame(kind, idx, secs):
            if kind == "colour":
                frame_times.append(secs)
                bar.set_postfix(
                    frame_s=f"{secs:.1f}", mean_s=f"{sum(frame_times) / len(frame_times):.1f}"
                )

        try:
            stats = render_sequence(
                spec,
                args.out,
                w,
                h,
                args.frames,
                samples=args.samples,
                threads=args.threads,
                silent=not args.verbose,
                on_frame=on_frame,
            )
        except Exception as e:  # a bad sequence is reported, never fatal to the others
            failures += 1
            tqdm.write(f"{spec['name']}: FAILED {type(e).__name__}: {e}", file=sys.stderr)
            bar.update(args.frames)
            continue
        bar.update(args.frames)
        if not stats.get("skipped"):
            per = stats["total_s"] / args.frames
            tqdm.write(
                f"{spec['name']}: {spec['garment']} on {spec['form']['kind']}, "
                f"{spec['background']['kind']}, {args.frames} frames in {stats['total_s']:.1f}s "
                f"({per:.2f}s/frame incl. mask; "
                f"colour {sum(stats['colour_s']) / args.frames:.2f}s)",
                file=sys.stderr,
            )
    bar.close()
    elapsed = time.time() - t0
    print(
        f"done: {len(todo) - failures} sequences ok, {failures} failed, {elapsed:.0f}s",
        file=sys.stderr,
    )
    if args.preview:
        print(f"preview: {write_preview(args.out, args.preview_count)}", file=sys.stderr)
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.synth.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
