"""The α-β model: the ranks' programs simulated on a plan, against the textbook formulas."""
import pytest

from collectives.algorithms import ALGORITHMS, Net
from collectives.base import Call
from collectives.schedule import Part, program
from conftest import flat
from fabric import work
from fabric.model import predict
from fabric.plan import build
from fabric.profile import parse
from test_profile import IB


def _plan(profile, k=1.0):
    return build(parse(profile, "m.yaml"), k)


def t(plan, alg, c, net=None, op_pause=0.0, step_pause=0.0):
    net = net or work.net(plan)
    s = ALGORITHMS[alg].schedule(c, net)
    programs = {r: program(s, r, op_pause=op_pause, step_pause=lambda x: step_pause) for r in c.ranks}
    return predict(plan, [Part("call", alg, c.ranks, call=c, schedule=s, programs=programs)])


def world(n):
    return (tuple(range(n)),)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_a_pre_posted_ring_pays_one_way_per_step_and_gloo_a_round_trip(n):
    plan = _plan(flat(ranks=n, rate="1Gbit/s", latency="1ms"))
    a, beta = 1e-3, 1e9 / 8
    S = 8 * 2**20
    ring = t(plan, "ring", Call("all_reduce", world(n), S // 4), Net())      # one chunk per step
    assert ring.time_s == pytest.approx(2 * (n - 1) * (a + S / n / beta), rel=1e-3)
    assert ring.latency_s == pytest.approx(2 * (n - 1) * a) and ring.bottleneck_bps == 1e9
    small = Call("all_reduce", world(n), 2 * n)        # one element in each of gloo's 2n segments
    # gloo's ring: each of its 2(n-1) steps waits for the receiver's ready notice, a round trip
    assert t(plan, "gloo", small).time_s == pytest.approx(2 * (n - 1) * 2 * a, rel=1e-3)
    assert t(plan, "ring", small).time_s == pytest.approx(2 * (n - 1) * a, rel=1e-3)


def test_pipelining_hides_the_latency_of_a_bandwidth_bound_ring():
    n, S = 8, 64 * 2**20
    plan = _plan(flat(ranks=n, rate="1Gbit/s", latency="5ms"))
    c = Call("all_reduce", world(n), S // 4)
    whole = t(plan, "ring", c, Net()).time_s
    piped = t(plan, "ring", c, Net(chunk_bytes=625_000)).time_s                # 5 ms x 125 MB/s
    wire = 2 * (n - 1) * S / n / (1e9 / 8)
    assert whole == pytest.approx(wire + 2 * (n - 1) * 5e-3, rel=1e-3)
    assert wire < piped < wire + 2 * (n - 1) * 5e-3 / 4                      # most of the latency hidden


@pytest.mark.parametrize("alg,op", [("ring", "all_reduce"), ("two_shot", "all_reduce"), ("ring", "all_gather"),
                                    ("direct", "all_to_all"), ("direct", "sendrecv"), ("ring", "reduce_scatter"),
                                    ("direct", "reduce_scatter"), ("ring", "broadcast")])
def test_large_message_busbw_reaches_the_link_on_a_flat_fabric(alg, op):
    """nccl-tests' bus bandwidth is defined so that the bandwidth-optimal algorithms reach the link."""
    from collectives import COLLECTIVES
    n, S = 8, 64 * 2**20
    plan = _plan(flat(ranks=n, rate="1Gbit/s"))
    c = Call(op, world(n), S // 4, "float32" if "reduce" in op else "int32")
    busbw = S / t(plan, alg, c, Net(chunk_bytes=2**20)).time_s * COLLECTIVES[op].bus_factor(n)
    # a chain (broadcast) of n-1 hops with C chunks needs (n-2+C)/C of the time on the wire
    assert busbw == pytest.approx(1e9 / 8, rel=0.03 if op != "broadcast" else 0.12)


def test_one_shot_is_one_latency_and_all_the_bytes_to_everyone():
    n, S = 8, 16 * 1024
    plan = _plan(flat(ranks=n, rate="8Gbit/s", latency="2ms"))
    p = t(plan, "one_shot", Call("all_reduce", world(n), S // 4))
    assert p.time_s == pytest.approx(2e-3 + (n - 1) * S / 1e9, rel=1e-3)


def test_gloo_reduce_scatter_and_broadcast_reach_a_fraction_of_the_link():
    """gloo's reduce-scatter is a whole all-reduce (half the link); its broadcast sends from the
    root to everyone (1/(n-1) of it)."""
    from collectives import COLLECTIVES
    n, S = 8, 64 * 2**20
    plan = _plan(flat(ranks=n, rate="1Gbit/s"))
    for op, share in (("reduce_scatter", 0.5), ("broadcast", 1 / (n - 1))):
        c = Call(op, world(n), S // 4, "float32" if op == "reduce_scatter" else "int32")
        busbw = S / t(plan, "gloo", c).time_s * COLLECTIVES[op].bus_factor(n)
        assert busbw == pytest.approx(share * 1e9 / 8, rel=0.02)


def test_two_tier_all_to_all_is_bound_by_the_shared_uplink():
    plan = _plan(IB, 1000.0)
    n, S = 8, 8 * 2**20
    pred = t(plan, "direct", Call("all_to_all", world(n), S // 4, "int32"))
    uplink = 400e9 / 1000
    assert pred.bottleneck_bps == pytest.approx(uplink)
    # each domain sends 4 ranks x 4 remote peers x S/8 over its uplink, after the inter latency
    assert pred.time_s == pytest.approx(1.5e-3 + 2 * S / (uplink / 8), rel=0.01)


def test_hierarchical_beats_the_flat_ring_across_domains():
    plan = _plan(IB, 1000.0)
    c = Call("all_reduce", world(8), (16 << 20) // 4)
    assert t(plan, "hierarchical", c).time_s < 0.8 * t(plan, "ring", c).time_s


def test_a_send_to_a_receiver_already_waiting_costs_one_way():
    """gloo sends once the receiver announced its buffer: a round trip, unless the receive was
    posted long before (a pipeline stage idle until its input), then the one-way latency."""
    plan = _plan(flat(2, "8Gbit/s", latency="10ms"))
    c = Call("p2p", (), dtype="uint8", flows=((0, 1, 1_000_000),))
    assert t(plan, "gloo", c).time_s == pytest.approx(2 * 10e-3 + 1e-3, rel=0.01)
    assert t(plan, "direct", c).time_s == pytest.approx(10e-3 + 1e-3, rel=0.01)
    b = work.Builder(plan)
    idle = Part("compute", "math", (0,), seconds=50e-3)                     # the sender is busy first
    handoff, _ = b.choose(c, "handoff", "gloo")
    assert predict(plan, [idle, handoff]).time_s == pytest.approx(50e-3 + 10e-3 + 1e-3, rel=0.01)


def test_transfers_to_different_peers_share_the_port_and_to_one_peer_follow_each_other():
    """A root sending to two children at once halves each one's rate (TCP connections through
    the shapers, a GPU's copies to several peers): a 4-rank tree broadcast of S is 2S/β for the
    root's two children, then S/β for the grandchild, not S/β to the first child and forwarding
    at once.  Chunks to one peer follow each other (one connection): a 3-rank chain of two
    chunks forwards the first while the second crosses."""
    a, beta, S = 1e-3, 1e9 / 8, 4 * 2**20
    plan = _plan(flat(ranks=4, rate="1Gbit/s", latency="1ms"))
    tree = t(plan, "tree", Call("broadcast", world(4), S // 4, root=0), Net())
    assert tree.time_s == pytest.approx(3 * S / beta + 2 * a, rel=1e-3)
    plan = _plan(flat(ranks=3, rate="1Gbit/s", latency="1ms"))
    chain = t(plan, "ring", Call("broadcast", world(3), S // 4, root=0), Net(chunk_bytes=S // 2))
    assert chain.time_s == pytest.approx(1.5 * S / beta + 2 * a, rel=1e-3)


def test_endpoint_costs_add_per_op_and_per_step():
    plan = _plan(flat(ranks=4, rate="8Gbit/s", latency="1ms"))
    c = Call("all_reduce", world(4), 1)
    base = t(plan, "ring", c).time_s
    assert t(plan, "ring", c, op_pause=3e-3).time_s == pytest.approx(base + 3e-3, rel=1e-3)
    assert t(plan, "ring", c, step_pause=1e-3).time_s == pytest.approx(base + 6 * 1e-3, rel=1e-3)


def test_endpoint_costs_come_from_the_profile_and_its_link_classes():
    p = flat(ranks=4, rate="8Gbit/s", latency="1ms")
    [bare] = work.build(_plan(p), "ring")
    p["endpoint"] = {"op": "4ms", "step": "0.5ms"}
    [w] = work.build(_plan(p), "ring")
    assert w.seconds - bare.seconds == pytest.approx(4e-3 + 6 * 0.5e-3, rel=1e-3)   # 6 ring steps
    p["links"]["eth"]["endpoint"] = {"step": "2ms"}                        # the class's own step, the profile's op
    [w] = work.build(_plan(p), "ring")
    assert w.seconds - bare.seconds == pytest.approx(4e-3 + 6 * 2e-3, rel=1e-3)


def test_auto_picks_what_the_model_finds_fastest():
    plan = _plan(parse_yaml("profiles/nvlink4-h100.yaml"), 50000.0)
    small, large = (Call("all_reduce", world(8), n // 4) for n in (16 << 10, 16 << 20))
    b = work.Builder(plan)
    _, c_small = b.choose(small, "s", "auto")
    _, c_large = b.choose(large, "l", "auto")
    assert c_small.algorithm == "one_shot" and c_large.algorithm in ("ring", "two_shot")
    assert c_small.times[c_small.algorithm] == min(c_small.times.values()) and "gloo" not in c_small.times
    _, forced = b.choose(small, "s", "tree")
    assert forced.algorithm == "tree" and forced.forced


def test_auto_breaks_a_tie_by_registration_order_not_rounding():
    # without latency ring and two-shot, direct and pairwise move the same bytes through the same
    # ports: the model ties them, and auto must take the same one at every rank count
    for n in (8, 16, 32, 64, 72):
        b = work.Builder(_plan(flat(ranks=n, rate="100Gbit/s")))
        for op, count, want, other in (("all_reduce", 1 << 20, "ring", "two_shot"),
                                       ("all_to_all", n * (64 << 10), "direct", "pairwise")):
            _, c = b.choose(Call(op, world(n), count), op, "auto")
            assert c.times[other] == pytest.approx(c.times[want], rel=1e-6)
            assert c.algorithm == want and c.tied == [other] and not c.forced
    assert work.fastest({"pairwise": 1.0, "direct": 1.0 + 1e-3}) == "pairwise"    # a real difference wins


def parse_yaml(path):
    import yaml
    from conftest import ROOT
    return yaml.safe_load((ROOT / path).read_text())
