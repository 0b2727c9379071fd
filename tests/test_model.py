"""The α-β model on a plan: textbook formulas on flat fabrics, shared uplinks on two tiers."""
from types import SimpleNamespace

import pytest

from collectives import COLLECTIVES
from conftest import flat
from fabric.model import predict
from fabric.plan import build
from fabric.profile import parse
from test_profile import IB

EVEN = SimpleNamespace(splits="even", root=0)


def _plan(profile, k=1.0):
    return build(parse(profile, "m.yaml"), k)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ring_all_reduce_formula(n):
    plan = _plan(flat(ranks=n, rate="1Gbit/s", latency="1ms"))
    S = 8 * 2**20
    t = predict(plan, COLLECTIVES["all_reduce"].schedule(n, S, EVEN))
    alpha, beta = 1e-3, 1e9 / 8
    # gloo's α per step is a round trip: the receiver's "ready" goes back, then the data goes out
    assert t.time_s == pytest.approx(2 * (n - 1) * (2 * alpha + S / n / beta))
    assert t.bottleneck_bps == 1e9 and t.latency_s == pytest.approx(2 * (n - 1) * 2 * alpha)


@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "all_to_all", "sendrecv"])
def test_large_message_busbw_equals_the_link_on_a_flat_fabric(op):
    """nccl-tests' bus bandwidth is defined so that it reaches the link rate: check the model agrees."""
    n, S = 8, 64 * 2**20
    plan = _plan(flat(ranks=n, rate="1Gbit/s"))
    coll = COLLECTIVES[op]
    t = predict(plan, coll.schedule(n, S, EVEN)).time_s
    busbw = S / t * coll.bus_factor(n)
    assert busbw == pytest.approx(1e9 / 8)


def test_gloo_reduce_scatter_and_broadcast_reach_a_fraction_of_the_link():
    """What gloo's algorithms cost against nccl-tests' bus factors: half the link for
    reduce-scatter (a full all-reduce), 1/(n-1) for broadcast (the root sends to everyone)."""
    n, S = 8, 64 * 2**20
    plan = _plan(flat(ranks=n, rate="1Gbit/s"))
    for op, share in (("reduce_scatter", 0.5), ("broadcast", 1 / (n - 1))):
        coll = COLLECTIVES[op]
        t = predict(plan, coll.schedule(n, S, EVEN)).time_s
        assert S / t * coll.bus_factor(n) == pytest.approx(share * 1e9 / 8)


def test_two_tier_all_to_all_is_bound_by_the_shared_uplink():
    plan = _plan(IB, 1000.0)
    n, S = 8, 8 * 2**20
    pred = predict(plan, COLLECTIVES["all_to_all"].schedule(n, S, EVEN))
    uplink = 400e9 / 1000
    # each domain sends 4 ranks x 4 remote peers x S/8 over its uplink
    assert pred.bottleneck_bps == pytest.approx(uplink)
    # the slow flow crosses the uplink: its round trip (2 x 1.5 us x 1000) plus the uplink's 2S bytes;
    # the intra-domain round trip (2 x 2 us x 1000) is the step's latency floor, not part of its time
    assert pred.time_s == pytest.approx(3e-3 + 2 * S / (uplink / 8))
    assert pred.latency_s == pytest.approx(4e-3)


def test_a_step_ends_with_its_slowest_flow_not_max_alpha_plus_max_beta():
    """Ring all-reduce over two domains: intra flows have the long round trip, the two flows
    through the uplinks carry their bytes on the slow link; the step takes the larger sum."""
    profile = dict(IB, links={"nv": {"rate": "8Gbit/s", "latency": "10ms"}, "up": {"rate": "1Gbit/s", "latency": "1ms"}},
                   topology=dict(IB["topology"], intra="nv", inter="up"))
    plan, n, S = _plan(profile), 8, 8 * 2**20
    pred = predict(plan, COLLECTIVES["all_reduce"].schedule(n, S, EVEN))
    intra = 2 * 10e-3 + S / n * 8 / 8e9
    cross = 2 * 1e-3 + S / n * 8 / 1e9
    assert pred.time_s == pytest.approx(2 * (n - 1) * max(intra, cross))


def test_ring_crossing_domains_pays_the_uplink():
    plan = _plan(IB, 1000.0)
    inside = dict(IB, topology=dict(IB["topology"], domains=1, ranks_per_domain=8))
    S = 2**20
    t_two = predict(plan, COLLECTIVES["all_reduce"].schedule(8, S, EVEN)).time_s
    t_one = predict(_plan(inside, 1000.0), COLLECTIVES["all_reduce"].schedule(8, S, EVEN)).time_s
    assert t_two > t_one


def test_a_send_to_a_waiting_receiver_costs_one_way():
    """gloo sends once the receiver announced its buffer: a round trip, unless the receive was
    posted long before (a pipeline stage idle until its input), then the one-way latency."""
    plan = _plan(flat(2, "8Gbit/s", latency="10ms"))
    step = [[(0, 1, 1_000_000)]]
    assert predict(plan, step).time_s == pytest.approx(2 * 10e-3 + 1e-3, rel=0.01)
    assert predict(plan, step, one_way=True).time_s == pytest.approx(10e-3 + 1e-3, rel=0.01)
