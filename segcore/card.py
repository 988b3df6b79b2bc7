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

from . import fields as f
from .config import NetConfig
from .errors import ModelError
from .options import DEFAULT_MODEL
from .preprocess import PreprocessParams

FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent / "models"


def user_models_dir() -> Path:
    """Where the user's own models go (``python -m training export`` and ``finetune`` write
    there by default) and are found by name after the bundled ones: ``$SEGCORE_MODELS``,
    else the platform's per-user data folder (``~/.local/share/segcore/models`` on Linux,
    ``~/Library/Application Support/segcore/models`` on macOS,
    ``%APPDATA%/segcore/models`` on Windows). Never the installed package's own folder."""
    env = os.environ.get("SEGCORE_MODELS")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if os.name == "nt":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif os.uname().sysname == "Darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "segcore" / "models"


@dataclass(frozen=True)
class PostprocessParams:
    threshold: float = 0.5  # probability above which a pixel is the subject
    min_blob_share: float = 0.0005  # foreground specks smaller than this share of the frame go
    max_hole_share: float = 0.0002  # enclosed background holes smaller than this are filled
    refine: bool = True  # guided-filter edge refinement at full resolution
    refine_radius: float = 4.0  # guided-filter window radius, in network pixels
    refine_eps: float = 1e-4  # guided-filter regularisation (colours in 0..1)
    flip: bool = True  # average the network's output with its output on the mirrored frame
    # after the edges are drawn at full resolution, subject specks and enclosed holes smaller
    # than this share of the frame go (0: off, as cards without the field)
    edge_speck_share: float = 0.0
    # subject pieces smaller than this share of the largest piece and farther from it than
    # satellite_gap (a share of the frame's long side) go (0: off, as cards without the field)
    satellite_share: float = 0.0
    satellite_gap: float = 0.05
    # with the learned edge refiner in one stage, the full-resolution outline redrawn from
    # the alpha blurred by a Gaussian of this many frame pixels, before the speck clean-up
    # (0: off, as cards without the field)
    outline_sigma: float = 0.0

    @classmethod
    def from_dict(cls, d: dict, where: str = "postprocess") -> PostprocessParams:
        """Each field checked for type and range (:class:`segcore.fields.FieldError`)."""
        c = cls()
        f.only(d, list(c.to_dict()), where=where)
        share = {"where": where, "open_hi": True}
        return cls(
            threshold=f.number(
                d, "threshold", 0, 1, where=where, default=c.threshold, open_lo=True, open_hi=True
            ),
            min_blob_share=f.number(d, "min_blob_share", 0, 1, default=c.min_blob_share, **share),
            max_hole_share=f.number(d, "max_hole_share", 0, 1, default=c.max_hole_share, **share),
            refine=f.flag(d, "refine", where=where, default=c.refine),
            # network pixels; the filter's window grows with it (and with the frame's scale)
            refine_radius=f.number(
                d, "refine_radius", 0, 64, where=where, default=c.refine_radius, open_lo=True
            ),
            refine_eps=f.number(d, "refine_eps", 1e-8, 1, where=where, default=c.refine_eps),
            flip=f.flag(d, "flip", where=where, default=c.flip),
            edge_speck_share=f.number(
                d, "edge_speck_share", 0, 1, default=c.edge_speck_share, **share
            ),
            satellite_share=f.number(
                d, "satellite_share", 0, 1, default=c.satellite_share, **share
            ),
            satellite_gap=f.number(d, "satellite_gap", 0, 1, default=c.satellite_gap, **share),
            # frame pixels
            outline_sigma=f.number(d, "outline_sigma", 0, 16, where=where, default=c.outline_sigma),
        )

    @property
    def cleaning(self) -> tuple[float, float, float, float]:
        """:func:`segcore.mask.decide`'s clean-up limits, in its order."""
        return (self.min_blob_share, self.max_hole_share, self.satellite_share, self.satellite_gap)

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "min_blob_share": self.min_blob_share,
            "max_hole_share": self.max_hole_share,
            "refine": self.refine,
            "refine_radius": self.refine_radius,
            "refine_eps": self.refine_eps,
            "flip": self.flip,
            "edge_speck_share": self.edge_speck_share,
            "satellite_share": self.satellite_share,
            "satellite_gap": self.satellite_gap,
            "outline_sigma": self.outline_sigma,
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

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The card's ``"classes"``: a multi-class model's classes, exactly
        :data:`segcore.config.CLASSES` in the order of its output channels (softmax logits);
        None for a binary model (one sigmoid logit: the garment figure against the rest)."""
        names = self.extra.get("classes")
        return None if names is None else tuple(str(n) for n in names)

    @property
    def runtime_onnx(self) -> Path | None:
        """The card's ``"onnx_runtime"`` graph: the same network made faster for ONNX Runtime
        (exact sub-pixel convolutions for the deconvolutions, most layers in int8;
        ``training.runtime_graph``), which runs it in place of :attr:`onnx_path`; None when
        the card names none. OpenCV's DNN always runs :attr:`onnx_path`."""
        entry = self.extra.get("onnx_runtime")
        if entry is None or self.onnx_path is None:
            return None
        return runtime_onnx_path(self.onnx_path.parent, entry)

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
    if bundled.exists():
        return bundled
    if os.sep not in str(model) and "/" not in str(model):
        user = user_models_dir() / f"{model}.json"  # the user's own, after the bundled ones
        return user if user.exists() else bundled
    return p.with_suffix(".json")


def load_card(model: str | os.PathLike | None = None) -> ModelCard:
    """Load and check a model card. Raises :class:`ModelError` with a one-line reason."""
    path = resolve_model_path(model)
    if not path.exists():
        avail = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
        try:
            own = sorted(p.stem for p in user_models_dir().glob("*.json"))
        except OSError:
            own = []
        raise ModelError(
            f"{path}: model card not found; pass --model with a .onnx/.json path"
            + (f" or one of the bundled models: {', '.join(avail)}" if avail else "")
            + (f"; your models ({user_models_dir()}): {', '.join(own)}" if own else "")
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
        fields = check_card(d, path)
    except f.FieldError as exc:
        raise ModelError(
            f"{path}: model card field {exc.field} {exc.problem}; fix the card or re-export "
            "the model"
        ) from None
    arch, pre = fields["arch"], fields["preprocess"]
    if pre.pad_multiple % arch.stride:
        raise ModelError(
            f"{path}: input_size {pre.input_size} / pad_multiple {pre.pad_multiple} do not fit "
            f"the network (stride {arch.stride}); re-export the model"
        )
    known = {"format_version", "name", "onnx", "arch", "preprocess", "postprocess"}
    extra = {k: v for k, v in d.items() if k not in known}
    return ModelCard(
        name=fields["name"],
        arch=arch,
        preprocess=pre,
        postprocess=fields["postprocess"],
        onnx_path=fields["onnx"],
        extra=extra,
    )


def check_card(d: dict, path: Path) -> dict:
    """Every field of a card segcore reads, checked for type and range (``name``, ``onnx``,
    ``arch``, ``preprocess``, ``postprocess`` parsed; ``edge_refiner`` and ``classes``
    checked). Informational fields (training, metrics, commands, notes, ...) are free.
    Raises :class:`segcore.fields.FieldError` naming the first bad field."""
    folder = path.parent
    out = {
        "name": f.text(d, "name", default=path.stem),
        "onnx": f.file_inside(folder, d, "onnx", default=path.with_suffix(".onnx").name),
        "arch": NetConfig.from_dict(f.section(d, "arch")),
        "preprocess": PreprocessParams.from_dict(f.section(d, "preprocess")),
        "postprocess": PostprocessParams.from_dict(f.section(d, "postprocess", default={})),
    }
    if "edge_refiner" in d:
        edge_refiner_fields(folder, d["edge_refiner"])
    if "onnx_runtime" in d:
        runtime_onnx_path(folder, d["onnx_runtime"])
    f.names(d, "classes", default=None)  # a multi-class model's class names
    return out


def runtime_onnx_path(folder: Path, d) -> Path:
    """The card's ``onnx_runtime`` entry, checked: ``onnx``, a file inside the card's folder
    (the same network as a graph only ONNX Runtime runs; ``training.runtime_graph``); its
    other fields say how it was made."""
    return f.file_inside(
        folder, f.section({"onnx_runtime": d}, "onnx_runtime"), "onnx", where="onnx_runtime"
    )


def edge_refiner_fields(folder: Path, d) -> dict:
    """The card's ``edge_refiner`` entry (segcore.edges), checked: ``onnx`` (a file inside
    the card's folder), ``cell``, ``margin``, ``guide`` and, optionally, ``onnx_runtime``
    (the same refiner as a graph only ONNX Runtime runs, ``{"onnx": <file>, ...}``:
    ``training.runtime_graph.write_refiner_graph``; its other fields say how it was made)."""
    where = "edge_refiner"
    d = f.section({where: d}, where)
    f.only(d, ("onnx", "cell", "margin", "guide", "onnx_runtime"), where=where)
    out = {
        "onnx": f.file_inside(folder, d, "onnx", where=where),
        "cell": f.integer(d, "cell", 8, 256, where=where, default=32),
        "margin": f.integer(d, "margin", 0, 64, where=where, default=8),
        "guide": f.choice(d, "guide", ("spline", "guided"), where=where, default="spline"),
        "onnx_runtime": None,
    }
    if "onnx_runtime" in d:
        entry = f.section(d, "onnx_runtime", where=where)
        runtime = f.file_inside(folder, entry, "onnx", where=f"{where}.onnx_runtime")
        # a graph written for other windows (the card's cell or margin edited since) is left
        # aside: the trained refiner runs
        if all(entry.get(k, out[k]) == out[k] for k in ("cell", "margin")):
            out["onnx_runtime"] = runtime
    return out
