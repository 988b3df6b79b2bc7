"""Export a trained :class:`~segcore.model.GarmentNet` to ONNX for OpenCV's DNN module.

Needs torch (and onnx); inference does not. BatchNorm is folded into the convolutions by
exporting in eval mode. The graph is traced at one size; OpenCV's DNN reshapes it for
any input whose sides are multiples of the network stride (its importer rejects ONNX
dynamic axes on element-wise additions).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import torch

from .io import atomic_write_bytes

log = logging.getLogger(__name__)

OPSET = 17


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, sample_hw=(256, 320)) -> Path:
    """Write ``model`` as ONNX (input ``image`` (1, 3, H, W), output ``logits``) atomically."""
    model = model.eval().to(memory_format=torch.contiguous_format).float()
    x = torch.zeros(1, model.cfg.in_channels, *sample_hw)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (x,),
            buf,
            input_names=["image"],
            output_names=["logits"],
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    log.debug("exported %s (%.1f MB)", path, len(buf.getvalue()) / 1e6)
    return path
