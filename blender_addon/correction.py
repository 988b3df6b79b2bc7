"""Correct a frame's mask in Blender, then adapt the sequence to the corrections: no bpy here.

The correction image is the frame with its mask as alpha (the cut-out over Blender's
checkerboard); the artist paints with the brush blend modes *Add Alpha* (keep) and *Erase
Alpha* (remove), and Save Correction writes the alpha, thresholded at one half, as
``OUT/corrected/<frame stem>.png`` (255 = subject): a file of the artist's that no run writes
to. Adapt to Corrections runs ``segcore.adapt.AdaptJob`` on the input frames with those
masks. The operators (``correct.py``) turn these into Blender images and runs.
"""

from __future__ import annotations

from pathlib import Path

from .runner import Settings, blender_pixels, preview_path, segcore


def corrected_dir(settings: Settings) -> Path:
    """``OUT/corrected``: where the artist's masks are kept (``segcore.adapt.CORRECTED_DIR``)."""
    return Path(settings.output_dir) / segcore("adapt").CORRECTED_DIR


def correction_pixels(settings: Settings, index: int):
    """``(pixels, width, height, stem)`` of the correction image of frame ``index``: the
    frame with its current mask as alpha (the saved correction if there is one, else the
    segmentation's mask), as Blender's ``Image.pixels`` (float RGBA, bottom row first)."""
    io = segcore("io")
    frame = preview_path(settings, index)
    saved = corrected_dir(settings) / f"{frame.stem}.png"
    mask_path = saved if saved.is_file() else Path(settings.output_dir) / "masks" / saved.name
    if not mask_path.is_file():
        raise segcore("errors").InputError(
            f"{mask_path}: no mask to correct; segment the sequence first (with the Mask format)"
        )
    if mask_path != saved:
        _check_segmented_keep(settings)
    bgr = io.read_image(frame)
    mask = io.read_label(mask_path)
    if mask.shape != bgr.shape[:2]:
        raise segcore("errors").InputError(
            f"{mask_path}: the mask is not the frame's size; segment the sequence again"
        )
    pixels = blender_pixels(bgr)
    pixels.reshape(*mask.shape, 4)[::-1, :, 3] = mask  # bottom row first, as the pixels
    return pixels, bgr.shape[1], bgr.shape[0], frame.stem


def _check_segmented_keep(settings: Settings) -> None:
    """``InputError`` when ``OUT/masks`` were segmented keeping other classes than the
    panel's Keep (``OUT/report.json``'s options): the correction would start from masks of
    other classes and be saved as the panel's."""
    import json

    adapt = segcore("adapt")
    report = Path(settings.output_dir) / "report.json"
    try:
        kept = json.loads(report.read_text(encoding="utf-8"))["options"].get("keep")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # no report to say: the masks are taken as they are
    keep = settings.options().keep
    segmented, panel = adapt.keep_text(kept), adapt.keep_text(tuple(keep) if keep else None)
    if segmented != panel:
        raise segcore("errors").InputError(
            f"{report}: the masks were segmented keeping {segmented}, Keep is {panel}; set Keep "
            f"to {segmented} to correct them, or Segment again with Keep {panel}"
        )


def save_correction(settings: Settings, stem: str, pixels, width: int, height: int) -> Path:
    """Write the correction image's alpha (``Image.pixels``, flat float RGBA, bottom row
    first) as ``OUT/corrected/<stem>.png``, and the panel's Keep beside it
    (``segcore.adapt.record_keep``); ``InputError`` for an empty or full mask, or one painted
    with another Keep than the corrections already there."""
    import numpy as np

    alpha = np.asarray(pixels, np.float32).reshape(height, width, 4)[::-1, :, 3]
    mask = np.where(alpha > 0.5, np.uint8(255), np.uint8(0))
    path = corrected_dir(settings) / f"{stem}.png"
    adapt = segcore("adapt")
    adapt.check_share(path, mask > 0)
    keep = settings.options().keep
    adapt.record_keep(path.parent, tuple(keep) if keep else None, stem)
    segcore("io").write_png(path, mask)
    return path


def saved_corrections(settings: Settings) -> list[str]:
    """Names of the corrections saved so far (for the panel)."""
    folder = corrected_dir(settings) if settings.output_dir.strip() else None
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob("*.png"))


def create_adapt_job(settings: Settings):
    """A validated ``segcore.adapt.AdaptJob`` over the input frames and ``OUT/corrected``."""
    errors = segcore("errors")
    if not (settings.input_dir.strip() and settings.output_dir.strip()):
        raise errors.InputError(
            "set the input folder and the output folder the sequence was segmented into"
        )
    return segcore("adapt").AdaptJob(
        settings.input_dir, settings.output_dir, corrected_dir(settings), settings.options()
    )
