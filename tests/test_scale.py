import os

import pytest

from conftest import flat
from fabric.profile import parse
from fabric.scale import Calibration, choose, nice_ceil, step_latency
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
    assert 3.6e12 / k * 8 <= 0.5 * 4e9              # 8 ranks at their port's rate within 50% of capacity
    assert cal.overhead_s <= 0.10 * 1.5e-6 * k      # overhead within 10% of the smallest one-way step
    assert nice_ceil(k) == k


def test_latency_bound_uses_the_closest_pair_one_way_with_its_step_cost():
    """Two domains: the cross-domain pair only crosses the uplink (0.5 us one way), so the
    smallest step α is 0.5 us, not the 2 us intra latency; a step's endpoint cost adds to it."""
    p = parse({"name": "t", "description": "d", "scale": "auto",
               "links": {"nv": {"rate": "1Gbit/s", "latency": "2us"}, "isl": {"rate": "1Gbit/s", "latency": "0.5us"}},
               "topology": {"kind": "two_tier", "domains": 2, "ranks_per_domain": 2, "intra": "nv", "inter": "isl"},
               "workload": [{"op": "all_reduce", "bytes": "1KiB"}]}, "t.yaml")
    assert step_latency(p) == pytest.approx(0.5e-6)
    assert choose(p, Calibration(overhead_s=1e-3, capacity_bps=1e12, method="t")).k == nice_ceil(1e-3 / (0.1 * 0.5e-6))
    from dataclasses import replace
    from fabric.profile import Endpoint
    p2 = replace(p, links={**p.links, "isl": replace(p.links["isl"], endpoint=Endpoint(step_s=1e-6))})
    assert step_latency(p2) == pytest.approx(1.5e-6)


def test_auto_without_latency_looks_at_rates_and_host_work():
    p = parse(dict(flat(rate="100Gbit/s"), scale="auto"), "f")
    assert choose(p, Calibration(1e-9, 4e9, "t", add_Bps=1e15)).k == nice_ceil(100e9 * 4 / (0.5 * 4e9))
    # a slow host: the 1 MiB all-reduce's transfers and additions set k, and the reason says so
    c = choose(p, Calibration(1.0, 4e9, "t"))
    assert c.k > nice_ceil(100e9 * 4 / (0.5 * 4e9)) and "all_reduce 1048576 B" in c.reason


def _works(profile, algorithm="auto"):
    from fabric import work as works
    from fabric.plan import build
    return works.build(build(profile, 1.0), algorithm)


@pytest.mark.parametrize("algorithm,xfers,added", [
    ("one_shot", 8 * 7, 8 * 7 * 4096),         # every rank sends S to 7 others, each adds 7 x S
    ("two_shot", 2 * 8 * 7, 8 * 7 * 512),      # reduce-scatter then all-gather, 7 blocks of S/8 added per rank
    ("ring", 2 * 7 * 8, 8 * 7 * 512),          # 2(n-1) steps of 8 transfers; n-1 blocks added per rank
])
def test_host_seconds_counts_every_transfer_and_added_byte(algorithm, xfers, added):
    from fabric.scale import CALIBRATION_RANKS, host_seconds
    p = parse(flat(ranks=8, rate="100Gbit/s", workload=[{"op": "all_reduce", "bytes": "4KiB"}]), "f")
    (w,) = _works(p, algorithm)
    per_xfer, per_byte = Calibration(4e-3, 1e9, "t", add_Bps=1e18), Calibration(0.0, 1e9, "t", add_Bps=1e9)
    assert host_seconds(w, per_xfer, 8) == pytest.approx(xfers * 4e-3 / CALIBRATION_RANKS, rel=1e-6)
    cpus = min(os.cpu_count() or 1, 8)
    assert host_seconds(w, per_byte, 8) == pytest.approx(added / (1e9 * cpus))


def test_host_work_raises_k_for_many_transfers_per_step():
    """A direct 8-rank step is 56 transfers: at the same latency the one-shot all-reduce needs a
    larger k than the ring of 8 transfers per step, and k keeps its host time within HOST_SHARE."""
    from fabric.scale import HOST_SHARE, host_bound, host_seconds
    p = parse({"name": "t", "description": "d", "scale": "auto",
               "links": {"nv": {"rate": "450GB/s", "latency": "2us"}},
               "topology": {"kind": "flat", "ranks": 8, "link": "nv"},
               "workload": [{"op": "all_reduce", "bytes": "4KiB"}]}, "t.yaml")
    cal = Calibration(overhead_s=1e-3, capacity_bps=1e12, method="t")
    ring, one_shot = host_bound(p, cal, "ring")[0], host_bound(p, cal, "one_shot")[0]
    assert one_shot > 5 * ring > 0
    k = choose(p, cal, "one_shot").k
    (w,) = _works(p, "one_shot")
    assert host_seconds(w, cal, 8) <= HOST_SHARE * w.seconds * k
    assert "one_shot" in choose(p, cal, "one_shot").reason


def test_a_faster_uplink_than_the_ports_does_not_raise_k():
    """10 Tbit/s between two domains of 4 ranks on 1 Gbit/s ports: the ranks send at most 4 Gbit/s."""
    p = parse({"name": "t", "description": "d", "scale": "auto",
               "links": {"port": {"rate": "1Gbit/s"}, "up": {"rate": "10Tbit/s"}},
               "topology": {"kind": "two_tier", "domains": 2, "ranks_per_domain": 4, "intra": "port", "inter": "up"},
               "workload": [{"op": "all_reduce", "bytes": "1KiB"}]}, "t.yaml")
    assert choose(p, Calibration(1e-9, 4e9, "t", add_Bps=1e15)).k == nice_ceil(8 * 1e9 / (0.5 * 4e9))


def test_a_latency_bound_workload_is_held_to_the_bytes_it_moves_not_every_port_at_full_rate():
    """Small all-reduces on NVLink: the ports are idle most of an iteration, so the bytes moved
    (at the host's capacity, with the transfers, within HOST_SHARE of the model time) set the
    rate bound; a 16 MiB all-to-all moves too much for that and keeps every port's full rate."""
    from fabric.scale import HOST_SHARE, RATE_SHARE, host_seconds, moved_bits
    def nv(workload):
        return parse({"name": "t", "description": "d", "scale": "auto",
                      "links": {"nv": {"rate": "450GB/s", "latency": "2us"}},
                      "topology": {"kind": "flat", "ranks": 8, "link": "nv"}, "workload": workload}, "t.yaml")
    cal = Calibration(overhead_s=300e-6, capacity_bps=0.8e9, method="t", add_Bps=0.8e9)
    every_port = 3.6e12 * 8 / (RATE_SHARE * cal.capacity_bps)
    small = nv([{"op": "all_reduce", "bytes": "16KiB", "algorithm": "one_shot"}])
    (w,) = _works(small)
    assert moved_bits(w) == 8 * 7 * 16384 * 8                      # every rank sends 16 KiB to 7 others
    c = choose(small, cal)
    assert c.k < every_port and "every port at full rate at once would need" in c.reason
    assert host_seconds(w, cal, 8) + moved_bits(w) / cal.capacity_bps <= HOST_SHARE * w.seconds * c.k
    big = nv([{"op": "all_to_all", "bytes": "16MiB"}])
    assert choose(big, cal).k == nice_ceil(every_port)
