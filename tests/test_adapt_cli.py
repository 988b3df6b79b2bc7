"""`segcore adapt` on the command line (segcore.cli, segcore.adapt)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np

from tests.test_adapt import FRAMES, _sha, sequence  # noqa: F401  (the fixture)


def test_cli_adapt_into_segment_output(sequence, random_model, tmp_path, capsys):  # noqa: F811
    """`segcore adapt FRAMES OUT --corrected MASKS` after `segcore segment`: exit 0, every
    frame written again, the correction kept; an empty correction: exit 2, one line."""
    from segcore.cli import main

    images, truth = sequence
    out, corrected = tmp_path / "out", tmp_path / "corrected"
    model = ["--model", str(random_model["card"]), "-q"]
    assert main(["segment", str(images), "-o", str(out), *model]) == 0
    corrected.mkdir()
    cv2.imwrite(str(corrected / "0002.png"), np.zeros((300, 400), np.uint8))
    adapt = ["adapt", str(images), str(out), "--corrected", str(corrected), *model]
    assert main(adapt) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "0002.png: the correction is empty" in err
    shutil.copyfile(truth / "0002.png", corrected / "0002.png")
    assert main(adapt) == 0
    assert _sha(out / "masks" / "0002.png") == _sha(truth / "0002.png")
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["ok"] == FRAMES and "0002.jpg" in report["adapt"]["corrected"]


def test_relative_output_folder_stays_the_runs_own(sequence, random_model, tmp_path, monkeypatch):  # noqa: F811
    """`segcore segment shoot -o out` from the shoot's parent folder (OUT relative to the
    working folder): the run's manifest lists its frames, so `--overwrite` and `adapt`
    replace them instead of refusing them as someone else's."""
    from segcore.cli import main

    images, truth = sequence
    monkeypatch.chdir(tmp_path)
    model = ["--model", str(random_model["card"]), "-q"]
    assert main(["segment", "images", "-o", "out", *model]) == 0
    files = json.loads((tmp_path / "out" / ".segment-outputs.json").read_text())["files"]
    assert "masks/0000.png" in files and "rgba/0000.png" in files
    assert main(["segment", "images", "-o", "out", "--overwrite", *model]) == 0
    (tmp_path / "fixed").mkdir()
    shutil.copyfile(truth / "0002.png", tmp_path / "fixed" / "0002.png")
    assert main(["adapt", "images", "out", "--corrected", "fixed", *model]) == 0
