"""The scale curves' classification: flat, logarithmic or linear in their x."""

import pytest

from bench.curves import Curve


@pytest.mark.parametrize(
    ("points", "shape"),
    [
        ([(1, 100.0), (10_000, 104.0), (100_000, 109.0)], "flat"),
        ([(1, 100.0), (8, 130.0), (64, 190.0)], "logarithmic"),
        ([(10_000, 5.0), (1_000_000, 40.0), (10_000_000, 400.0)], "linear"),
        ([(1_000, 1.0), (100_000, 95.0), (1_000_000, 1010.0)], "linear"),
        ([(1_000, 4.3), (10_000, 6.1)], "logarithmic"),
    ],
)
def test_a_curve_says_how_its_cost_grows(points, shape):
    curve = Curve("c", "x", "y", points)
    assert curve.shape() == shape
    assert curve.table().splitlines()[0].endswith(shape)
    assert curve.table().splitlines()[1].strip().endswith("1.00×")
