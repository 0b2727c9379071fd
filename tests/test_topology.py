"""Topologies: every shipped profile's plan, byte for byte as before the topology registry
(tests/data/plan-digests.txt: each plan's SHA-256, written by `python tests/test_topology.py`
from the code before it; 5 MB of plans as text)."""
import hashlib
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from fabric.plan import build
from fabric.profile import load

DIGESTS = Path(__file__).parent / "data" / "plan-digests.txt"
SHIPPED = sorted(p for p in [*ROOT.glob("profiles/*.yaml"), *ROOT.glob("labs/*/*.yaml")]
                 if "topology:" in p.read_text())
K = 1000.0


def plan_text(path: Path) -> str:
    """A profile's plan at k = 1000: the commands fabric plan prints (nodes, links, every tc
    operation) and every rank pair's shaped hops, each with its band."""
    plan = build(load(path), K, run_id="0000")
    lines = list(plan.commands())
    for s in range(plan.ranks):
        for d in range(plan.ranks):
            if s != d:
                hops = " ".join(f"{shaper.key}/{band.minor:x}" for shaper, band in plan.path(s, d))
                lines.append(f"path {s}->{d}: {hops}")
    return "\n".join(lines) + "\n"


def name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def digest(path: Path) -> str:
    text = plan_text(path)
    return f"{name(path)} {hashlib.sha256(text.encode()).hexdigest()} {text.count(chr(10))} lines"


@pytest.mark.parametrize("path", SHIPPED, ids=name)
def test_a_shipped_profiles_plan_is_what_it_was(path):
    stored = {line.split()[0]: line for line in DIGESTS.read_text().splitlines()}
    assert digest(path) == stored[name(path)]


if __name__ == "__main__":      # write the digests (only from a commit whose plans are the reference)
    DIGESTS.write_text("".join(digest(p) + "\n" for p in SHIPPED))
    print(f"wrote {len(SHIPPED)} plan digests to {DIGESTS}", file=sys.stderr)


# ---- constellation -----------------------------------------------------------------------
import math  # noqa: E402

from fabric.profile import ProfileError, parse  # noqa: E402
from fabric.topology.constellation import C_M_PER_S, hexagonal  # noqa: E402


def constellation(**topology):
    topo = {"kind": "constellation", "satellites": 7, "spacing": "150m", "ranks_per_satellite": 2,
            "intra": "nv", "isl": "isl", "range": "200m", **topology}
    return {"name": "c", "scale": 1000, "links": {"nv": {"rate": "3.6Tbit/s", "latency": "2us"},
                                                  "isl": {"rate": "800Gbit/s", "latency": "1us"}},
            "topology": topo, "workload": [{"op": "all_reduce", "bytes": "1MiB"}]}


def test_a_hexagonal_formation_is_the_centre_then_rings_of_neighbours_one_spacing_apart():
    seven = hexagonal(7, 150.0)
    assert seven[0] == (0.0, 0.0, 0.0)
    assert all(math.dist(seven[0], p) == pytest.approx(150.0) for p in seven[1:])
    assert all(math.dist(seven[i], seven[i % 6 + 1]) == pytest.approx(150.0) for i in range(1, 7))  # the ring closes
    cluster = hexagonal(81, 100.0)         # 1 + 6 + 12 + 18 + 24 = 61, then 20 of the fifth ring
    assert len(set(cluster)) == 81 and max(math.dist(cluster[0], p) for p in cluster) == pytest.approx(500.0)


def test_isls_join_satellites_within_range_and_routes_go_hop_by_hop():
    topo = parse(constellation(), "c.yaml").topology
    assert len(topo.isls) == 12 and topo.describe().startswith("7 satellites of 2 ranks, 12 ISLs")
    assert topo.routes[(0, 4)] == [4] and topo.routes[(1, 4)] == [0, 4]     # across the ring: through the centre
    plan = build(parse(constellation(), "c.yaml"), K)
    hops = plan.path(2, 8)                      # rank 2 on satellite 1 -> rank 8 on satellite 4
    assert [s.key.split(":")[1][7:] for s, _ in hops] == ["r2", "i1x0", "i0x4", "p8"]
    # each ISL hop carries the isl class's latency plus its 150 m at c, emulated x k
    per_isl = (1e-6 + 150.0 / C_M_PER_S) * K
    assert plan.path_latency(2, 8) == pytest.approx(2 * per_isl)
    assert plan.path_latency(0, 1) == pytest.approx(2e-6 * K)              # same satellite: the intra class
    assert plan.routes[f"{plan.prefix}s1"][3] == ("198.18.4.0/24", f"{plan.prefix}i1x0")
    assert ("fab0000s1", "198.18.1.254/24") == (plan.prefix + "s1", plan.addresses[plan.prefix + "s1"][0][1])
    assert [p[0] for p in topo.probe_paths()] == ["intra-satellite", "1-hop", "2-hop"]


def test_isl_rates_by_length_and_explicit_positions():
    data = constellation(satellites=None, spacing=None, positions=[[0, 0], [100, 0], ["0.25km", 0]],
                         isl_rates={"120m": "1.6Tbit/s", "300m": "400Gbit/s"}, range="300m")
    del data["topology"]["satellites"], data["topology"]["spacing"]
    profile = parse(data, "c.yaml")
    topo = profile.topology
    assert [(a, b, round(d)) for a, b, d in topo.isls] == [(0, 1, 100), (0, 2, 250), (1, 2, 150)]
    assert topo.isl_link(profile, 0, 1).rate_bps == 1.6e12 and topo.isl_link(profile, 1, 2).rate_bps == 4e11
    assert topo.routes[(0, 2)] == [2]            # 250 m direct beats 100 + 150 m? equal: fewer hops wins


@pytest.mark.parametrize("change, key, expected", [
    ({"positions": [[0, 0]]}, "topology", "either satellites"),
    ({"range": "100m"}, "topology.range", "satellites 1, 2, 3, 4, 5, 6 have no chain of ISLs"),
    ({"spacing": "150"}, "topology.spacing", "a distance such as 150m"),
    ({"isl_rates": {"100m": "1Tbit/s"}}, "topology.isl_rates", "no rate for the 150.0 m ISL"),
    ({"satellites": 40}, "topology", "at most 72 ranks in all, got 40 satellites x 2 (ranks_at: "),
    ({"ranks_at": [0, 9]}, "topology.ranks_at", "expected a whole number between 0 and 6, got 9"),
    ({"isl": "nope"}, "topology.isl", "unknown link class 'nope'"),
])
def test_a_bad_constellation_names_its_key(change, key, expected):
    with pytest.raises(ProfileError) as info:
        parse(constellation(**change), "c.yaml")
    assert f"{key}: " in str(info.value) and expected in str(info.value)


def test_a_constellations_slow_link_is_a_ranks_not_a_domains():
    data = constellation()
    data["stragglers"] = [{"link": "domain:1", "rate_factor": 0.5}]
    with pytest.raises(ProfileError, match=r"stragglers\[0\].link: expected rank:N \(N < 14\), got 'domain:1'"):
        parse(data, "c.yaml")
    data["stragglers"] = [{"link": "rank:3", "rate_factor": 0.5}]
    plan = build(parse(data, "c.yaml"), K)
    assert plan.shapers[f"{plan.prefix}h3:{plan.host_intf(3)}"].rate_bps == pytest.approx(3.6e12 / K / 2)


def test_ranks_on_some_satellites_the_others_relaying():
    """81 satellites (more than fabric's 72 ranks) with ranks on the centre and one satellite of
    each ring outward: the relays route, each domain's /24 is on its satellite."""
    profile = parse(constellation(satellites=81, spacing="100m", range="120m", ranks_per_satellite=4,
                                  ranks_at=[0, 1, 7, 19, 37, 61]), "c.yaml")
    topo = profile.topology
    assert (topo.satellites, topo.domains, topo.ranks) == (81, 6, 24)
    assert [len(topo.routes[(0, s)]) for s in topo.ranked[1:]] == [1, 2, 3, 4, 5]
    assert topo.describe() == "81 satellites, 6 of them with 4 ranks, 211 ISLs within 120 m, up to 5 hops between ranks"
    plan = build(profile, K)
    assert len([n for n in plan.nodes if n.kind == "switch"]) == 81 and len(plan.hosts) == 24
    assert plan.addresses[f"{plan.prefix}s7"] == [(f"{plan.prefix}s7", "198.18.2.254/24")]     # domain 2
    assert plan.addresses[f"{plan.prefix}s8"] == [(f"{plan.prefix}s8", "198.19.0.9/32")]       # a relay
    hops = plan.path(0, 23)                 # centre -> satellite 61, five rings out
    assert len(hops) == 2 + 5 and hops[-1][0].node == f"{plan.prefix}s61"
    assert [p[0] for p in topo.probe_paths()] == ["intra-satellite"] + [f"{h}-hop" for h in range(1, 6)]


# ---- torus -------------------------------------------------------------------------------
def torus(**topology):
    return {"name": "t", "scale": 1000, "links": {"chip": {"rate": "1.6Tbit/s", "latency": "1us"},
                                                  "ici": {"rate": "400Gbit/s", "latency": "1us"}},
            "topology": {"kind": "torus", "dims": [4, 4], "intra": "chip", "link": "ici", **topology},
            "workload": [{"op": "all_reduce", "bytes": "1MiB"}]}


def test_a_torus_wraps_around_and_routes_dimension_by_dimension():
    topo = parse(torus(), "t.yaml").topology
    assert (topo.ranks, len(topo.edges)) == (16, 32)         # 4 x 4: every node 4 neighbours, wrap-around
    assert (0, 3) in topo.edges and (0, 12) in topo.edges     # row and column wrap
    assert topo.routes[(0, 3)] == [3]                          # one step back round the ring, not three forward
    assert topo.routes[(0, 10)] == [4, 8, 9, 10]               # the first dimension, then the second
    assert topo.describe() == "4 x 4 nodes of 1 rank, 32 links, up to 4 hops"
    plan = build(parse(torus(), "t.yaml"), K)
    assert plan.path_latency(0, 10) == pytest.approx(4 * 1e-6 * K)
    assert [s.key.split(":")[1][7:] for s, _ in plan.path(0, 10)] == ["r0", "i0x4", "i4x8", "i8x9", "i9x10", "p10"]
    assert parse(torus(dims=[2, 2, 2]), "t.yaml").topology.describe() == "2 x 2 x 2 nodes of 1 rank, 12 links, up to 3 hops"


@pytest.mark.parametrize("change, key, expected", [
    ({"dims": [4, 4, 4, 4]}, "topology.dims", "expected 1 to 3 dimensions"),
    ({"dims": [9, 9]}, "topology", "expected 2 to 72 ranks in all, got 9 x 9 nodes x 1"),
    ({"dims": [4, "x"]}, "topology.dims", "whole number"),
    ({"ranks_per_node": 0}, "topology.ranks_per_node", "whole number"),
])
def test_a_bad_torus_names_its_key(change, key, expected):
    with pytest.raises(ProfileError) as info:
        parse(torus(**change), "t.yaml")
    assert f"{key}: " in str(info.value) and expected in str(info.value)


@pytest.mark.root
def test_a_torus_without_latency_runs_every_collective_correctly_natively(tmp_path):
    """A 2 x 2 x 2 torus at its links' rates (no latency: no netem needed), every collective
    through routers, over routes of up to 3 hops: each rank's result checked."""
    import subprocess
    import yaml
    from fabric import cleanup
    data = torus(dims=[2, 2, 2])
    data["links"] = {"chip": {"rate": "1.6Tbit/s"}, "ici": {"rate": "400Gbit/s"}}
    data["workload"] = [{"op": op, "bytes": "64KiB", "iters": 2, "warmup": 1}
                        for op in ("all_reduce", "all_to_all", "all_gather", "sendrecv")]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    done = subprocess.run([sys.executable, "-m", "fabric.cli", "run", str(tmp_path / "t.yaml"), "--out",
                           str(tmp_path / "o"), "--vm", "never"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import json
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["correct"] for r in doc["results"]] == [True] * 4
    assert doc["emulation"]["shape"] == "2 x 2 x 2 nodes of 1 rank, 12 links, up to 3 hops"
    assert not cleanup.leftovers()


# ---- rail --------------------------------------------------------------------------------
def rail(**topology):
    return {"name": "r", "scale": 1000, "links": {"nv": {"rate": "3.6Tbit/s", "latency": "2us"},
                                                  "ib": {"rate": "400Gbit/s", "latency": "3us"}},
            "topology": {"kind": "rail", "nodes": 2, "gpus_per_node": 4, "intra": "nv", "rail": "ib",
                         "oversubscription": 2, **topology},
            "workload": [{"op": "all_reduce", "bytes": "1MiB"}]}


def test_a_rail_fabric_keeps_nvlink_inside_a_node_and_crosses_rails_through_a_spine():
    plan = build(parse(rail(), "r.yaml"), K)
    p = plan.prefix
    hops = lambda s, d: [h.key[len(p):] for h, _ in plan.path(s, d)]      # noqa: E731
    assert hops(0, 1) == ["h0:" + p + "r0", "s0:" + p + "p1"]                       # NVLink, inside node 0
    assert hops(1, 5) == ["h1:" + p + "e1", "rail1:" + p + "f5"]                    # GPU 1 to GPU 1: one rail
    assert hops(1, 6) == ["h1:" + p + "e1", "rail1:" + p + "u1x0", "spine0:" + p + "d0x2", "rail2:" + p + "f6"]
    assert plan.path_latency(0, 1) == pytest.approx(2e-6 * K)
    assert plan.path_latency(1, 5) == pytest.approx(3e-6 * K)
    assert plan.path_latency(1, 6) == pytest.approx(6e-6 * K)                       # + the spine tier
    nic, up = plan.shapers[f"{p}h1:{p}e1"], plan.shapers[f"{p}rail1:{p}u1x0"]
    assert nic.rate_bps == pytest.approx(400e9 / K) and up.rate_bps == pytest.approx(2 * 400e9 / 2 / K)
    # the NVLink port has a class for each GPU of its node, the NIC one for each GPU elsewhere
    assert len(plan.shapers[f"{p}h1:{p}r1"].bands) == 1 + 3 and len(nic.bands) == 1 + 4
    assert [r.text().split(" src")[0] for r in plan.host_routes(5)] == [
        f"ip route replace 198.18.0.0/16 dev {p}e5 proto kernel scope link",
        f"ip route replace 198.18.1.0/24 dev {p}r5 proto kernel scope link"]
    assert (f"{plan.ip(6)}/32", f"{p}u1x0") in plan.routes[f"{p}rail1"]
    assert (f"{plan.ip(5)}/32", f"{p}rail1") in plan.routes[f"{p}rail1"]
    assert (f"{plan.ip(6)}/32", f"{p}d0x2") in plan.routes[f"{p}spine0"]
    topo = plan.profile.topology
    assert topo.describe() == "2 nodes x 4 GPUs on 4 rails, 1 spine, 2:1"
    assert [x[0] for x in topo.probe_paths()] == ["intra-node", "same-rail", "cross-rail"]
    assert f"{p}h1 ip link add name {p}e1 mtu {plan.mtu} type veth peer name {p}f1 mtu {plan.mtu} netns <{p}rail1>" \
        in plan.commands()                            # the NIC: a veth of the host's own
    two = build(parse(rail(spines=2, oversubscription=1), "r.yaml"), K)
    assert [h.key.split(":")[0][len(p):] for h, _ in two.path(1, 7)][1:3] == ["rail1", "spine1"]   # rail 3: spine 1
    assert two.shapers[f"{p}rail1:{p}u1x1"].rate_bps == pytest.approx(2 * 400e9 / 2 / K)


@pytest.mark.parametrize("change, key, expected", [
    ({"nodes": 1}, "topology.nodes", "whole number"),
    ({"gpus_per_node": 17}, "topology.gpus_per_node", "whole number"),
    ({"nodes": 10, "gpus_per_node": 8}, "topology", "expected at most 72 ranks in all, got 10 nodes x 8 GPUs"),
    ({"oversubscription": 0.5}, "topology.oversubscription", "a ratio of at least 1"),
    ({"spines": 9}, "topology.spines", "whole number"),
    ({"rail": "nope"}, "topology.rail", "nope"),
])
def test_a_bad_rail_fabric_names_its_key(change, key, expected):
    with pytest.raises(ProfileError) as info:
        parse(rail(**change), "r.yaml")
    assert f"{key}: " in str(info.value) and expected in str(info.value)
