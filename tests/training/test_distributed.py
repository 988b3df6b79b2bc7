"""Data-parallel training (training.distributed): ``torchrun --nproc-per-node 2 -m training
train`` takes the same step as one process on the same global batch, and resumes a
one-process checkpoint."""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from segcore.config import NetConfig  # noqa: E402
from training.distributed import Ranks, class_loss  # noqa: E402
from training.shapes import make_shapes_dataset  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

from ..conftest import ROOT  # noqa: E402


def test_global_batch_is_split_evenly_and_the_class_loss_is_the_weighted_mean():
    assert [list(Ranks(r, 2).share(6)) for r in (0, 1)] == [[0, 1, 2], [3, 4, 5]]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 5, generator=g)
    cls = torch.randint(0, 4, (2, 5, 5), generator=g)
    cls[0, :2] = 255
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    ref = torch.nn.functional.cross_entropy(logits, cls, weight=w, ignore_index=255)
    assert torch.allclose(class_loss(logits, cls, w, Ranks()), ref, atol=1e-6)
    assert class_loss(logits, torch.full_like(cls, 255), w, Ranks()) is None


def test_the_class_loss_within_sides_divides_each_side_and_leaves_the_outline_alone():
    from training.train import subject_logit

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 5, 5, generator=g)
    cls = torch.randint(0, 4, (2, 5, 5), generator=g)
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    within = class_loss(logits, cls, w, Ranks(), within_side=True)
    # garment against figure on the subject's side, background against support off it
    fg, bg = logits[:, 1:3].movedim(1, -1), logits[:, [0, 3]].movedim(1, -1)
    side = (cls == 1) | (cls == 2)
    pick = torch.where(side, cls - 1, (cls == 3).long())
    ce = torch.where(
        side,
        torch.nn.functional.cross_entropy(fg.movedim(-1, 1), pick.clamp(max=1), reduction="none"),
        torch.nn.functional.cross_entropy(bg.movedim(-1, 1), pick.clamp(max=1), reduction="none"),
    )
    ref = (w[cls] * ce).sum() / w[cls].sum()
    assert torch.allclose(within, ref, atol=1e-6)
    # moving the subject's outline (its logit) does not change the loss
    shifted = logits.clone()
    shifted[:, 1:3] += 3.0
    assert not torch.allclose(subject_logit(shifted), subject_logit(logits))
    assert torch.allclose(class_loss(shifted, cls, w, Ranks(), within_side=True), within)
    joint = class_loss(logits, cls, w, Ranks())
    assert not torch.allclose(class_loss(shifted, cls, w, Ranks()), joint)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(monkeypatch):
    from training.distributed import setup

    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(SystemExit, match="--batch 6 does not split evenly over 4 processes"):
        setup(6)


def test_two_processes_take_the_one_process_step_and_resume_its_checkpoint(tmp_path):
    data = make_shapes_dataset(tmp_path / "data", sequences=3, frames=3, size=(64, 80), seed=3)
    cfg = TrainConfig(
        data=[str(data)],
        out=str(tmp_path / "one"),
        steps=1,
        epoch_steps=1,
        batch=4,
        crop=48,
        input_size=80,
        optimizer="sgd",  # the update is the gradient (times 1.9 lr): the two compare
        lr=0.5,
        warmup=1,
        val_share=0.34,
        val_frames=2,
        arch=NetConfig(widths=(4, 8, 8), depths=(1, 1, 1), fuse_channels=4, batchnorm=False),
        photos=False,
        bg_swap=0.0,
        threads=1,
    )
    train(cfg, progress=False)  # step 1 in one process
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    step1 = torch.load(tmp_path / "one" / "last.pt", weights_only=False)["model"]
    train(replace(cfg, steps=2), resume=True, progress=False)  # step 2, one process
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "training", "train", "--out", str(tmp_path / "two"), "--resume", "--steps", "2",
           "-q"]  # fmt: skip
    r = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    assert one["step"] == two["step"] == 2
    assert one["model"].keys() == two["model"].keys()  # the plain model: no "module." prefix
    for k, v in one["model"].items():
        assert torch.allclose(v, two["model"][k], rtol=0, atol=1e-5), k
    # step 2 moved the weights far more than that: the agreement is the gradients'
    moved = max(float((v - step1[k]).abs().max()) for k, v in one["model"].items())
    assert moved > 1e-2
    rows = list(csv.DictReader((tmp_path / "two" / "log.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [1, 2]  # rank 0 alone logs
