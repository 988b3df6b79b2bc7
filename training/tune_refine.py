"""Sweep the edge refinement's window radius and regularisation on labelled sequences.

The network runs once per frame; every (radius, eps) pair then re-runs only the
full-resolution post-processing, so a sweep over a few dozen frames takes minutes. Use
sequences the model never saw in training (and not the held-out split you report on)::

    python -m training.tune_refine --model garment --data data/synth \\
        --sequences seq_00063_turntable seq_00064_turntable --radius 2 4 8 16 --eps 1e-4 2e-3
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace


def sweep(model: str, samples, radii, epsilons) -> list[tuple[str, dict]]:
    """[(label, pooled scores)]: plain spline upsampling, then each (radius, eps) pair."""
    from segcore.card import PostprocessParams
    from segcore.infer import Segmenter
    from segcore.io import read_image, read_label
    from segcore.metrics import Scores
    from segcore.pipeline import segment_frame

    seg = Segmenter.load(model)
    frames = [(read_image(s.image), read_label(s.mask)) for s in samples]
    flip = seg.card.postprocess.flip
    cached = [seg.probability(bgr, flip=flip) for bgr, _ in frames]  # the network, once each
    base = replace(seg.card.postprocess, refine=False)

    def score(post: PostprocessParams) -> dict:
        scores = Scores()
        for (bgr, gt), prob in zip(frames, cached):
            seg.probability = lambda *_a, _p=prob, **_k: _p
            scores.add(segment_frame(bgr, seg, post).mask, gt)
        return scores.pooled()

    rows = [("spline upsampling only", score(base))]
    for r, eps in itertools.product(radii, epsilons):
        post = replace(base, refine=True, refine_radius=float(r), refine_eps=float(eps))
        rows.append((f"refined, radius {r:g} net px, eps {eps:g}", score(post)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.tune_refine",
        description="Sweep the guided-filter edge refinement's radius and eps on labelled data.",
    )
    ap.add_argument("--model", default="garment", help="model name or card (default garment)")
    ap.add_argument("--data", required=True, help="data set root (docs/design.md layout)")
    ap.add_argument("--sequences", nargs="+", required=True, help="sequences to score on")
    ap.add_argument("--radius", nargs="+", type=float, default=[2, 4, 8, 16])
    ap.add_argument("--eps", nargs="+", type=float, default=[1e-4, 2e-3])
    args = ap.parse_args(argv)

    from .data import find_sequences

    seqs = find_sequences(args.data)
    missing = [n for n in args.sequences if n not in seqs]
    if missing:
        print(f"error: {args.data}: no sequences named {', '.join(missing)}", file=sys.stderr)
        return 2
    samples = [s for n in args.sequences for s in seqs[n]]
    print(f"{len(samples)} frames of {len(args.sequences)} sequences\n")
    print("| variant | F1 | IoU | BF@1px | BF@2px | BF@4px |\n|---|---|---|---|---|---|")
    for label, s in sweep(args.model, samples, args.radius, args.eps):
        print(
            f"| {label} | {s['f1']:.4f} | {s['iou']:.4f} | {s['bf1']:.4f} | {s['bf2']:.4f} "
            f"| {s['bf4']:.4f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
