"""``python build.py demo``: the bundled example segmented and scored (the full run is the
README's first command; its figures are in docs/results.md)."""

from __future__ import annotations

from tools import demo


def test_demo_output_folder_it_did_not_write_is_one_line_and_untouched(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "rgba").mkdir(parents=True)
    mine = out / "rgba" / "0000.png"
    mine.write_bytes(b"someone else's picture")
    assert demo.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "0000.png" in err[0]
    assert mine.read_bytes() == b"someone else's picture"
