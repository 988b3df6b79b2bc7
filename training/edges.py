"""Train the learned edge refiner (``segcore.edges``) on full-resolution frames.

    python -m training edges --data TRAIN_ROOT [...] --val VAL_ROOT --model garment \\
        --out runs/edges --steps 3000

1. Every frame of the data sets goes through the coarse network once (``--model``, its card's
   flip averaging and clean-up); the network-scale probability is cached beside the run.
2. Training windows are cut where inference cuts them: cells of ``cell`` pixels on the
   coarse mask's band, plus cells on the true boundary (which the coarse mask may miss), each
   with ``margin`` pixels of context; then rescaled (``--scale``: one window seen at other
   frame sizes), seen through another camera (``augment.camera``: colour temperature,
   exposure, blur, sensor noise at several levels, JPEG, ...) and the coarse logit
   jittered (shifts, softer or harder edges), so the refiner learns edges, not one
   camera's noise.
3. The loss is binary cross-entropy on the cell, weighted up near the true boundary; the
   checkpoint with the lowest loss on the validation windows (``--val``, fixed, no jitter)
   is kept; ``export`` writes the ONNX that the model card names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segcore.edges import active_cells, build_inputs, window
from segcore.io import read_image, read_label
from segcore.mask import decide
from segcore.upsample import SplineField

from .augment import camera, colour_jitter
from .data import find_sequences

log = logging.getLogger(__name__)


@dataclass
class EdgeConfig:
    data: list[str]
    val: list[str]
    out: str
    model: str | None = None  # the coarse network whose edges are refined
    cell: int = 32
    margin: int = 8
    width: int = 12
    fuse: int = 8
    levels: int = 1  # 2: a quarter-resolution trunk too (wider context; pair with margin 16)
    guide: str = "spline"  # the prior channel: the spline's probability or the guided filter's
    steps: int = 3000
    batch: int = 48
    lr: float = 2e-3
    scale: tuple[float, float] = (0.5, 2.0)
    boundary_weight: float = 4.0
    val_windows: int = 768
    eval_every: int = 250
    keep_every: int = 1000  # OUT/steps/step_N.pt, the candidates `edges --choose` scores
    seed: int = 0
    threads: int = 2
    history: list = field(default_factory=list)


def _net(width: int, fuse: int = 8, levels: int = 1):
    import torch
    from torch import nn

    class EdgeNet(nn.Module):
        """Full resolution in, a correction to the coarse logit out.

        A full-resolution stem, a half-resolution trunk with dilations (context of about 40
        frame pixels), with ``levels=2`` a quarter-resolution trunk added to it (context of
        about 100 frame pixels, for windows with a wider margin), bilinear back up, fused with
        the stem; the output is the coarse logit (input channel 3, rescaled) plus the learned
        correction."""

        def __init__(self, w: int, f: int, levels: int):
            super().__init__()
            act = nn.ReLU(inplace=True)
            self.stem = nn.Sequential(nn.Conv2d(4, w, 3, padding=1), act)

            def level(dilations):  # half the resolution, then dilated convolutions
                layers = [nn.Conv2d(w, w, 3, stride=2, padding=1), act]
                for d in dilations:
                    layers += [nn.Conv2d(w, w, 3, padding=d, dilation=d), act]
                return nn.Sequential(*layers)

            self.down = level((2, 4))
            if levels >= 2:  # absent at one level: older checkpoints load as they were
                self.deep = level((2, 4, 8))
            self.levels = levels
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.fuse = nn.Sequential(
                nn.Conv2d(2 * w, f, 3, padding=1), act, nn.Conv2d(f, 1, 3, padding=1)
            )
            nn.init.zeros_(self.fuse[-1].weight)
            nn.init.zeros_(self.fuse[-1].bias)

        def forward(self, x):
            from segcore.edges import LOGIT_SCALE

            s = self.stem(x)
            d = self.down(s)
            if self.levels >= 2:
                d = d + self.up(self.deep(d))
            return x[:, 3:4] * LOGIT_SCALE + self.fuse(torch.cat([s, self.up(d)], 1))

    return EdgeNet(width, fuse, levels)


# ---------------------------------------------------------------- data


@dataclass
class Frame:
    bgr: np.ndarray
    gt: np.ndarray  # uint8 0/255
    prior: object  # (y0, y1, x0, x1) -> the prior channel there (segcore.frame.edge_prior)
    cells: np.ndarray  # (n, 2) band cells of the coarse mask
    edge_pts: np.ndarray  # (m, 2) points (y, x) on the true boundary


def model_fingerprint(model: str | None) -> str:
    """A digest of what the coarse prior depends on: the model's card and the networks it
    names (the reference graph and ONNX Runtime's). A model exported again under the same
    name (a new ``garment``) gets a new fingerprint, so its frames are run again."""
    from segcore.card import load_card, resolve_model_path

    card = load_card(model)
    h = hashlib.sha1(resolve_model_path(model).read_bytes())
    for path in (card.onnx_path, card.runtime_onnx):
        if path is not None and Path(path).exists():
            h.update(Path(path).read_bytes())
    return h.hexdigest()


def cache_key(sample, model: str | None) -> str:
    """The cache file's name for one frame: its sequence and stem to read, and a digest of
    the frame's resolved path and the model (``model``: :func:`model_fingerprint`'s), so
    that frames of different data sets (which share sequence names: every ``synth`` run
    starts at ``seq_00000``) never share a prior, nor two versions of one model."""
    digest = hashlib.sha1(f"{Path(sample.image).resolve()}\0{model}".encode()).hexdigest()
    return f"{sample.sequence}__{Path(sample.image).stem}__{digest[:12]}.npy"


def coarse_cache(samples, model: str | None, cache: Path) -> list[np.ndarray]:
    """The coarse network's cleaned probability at network scale for each sample, cached."""
    from segcore.pipeline import SegmentOptions, load_segmenter

    seg = post = None
    out = []
    fingerprint = model_fingerprint(model)
    for s in samples:
        key = cache / cache_key(s, fingerprint)
        if key.exists():
            out.append(np.load(key))
            continue
        if seg is None:
            seg, post = load_segmenter(SegmentOptions(model=model, edges="guided"))
        small, _ = seg.probability(read_image(s.image), flip=post.flip)
        _, p, _ = decide(small, post.threshold, *post.cleaning)
        key.parent.mkdir(parents=True, exist_ok=True)
        np.save(key, p.astype(np.float32))
        out.append(p.astype(np.float32))
    return out


def load_frames(roots: list[str], model, cache: Path, cell: int, guide: str = "spline"):
    from .evaluate import family_roots

    roots = [f for r in roots for f in family_roots(r).values()]  # ROOT/<family>/ too
    samples = [s for r in roots for seq in find_sequences(r).values() for s in seq]
    probs = coarse_cache(samples, model, cache)
    from segcore.card import load_card
    from segcore.frame import edge_prior, guide_source, guided_field

    card = load_card(model)
    post, threshold = card.postprocess, card.postprocess.threshold
    frames = []
    for s, p in zip(samples, probs):
        bgr = read_image(s.image)
        gt = read_label(s.mask).astype(np.uint8) * 255
        H, W = gt.shape
        h, w = p.shape
        rows = np.minimum(((np.arange(H) + 0.5) * (h / H)).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(W) + 0.5) * (w / W)).astype(np.int64), w - 1)
        _, _, band = decide(p, threshold, 0.0, 0.0)  # p is already the decided probability
        k3 = np.ones((3, 3), np.uint8)
        edge = cv2.morphologyEx(gt, cv2.MORPH_GRADIENT, k3) > 0
        guided = None
        if guide == "guided" and band.any():
            source, radius = guide_source(bgr, card.preprocess.input_size, post)
            guided = guided_field((H, W), source, p, band, radius, post.refine_eps)
        frames.append(
            Frame(
                bgr,
                gt,
                edge_prior(bgr, SplineField(p, (H, W)), guided),
                active_cells(band, rows, cols, cell),
                np.argwhere(edge),
            )
        )
    return frames


def _jitter_logit(lg: np.ndarray, rng) -> np.ndarray:
    """The coarse logit of a better or worse coarse network: shifted, softer or harder."""
    if rng.uniform() < 0.6:
        dy, dx = rng.normal(0, 1.5, 2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        lg = cv2.warpAffine(lg, m, lg.shape[::-1], borderMode=cv2.BORDER_REFLECT_101)
    if rng.uniform() < 0.4:
        lg = cv2.GaussianBlur(lg, (0, 0), rng.uniform(0.5, 3))
    return (lg * np.float32(rng.uniform(0.6, 1.5))).astype(np.float32)


def sample_window(frame: Frame, cfg: EdgeConfig, rng, jitter: bool):
    """(input (4, S, S), target (S, S) in 0..1, weight (S, S)) for one window."""
    c, m = cfg.cell, cfg.margin
    S = c + 2 * m
    if len(frame.cells) and (rng.uniform() < 0.6 or not len(frame.edge_pts)):
        y, x = frame.cells[rng.integers(len(frame.cells))] + rng.integers(-c // 2, c // 2 + 1, 2)
        cy, cx = y + c / 2, x + c / 2
    else:
        cy, cx = frame.edge_pts[rng.integers(len(frame.edge_pts))] + rng.normal(0, c / 4, 2)
    k = math.exp(rng.uniform(*np.log(cfg.scale))) if jitter else 1.0
    size = max(8, int(round(S * k)))  # source pixels the window covers
    y0, x0 = int(round(cy - size / 2)), int(round(cx - size / 2))
    H, W = frame.gt.shape
    y0, x0 = (
        int(np.clip(y0, -size // 4, H - size + size // 4)),
        int(np.clip(x0, -size // 4, W - size + size // 4)),
    )

    big = build_inputs(frame.bgr, frame.prior, np.array([[y0 + m, x0 + m]]), size - 2 * m, m)[0]
    gt = window(frame.gt, y0, x0, size).astype(np.float32) / 255
    rgb = np.moveaxis(big[:3], 0, 2)
    lg = big[3]
    if size != S:
        interp = cv2.INTER_AREA if size > S else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (S, S), interpolation=interp)
        lg = cv2.resize(lg, (S, S), interpolation=cv2.INTER_LINEAR)
        gt = cv2.resize(gt, (S, S), interpolation=cv2.INTER_AREA if size > S else cv2.INTER_LINEAR)
    if jitter:
        bgr8 = (np.clip(rgb[..., ::-1], 0, 1) * 255 + 0.5).astype(np.uint8)
        rgb = camera(colour_jitter(bgr8, rng, 0.5), rng)[..., ::-1].astype(np.float32) / 255
        lg = _jitter_logit(lg, rng)
        if rng.uniform() < 0.5:
            rgb, lg, gt = rgb[:, ::-1], lg[:, ::-1], gt[:, ::-1]
        if rng.uniform() < 0.5:
            rgb, lg, gt = rgb.transpose(1, 0, 2), lg.T, gt.T
    x = np.concatenate([np.moveaxis(rgb, 2, 0), lg[None]]).astype(np.float32)
    hard = (gt > 0.5).astype(np.uint8)
    near = cv2.dilate(
        cv2.morphologyEx(hard, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)),
        np.ones((5, 5), np.uint8),
    )
    w = np.zeros((S, S), np.float32)
    w[m : m + c, m : m + c] = 1.0 + cfg.boundary_weight * near[m : m + c, m : m + c]
    return x, np.ascontiguousarray(gt, np.float32), w


def batch(frames, cfg, rng, n, jitter=True):
    xs, ys, ws = zip(
        *(sample_window(frames[rng.integers(len(frames))], cfg, rng, jitter) for _ in range(n))
    )
    return np.stack(xs), np.stack(ys)[:, None], np.stack(ws)[:, None]


# ---------------------------------------------------------------- training


def train_edges(cfg: EdgeConfig, resume: bool = False) -> dict:
    import torch
    import torch.nn.functional as F

    if (cfg.cell + 2 * cfg.margin) % (2**cfg.levels):
        raise ValueError(
            f"a window of cell + 2 x margin = {cfg.cell + 2 * cfg.margin} px does not halve "
            f"{cfg.levels} times; choose a margin that makes it a multiple of {2**cfg.levels}"
        )
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "coarse"
    # new checkpoints make an earlier `--choose` stale; a fresh run drops an earlier run's too
    (out / "chosen.pt").unlink(missing_ok=True)
    if not resume:
        for old in (out / "steps").glob("step_*.pt"):
            old.unlink()
    t0 = time.time()
    train = load_frames(cfg.data, cfg.model, cache, cfg.cell, cfg.guide)
    val = load_frames(cfg.val, cfg.model, cache, cfg.cell, cfg.guide)
    log.info(
        "%d training frames, %d validation frames (%.0f s)", len(train), len(val), time.time() - t0
    )
    vx, vy, vw = batch(val, cfg, np.random.default_rng(12345), cfg.val_windows, jitter=False)
    vx, vy, vw = (torch.from_numpy(a) for a in (vx, vy, vw))
    net = _net(cfg.width, cfg.fuse, cfg.levels)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    step, best = 0, math.inf
    last = out / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        step, best, cfg.history = ck["step"], ck["best"], ck["history"]
    rng = np.random.default_rng([cfg.seed, step])

    def val_loss():
        net.eval()
        with torch.no_grad():
            lg = torch.cat([net(vx[i : i + 256]) for i in range(0, len(vx), 256)])
        net.train()
        bce = (F.binary_cross_entropy_with_logits(lg, vy, reduction="none") * vw).sum() / vw.sum()
        sel = vw > 1  # near the true boundary
        acc = ((lg > 0) == (vy > 0.5))[sel].float().mean()
        base = ((vx[:, 3:4] > 0) == (vy > 0.5))[sel].float().mean()
        return float(bce), float(acc), float(base)

    tl, t_step = [], time.time()
    while step < cfg.steps:
        x, y, w = (torch.from_numpy(a) for a in batch(train, cfg, rng, cfg.batch))
        lg = net(x)
        loss = (F.binary_cross_entropy_with_logits(lg, y, reduction="none") * w).sum() / w.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        tl.append(float(loss.detach()))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            vb, acc, base = val_loss()
            rec = {
                "step": step,
                "train_loss": float(np.mean(tl)),
                "val_loss": vb,
                "val_boundary_acc": acc,
                "coarse_boundary_acc": base,
                "s_per_step": (time.time() - t_step) / len(tl),
            }
            tl, t_step = [], time.time()
            cfg.history.append(rec)
            log.info(json.dumps(rec))
            state = {"model": net.state_dict(), "config": _cfg_dict(cfg), "step": step}
            if vb < best:
                best = vb
                torch.save(state, out / "best.pt")
            if step % cfg.keep_every == 0 or step == cfg.steps:  # for `edges --choose`
                (out / "steps").mkdir(exist_ok=True)
                torch.save(state, out / "steps" / f"step_{step:06d}.pt")
            torch.save(
                {
                    **state,
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "best": best,
                    "history": cfg.history,
                },
                last,
            )
    return {"best_val_loss": best, "history": cfg.history, "seconds": time.time() - t0}


def _cfg_dict(cfg: EdgeConfig) -> dict:
    d = asdict(cfg)
    d.pop("history", None)
    return d


def export_edges(checkpoint: str, onnx_path: str) -> dict:
    """Checkpoint -> ONNX (opset 13, dynamic batch); returns the card's ``edge_refiner``."""
    import torch

    ck = torch.load(checkpoint, weights_only=False)
    cfg = ck["config"]
    net = _net(cfg["width"], cfg.get("fuse", 8), cfg.get("levels", 1))
    net.load_state_dict(ck["model"])
    net.eval()
    S = cfg["cell"] + 2 * cfg["margin"]
    x = torch.zeros(1, 4, S, S)
    torch.onnx.export(
        net,
        x,
        onnx_path,
        input_names=["input"],
        output_names=["logit"],
        opset_version=13,
        dynamic_axes={"input": {0: "n"}, "logit": {0: "n"}},
        dynamo=False,
    )
    return {
        "onnx": Path(onnx_path).name,
        "cell": cfg["cell"],
        "margin": cfg["margin"],
        "guide": cfg.get("guide", "spline"),
    }


def candidate_card(card_path: Path, onnx: Path, entry: dict, folder: Path) -> Path:
    """A copy of the model card in ``folder`` whose edge refiner is ``onnx`` (the card's
    networks linked beside it, so the pipeline runs exactly as with the card)."""
    d = json.loads(card_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    names = [d.get("onnx"), (d.get("onnx_runtime") or {}).get("onnx")]
    for name in filter(None, names):
        link = folder / name
        if (card_path.parent / name).exists() and not link.exists():
            try:
                link.symlink_to((card_path.parent / name).resolve())
            except OSError:  # no symlinks (Windows without the right): a copy
                shutil.copyfile(card_path.parent / name, link)
    target = folder / onnx.name
    if target.resolve() != onnx.resolve():
        shutil.copyfile(onnx, target)
    d["edge_refiner"] = {**entry, "onnx": onnx.name}
    out = folder / card_path.name
    out.write_text(json.dumps(d, indent=2) + "\n")
    return out


def runtime_graph(card_json: Path) -> Path | None:
    """The card's refiner as the command line runs it: its graph for ONNX Runtime
    (``training.runtime_graph``), written and named in the card, where ONNX Runtime is
    installed; else, or when the graph cannot be made, None (a warning says why) and the
    trained refiner runs everywhere."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from .runtime_graph import add_refiner_graph

    try:
        return add_refiner_graph(card_json)
    except ValueError as exc:
        log.warning("%s: no graph for ONNX Runtime: %s", card_json, exc)
        return None


CARD_REFINER = "the card's refiner"  # `--choose`'s row for the refiner the card names now


def choose_checkpoint(out: str, model: str | None, val: list[str]) -> dict:
    """Score every kept checkpoint (``OUT/steps/step_N.pt``) and the card's own refiner in
    the pipeline (``segcore segment``'s defaults, each refiner through its graph for ONNX
    Runtime as the command line runs it) on the validation families' whole frames;
    the one with the highest boundary F at 2 px (mean over frames; IoU breaks ties) is
    copied to ``OUT/chosen.pt``, which ``--export`` then prefers to ``OUT/best.pt``. The
    window loss that picks ``best.pt`` does not follow the frame's boundary F closely enough
    to ship on; this does. Writes ``OUT/choice.json``."""
    from segcore.card import load_card, resolve_model_path

    from .evaluate import evaluate_families, segcore_predictor

    run = Path(out)
    card = load_card(model)
    card_path = resolve_model_path(model)
    steps = sorted((run / "steps").glob("step_*.pt"))
    if not steps:
        raise FileNotFoundError(f"{run / 'steps'}: no checkpoints to choose from; train first")
    rows = []

    def score(name: str, card_json: Path | None) -> None:
        result = evaluate_families(segcore_predictor(str(card_json) if card_json else model), val)
        m = result["all"]
        row = {
            "candidate": name,
            "bf2": m["bf2"],
            "iou": m["iou"],
            "f1": m["f1"],
            "worst_family": result["worst"]["family"],
            "frames": m["frames"],
        }
        log.info(json.dumps(row))
        rows.append(row)

    if card.extra.get("edge_refiner"):
        from segcore.errors import SegcoreError

        try:
            score(CARD_REFINER, None)
        except SegcoreError as exc:  # e.g. its ONNX is missing: the candidates still compare
            log.warning("the card's own refiner was not scored: %s", exc)
    work = run / "candidates"
    work.mkdir(exist_ok=True)
    for ck in steps:
        onnx = work / f"{ck.stem}_edges.onnx"
        entry = export_edges(str(ck), str(onnx))
        cand = candidate_card(card_path, onnx, entry, work / ck.stem)
        runtime_graph(cand)
        score(ck.name, cand)
    ours = [r for r in rows if r["candidate"] != CARD_REFINER]
    best = max(ours, key=lambda r: (round(r["bf2"], 4), r["iou"]))
    shutil.copyfile(run / "steps" / best["candidate"], run / "chosen.pt")
    choice = {"chosen": best["candidate"], "val": list(map(str, val)), "rows": rows}
    (run / "choice.json").write_text(json.dumps(choice, indent=1) + "\n")
    return choice
