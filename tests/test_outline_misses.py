"""tools.outline_misses: where boundary F is lost, on the bundled example."""

from __future__ import annotations

import re

from .conftest import ROOT


def test_outline_misses_on_the_bundled_example(capsys):
    from tools.outline_misses import main

    assert main([str(ROOT / "examples" / "garment_ring")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("8 frames; tolerance 2 px")
    missed, within, beyond = (
        float(x)
        for x in re.search(
            r"one near: ([\d.]+)% \(within .*? ([\d.]+)%, beyond it ([\d.]+)%", out
        ).groups()
    )
    assert abs(missed - within - beyond) < 0.15  # the two parts add up (rounded)
    thinner, as_is, thicker = (
        float(x) for x in re.findall(r"(?:thinner|as is|thicker) ([\d.]+)", out)
    )
    assert 0.9 < as_is <= 1 and thinner < as_is and thicker < as_is  # the example's edges are right


def test_outline_misses_says_when_there_is_nothing(tmp_path, capsys):
    from tools.outline_misses import main

    assert main([str(tmp_path)]) == 2
    assert "no frame with a mask" in capsys.readouterr().out
