"""Checkpoint -> ``segcore/models/<name>.onnx`` + model card (+ ``<name>.pt`` for fine-tuning)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from segcore.config import CLASSES
from segcore.card import MODELS_DIR, ModelCard, PostprocessParams
from segcore.export import export_onnx
from segcore.infer import Segmenter

from .train import TrainConfig, make_model


def export_checkpoint(
    checkpoint: str | Path,
    name: str,
    out_dir: str | Path = MODELS_DIR,
    threshold: float = 0.5,
    extra: dict | None = None,
) -> Path:
    """Export a training checkpoint; returns the card's path. The card is checked by loading
    the ONNX through segcore (OpenCV) before it is written."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(ck["config"])
    model = make_model(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    export_onnx(model, onnx_path)
    pt = out_dir / f"{name}.pt"
    tmp = pt.with_name(pt.name + ".tmp")
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, tmp)
    tmp.replace(pt)
    from .train import card_for

    base = card_for(cfg, name=name, threshold=threshold)
    info = {
        "training": {
            "data": cfg.data,
            "steps": int(ck.get("step", 0)),
            "config": cfg.to_dict(),
            "checkpoint": str(checkpoint),
            "exported": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        },
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if cfg.arch.out_channels > 1:
        info["classes"] = list(CLASSES)
    run_dir = Path(checkpoint).parent
    for fname, key in (("meta.json", "run"),):
        if (run_dir / fname).exists():
            info[key] = json.loads((run_dir / fname).read_text())
    if extra:
        info.update(extra)
    card = ModelCard(
        name=name,
        arch=cfg.arch,
        preprocess=base.preprocess,
        postprocess=PostprocessParams(threshold=threshold),
        onnx_path=onnx_path,
        extra=info,
    )
    Segmenter(card)  # loads the ONNX with OpenCV and checks it against the card
    card_path = out_dir / f"{name}.json"
    card.save(card_path)
    return card_path
