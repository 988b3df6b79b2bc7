"""Shared fixtures: tiny seeded synthetic data and tiny models (CPU, seconds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")


def blob_image(h=96, w=128, seed=0):
    from training.shapes import blob_frame

    return blob_frame(h, w, np.random.default_rng(seed))


@pytest.fixture
def addon():
    """The add-on enabled in a factory-fresh Blender (bpy wheel), disabled afterwards."""
    bpy = pytest.importorskip("bpy")
    import addon_utils  # ships with bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    mod = addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    assert mod is not None, "the add-on failed to enable"
    yield mod
    if "blender_addon" in bpy.context.preferences.addons:
        addon_utils.disable("blender_addon", default_set=True)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory):
    """An untrained small network exported to ONNX with its card (backends, CLI plumbing)."""
    torch = pytest.importorskip("torch")
    from segcore.card import ModelCard, PostprocessParams
    from segcore.config import NetConfig
    from segcore.export import export_onnx
    from segcore.model import GarmentNet
    from segcore.preprocess import PreprocessParams

    torch.manual_seed(0)
    cfg = NetConfig(widths=(4, 8, 8), depths=(1, 2, 2), fuse_channels=4)
    model = GarmentNet(cfg)
    # make BatchNorm statistics non-trivial so the export really folds something
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 64, 64))
    model.eval()
    d = tmp_path_factory.mktemp("random_model")
    onnx = export_onnx(model, d / "rand.onnx")
    card = ModelCard(
        "rand",
        cfg,
        PreprocessParams(input_size=96, pad_multiple=32),
        PostprocessParams(),
        onnx_path=onnx,
    )
    card.save(d / "rand.json")
    return {"model": model, "card": d / "rand.json", "onnx": onnx, "dir": d}


def tiny_train_config(data, **changes):
    """A training configuration for seconds-long runs on blob shapes (``changes`` override)."""
    from segcore.config import NetConfig
    from training.train import TrainConfig

    base = dict(
        data=[str(data)],
        steps=150,
        epoch_steps=75,
        batch=6,
        crop=96,
        input_size=128,
        lr=4e-3,
        warmup=10,
        val_share=0.2,
        val_frames=6,
        arch=NetConfig(widths=(4, 8, 8), depths=(1, 2, 2), fuse_channels=8),
        photos=False,
        seed=0,
        bg_swap=0.0,
    )
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="session")
def shapes_model(tmp_path_factory):
    """A tiny network trained for a few seconds on blob shapes, exported like a real model."""
    pytest.importorskip("torch")
    from training.export import export_checkpoint
    from training.shapes import make_shapes_dataset
    from training.train import train

    d = tmp_path_factory.mktemp("shapes_model")
    data = make_shapes_dataset(d / "data", sequences=5, frames=6, size=(96, 128), seed=1)
    cfg = tiny_train_config(data, out=str(d / "run"))
    scores = train(cfg, progress=False)
    card = export_checkpoint(d / "run" / "best.pt", "shapes", d / "models")
    return {"card": card, "data": data, "scores": scores, "run": d / "run"}
