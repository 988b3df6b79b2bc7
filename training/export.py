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
from segcore.errors import ModelError
from segcore.infer import Segmenter
from segcore.io import atomic_write_bytes, temporary_name

# what an export writes (the edge refiner's graphs when the card is made like another's)
MODEL_FILES = ("{}.json", "{}.onnx", "{}.pt", "{}_ort.onnx", "{}_edges.onnx", "{}_edges_ort.onnx")
#: what a card exported ``like`` another takes from it: how masks are drawn from the network
INHERITED = ("postprocess", "edge_refiner")


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


def like_card(like: str | Path) -> dict:
    """What a new card takes from the card ``like`` (a card's path or a model's name): its
    post-processing and its learned edge refiner, the refiner's graphs read into memory (so
    ``like`` may be the very card an ``overwrite`` export replaces). A
    :class:`segcore.errors.ModelError` naming the card when it cannot be read."""
    from segcore.card import load_card, resolve_model_path

    path = Path(like) if str(like).endswith(".json") else resolve_model_path(str(like))
    card = load_card(path)  # every field checked
    d = json.loads(Path(path).read_text())
    out = {"name": card.name, "postprocess": card.postprocess.to_dict(), "files": {}}
    entry = d.get("edge_refiner")
    if entry is not None:
        entry = dict(entry)
        graph = path.parent / entry["onnx"]
        if not graph.is_file():
            raise ModelError(
                f"{path}: its edge refiner {entry['onnx']} is not beside it; restore it, or "
                "take the defaults (training export without --like, finetune --fresh-card)"
            )
        out["files"]["onnx"] = graph.read_bytes()
        runtime = entry.get("onnx_runtime")
        if runtime is not None:
            if (path.parent / runtime["onnx"]).is_file():
                out["files"]["onnx_runtime"] = (path.parent / runtime["onnx"]).read_bytes()
            else:  # named but missing: the trained refiner runs, as segcore would
                entry.pop("onnx_runtime")
        out["edge_refiner"] = entry
    return out


def _like_files(like: dict, name: str, out_dir: Path) -> tuple[dict, list]:
    """The card's entries from ``like`` (:func:`like_card`) for a model ``name`` in
    ``out_dir``, and the files they need: the refiner's graphs as ``<name>_edges.onnx`` (and
    ``<name>_edges_ort.onnx``), as (path, bytes) pairs."""
    entry = like.get("edge_refiner")
    fields = [k for k in INHERITED if k == "postprocess" or entry is not None]
    out = {"inherited": {"from": like["name"], "fields": fields}}
    if entry is None:
        return out, []
    entry = {**entry, "onnx": f"{name}_edges.onnx"}
    files = [(out_dir / entry["onnx"], like["files"]["onnx"])]
    if "onnx_runtime" in entry:
        entry["onnx_runtime"] = {**entry["onnx_runtime"], "onnx": f"{name}_edges_ort.onnx"}
        files.append((out_dir / entry["onnx_runtime"]["onnx"], like["files"]["onnx_runtime"]))
    return {"edge_refiner": entry, **out}, files


def export_checkpoint(
    checkpoint: str | Path,
    name: str,
    out_dir: str | Path | None = None,
    threshold: float | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
    input_size: int | None = None,
    runtime_graph: bool = True,
    like: str | Path | None = None,
) -> Path:
    """Export a training checkpoint into ``out_dir`` (default: the user's model folder);
    returns the card's path. Refuses (:class:`ModelExists`) to replace a model there unless
    ``overwrite``. The card is checked by loading the ONNX through segcore (OpenCV) before
    it is written. ``input_size``: the long side the network runs at (default: the one it
    was trained for); the ONNX's fixed input is a 4:3 landscape frame's at that size.
    ``runtime_graph``: also write ``<name>_ort.onnx``, the faster graph ONNX Runtime runs
    (:mod:`training.runtime_graph`), and name it in the card. ``like``: a card (or model
    name) whose post-processing and learned edge refiner the new card takes
    (:data:`INHERITED`; the refiner's graphs copied beside it) instead of the defaults
    (guided-filter edges); ``threshold`` overrides its threshold (default: ``like``'s, else
    0.5)."""
    import torch

    from segcore.export import export_onnx
    from segcore.preprocess import fit_size

    from .train import TrainConfig, card_for, make_model

    out_dir = user_models_dir() if out_dir is None else Path(out_dir)
    check_target(name, out_dir, overwrite)
    inherit = like_card(like) if like is not None else None  # before anything is replaced
    post = PostprocessParams(**inherit["postprocess"]) if inherit else PostprocessParams()
    if threshold is not None:
        post = replace(post, threshold=float(threshold))
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
        files = []
        if inherit:
            entries, files = _like_files(inherit, name, out_dir)
            extra = {**(extra or {}), **entries}
        card_path = _write_card(
            ck, cfg, trained, model, checkpoint, name, post, extra, onnx_tmp, onnx_path, files
        )
        os.replace(pt_tmp, pt)
    finally:
        for t in (onnx_tmp, pt_tmp):
            with contextlib.suppress(OSError):
                t.unlink()
    if inherit:
        from segcore.card import load_card

        load_card(card_path)  # the inherited refiner's entry checked as segcore reads it
    if runtime_graph:
        from .runtime_graph import add_runtime_graph

        add_runtime_graph(card_path)
    return card_path


def _write_card(
    ck, cfg, trained, model, checkpoint, name, post, extra, onnx_tmp, onnx_path, files=()
) -> Path:
    """Check the card against the ONNX (still under its temporary name), write ``files``
    ((path, bytes) pairs: the inherited refiner's graphs), move the ONNX into place and
    write the card. ``cfg``: the training's configuration with the input size the
    model runs at; ``trained``: as trained."""
    import torch

    from .train import card_for

    base = card_for(cfg, name=name, threshold=post.threshold)
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
        postprocess=post,
        onnx_path=onnx_tmp,
        extra=info,
    )
    # the inherited graphs under temporary names first, renamed with the ONNX once the card
    # is checked: a failed export leaves the model that was there whole
    staged = [(path.parent / temporary_name("-" + path.name), path) for path, _ in files]
    try:
        for (tmp, _), (_, data) in zip(staged, files):
            atomic_write_bytes(tmp, data)
        Segmenter(card)  # loads the ONNX with OpenCV and checks it against the card
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
    os.replace(onnx_tmp, onnx_path)
    card = replace(card, onnx_path=onnx_path)
    card_path = onnx_path.with_suffix(".json")
    card.save(card_path)
    return card_path
