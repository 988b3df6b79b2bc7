"""segcore: garment figure segmentation for photogrammetry frame sequences.

Pure Python on numpy, scipy and OpenCV; torch only for the torch backend and export.

    from segcore import Segmenter, segment_frame, read_image
    seg = Segmenter.load()                       # the bundled default model
    result = segment_frame(read_image("a.jpg"), seg, seg.card.postprocess)
    result.mask                                  # uint8 (H, W), 255 = subject
"""

__version__ = "0.1.0"

# The names below are imported on first use, so that ``import segcore.options`` (the Blender
# add-on, before numpy and OpenCV are installed) loads nothing but that module.
_EXPORTS = {
    "discover_frames": "io",
    "FrameError": "errors",
    "InputError": "errors",
    "load_card": "card",
    "load_segmenter": "pipeline",
    "ModelCard": "card",
    "ModelError": "errors",
    "OutputError": "errors",
    "read_image": "io",
    "read_label": "io",
    "SegcoreError": "errors",
    "segment_frame": "frame",
    "Segmenter": "infer",
    "SegmentOptions": "pipeline",
    "SequenceJob": "pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
