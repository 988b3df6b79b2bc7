"""The network's architecture as one frozen dataclass (no torch needed to read it).

The same config describes the paper's multi-scale residual network and, with
``multiscale=False, residual=False``, the FCN-style baseline of the paper's Table I.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from . import fields as ch

#: Classes of a multi-class model, in output-channel order (label map values 0..3): the
#: garment (every layer), the figure wearing it (dress form, mannequin, body), and its support
#: (stand, pole, base, turntable platter).
CLASSES = ("background", "garment", "figure", "support")

#: the ranges a card's architecture values must lie in (other integers: 1..4096)
ARCH_RANGES = {"in_channels": (1, 16), "widths": (1, 1024), "depths": (0, 8)}


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
    # output channels: 1 = one sigmoid logit (subject); 4 = softmax logits over CLASSES
    out_channels: int = 1

    def __post_init__(self):
        if len(self.widths) != len(self.depths) or not self.widths:
            raise ValueError("widths and depths need one entry per branch")
        if self.out_channels not in (1, len(CLASSES)):
            raise ValueError(f"out_channels must be 1 or {len(CLASSES)}, got {self.out_channels}")

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
    def from_dict(cls, d: dict, where: str = "arch") -> NetConfig:
        """Each field checked for type and range (:class:`segcore.fields.FieldError`)."""
        c = cls()
        ch.only(d, [f.name for f in fields(cls)], where=where)
        kw = {}
        for f in fields(cls):
            k, default = f.name, getattr(c, f.name)
            if isinstance(default, bool):
                kw[k] = ch.flag(d, k, where=where, default=default)
            elif isinstance(default, int):
                kw[k] = ch.integer(
                    d, k, *ARCH_RANGES.get(k, (1, 4096)), where=where, default=default
                )
            else:  # one entry per branch
                lo, hi = ARCH_RANGES[k]
                kw[k] = ch.integers(d, k, lo, hi, 6, where=where, default=list(default))
        try:
            return cls(**kw)
        except ValueError as exc:  # the fields disagree with each other
            raise ch.FieldError(where, f"is inconsistent: {exc}") from None


#: The FCN-style baseline of the paper's Table I: one branch, no residual shortcuts.
BASELINE = NetConfig(multiscale=False, residual=False)
