"""What a user chooses, in one place: the names, choices and defaults of ``segcore segment``
and ``segcore reconstruct``, and the argument builder of both command lines that take them
(the ``segcore`` CLI and the Blender add-on's ``batch.py``).

Standard library only, so the Blender add-on can read it before numpy and OpenCV are
installed (``import segcore.options`` loads nothing else of segcore). The library's own
definitions take their names from here: :data:`segcore.formats.WRITERS` is held to
:data:`FORMATS`, ``pipeline.SegmentOptions`` and ``recon.run_reconstruction`` default to
these values.
"""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "garment"  # the bundled model card (segcore/models/garment.json)
# output formats (segcore.formats.WRITERS, in this order)
FORMATS = (
    "mask",
    "rgba",
    "labels",
    "colmap",
    "meshroom",
    "realitycapture",
    "metashape",
    "openmvs",
)
DEFAULT_FORMATS = ("rgba", "mask")
EDGES = ("learned", "guided")  # the card's learned edge refiner, or the guided filter
PLATE_MODES = ("auto", "on", "off")  # auto: when the background is found to stand still
DEFAULT_WORKERS = 2
MAX_WORKERS = 64  # frames in flight at most (each holds a decoded frame and its buffers)

# auto: ring for a moving camera registered from the whole frame (the still room's repeated
# patterns match far frames falsely), else exhaustive up to 60 frames, sequential beyond
MATCHERS = ("auto", "exhaustive", "sequential", "ring")
MAPPERS = ("auto", "incremental", "global", "turntable")  # auto: turntable if still, else incr.
QUALITIES = ("high", "fast")
# where SfM takes its features: auto = inside the masks on a still background (a turntable),
# the whole frame when the camera moves (the still room is what registers it best)
FEATURE_AREAS = ("auto", "masked", "whole")
DEFAULT_VOXELS = 224  # the hull grid's long side (a stand's pole: hull IoU 0.941 at 160, 0.953)
VOXELS = (16, 1024)  # the hull grid sizes accepted


def parse_formats(text: str) -> tuple[str, ...]:
    """``"rgba,mask"`` -> ``("rgba", "mask")``; an unknown or empty list is a usage error."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {', '.join(bad) or '(empty)'}; choose from {', '.join(FORMATS)}"
        )
    return names


def add_switch(parser, name: str, on: str, off: str, default: bool | None = None) -> None:
    """``--name`` and ``--no-name`` setting ``name`` to True or False (``default`` without
    either: None is "as the model card says")."""
    parser.add_argument(f"--{name}", dest=name, action="store_true", default=default, help=on)
    parser.add_argument(f"--no-{name}", dest=name, action="store_false", help=off)


def add_plate_argument(parser, what: str) -> None:
    parser.add_argument(
        "--plate",
        choices=PLATE_MODES,
        default="auto",
        help=f"{what} from a turntable's still background: thin turning parts the network "
        "missed added (not a stand's legs: a support), leaks onto the backdrop removed; auto: "
        "only when the frames show a still background (default: auto)",
    )


def add_segment_arguments(parser, workers_help: str | None = None) -> None:
    """The segment options (model to plate), the same flags in every command line.
    ``workers_help``: what ``--workers`` means where it is not frames in flight (its
    default is then None).

    Values the user leaves out are None (``--size``, ``--threshold``, ``--refine``,
    ``--flip``, ``--edges``, ``--keep``): "as the model card says". :func:`segment_keywords`
    turns the parsed arguments into ``pipeline.SegmentOptions``' keywords.
    """
    parser.add_argument(
        "--model",
        metavar="PATH",
        default=None,
        help=f"model card (.json) or .onnx file, or a bundled name (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--size",
        type=int,
        metavar="N",
        help="network input long side, pixels (default: the model card's)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="subject probability threshold in (0, 1) (default: the card's)",
    )
    add_switch(
        parser,
        "refine",
        "refine edges with the full-resolution photo (default: the card's)",
        "plain spline-upsampled mask edges",
    )
    add_switch(
        parser,
        "flip",
        "also run the network on the mirrored frame and average (default: the card's)",
        "one inference a frame: faster, slightly less accurate",
    )
    parser.add_argument(
        "--edges",
        choices=EDGES,
        default=None,
        help="how refined edges are drawn: the model's learned edge refiner, or the guided "
        "filter (default: learned when the model card has a refiner)",
    )
    parser.add_argument(
        "--keep",
        metavar="LIST",
        default=None,
        help="classes a multi-class model keeps, comma-separated: garment,figure (default: the "
        "garment figure; support, the stand and its base, is background), garment (the "
        "garment alone) or garment,figure,support; every output follows it. A binary model "
        "(no classes in its card) keeps the garment figure",
    )
    parser.add_argument(
        "--formats",
        type=parse_formats,
        default=DEFAULT_FORMATS,
        metavar="LIST",
        help=f"comma-separated outputs: {','.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)})",
    )
    g = parser.add_mutually_exclusive_group()
    g.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep frames whose outputs already exist (resume an interrupted run)",
    )
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS if workers_help is None else None,
        metavar="N",
        help=workers_help
        or f"frames processed at once, 1 to {MAX_WORKERS} (default: {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--temporal",
        action="store_true",
        help="the frames are a sequence (turntable, camera ring): smooth the masks from frame "
        "to frame along the optical flow, against flicker (frames in name order)",
    )
    add_plate_argument(parser, "after the last frame, complete the masks")


SEGMENT_KEYS = (
    "model",
    "size",
    "threshold",
    "refine",
    "flip",
    "edges",
    "formats",
    "skip_existing",
    "overwrite",
    "workers",
    "temporal",
    "plate",
    "keep",
)


def segment_keywords(args: argparse.Namespace) -> dict:
    """The keywords of ``pipeline.SegmentOptions`` from :func:`add_segment_arguments`'s
    parsed arguments (``keep`` as the text given: ``SegmentOptions`` users parse it)."""
    return {k: getattr(args, k) for k in SEGMENT_KEYS}


def add_reconstruct_arguments(parser) -> None:
    """The reconstruction options both command lines share (``--plate`` aside: the batch
    script's segment options hold it)."""
    parser.add_argument(
        "--matcher",
        choices=MATCHERS,
        default="auto",
        help="feature matching: exhaustive (every pair), sequential (each frame with its 12 "
        "successors), ring (each frame with its nearest neighbours in capture order, the last "
        "with the first); auto: ring when a moving camera is registered from the whole frame, "
        "else exhaustive up to 60 frames, sequential beyond (default: auto)",
    )
    parser.add_argument(
        "--mapper",
        choices=MAPPERS,
        default="auto",
        help="incremental (COLMAP) or global (GLOMAP) mapping, or turntable: frames in capture "
        "order, one axis, the same step between frames, calibrated from the masks' silhouettes "
        "and feature tracks; auto: turntable when the masked frames show a still background, "
        "else incremental, and a ring incremental registers in under 95 %% of the frames is "
        "solved as an even ring by the turntable solver (default: auto)",
    )
    parser.add_argument(
        "--features",
        choices=FEATURE_AREAS,
        default="auto",
        help="where SfM takes its features: masked (inside the masks), whole (the whole "
        "frame: the still room registers a moving camera best) or auto: masked on a "
        "turntable, whole when the camera moves; the masks always carve the mesh and go to "
        "the workspace for other tools (default: auto)",
    )
    parser.add_argument(
        "--focal",
        dest="focal_px",
        type=float,
        default=None,
        metavar="PX",
        help="the frames' focal length in pixels, for frames without it in their EXIF "
        "(exported, rendered): the lens's focal length in mm / the sensor's width in mm x the "
        "frame's width in pixels, e.g. 50 / 36 x 1044 = 1450 (default: the frames' EXIF; the "
        "turntable solver needs one of the two, COLMAP's mappers estimate it without)",
    )
    parser.add_argument(
        "--quality",
        choices=QUALITIES,
        default="high",
        help="high: DSP-SIFT with affine shapes inside the masks, for smooth fabric (plain "
        "SIFT over the whole frame of a moving camera), and guided matching; fast: plain "
        "SIFT (default: high)",
    )
    add_switch(
        parser,
        "hull",
        "carve the garment mesh from the masks (default)",
        "cameras and points only",
        default=True,
    )
    parser.add_argument(
        "--voxels",
        type=int,
        default=DEFAULT_VOXELS,
        metavar="N",
        help=f"hull grid, long side, {VOXELS[0]} to {VOXELS[1]} (default: {DEFAULT_VOXELS})",
    )
