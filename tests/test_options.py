"""segcore.options: one option set for every front end, readable without numpy or OpenCV."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from segcore import options
from segcore.formats import WRITERS
from segcore.pipeline import SegmentOptions

from .conftest import ROOT


def test_format_names_are_the_writers():
    assert tuple(WRITERS) == options.FORMATS
    assert set(options.DEFAULT_FORMATS) <= set(options.FORMATS)


def test_options_load_nothing_else():
    """The add-on reads the options while enabling, before numpy and OpenCV may exist."""
    code = (
        "import sys, segcore.options\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'cv2', 'scipy', 'segcore')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['segcore', 'segcore.options']"


def _parse(argv, builder=options.add_segment_arguments):
    p = argparse.ArgumentParser()
    builder(p)
    return p.parse_args(argv)


def test_the_command_line_defaults_are_the_library_defaults():
    assert SegmentOptions(**options.segment_keywords(_parse([]))) == SegmentOptions()


def test_segment_flags_become_segment_options():
    args = _parse(
        ["--size", "512", "--no-refine", "--flip", "--edges", "guided", "--formats",
         "mask,colmap", "--overwrite", "--workers", "3", "--temporal", "--plate", "off",
         "--keep", "garment"]
    )  # fmt: skip
    got = SegmentOptions(**options.segment_keywords(args))
    assert got == SegmentOptions(
        size=512, refine=False, flip=True, edges="guided", formats=("mask", "colmap"),
        overwrite=True, workers=3, temporal=True, plate="off", keep="garment",
    )  # fmt: skip


def test_unknown_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["--formats", "mask,tiff"])
    assert exc.value.code == 2
    assert "unknown format tiff; choose from mask, rgba" in capsys.readouterr().err


def test_reconstruct_defaults_are_run_reconstructions():
    import inspect

    from segcore.recon import run_reconstruction

    args = vars(_parse([], options.add_reconstruct_arguments))
    params = inspect.signature(run_reconstruction).parameters
    assert {k: params[k].default for k in args} == args
