"""Checkpoint -> ``<out_dir>/<name>.onnx`` + model card (+ ``<name>.pt`` for fine-tuning).

The command line's default ``out_dir`` is the user's model folder
(:func:`segcore.card.user_models_dir`), never the installed package's; a model already
there is replaced only with ``overwrite`` (:func:`check_target`)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

from segcore.card import MODELS_DIR, ModelCard, PostprocessParams, user_models_dir
from segcore.config import CLASSES
from segcore.infer import Segmenter
from segcore.io import atomic_write_bytes, temporary_name

MODEL_FILES = ("{}.json", "{}.onnx", "{}.pt", "{}_ort.onnx")  # what an export writes


class ModelExists(FileExistsError):
    """An export would replace a model that is already there (no ``overwrite``)."""


def portable(value):
    """A config value with the machine's paths made shareable: a path inside the current
    folder becomes relative to it, any other absolute path keeps only its last two parts
    (a card or ``.pt`` that ships must not name folders of the machine it was trained on)."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        path, here = Path(value), Path.cwd()
        if path.is_relative_to(here):
            return path.relative_to(here).as_posix()
        return Path(*path.parts[-2:]).as_posix()
    return value


def check_target(name: str, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """:class:`ModelExists` when ``out_dir`` already holds a model ``name`` (its card, ONNX
    or weights) and ``overwrite`` is not given; else the files an export will write. Called
    before any work, so a refused export (or fine-tune) changes nothing."""
    out_dir = Path(out_dir)
    files = [out_dir / f.format(name) for f in MODEL_FILES]
    there = [p for p in files if p.exists()]
    if there and not overwrite:
        what = "the bundled model" if out_dir.resolve() == MODELS_DIR.resolve() else "a model"
        raise ModelExists(
            f"{there[0]}: {what} {name!r} is already there; pass --overwrite to replace it, or "
            "choose another --name or --out-dir"
        )
    return files


def export_checkpoint(
    checkpoint: str | Path,
    name: str,
    out_dir: str | Path | None = None,
    threshold: float = 0.5,
    extra: dict | None = None,
    overwrite: bool = False,
    input_size: int | None = None,
    runtime_graph: bool = True,
) -> Path:
    """Export a training checkpoint into ``out_dir`` (default: the user's model folder);
    returns the card's path. Refuses (:class:`ModelExists`) to replace a model there unless
    ``overwrite``. The card is checked by loading the ONNX through segcore (OpenCV) before
    it is written. ``input_size``: the long side the network runs at (default: the one it
    was trained for); the ONNX's fixed input is a 4:3 landscape frame's at that size.
    ``runtime_graph``: also write ``<name>_ort.onnx``, the faster graph ONNX Runtime runs
    (:mod:`training.runtime_graph`), and name it in the card."""
    import torch

    from segcore.export import export_onnx
    from segcore.preprocess import fit_size

    from .train import TrainConfig, card_for, make_model

    out_dir = user_models_dir() if out_dir is None else Path(out_dir)
    check_target(name, out_dir, overwrite)
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(ck["config"])
    trained = cfg  # the card records the training as it was
    if input_size is not None:
        cfg = replace(cfg, input_size=int(input_size))
    pre = card_for(cfg, name=name).preprocess
    sample_hw = fit_size((3, 4), pre.input_size, pre.pad_multiple).padded_hw
    model = make_model(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    pt = out_dir / f"{name}.pt"
    # written under hidden temporary names, checked, then renamed: an export that fails
    # half-way leaves the model that was there (if any) whole
    onnx_tmp = out_dir / temporary_name("-" + onnx_path.name)
    pt_tmp = out_dir / temporary_name("-" + pt.name)
    try:
        export_onnx(model, onnx_tmp, sample_hw)
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "config": portable(trained.to_dict())}, buf)
        atomic_write_bytes(pt_tmp, buf.getvalue())
        card_path = _write_card(
            ck, cfg, trained, model, checkpoint, name, threshold, extra, onnx_tmp, onnx_path
        )
        os.replace(pt_tmp, pt)
    finally:
        for t in (onnx_tmp, pt_tmp):
            with contextlib.suppress(OSError):
                t.unlink()
    if runtime_graph:
        from .runtime_graph import add_runtime_graph

        add_runtime_graph(card_path)
    return card_path


def _write_card(
    ck, cfg, trained, model, checkpoint, name, threshold, extra, onnx_tmp, onnx_path
) -> Path:
    """Check the card against the ONNX (still under its temporary name), move the ONNX into
    place and write the card. ``cfg``: the training's configuration with the input size the
    model runs at; ``trained``: as trained."""
    import torch

    from .train import card_for

    base = card_for(cfg, name=name, threshold=threshold)
    info = {
        "training": {
            "data": portable(trained.data),
            "steps": int(ck.get("step", 0)),
            "config": portable(trained.to_dict()),
            "checkpoint": portable(str(Path(checkpoint).absolute())),
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
        onnx_path=onnx_tmp,
        extra=info,
    )
    Segmenter(card)  # loads the ONNX with OpenCV and checks it against the card
    os.replace(onnx_tmp, onnx_path)
    card = replace(card, onnx_path=onnx_path)
    card_path = onnx_path.with_suffix(".json")
    card.save(card_path)
    return card_path
