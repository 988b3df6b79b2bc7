"""Where boundary F is lost: the true and predicted outlines compared pixel by pixel.

    python -m tools.outline_misses data/fam_val data/fam_val3 [--model garment] [--tol 2]

Segments every frame of ROOT/.../<sequence>/images with ``segcore segment``'s defaults and
prints, pooled over the frames: the share of the true outline with no predicted outline
within ``--tol`` pixels, split by whether it lies within the edge refinement's reach of the
network's own outline (two network pixels) or beyond it (the network itself is wrong there);
the share of the predicted outline with no true outline within ``--tol``, and how much of
that lies inside and outside the true subject; and BF at ``--tol`` with the mask one pixel
thinner and thicker (a biased edge scores better one way). Use validation families.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from segcore import SegmentOptions, load_segmenter, read_image, segment_frame
from segcore.io import discover_frames, read_label
from segcore.metrics import boundary, boundary_counts, boundary_f, distance_to

KERNEL = np.ones((3, 3), np.uint8)


def frames(roots: list[str]):
    """(image path, mask path) for every frame of ROOT/**/images with masks beside."""
    for root in roots:
        for images in sorted(Path(root).rglob("images")):
            for p in discover_frames(images):
                mask = images.parent / "masks" / f"{p.stem}.png"
                if mask.exists():
                    yield p, mask


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.outline_misses",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("roots", nargs="+", help="data sets (docs/design.md layout)")
    ap.add_argument("--model", default=None, help="model card or name (default: garment)")
    ap.add_argument("--tol", type=int, default=2, help="tolerance, pixels (2)")
    args = ap.parse_args(argv)
    seg, post = load_segmenter(SegmentOptions(model=args.model))
    c = dict.fromkeys(("true", "missed", "within", "pred", "far", "far_in", "far_inside"), 0)
    bf = {"thinner": [], "as is": [], "thicker": []}
    n = 0
    for image, mask in frames(args.roots):
        bgr = read_image(image)
        gt = read_label(mask)
        fm = segment_frame(bgr, seg, post)
        pred = fm.mask > 0
        H, W = gt.shape
        net = cv2.resize(fm.small, (W, H), interpolation=cv2.INTER_LINEAR) > post.threshold
        reach = 2 * max(H, W) / max(fm.small.shape)  # two network pixels, in frame pixels
        tb, pb = boundary(gt), boundary(pred)
        d_pred, d_true, d_net = distance_to(pb), distance_to(tb), distance_to(boundary(net))
        missed, far = tb & (d_pred > args.tol), pb & (d_true > args.tol)
        c["true"] += tb.sum()
        c["missed"] += missed.sum()
        c["within"] += (missed & (d_net <= reach)).sum()
        c["pred"] += pb.sum()
        c["far"] += far.sum()
        c["far_in"] += (far & (d_net <= reach)).sum()
        c["far_inside"] += (far & gt).sum()
        m = fm.mask
        for name, x in (
            ("thinner", cv2.erode(m, KERNEL)),
            ("as is", m),
            ("thicker", cv2.dilate(m, KERNEL)),
        ):
            bf[name].append(boundary_f(boundary_counts(x > 0, gt, (args.tol,))[args.tol]))
        n += 1
    if not n:
        print("error: no frame with a mask under the roots given")
        return 2
    t, p = max(c["true"], 1), max(c["pred"], 1)
    print(f"{n} frames; tolerance {args.tol} px")
    print(
        f"true outline without a predicted one near: {c['missed'] / t:.1%} "
        f"(within the refinement's reach {c['within'] / t:.1%}, "
        f"beyond it {(c['missed'] - c['within']) / t:.1%})"
    )
    print(
        f"predicted outline without a true one near: {c['far'] / p:.1%} "
        f"(within the refinement's reach {c['far_in'] / p:.1%}; inside the true subject "
        f"{c['far_inside'] / p:.1%}, outside {(c['far'] - c['far_inside']) / p:.1%})"
    )
    print(
        f"BF@{args.tol}px, mean over frames: "
        + ", ".join(f"{k} {np.mean(v):.4f}" for k, v in bf.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
