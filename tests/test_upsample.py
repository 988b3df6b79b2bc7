import numpy as np
import pytest
from scipy import ndimage

from segcore.upsample import spline_upsample


@pytest.mark.parametrize(
    "src,dst",
    [
        ((7, 5), (30, 17)),
        ((24, 32), (480, 640)),
        ((10, 10), (10, 10)),
        ((40, 30), (13, 11)),
        ((1, 1), (5, 3)),
        ((2, 9), (301, 37)),
    ],
)
def test_matches_scipy_order3_splines(src, dst):
    p = np.random.default_rng(0).random(src)
    ref = ndimage.zoom(
        p, (dst[0] / src[0], dst[1] / src[1]), order=3, mode="reflect", grid_mode=True
    )
    out = spline_upsample(p, dst)
    assert out.shape == dst and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_constant_map_stays_constant_and_step_edge_stays_put():
    const = np.full((12, 16), 0.3)
    np.testing.assert_allclose(spline_upsample(const, (120, 160)), 0.3, atol=1e-6)
    step = np.zeros((16, 16))
    step[:, 8:] = 1.0
    up = spline_upsample(step, (160, 160))
    # the 0.5 crossing sits on the step between pixels 7 and 8 -> x = 80 at 10x
    row = up[80]
    crossing = np.flatnonzero(np.diff(np.sign(row - 0.5)))[0]
    assert abs(crossing + 0.5 - 80) <= 1


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        spline_upsample(np.zeros((3, 3, 3)), (9, 9))
    with pytest.raises(ValueError):
        spline_upsample(np.zeros((3, 3)), (0, 9))
