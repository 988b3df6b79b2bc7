"""segcore: garment figure segmentation for photogrammetry frame sequences.

Pure Python on numpy, scipy and OpenCV; torch only for the torch backend and export.

    from segcore import Segmenter, segment_frame, read_image
    seg = Segmenter.load()                       # the bundled default model
    result = segment_frame(read_image("a.jpg"), seg, seg.card.postprocess)
    result.mask                                  # uint8 (H, W), 255 = subject
"""

__version__ = "0.1.0"

from .card import ModelCard, load_card  # noqa: E402
from .errors import FrameError, InputError, ModelError, OutputError, SegcoreError  # noqa: E402
from .infer import Segmenter  # noqa: E402
from .io import discover_frames, read_image, read_label  # noqa: E402
from .pipeline import SegmentOptions, SequenceJob, segment_frame  # noqa: E402

__all__ = [
    "FrameError",
    "InputError",
    "ModelCard",
    "ModelError",
    "OutputError",
    "SegcoreError",
    "SegmentOptions",
    "Segmenter",
    "SequenceJob",
    "discover_frames",
    "load_card",
    "read_image",
    "read_label",
    "segment_frame",
]
