"""The network's architecture as one frozen dataclass (no torch needed to read it).

The same config describes the paper's multi-scale residual network and, with
``multiscale=False, residual=False``, the FCN-style baseline of the paper's Table I.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class NetConfig:
    in_channels: int = 3  # RGB
    widths: tuple[int, ...] = (8, 16, 24)  # first-stage channels of the /1, /2, /4 branches
    depths: tuple[int, ...] = (1, 3, 3)  # downsampling stages inside each branch (BaseNet)
    fuse_channels: int = 16  # channels of the branch outputs that are fused by addition
    batchnorm: bool = True  # BatchNorm after every conv (folded into the conv on export)
    residual: bool = True  # the paper's residual shortcut around every conv pair
    multiscale: bool = True  # three-level input pyramid; False = one full-resolution branch
    max_width: int = 128  # cap on channels when they double at each stage

    def __post_init__(self):
        if len(self.widths) != len(self.depths) or not self.widths:
            raise ValueError("widths and depths need one entry per branch")

    @property
    def branches(self) -> list[tuple[int, int, int]]:
        """(pyramid level, width, depth) per branch. Level k sees the input pooled by 2**k.

        The single-scale variant keeps one full-resolution branch whose depth reaches the
        coarsest branch's receptive field (the depth of the last branch plus its level).
        """
        if self.multiscale:
            return [(k, w, d) for k, (w, d) in enumerate(zip(self.widths, self.depths))]
        last = len(self.widths) - 1
        return [(0, self.widths[0], self.depths[last] + last)]

    @property
    def stride(self) -> int:
        """The network input's sides must be a multiple of this."""
        return max(2 ** (level + depth) for level, _, depth in self.branches)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["depths"] = list(self.widths), list(self.depths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown NetConfig fields: {sorted(unknown)}")
        kw = dict(d)
        for key in ("widths", "depths"):
            if key in kw:
                kw[key] = tuple(int(v) for v in kw[key])
        return cls(**kw)


#: The FCN-style baseline of the paper's Table I: one branch, no residual shortcuts.
BASELINE = NetConfig(multiscale=False, residual=False)
