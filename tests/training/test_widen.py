"""Starting a wider network from a narrower checkpoint (``training train --init`` with larger
``--widths``): the wider network first computes what the checkpoint did, then learns."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from segcore.config import NetConfig  # noqa: E402
from segcore.model import GarmentNet  # noqa: E402
from training.train import load_weights  # noqa: E402


def _narrow(tmp_path):
    torch.manual_seed(0)
    net = GarmentNet(
        NetConfig(widths=(4, 8, 8), depths=(1, 2, 2), fuse_channels=4, max_width=16, out_channels=4)
    )
    net.train()
    for _ in range(3):  # batch-norm statistics of its own
        net(torch.randn(2, 3, 64, 64))
    path = tmp_path / "narrow.pt"
    torch.save({"model": net.state_dict()}, path)
    return net.eval(), path


def test_a_wider_network_starts_out_computing_what_the_narrow_one_did(tmp_path):
    narrow, path = _narrow(tmp_path)
    cfg = NetConfig(
        widths=(6, 12, 12), depths=(1, 2, 2), fuse_channels=6, max_width=24, out_channels=4
    )
    wide = GarmentNet(cfg)
    load_weights(wide, str(path))
    x = torch.randn(2, 3, 64, 96)
    assert torch.allclose(wide.eval()(x), narrow(x), atol=1e-5)
    assert torch.allclose(wide.train()(x), narrow.train()(x), atol=1e-4)  # batch statistics too
    # and it can learn: the new channels' outgoing weights get a gradient
    wide.train()(x).square().mean().backward()
    grad = wide.head.weight.grad[:, 4:]  # from the new fused channels
    assert grad.abs().sum() > 0


def test_a_wider_checkpoint_cannot_start_a_narrower_network(tmp_path):
    narrow, path = _narrow(tmp_path)
    smaller = GarmentNet(
        NetConfig(widths=(4, 8, 8), depths=(1, 2, 2), fuse_channels=3, max_width=16, out_channels=4)
    )
    with pytest.raises(ValueError, match="narrow.pt: layer .* wider than this network's"):
        load_weights(smaller, str(path))


def test_fine_tuning_keeps_the_network_of_its_init_unless_told_otherwise(tmp_path):
    from training.cli import build_parser, config_from_args
    from training.train import TrainConfig

    arch = NetConfig(widths=(8, 16, 36), max_width=192, out_channels=4)
    path = tmp_path / "shipped.pt"
    torch.save({"model": {}, "config": TrainConfig(arch=arch).to_dict()}, path)
    args = build_parser().parse_args(["train", "--data", "d", "--init", str(path)])
    assert config_from_args(args).arch == arch
    args = build_parser().parse_args(
        ["train", "--data", "d", "--init", str(path), "--widths", "8,16,48"]
    )
    assert config_from_args(args).arch == NetConfig(
        widths=(8, 16, 48), max_width=192, out_channels=4
    )
