"""Model cards: the JSON beside each ONNX file, the one place preprocessing parameters live.

``segcore/models/<name>.json`` + ``<name>.onnx``. The card holds the architecture config,
the input size and normalisation, the decision threshold and post-processing, the data and
commands the model was trained with, and its validation metrics.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import NetConfig
from .errors import ModelError
from .preprocess import PreprocessParams

FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "garment"


@dataclass(frozen=True)
class PostprocessParams:
    threshold: float = 0.5  # probability above which a pixel is the subject
    min_blob_share: float = 0.0005  # foreground specks smaller than this share of the frame go
    max_hole_share: float = 0.0002  # enclosed background holes smaller than this are filled
    refine: bool = True  # guided-filter edge refinement at full resolution
    refine_radius: float = 4.0  # guided-filter window radius, in network pixels
    refine_eps: float = 1e-4  # guided-filter regularisation (colours in 0..1)
    flip: bool = True  # average the network's output with its output on the mirrored frame

    @classmethod
    def from_dict(cls, d: dict) -> PostprocessParams:
        return cls(**{k: type(getattr(cls, k))(v) for k, v in d.items() if hasattr(cls, k)})

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "min_blob_share": self.min_blob_share,
            "max_hole_share": self.max_hole_share,
            "refine": self.refine,
            "refine_radius": self.refine_radius,
            "refine_eps": self.refine_eps,
            "flip": self.flip,
        }


@dataclass(frozen=True)
class ModelCard:
    name: str
    arch: NetConfig
    preprocess: PreprocessParams
    postprocess: PostprocessParams
    onnx_path: Path | None = None  # resolved path of the ONNX file
    extra: dict = field(default_factory=dict)  # training data, commands, metrics, ...

    def to_dict(self) -> dict:
        d = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "onnx": self.onnx_path.name if self.onnx_path else f"{self.name}.onnx",
            "arch": self.arch.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "postprocess": self.postprocess.to_dict(),
        }
        d.update(self.extra)
        return d

    def save(self, path: str | os.PathLike) -> None:
        from .io import atomic_write_bytes

        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """The card's path for a model name, a ``.json`` card, or an ``.onnx`` file."""
    if model is None or str(model) == "":
        model = DEFAULT_MODEL
    p = Path(model)
    if p.suffix.lower() == ".onnx":
        return p.with_suffix(".json")
    if p.suffix.lower() == ".json":
        return p
    if p.exists() and p.is_dir():
        raise ModelError(f"{p}: is a folder; pass a model's .json card or .onnx file")
    bundled = MODELS_DIR / f"{model}.json"
    if bundled.exists() or os.sep not in str(model):
        return bundled
    return p.with_suffix(".json")


def load_card(model: str | os.PathLike | None = None) -> ModelCard:
    """Load and check a model card. Raises :class:`ModelError` with a one-line reason."""
    path = resolve_model_path(model)
    if not path.exists():
        avail = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
        raise ModelError(
            f"{path}: model card not found; pass --model with a .onnx/.json path"
            + (f" or one of the bundled models: {', '.join(avail)}" if avail else "")
        )
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: the model card is not valid JSON ({exc})") from exc
    if not isinstance(d, dict):
        raise ModelError(f"{path}: the model card must be a JSON object")
    version = d.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{path}: model card format_version {version!r} is not supported "
            f"(this segcore reads version {FORMAT_VERSION}); update segcore or re-export the model"
        )
    try:
        arch = NetConfig.from_dict(d["arch"])
        pre = PreprocessParams.from_dict(d["preprocess"])
        post = PostprocessParams.from_dict(d.get("postprocess", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: the model card is missing or has a bad field ({exc})") from exc
    if pre.input_size < 32 or pre.pad_multiple % arch.stride:
        raise ModelError(
            f"{path}: input_size {pre.input_size} / pad_multiple {pre.pad_multiple} do not fit "
            f"the network (stride {arch.stride}); re-export the model"
        )
    onnx = path.parent / d.get("onnx", path.with_suffix(".onnx").name)
    known = {"format_version", "name", "onnx", "arch", "preprocess", "postprocess"}
    extra = {k: v for k, v in d.items() if k not in known}
    return ModelCard(
        name=str(d.get("name", path.stem)),
        arch=arch,
        preprocess=pre,
        postprocess=post,
        onnx_path=onnx,
        extra=extra,
    )
