"""The paper's network in torch: multi-scale feature fusion with residual BaseNets.

    x ──────────────► BaseNet(/1) ──────────────────────────────► + ─► 1x1 conv ─► logits
    x ─ avgpool /2 ─► BaseNet(/2) ─────────────► + ─► deconv x2 ──┘
    x ─ avgpool /4 ─► BaseNet(/4) ─► deconv x2 ─┘

Each BaseNet is a small VGG-style encoder-decoder at its pyramid level: residual conv
blocks (two 3x3 convs; the paper's shortcut is the identity, or a 3x3 conv with 2N kernels
where the block doubles the channels) with max-pooling between stages, and a decoder that
deconvolves back up, adding the encoder's features pixel-wise at each scale. Branch outputs
are fused by deconvolution and pixel-wise addition, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import NetConfig


def conv_bn_relu(cin: int, cout: int, bn: bool, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """PRE -> conv -> conv (POST) with the paper's shortcut added pixel-wise."""

    def __init__(self, cin: int, cout: int, bn: bool, residual: bool):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin, cout, bn), conv_bn_relu(cout, cout, bn, False))
        self.residual = residual
        # Where the channels change (the paper: POST doubles them), the shortcut is a
        # 3x3 conv, stride 1, padding 1, with the output's channel count.
        self.shortcut = (
            nn.Conv2d(cin, cout, 3, padding=1, bias=False) if residual and cin != cout else None
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)  # (B, cout, H, W)
        if self.residual:
            y = y + (x if self.shortcut is None else self.shortcut(x))
        return self.act(y)


class Up(nn.Module):
    """Deconvolution x2 (kernel 4, stride 2, padding 1): exact doubling of H and W."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x)


class BaseNet(nn.Module):
    """Encoder-decoder at one pyramid level; returns ``out_channels`` features at its input size."""

    def __init__(self, cin: int, width: int, depth: int, out_channels: int, cfg: NetConfig):
        super().__init__()
        bn, res = cfg.batchnorm, cfg.residual
        chans = [min(width * 2**s, cfg.max_width) for s in range(depth + 1)]
        self.stem = conv_bn_relu(cin, width, bn)
        self.down = nn.ModuleList(
            ResidualBlock(chans[max(s - 1, 0)] if s else width, chans[s], bn, res)
            for s in range(depth + 1)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(Up(chans[s + 1], chans[s]) for s in range(depth))
        self.dec = nn.ModuleList(conv_bn_relu(chans[s], chans[s], bn) for s in range(depth))
        self.out = conv_bn_relu(chans[0], out_channels, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w, H, W)
        skips = []
        for s, block in enumerate(self.down):
            if s:
                x = self.pool(x)  # (B, c, H/2^s, W/2^s)
            x = block(x)
            skips.append(x)
        for s in reversed(range(len(self.up))):
            x = self.dec[s](self.up[s](x) + skips[s])  # pixel-wise fusion with the encoder
        return self.out(x)  # (B, out_channels, H, W)


class GarmentNet(nn.Module):
    """Multi-scale residual segmentation network; returns logits at input size: one channel
    (subject) or one per class (``NetConfig.out_channels``)."""

    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        f = cfg.fuse_channels
        self.levels = [level for level, _, _ in cfg.branches]
        self.branches = nn.ModuleList(
            BaseNet(cfg.in_channels, w, d, f, cfg) for _, w, d in cfg.branches
        )
        self.fuse_up = nn.ModuleList(Up(f, f) for _ in range(max(self.levels)))
        self.head = nn.Conv2d(f, cfg.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = {}
        for level, branch in zip(self.levels, self.branches):
            xi = x if level == 0 else nn.functional.avg_pool2d(x, 2**level)  # (B, 3, H/2^l, W/2^l)
            feats[level] = branch(xi)  # (B, f, H/2^l, W/2^l)
        y = feats[max(self.levels)]
        for level in reversed(range(max(self.levels))):
            y = self.fuse_up[level](y) + feats[level]  # deconv to the next finer level, add
        return self.head(y)  # (B, out_channels, H, W) logits


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass on a (1, 3, H, W) input (convs only)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += out.numel() * k
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels
            total += inp[0].numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, model.cfg.in_channels, *input_hw))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total
