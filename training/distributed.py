"""Data-parallel training: one process per rank, started by torchrun.

    torchrun --nproc-per-node 2 -m training train --data data/synth --out runs/garment

Each rank builds its own share of the global batch (``--batch`` items, split evenly), the
model is wrapped in ``DistributedDataParallel`` (gradients averaged over the ranks), and only
rank 0 validates, writes checkpoints, ``log.csv``, the curves and the progress bar. Without
torchrun's environment (``WORLD_SIZE`` unset or 1) everything here is a no-op, so a plain
``python -m training train`` is the same run.

The global batch does not depend on the number of ranks: item ``i`` of step ``s`` is drawn
from its own generator, seeded by (seed, s, i) (:func:`item_rng`), whichever rank draws it.
So a checkpoint (weights, optimiser, step) holds nothing of the world size, and ``--resume``
goes on with any number of processes. The losses are means over the global batch: BCE and
Dice are means over equal shares (DDP's gradient average is their global mean), and the
weighted class cross-entropy is divided by the global batch's weight sum (:func:`class_loss`),
so N ranks compute the gradient of one process on the same batch, to float rounding.

BatchNorm layers normalise over each rank's share of the batch (as DDP does without
``SyncBatchNorm``, which needs GPUs); an architecture without BatchNorm
(``"batchnorm": false``) gives the single-process gradients exactly.

The process group uses gloo for tensors on the CPU (the trainer's device) and NCCL for
CUDA tensors (:func:`backend`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Ranks:
    rank: int = 0  # this process's rank
    world: int = 1  # processes in all
    joined: bool = False  # this module initialised the process group (finish() leaves it)

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates, logs and writes checkpoints."""
        return self.rank == 0

    def share(self, batch: int) -> range:
        """This rank's items of a global batch of ``batch``."""
        k = batch // self.world
        return range(self.rank * k, (self.rank + 1) * k)


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def setup(batch: int, device: torch.device = torch.device("cpu")) -> Ranks:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``); one process: ``Ranks()``. ``batch`` must split evenly over the ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if batch % world:  # under torchrun: a command-line error, one line on every rank
        raise SystemExit(
            f"error: --batch {batch} does not split evenly over {world} processes; use a "
            f"multiple of {world} (--batch is the global batch, each process takes an equal "
            "share)"
        )
    import torch.distributed as dist

    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group(backend(device))
    return Ranks(dist.get_rank(), dist.get_world_size(), joined)


def finish(ranks: Ranks) -> None:
    if ranks.joined:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def item_rng(seed: int, step: int, item: int) -> np.random.Generator:
    """The generator that draws item ``item`` of step ``step``'s global batch."""
    return np.random.default_rng([seed, step, item])


def wrap(model: nn.Module, ranks: Ranks) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` (the forward to train with); the plain model
    stays what is validated and saved, so checkpoints are the same for any world size."""
    if ranks.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def all_sum(x: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    if ranks.world == 1:
        return x
    import torch.distributed as dist

    x = x.detach().clone()
    dist.all_reduce(x)
    return x


def mean(x: torch.Tensor, ranks: Ranks) -> float:
    """The mean of a scalar over the ranks (the global batch's loss, for the log)."""
    return float(all_sum(x.detach(), ranks)) / ranks.world


def within_side_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W) log-probabilities of each class given its side of the subject's outline:
    garment and figure share the subject's probability, background and support the rest.
    A cross-entropy on these does not depend on the subject logit
    (:func:`training.train.subject_logit`): the classes divide each side, the subject's own
    loss draws the outline."""
    fg, bg = logits[:, 1:3], logits[:, [0, 3]]
    fg = fg - torch.logsumexp(fg, dim=1, keepdim=True)
    bg = bg - torch.logsumexp(bg, dim=1, keepdim=True)
    return torch.cat([bg[:, :1], fg, bg[:, 1:]], dim=1)  # CLASSES' order


def class_loss(
    logits: torch.Tensor,
    classes: torch.Tensor,
    weight: torch.Tensor | None,
    ranks: Ranks,
    within_side: bool = False,
) -> torch.Tensor | None:
    """The class cross-entropy of the global batch (weighted mean over its labelled pixels;
    255: unknown) as this rank's term: its weighted sum over the global weight sum, times the
    world size (DDP averages the ranks' gradients). One process: PyTorch's weighted mean.
    ``within_side``: the cross-entropy of each class given its side of the subject's outline
    (:func:`within_side_log_probs`) instead of over all four. None when no pixel of the global
    batch is labelled."""
    w = torch.ones(logits.shape[1]) if weight is None else weight
    known = classes != 255
    local = (w[classes.clamp(max=len(w) - 1)] * known).sum()
    total = all_sum(local, ranks)
    if float(total) <= 0:
        return None
    logp = within_side_log_probs(logits) if within_side else nn.functional.log_softmax(logits, 1)
    ce = nn.functional.nll_loss(logp, classes, weight=weight, ignore_index=255, reduction="sum")
    return ce * ranks.world / total
