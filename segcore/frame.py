"""One frame, start to end: the network's probability, the mask decided at network scale,
and the boundary band decided at full resolution (cubic spline, colour guided filter or the
learned edge refiner), with the cut-out's defringed rim colours. :func:`segment_frame` is
what every front end runs on each frame (through :class:`segcore.pipeline.SequenceJob`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .card import PostprocessParams
from .confidence import frame_signals
from .edges import active_cells, coarse_logit
from .errors import InputError
from .infer import Segmenter
from .labels import label_map
from .mask import clean_edges, cutout, decide, smooth_outline
from .preprocess import fit_size
from .refine import GuidedCoefficients, band_window, refine_params
from .upsample import SplineField


@dataclass
class FrameMasks:
    """The result of :func:`segment_frame` for one frame."""

    mask: np.ndarray  # uint8 (H, W), 255 = subject: the binary mask for photogrammetry
    alpha: np.ndarray  # uint8 (H, W): the same, with soft values along the boundary
    small: np.ndarray  # float32 (h, w): subject probability at network scale
    timings: dict[str, float]
    # defringed subject colours on the soft rim: (y0, x0, selection, BGR uint8 (n, 3)) tiles
    rim: list = field(default_factory=list)
    # a multi-class model's class probabilities at network scale (C, h, w), and the indices
    # of the kept classes; None for a binary model
    classes: np.ndarray | None = None
    keep: tuple[int, ...] | None = None
    # what the network's output says of its own reliability (segcore.confidence.frame_signals)
    signals: dict = field(default_factory=dict)

    def labels(self) -> np.ndarray:
        """uint8 (H, W) class indices agreeing with :attr:`mask` (segcore.labels.label_map)."""
        if self.classes is None or self.keep is None:
            raise InputError("a label map needs a multi-class model (a card with classes)")
        return label_map(self.classes, self.keep, self.mask)

    def rgba(self, bgr: np.ndarray) -> np.ndarray:
        """The mask operation: the frame with soft alpha, rim colours defringed."""
        out = cutout(bgr, self.alpha)
        for y0, x0, sel, colours in self.rim:
            h, w = sel.shape
            # only where the alpha is still soft: the speck clean-up (step 4) may have made
            # a rim pixel wholly subject or background since its colour was taken
            a = self.alpha[y0 : y0 + h, x0 : x0 + w]
            soft = sel & (a > 0) & (a < 255)
            out[y0 : y0 + h, x0 : x0 + w, :3][soft] = colours[soft[sel]]
        return out


TILE = 16  # boundary tiles, at most this many network pixels a side
TILE_PX = 64  # and about this many frame pixels a side

# Frames far larger than the learned refiner's training frames are refined in two stages
# (in the spirit of CascadePSP): the whole frame is first segmented reduced to
# CASCADE_SIZE pixels on its long side, where one network pixel spans as many frame pixels
# as the refiner learned; then the refiner redraws, at full resolution, the pixels within
# CASCADE_BAND of that outline, from the reduced result upsampled as its prior.
CASCADE_SIZE = 1280  # long side of the first stage
CASCADE_FROM = 2.0  # two stages when the frame's long side exceeds this many CASCADE_SIZE
CASCADE_BAND = 2  # full-resolution pixels either side of the first stage's outline


def segment_frame(
    bgr: np.ndarray,
    segmenter: Segmenter,
    post: PostprocessParams,
    rim_colours: bool = True,
    smooth: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> FrameMasks:
    """Full-resolution BGR frame -> binary mask and soft alpha at full resolution.

    1. the network's probability at network scale; threshold and clean-up there (area limits
       are shares of the frame, so they mean the same at any scale);
    2. the mask is decided away from the boundary by that coarse mask;
    3. in a band of two network pixels around the boundary, tile by tile, the cubic B-spline
       upsampled probability (optionally refined by a colour guided filter on the photo)
       decides each full-resolution pixel;
    4. with the learned edge refiner in one stage, the outline drawn again from the alpha
       blurred by the card's ``outline_sigma`` frame pixels
       (:func:`segcore.mask.smooth_outline`); then specks
       and enclosed holes the edges left that are smaller than the card's
       ``edge_speck_share`` of the frame go (the alpha follows the mask there).

    ``rim_colours=False`` skips the defringed rim colours, which only the RGBA output uses.
    ``smooth(frame_small, probability)``, if given, replaces the network's probability before
    step 1 (temporal consistency: :class:`segcore.temporal.SequenceSmoother`).
    """
    fm = _segment(bgr, segmenter, post, rim_colours, smooth)
    # the learned refiner's outline only: the guided filter's is smooth already (blurred
    # again it lost 0.004 BF@2px on the validation families), the spline's is the spline's
    learned = post.refine and getattr(segmenter, "edges", None) is not None
    # nor on a frame refined in two stages (at 4000x3000 it lowered BF@2px 0.836 -> 0.801)
    sigma = post.outline_sigma if learned and not _in_two_stages(bgr) else 0.0
    if post.edge_speck_share <= 0 and sigma <= 0:
        return fm
    t0 = time.perf_counter()
    mask, alpha = fm.mask.copy(), fm.alpha.copy()
    smooth_outline(mask, alpha, sigma, post.threshold)
    if post.edge_speck_share > 0:
        clean_edges(mask, alpha, post.edge_speck_share)
    t = dict(fm.timings)
    t["refine"] = t.get("refine", 0.0) + time.perf_counter() - t0
    return replace(fm, mask=mask, alpha=alpha, timings=t)


def _segment(bgr, segmenter, post, rim_colours, smooth) -> FrameMasks:
    """:func:`segment_frame`'s steps 1 to 3."""
    t = {}
    t0 = time.perf_counter()
    H, W = bgr.shape[:2]
    edges = getattr(segmenter, "edges", None)
    if post.refine and edges is not None and _in_two_stages(bgr):
        return _two_stages(bgr, segmenter, post, rim_colours, smooth)
    source, radius = guide_source(bgr, segmenter.card.preprocess.input_size, post)
    t["preprocess"] = time.perf_counter() - t0
    passes: list = []  # the flip pair, for the confidence signals (a plain Segmenter's)
    more = {"passes": passes} if isinstance(segmenter, Segmenter) else {}
    small, classes, geo = segmenter.predict(bgr, source=source, flip=post.flip, **more)
    kept = {
        "classes": classes,
        "keep": segmenter.keep,
        "signals": frame_signals(small, passes, post.threshold),
    }
    t1 = time.perf_counter()
    t["inference"] = t1 - t0 - t["preprocess"]
    if smooth is not None:
        small = smooth(source, small)
        t1, t["temporal"] = time.perf_counter(), time.perf_counter() - t1
    thr = post.threshold
    coarse, p, band = decide(small, thr, *post.cleaning)
    h, w = small.shape
    rows = np.minimum(((np.arange(H) + 0.5) * (h / H)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * (w / W)).astype(np.int64), w - 1)
    mask = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_NEAREST)
    alpha = mask.copy()
    spline = SplineField(p, (H, W))
    t1b = time.perf_counter()
    t["mask"] = t1b - t1
    guided = None
    if post.refine and band.any() and (edges is None or edges.spec.guide == "guided"):
        guided = guided_field((H, W), source, p, band, radius, post.refine_eps)
    if post.refine and edges is not None:
        rim = [] if rim_colours and guided is not None else None
        _learned_edges(
            bgr,
            edges,
            edge_prior(bgr, spline, guided),
            band,
            rows,
            cols,
            thr,
            mask,
            alpha,
            rim=rim,
            guided=guided,
        )
        t["upsample"], t["refine"] = 0.0, time.perf_counter() - t1b
        return FrameMasks(mask, alpha, small, t, rim or [], **kept)
    t_up, t_ref = 0.0, (time.perf_counter() - t1b) if guided is not None else 0.0
    rim: list = []
    # tiles of about TILE_PX frame pixels a side: big enough that per-tile overhead stays
    # small, small enough that few pixels outside the band are evaluated at any scale
    tile = max(2, min(TILE, round(TILE_PX / max(H / h, W / w))))
    nty, ntx = -(-h // tile), -(-w // tile)
    padded = np.zeros((nty * tile, ntx * tile), bool)
    padded[:h, :w] = band
    ty, tx = np.nonzero(padded.reshape(nty, tile, ntx, tile).any(axis=(1, 3)))
    # tile bounds in frame pixels: the frame rows whose nearest network row is in the tile
    ybounds = np.searchsorted(rows, np.arange(0, h + tile, tile))
    xbounds = np.searchsorted(cols, np.arange(0, w + tile, tile))
    u8_255, u8_0 = np.uint8(255), np.uint8(0)
    for i, j in zip(ty, tx):
        y0, y1 = int(ybounds[i]), int(ybounds[min(i + 1, len(ybounds) - 1)])
        x0, x1 = int(xbounds[j]), int(xbounds[min(j + 1, len(xbounds) - 1)])
        if y1 <= y0 or x1 <= x0:
            continue
        ta = time.perf_counter()
        sel = band[rows[y0:y1, None], cols[None, x0:x1]]
        if guided is not None:
            region = bgr[y0:y1, x0:x1]
            q, back = guided.apply(region, y0, x0, background=rim_colours)
            if rim_colours:
                _rim_tile(rim, y0, x0, region, sel, q, back)
            t_ref += time.perf_counter() - ta
        else:
            q = spline.region(y0, y1, x0, x1)
            t_up += time.perf_counter() - ta
        np.copyto(mask[y0:y1, x0:x1], np.where(q > thr, u8_255, u8_0), where=sel)
        a8 = np.clip(q * 255 + 0.5, 0, 255).astype(np.uint8)
        np.copyto(alpha[y0:y1, x0:x1], a8, where=sel)
    t["upsample"] = t_up
    t["refine"] = t_ref
    return FrameMasks(mask, alpha, small, t, rim, **kept)


def _in_two_stages(bgr: np.ndarray) -> bool:
    """Whether the learned refiner refines this frame in two stages (:func:`_two_stages`)."""
    return max(bgr.shape[:2]) > CASCADE_FROM * CASCADE_SIZE


def _two_stages(bgr, segmenter, post, rim_colours, smooth) -> FrameMasks:
    """:func:`segment_frame` for a frame far larger than the refiner's training frames: the
    frame reduced to :data:`CASCADE_SIZE`, then its outline redrawn at full resolution."""
    H, W = bgr.shape[:2]
    t0 = time.perf_counter()
    k = CASCADE_SIZE / max(H, W)
    reduced = cv2.resize(bgr, (round(W * k), round(H * k)), interpolation=cv2.INTER_AREA)
    # the first stage's outline as the refiner learned its priors: not smoothed
    first_post = replace(post, outline_sigma=0.0)
    first = segment_frame(reduced, segmenter, first_post, rim_colours=False, smooth=smooth)
    t1 = time.perf_counter()
    prior = cv2.resize(first.alpha, (W, H), interpolation=cv2.INTER_LINEAR)
    mask = np.where(prior > 127, np.uint8(255), np.uint8(0))
    alpha = mask.copy()
    outline = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * CASCADE_BAND + 1,) * 2)
    band = cv2.dilate(outline, ring) > 0
    guided, rim = None, None
    if rim_colours and band.any():  # the rim's colours: the guided filter's background
        source, radius = guide_source(bgr, segmenter.card.preprocess.input_size, post)
        _, p, net_band = decide(first.small, post.threshold, *post.cleaning)
        if net_band.any():
            guided = guided_field((H, W), source, p, net_band, radius, post.refine_eps)
            rim = []
    to_unit = np.float32(1 / 255)
    _learned_edges(
        bgr,
        segmenter.edges,
        lambda y0, y1, x0, x1: coarse_logit(prior[y0:y1, x0:x1] * to_unit),
        band,
        np.arange(H),
        np.arange(W),
        post.threshold,
        mask,
        alpha,
        rim=rim,
        guided=guided,
    )
    t = dict(first.timings)
    t["preprocess"] = t.get("preprocess", 0.0) + (t1 - t0) - sum(first.timings.values())
    t["refine"] = t.get("refine", 0.0) + time.perf_counter() - t1
    return replace(first, mask=mask, alpha=alpha, timings=t, rim=rim or [])


def guide_source(bgr: np.ndarray, input_size: int, post: PostprocessParams):
    """(the frame reduced for the guided filter and the network, the filter's radius in
    frame pixels): one area-resize pass feeds both."""
    H, W = bgr.shape[:2]
    geo = fit_size((H, W), input_size)
    scale = max(H / geo.scaled_hw[0], W / geo.scaled_hw[1])
    radius, sub = refine_params(scale, post.refine_radius)
    if post.refine and sub > 1:
        bgr = cv2.resize(
            bgr, (max(1, round(W / sub)), max(1, round(H / sub))), interpolation=cv2.INTER_AREA
        )
    return bgr, radius


def guided_field(frame_hw, source, p, band, radius, eps) -> GuidedCoefficients:
    """The colour guided filter of the upsampled probability ``p`` on the frame (``source``:
    the frame as :func:`guide_source` reduced it), over the band's window."""
    hs, ws = source.shape[:2]
    rs = round(radius * hs / frame_hw[0])
    y0, y1, x0, x1 = band_window(band, (hs, ws), rs)
    return GuidedCoefficients(
        source[y0:y1, x0:x1],
        SplineField(p, (hs, ws)).region(y0, y1, x0, x1),  # only the band's window
        frame_hw,
        rs,
        eps,
        origin=(y0, x0),
        grid_hw=(hs, ws),
    )


def edge_prior(bgr, spline: SplineField, guided: GuidedCoefficients | None):
    """The learned refiner's prior channel for a region: the guided filter's probability
    when there is one, else the spline-upsampled one (as a coarse logit)."""
    if guided is None:
        return lambda y0, y1, x0, x1: coarse_logit(spline.region(y0, y1, x0, x1))
    return lambda y0, y1, x0, x1: coarse_logit(
        guided.apply(bgr[y0:y1, x0:x1], y0, x0, background=False)[0]
    )


def _rim_tile(rim: list, y0: int, x0: int, region, sel, q, back) -> None:
    """Defringed subject colours of a tile's soft rim: F from I = a F + (1 - a) B, with the
    alpha ``q`` and ``back`` the guided filter's local background."""
    soft = sel & (q > 0.02) & (q < 0.98)
    if soft.any():
        a = q[soft][:, None]
        fg = (region[soft].astype(np.float32) - (1 - a) * back[soft]) / np.maximum(a, 0.2)
        rim.append((y0, x0, soft, np.clip(fg + 0.5, 0, 255).astype(np.uint8)))


def _learned_edges(
    bgr, edges, logit_at, band, rows, cols, thr, mask, alpha, rim=None, guided=None
) -> None:
    """Decide the band's full-resolution pixels with the learned refiner (segcore.edges);
    with ``rim`` (a list) and the guided filter, also the rim's defringed colours."""
    cell = edges.spec.cell
    corners = active_cells(band, rows, cols, cell)
    q = edges.refine(bgr, logit_at, corners)
    H, W = mask.shape
    u8_255, u8_0 = np.uint8(255), np.uint8(0)
    for (y0, x0), qc in zip(corners, q):
        y1, x1 = min(int(y0) + cell, H), min(int(x0) + cell, W)
        qc = qc[: y1 - y0, : x1 - x0]
        sel = band[rows[y0:y1, None], cols[None, x0:x1]]
        np.copyto(mask[y0:y1, x0:x1], np.where(qc > thr, u8_255, u8_0), where=sel)
        a8 = np.clip(qc * 255 + 0.5, 0, 255).astype(np.uint8)
        np.copyto(alpha[y0:y1, x0:x1], a8, where=sel)
        if rim is not None:
            region = bgr[y0:y1, x0:x1]
            back = guided.background(y1 - y0, x1 - x0, int(y0), int(x0))
            _rim_tile(rim, int(y0), int(x0), region, sel, qc, back)
