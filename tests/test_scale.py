import pytest

from conftest import flat
from fabric.profile import parse
from fabric.scale import Calibration, choose, nice_ceil
from test_profile import IB


@pytest.mark.parametrize("x,k", [(0.3, 1), (1, 1), (1.01, 2), (3, 5), (7, 10), (10, 10), (11, 20), (4321, 5000)])
def test_nice_ceil(x, k):
    assert nice_ceil(x) == k


def test_fixed_scale_wins():
    assert choose(parse(flat(), "f"), Calibration(1e-3, 1e9, "t")).k == 1


def test_auto_meets_the_rate_and_latency_bounds():
    cal = Calibration(overhead_s=500e-6, capacity_bps=4e9, method="test")
    p = parse(IB, "ib.yaml")
    k = choose(p, cal).k
    assert 3.6e12 / k * 8 <= 0.25 * 4e9            # 8 ranks at the fastest link within 25% of capacity
    assert cal.overhead_s <= 0.10 * 1.5e-6 * k      # overhead within 10% of the smallest latency
    assert nice_ceil(k) == k


def test_auto_without_latency_only_looks_at_rates():
    p = parse(dict(flat(rate="100Gbit/s"), scale="auto"), "f")
    assert choose(p, Calibration(1.0, 4e9, "t")).k == nice_ceil(100e9 * 4 / (0.25 * 4e9))
