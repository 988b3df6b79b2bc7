import pytest

torch = pytest.importorskip("torch")

from segcore.config import BASELINE, NetConfig  # noqa: E402
from segcore.model import GarmentNet, ResidualBlock, count_parameters  # noqa: E402


@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (96, 160), (224, 32)])
def test_logits_have_input_size(hw):
    m = GarmentNet(NetConfig()).eval()
    with torch.no_grad():
        y = m(torch.zeros(1, 3, *hw))
    assert y.shape == (1, 1, *hw)


def test_default_is_small_and_multiscale():
    m = GarmentNet(NetConfig())
    assert count_parameters(m) <= 3_000_000
    assert [lvl for lvl, _, _ in NetConfig().branches] == [0, 1, 2]
    assert NetConfig().stride == 32


def test_baseline_is_single_scale_without_shortcuts():
    m = GarmentNet(BASELINE)
    assert len(m.branches) == 1
    assert all(not b.residual for b in m.modules() if isinstance(b, ResidualBlock))
    with torch.no_grad():
        assert m.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_residual_shortcut_is_3x3_conv_where_channels_double():
    blk = ResidualBlock(8, 16, bn=True, residual=True)
    assert blk.shortcut.kernel_size == (3, 3) and blk.shortcut.out_channels == 16
    assert blk.shortcut.stride == (1, 1) and blk.shortcut.padding == (1, 1)
    assert ResidualBlock(8, 8, True, True).shortcut is None  # identity


def test_config_round_trip():
    cfg = NetConfig(widths=(4, 8), depths=(1, 2), batchnorm=False)
    assert NetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        NetConfig.from_dict({"bogus": 1})
