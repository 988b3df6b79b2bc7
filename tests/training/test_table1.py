"""``python -m training table1 --families``: the paper's variants trained with one budget and
scored on held-out families, with the classical baselines."""

import pytest

from ..conftest import tiny_train_config

pytest.importorskip("torch")


def test_table1_scores_every_variant_on_the_held_out_families(tmp_path):
    from segcore.config import NetConfig
    from training.shapes import make_shapes_dataset
    from training.table1 import VARIANTS, run_table1

    data = make_shapes_dataset(tmp_path / "train", sequences=3, frames=3, size=(96, 128), seed=1)
    fams = tmp_path / "fams"
    for k, fam in enumerate(("coat", "plaid")):
        make_shapes_dataset(fams / fam, sequences=1, frames=2, size=(96, 128), seed=10 + k)
    cfg = tiny_train_config(
        data,
        steps=4,
        epoch_steps=4,
        batch=2,
        crop=64,
        warmup=1,
        val_share=0.34,
        val_frames=2,
        arch=NetConfig(widths=(4, 8, 8), depths=(1, 1, 1), fuse_channels=4),
    )
    table = run_table1(cfg, tmp_path / "table1", families=[str(fams)])
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        *VARIANTS,
        "OpenCV GrabCut (rectangle init)",
        "background keying (Otsu)",
    ]
    for r in rows:
        cells = r.strip("| ").split(" | ")
        assert 0.0 <= float(cells[1]) <= 1.0  # F1, a mean over the 4 held-out frames
        assert cells[7].split()[0] in ("coat", "plaid")  # the worst family is named
    assert (tmp_path / "table1" / "table1.md").read_text().startswith(table)
