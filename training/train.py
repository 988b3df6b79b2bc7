"""Training loop: BCE + Dice, SGD-momentum (the paper) or AdamW, cosine schedule, validation on
held-out sequences at full resolution each epoch, checkpoints and ``--resume``.

Everything a run needs is in :class:`TrainConfig`; a run folder holds ``config.json``,
``last.pt`` / ``best.pt``, ``log.csv`` and ``curves.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segcore.backend import TorchBackend
from segcore.card import PostprocessParams
from segcore.config import CLASSES, NetConfig
from segcore.infer import Segmenter
from segcore.preprocess import PreprocessParams, denoise_v

from . import distributed
from .augment import augment
from .data import find_sequences, load_all, split_sequences

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)  # data set roots (docs/design.md layout)
    out: str = "runs/garment"  # run folder: checkpoints, log.csv, curves.png
    arch: NetConfig = NetConfig()  # network architecture
    input_size: int = 320  # inference long side; training frames are loaded at this scale
    crop: int = 256  # square training crop, pixels
    batch: int = 8
    steps: int = 4000  # optimisation steps in total
    epoch_steps: int = 250  # steps between validations / checkpoints
    optimizer: str = "adamw"  # "adamw" or "sgd" (momentum 0.9, as in the paper)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100  # linear warm-up steps, then cosine decay to 2 % of lr
    dice_weight: float = 1.0  # loss = BCE + dice_weight * Dice
    class_weight: float = 0.5  # multi-class models: + class_weight * cross-entropy over CLASSES
    # the cross-entropy weighs class c by (1 / its pixel share in the training labels) ** this
    # (0: unweighted; 0.5: the small classes, figure and support, count several times more)
    class_balance: float = 0.5
    # "joint": cross-entropy over all four classes; "within": each class given its side of the
    # subject's outline, so the classes never move the outline the subject loss draws
    class_split: str = "joint"
    edge_weight: float = 2.0  # extra BCE weight on pixels within 2 px of the label's boundary
    # multi-class data: extra BCE weight where the figure meets its support (feet on a base,
    # legs on a stand), on both sides within CONTACT_PX: the subject's outline that the
    # network draws worst (it calls the feet support)
    contact_weight: float = 0.0
    bg_swap: float = 0.35  # share of crops whose background is swapped
    # multi-class data: share of crops whose garment gets a new fabric (colour, print, noise
    # texture under the render's shading); half as many get a new figure surface
    retexture: float = 0.0
    keep_checkpoints: bool = False  # also keep step_NNNNNN.pt at every validation
    val_share: float = 0.15  # share of sequences held out (split by sequence name)
    val_frames: int = 48  # at most this many validation frames (evenly spread)
    val_sequences: list[str] = field(default_factory=list)  # explicit held-out sequences
    # data set roots used only to pick the checkpoint (validation families), never trained on
    val_data: list[str] = field(default_factory=list)
    # test sequences: neither trained on nor used to pick the checkpoint (report them with eval)
    exclude_sequences: list[str] = field(default_factory=list)
    seed: int = 0
    threads: int = 2  # torch intra-op threads
    init: str = ""  # checkpoint to start from (fine-tuning); "" = random init
    photos: bool = True  # use photos shipped with installed packages as swap backgrounds
    denoise_sigma: float = 0.5  # the paper's HSV V-channel Gaussian denoise (network pixels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        d = dict(d)
        if "arch" in d and isinstance(d["arch"], dict):
            d["arch"] = NetConfig.from_dict(d["arch"])
        return cls(**d)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    denom = p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def subject_logit(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) subject logit: the logit itself for one channel; for class logits
    log P(garment or figure) - log P(background or support)."""
    if logits.shape[1] == 1:
        return logits
    fg = torch.logsumexp(logits[:, 1:3], dim=1, keepdim=True)
    bg = torch.logsumexp(logits[:, [0, 3]], dim=1, keepdim=True)
    return fg - bg


class SubjectLogit(nn.Module):
    """A multi-class network seen as a one-channel subject network (for validation)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return subject_logit(self.net(x))


def class_loss_weights(labels: list, power: float) -> np.ndarray:
    """Cross-entropy weight per class: (1 / pixel share) ** ``power``, scaled so that the mean
    weight over the training pixels is 1; a class no label map holds gets weight 0."""
    counts = np.zeros(len(CLASSES))
    for lab in labels:
        if lab is not None:
            counts += np.bincount(lab.ravel(), minlength=len(CLASSES))[: len(CLASSES)]
    share = counts / max(counts.sum(), 1)
    w = np.where(share > 0, np.maximum(share, 1e-6) ** -power, 0.0)
    return w / max(float((share * w).sum()), 1e-12)


# the figure-support contact zone's reach on either side (crop pixels, about as many network
# pixels: crops are cut at 0.6-1.4x the network's scale)
CONTACT_PX = 6


def edge_weights(
    masks: np.ndarray, extra: float, classes: np.ndarray | None = None, contact: float = 0.0
) -> np.ndarray:
    """Per-pixel loss weights (B, H, W): 1, plus ``extra`` within 2 px of a label boundary,
    plus ``contact`` where the figure meets the support (:func:`contact_zone` of the class
    maps ``classes``), normalised to mean 1 so the loss scale does not depend on how much
    boundary a crop has."""
    import cv2

    k = np.ones((5, 5), np.uint8)
    w = np.ones(masks.shape, np.float32)
    if extra > 0 or contact > 0:
        for i, m in enumerate(masks):
            w[i] += extra * (cv2.morphologyEx(m, cv2.MORPH_GRADIENT, k) > 0)
            if contact > 0 and classes is not None:
                w[i] += contact * contact_zone(classes[i])
        w /= w.mean(axis=(1, 2), keepdims=True)
    return w


def contact_zone(labels: np.ndarray, reach: int = CONTACT_PX) -> np.ndarray:
    """Where the figure meets its support in a class map (255: unknown): figure pixels within
    ``reach`` of the support and support pixels within ``reach`` of the figure."""
    import cv2

    figure = (labels == CLASSES.index("figure")).astype(np.uint8)
    support = (labels == CLASSES.index("support")).astype(np.uint8)
    if not figure.any() or not support.any():
        return np.zeros(labels.shape, bool)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2)
    return (figure & cv2.dilate(support, disk)) | (support & cv2.dilate(figure, disk)) > 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def package_photos() -> list[np.ndarray]:
    """Real photos that ship with installed packages (backgrounds for swaps)."""
    import cv2

    paths = []
    try:
        import skimage

        d = Path(skimage.__file__).parent / "data"
        paths += [
            d / n
            for n in (
                "brick.png",
                "coffee.png",
                "chelsea.png",
                "grass.png",
                "gravel.png",
                "rocket.jpg",
                "motorcycle_left.png",
                "hubble_deep_field.jpg",
                "retina.jpg",
                "color.png",
            )
        ]
    except ImportError:
        pass
    try:
        import matplotlib

        d = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
        paths += [d / "grace_hopper.jpg", d / "Minduka_Present_Blue_Pack.png"]
    except ImportError:
        pass
    photos = []
    for p in paths:
        if p.exists():
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None and min(img.shape[:2]) >= 64:
                photos.append(img)
    return photos


def make_model(cfg: TrainConfig) -> nn.Module:
    from segcore.model import GarmentNet

    return GarmentNet(cfg.arch)


def card_for(cfg: TrainConfig, name: str = "candidate", threshold: float = 0.5):
    from segcore.card import ModelCard

    return ModelCard(
        name=name,
        arch=cfg.arch,
        preprocess=PreprocessParams(
            input_size=cfg.input_size,
            pad_multiple=max(32, cfg.arch.stride),
            denoise_sigma=cfg.denoise_sigma,
        ),
        postprocess=PostprocessParams(threshold=threshold),
    )


def validate(model: nn.Module, cfg: TrainConfig, samples, refine: bool = False) -> dict:
    """Scores on held-out frames at their full resolution, through segcore's own pipeline."""
    from segcore.frame import segment_frame
    from segcore.io import read_image, read_label
    from segcore.metrics import Scores

    card = card_for(cfg)
    seg = Segmenter(card, backend=TorchBackend(SubjectLogit(model)))
    post = PostprocessParams(refine=refine, flip=False)  # one inference: checkpoints compare
    scores = Scores()
    # a multi-class model is also scored on the garment alone where label maps exist
    garment_seg, garment_scores, garment_frames = None, Scores(), 0
    if cfg.arch.out_channels > 1:
        from dataclasses import replace

        from .data import read_classes

        classes_card = replace(card, extra={**card.extra, "classes": list(CLASSES)})
        garment_seg = Segmenter(classes_card, backend=TorchBackend(model), keep=("garment",))
    model.eval()
    for s in samples:
        bgr = read_image(s.image)
        scores.add(segment_frame(bgr, seg, post).mask, read_label(s.mask))
        if garment_seg is not None and s.labels is not None:
            mask = segment_frame(bgr, garment_seg, post).mask
            garment_scores.add(mask, read_classes(s.labels) == 1)
            garment_frames += 1
    model.train()
    pooled = scores.pooled()
    if garment_frames:
        g = garment_scores.pooled()
        pooled.update(garment_iou=g["iou"], garment_bf2=g["bf2"])
    return pooled


def spread(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def save_checkpoint(path: Path, model, opt, step: int, cfg: TrainConfig, best: float) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "config": cfg.to_dict(),
            "best": best,
        },
        tmp,
    )
    os.replace(tmp, path)


def load_weights(model: nn.Module, path: str) -> None:
    """Load a checkpoint; a one-channel head initialises a class head so that the classes'
    subject logit equals the old logit (garment and figure get it, the others 0). A narrower
    network of the same layout (fewer channels in any layer) is embedded in this one
    (:func:`widen_state`): it starts out computing what the checkpoint computed."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    state = dict(ck.get("model", ck))
    own = model.state_dict()
    for key in ("head.weight", "head.bias"):
        if key in state and state[key].shape[0] == 1 and own[key].shape[0] == 4:
            w = torch.zeros_like(own[key])
            w[1:3] = state[key]
            state[key] = w
    if set(state) == set(own) and any(state[k].shape != own[k].shape for k in own):
        state = widen_state(model, state, path)
    model.load_state_dict(state)


def widen_state(model: nn.Module, narrow: dict, source: str = "the checkpoint") -> dict:
    """The state of ``model`` with a narrower network of the same layout embedded in it.

    Every layer's first channels are the narrow network's; the weights from a layer's new
    input channels to its old output channels are zero, so the old channels compute exactly
    what they did (batch norm is per channel, the branches' features are summed channel by
    channel). The new channels keep their fresh initialisation and feed the old ones through
    those zero weights, which training then grows: the wider network starts where the
    narrow one ended instead of from nothing."""
    own = model.state_dict()
    transposed = {
        f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)
    }
    out: dict = {}
    for key, new in own.items():
        old = narrow[key]
        if old.dim() != new.dim() or any(a > b for a, b in zip(old.shape, new.shape)):
            raise ValueError(
                f"{source}: layer {key} has shape {tuple(old.shape)}, wider than this "
                f"network's {tuple(new.shape)}; it can only start a network at least as wide"
            )
        w = new.clone()
        if old.dim() == 0:
            w = old.clone()
        elif old.dim() == 1:
            w[: old.shape[0]] = old
        else:
            o, i = (1, 0) if key in transposed else (0, 1)  # ConvTranspose2d: (in, out, k, k)
            old_out = [slice(None)] * new.dim()
            old_out[o] = slice(0, old.shape[o])
            from_new = list(old_out)
            from_new[i] = slice(old.shape[i], None)
            w[tuple(from_new)] = 0  # new inputs do not reach the old outputs
            w[tuple(slice(0, n) for n in old.shape)] = old
        out[key] = w
    return out


def plot_curves(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    step = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(step, [float(r["train_loss"]) for r in rows], label="train loss (BCE + Dice)")
    ax[0].set_xlabel("step")
    ax[0].set_yscale("log")
    ax[0].legend()
    for key, lab in (("val_f1", "F1"), ("val_iou", "IoU"), ("val_bf2", "BF@2px")):
        ax[1].plot(step, [float(r[key]) for r in rows], label=lab)
    ax[1].set_xlabel("step")
    ax[1].set_title("held-out sequences, full resolution")
    ax[1].legend()
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    tmp = png_path.with_name(".tmp-" + png_path.name)
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, png_path)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train; returns the final validation scores. Safe to interrupt and ``resume``.

    Under torchrun, data-parallel over its processes (:mod:`training.distributed`): the
    global batch ``cfg.batch`` is split over them, rank 0 validates, logs and saves (its
    scores are returned; the other ranks return {})."""
    from tqdm import tqdm

    ranks = distributed.setup(cfg.batch)
    progress = progress and ranks.main
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if ranks.main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    seqs: dict = {}
    for root in cfg.data:
        for name, s in find_sequences(root).items():
            seqs[f"{Path(root).name}/{name}"] = s

    def named(n: str, wanted: list[str]) -> bool:
        return n in wanted or n.split("/", 1)[1] in wanted

    names = [n for n in sorted(seqs) if not named(n, cfg.exclude_sequences)]
    if cfg.val_sequences:
        val_names = [n for n in names if named(n, cfg.val_sequences)]
        train_names = [n for n in names if n not in val_names]
    elif cfg.val_data:  # the checkpoint is picked on those data sets alone
        train_names, val_names = names, []
    else:
        train_names, val_names = split_sequences(names, cfg.val_share, cfg.seed)
    train_samples = [s for n in train_names for s in seqs[n]]
    for root in cfg.val_data:
        for name, s in find_sequences(root).items():
            seqs[f"{Path(root).name}/{name}"] = s
            val_names.append(f"{Path(root).name}/{name}")
    val_samples = spread([s for n in val_names for s in seqs[n]], cfg.val_frames)
    log.info(
        "%d training frames from %d sequences; %d validation frames from %d sequences",
        len(train_samples),
        len(train_names),
        len(val_samples),
        len(val_names),
    )
    if ranks.main:
        split = {"train": train_names, "val": val_names}
        (out / "split.json").write_text(json.dumps(split, indent=1))

    # frames are kept in memory at up to 1.5x the training scale (scale augmentation range)
    bar = tqdm(total=len(train_samples), desc="loading", disable=not progress, leave=False)
    imgs, masks, labels = load_all(train_samples, round(cfg.input_size * 1.25), bar)
    classes = cfg.arch.out_channels > 1
    bar.close()
    cls_w = None
    if classes:
        cls_w = torch.tensor(class_loss_weights(labels, cfg.class_balance), dtype=torch.float32)
        log.info("class loss weights %s", dict(zip(CLASSES, cls_w.round(decimals=2).tolist())))
    photos = package_photos() if cfg.photos else []

    model = make_model(cfg).to(memory_format=torch.channels_last)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=0.9,
            weight_decay=cfg.weight_decay,
            nesterov=True,
        )
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")
    step, best = 0, -1.0
    last = out / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, best = int(ck["step"]), float(ck.get("best", -1))
        log.info("resumed from %s at step %d", last, step)
    elif cfg.init:
        load_weights(model, cfg.init)
        log.info("initialised from %s", cfg.init)
    csv_path = out / "log.csv"
    cols = [
        "step",
        "epoch",
        "train_loss",
        "lr",
        "val_precision",
        "val_recall",
        "val_f1",
        "val_iou",
        "val_bf1",
        "val_bf2",
        "val_bf4",
        "val_garment_iou",
        "val_garment_bf2",
        "seconds",
    ]
    if ranks.main and not (resume and csv_path.exists()):
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(cols)

    net = distributed.wrap(model, ranks)  # the forward; `model` is validated and saved
    mine = ranks.share(cfg.batch)  # this process's items of each global batch
    model.train()
    t_start = time.time()
    scores: dict = {}
    losses: list[float] = []
    bar = tqdm(total=cfg.steps, initial=step, desc="training", disable=not progress)
    mean = torch.tensor(PreprocessParams().mean)
    std = torch.tensor(PreprocessParams().std)

    def make_batch(at: int):
        xb = np.empty((len(mine), cfg.crop, cfg.crop, 3), np.uint8)
        yb = np.empty((len(mine), cfg.crop, cfg.crop), np.uint8)
        cb = np.full((len(mine), cfg.crop, cfg.crop), 255, np.uint8)  # 255: class unknown
        for b, item in enumerate(mine):
            rng = distributed.item_rng(cfg.seed, at, item)  # the same for any world size
            i = int(rng.integers(len(imgs)))
            # frames are stored at 1.25x; scale range covers 0.6x..1.4x of the inference scale
            lab = labels[i] if classes else None
            crop = augment(
                imgs[i],
                masks[i],
                cfg.crop,
                rng,
                photos,
                cfg.bg_swap,
                (0.5, 1.1),
                lab,
                cfg.retexture,
            )
            xb[b], yb[b] = denoise_v(crop[0], cfg.denoise_sigma), crop[1]
            if lab is not None:
                cb[b] = crop[2]
        x = torch.from_numpy(xb[..., ::-1].astype(np.float32) / 255.0)
        x = ((x - mean) / std).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy((yb > 127).astype(np.float32))[:, None]
        wts = edge_weights(yb, cfg.edge_weight, cb if classes else None, cfg.contact_weight)
        wts = torch.from_numpy(wts)[:, None]
        return x, y, wts, torch.from_numpy(cb.astype(np.int64))

    # one thread builds the next batch (OpenCV and numpy release the GIL) while torch trains on
    # this one; each item has its own seeded rng, so a run stays reproducible
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches")
    pending = pool.submit(make_batch, step)
    while step < cfg.steps:
        x, y, wts, cls = pending.result()
        pending = pool.submit(make_batch, step + 1) if step + 1 < cfg.steps else None
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        raw = net(x)
        logits = subject_logit(raw)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y, weight=wts)
        loss = bce + cfg.dice_weight * dice_loss(logits, y)
        ce = (
            distributed.class_loss(raw, cls, cls_w, ranks, cfg.class_split == "within")
            if classes
            else None
        )
        if ce is not None:  # the global batch's weighted mean, this rank's share of it
            loss = loss + cfg.class_weight * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(distributed.mean(loss, ranks))
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if ranks.main and (step % cfg.epoch_steps == 0 or step == cfg.steps):
            scores = validate(model, cfg, val_samples) if val_samples else {}
            f1 = scores.get("f1", 0.0)
            row = (
                [
                    step,
                    step // cfg.epoch_steps,
                    np.mean(losses[-cfg.epoch_steps :]),
                    lr_at(step - 1, cfg),
                ]
                + [
                    scores.get(k, float("nan"))
                    for k in (
                        "precision",
                        "recall",
                        "f1",
                        "iou",
                        "bf1",
                        "bf2",
                        "bf4",
                        "garment_iou",
                        "garment_bf2",
                    )
                ]
                + [round(time.time() - t_start, 1)]
            )
            with open(csv_path, "a", newline="") as f:
                csv.writer(f).writerow([f"{v:.5f}" if isinstance(v, float) else v for v in row])
            if f1 > best:
                best = f1
                save_checkpoint(out / "best.pt", model, opt, step, cfg, best)
            save_checkpoint(last, model, opt, step, cfg, best)
            if cfg.keep_checkpoints:  # for choosing later with the whole pipeline
                shutil.copyfile(last, out / f"step_{step:06d}.pt")
            plot_curves(csv_path, out / "curves.png")
            bar.write(
                f"step {step}: loss {row[2]:.4f} "
                + (
                    f"val F1 {f1:.4f} IoU {scores.get('iou', 0):.4f} "
                    f"BF@2px {scores.get('bf2', 0):.4f}"
                    if val_samples
                    else "(no validation frames)"
                )
                + (f" garment IoU {scores['garment_iou']:.4f}" if "garment_iou" in scores else "")
            )
    bar.close()
    pool.shutdown(wait=True, cancel_futures=True)
    distributed.finish(ranks)
    return scores
