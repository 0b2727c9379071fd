"""Events (fabric.events): links that fail, come back and change during a run, checked as
profile input and as the kernel operations each one is, worked out from the plan."""
import itertools
import random
import re

import pytest

from fabric import events
from fabric.plan import build
from fabric.profile import ProfileError, parse

K = 1000.0


def profile(topology, evts, links=None, **extra):
    return {"name": "e", "scale": K, "links": links or {"a": {"rate": "400Gbit/s", "latency": "1us"},
                                                       "b": {"rate": "100Gbit/s", "latency": "2us"}},
            "topology": topology, "workload": [{"op": "all_reduce", "bytes": "1MiB"}], "events": evts, **extra}


TORUS = {"kind": "torus", "dims": [4, 4], "intra": "a", "link": "b"}
TWO_TIER = {"kind": "two_tier", "domains": 2, "ranks_per_domain": 4, "intra": "a", "inter": "b"}
RAIL = {"kind": "rail", "nodes": 2, "gpus_per_node": 4, "intra": "a", "rail": "b", "spines": 2}
HEXAGON = {"kind": "constellation", "satellites": 7, "spacing": "150m", "ranks_per_satellite": 1, "intra": "a",
           "isl": "b", "range": "200m"}


def steps(topology, evts, **extra):
    return events.steps(build(parse(profile(topology, evts, **extra), "e.yaml"), K))


def test_a_failed_torus_link_moves_only_the_routes_that_crossed_it_and_comes_back():
    down, up = steps(TORUS, [{"at": "5us", "link": "0-1", "state": "down"},
                             {"at": "9us", "link": "0-1", "state": "up"}])
    assert down.emulated_at_s == pytest.approx(5e-6 * K) and not down.lost
    assert [op.text() for op in down.ops[:2]] == ["fab0000s0 ip link set fab0000i0x1 down",
                                                  "fab0000s1 ip link set fab0000i1x0 down"]
    moved = [op for op in down.ops if isinstance(op, events.Route)]
    assert len(moved) == down.moved > 0
    assert all("i0x1" not in op.dev and "i1x0" not in op.dev for op in moved)
    # the way back: every moved route returns to the link that came up
    assert {(op.node, op.dst) for op in up.ops if isinstance(op, events.Route)} == {(op.node, op.dst) for op in moved}
    assert up.ops[0].text() == "fab0000s0 ip link set fab0000i0x1 up"


def test_detours_never_loop_and_are_shortest_in_what_is_left():
    """Random cuts of a 37-satellite formation: every route left avoids the cut links, follows
    each router's own next hop (the way the kernel forwards it), and is as short (latency, then
    hops) as the shortest chain of what is left."""
    from fabric.topology.routed import shortest
    p = parse(profile({**HEXAGON, "satellites": 37}, []), "e.yaml")
    topo, rng = p.topology, random.Random(7)
    for _ in range(20):
        cut = set(rng.sample(topo.edges, 8))
        routes = topo.routes_avoiding(p, cut)
        gone = cut | {(b, a) for a, b in cut}
        near = {s: [] for s in range(topo.routers)}
        for a, b in topo.edges:
            if (a, b) not in gone:
                w = (topo.edge_link(p, a, b).latency_s, 1)
                near[a].append((b, w))
                near[b].append((a, w))
        weight = {(a, b): topo.edge_link(p, a, b).latency_s for a, b in topo.edges}
        weight.update({(b, a): w for (a, b), w in weight.items()})
        for a in range(topo.routers):
            best = shortest(near, a)
            for b in range(topo.routers):
                if a == b:
                    continue
                path = routes[(a, b)]
                assert (path is None) == (b not in best)
                if path is None:
                    continue
                chain = [a] + path
                assert not any(e in gone for e in zip(chain, chain[1:]))
                assert len(set(chain)) == len(chain)                           # no loop
                assert all(routes[(x, b)][0] == chain[i + 1] for i, x in enumerate(chain[:-1]))
                length = sum(weight[e] for e in zip(chain, chain[1:]))
                assert length == pytest.approx(sum(weight[e] for e in zip([a] + best[b], best[b])), rel=1e-9)


def test_a_two_tier_uplink_has_no_detour_and_says_so():
    [step] = steps(TWO_TIER, [{"at": "3us", "link": "domain:1", "state": "down"}])
    assert len(step.lost) == 2 * 4 * 4 and (0, 4) in step.lost and (0, 1) not in step.lost
    assert step.headline() == "event 0 at 3us real (0.003 s emulated): link domain:1 down"
    assert step.lost_text() == "32 rank pairs without a path (0->4, 0->5, 0->6, 0->7, 1->4, 1->5, ...)"
    assert "no detour: 32 rank pairs" in "\n".join(events.lines(build(parse(profile(
        TWO_TIER, [{"at": "3us", "link": "domain:1", "state": "down"}]), "e.yaml"), K)))


def test_a_rail_uplink_down_moves_to_the_other_spine_and_a_nic_down_loses_its_gpu():
    [step] = steps(RAIL, [{"at": "1us", "link": "uplink:1-1", "state": "down"}])
    assert not step.lost
    routes = {(op.node, op.dst): op.dev for op in step.ops if isinstance(op, events.Route)}
    # rail 1 reached rail 3 (spine 1) through spine 1: now through spine 0; and rail 3 back
    assert routes[("fab0000rail1", "198.18.0.4/32")] == "fab0000u1x0"
    assert routes[("fab0000rail3", "198.18.0.2/32")] == "fab0000u3x0"
    [step] = steps(RAIL, [{"at": "1us", "link": "nic:5", "state": "down"}])
    assert sorted({s for s, d in step.lost} | {d for s, d in step.lost}) == [0, 1, 2, 3, 5]
    [step] = steps(RAIL, [{"at": "1us", "link": "spine:0", "state": "down"}, ])
    assert not step.lost                         # spine 1 carries every rail's traffic
    # back up: rail 1's routes to rail 3 return to spine 1, and spine 1's to rail 1, which the
    # kernel dropped with the link, come back too
    _, up = steps(RAIL, [{"at": "1us", "link": "uplink:1-1", "state": "down"},
                         {"at": "2us", "link": "uplink:1-1", "state": "up"}])
    routes = {(op.node, op.dst): op.dev for op in up.ops if isinstance(op, events.Route)}
    assert routes[("fab0000rail1", "198.18.0.4/32")] == "fab0000u1x1"
    assert routes[("fab0000spine1", "198.18.0.2/32")] == "fab0000d1x1"
    assert len([r for r in routes if r[0] == "fab0000spine1"]) == 2      # rail 1's GPUs on both nodes
    one = {**RAIL, "spines": 1}
    [step] = steps(one, [{"at": "1us", "link": "uplink:2-0", "state": "down"}])
    assert (2, 4) in step.lost and (2, 6) not in step.lost      # rail 2 cut off from the others, not from itself


def test_rate_latency_and_burst_loss_changes_are_tc_operations():
    rate, latency, burst = steps(TORUS, [{"at": "0us", "class": "b", "rate": "50Gbit/s"},
                                         {"at": "1us", "link": "0-1", "latency": "3us"},
                                         {"at": "2us", "link": "0-4", "burst_loss": {"p": "1%", "r": "25%"}}])
    texts = [op.text() for op in rate.ops]
    assert "fab0000s0 tc class change dev fab0000i0x1 parent 1: classid 1:1 htb rate 50000kbit ceil 50000kbit " \
           "burst 9014b cburst 9014b quantum 9014" in texts
    assert len(texts) == 2 * 32 * 2            # 32 links, both ends, the root class and the one band
    assert [re.sub(r"limit \d+ ", "", op.text()) for op in latency.ops] == [
        "fab0000s0 tc qdisc replace dev fab0000i0x1 parent 1:10 handle 10: netem delay 3000us",
        "fab0000s1 tc qdisc replace dev fab0000i1x0 parent 1:10 handle 10: netem delay 3000us"]
    assert burst.ops[0].text().endswith("delay 2000us loss gemodel 1% 25% 100% 0%")
    # a link without netem of its own: its pfifo goes, a netem comes in its place
    rates_only = {"a": {"rate": "400Gbit/s"}, "b": {"rate": "100Gbit/s"}}
    [step] = steps(TORUS, [{"at": "0us", "link": "0-1", "burst_loss": {"p": "1%", "r": "25%", "bad": "50%"}}],
                   links=rates_only)
    assert [op.verb for op in step.ops] == ["delete", "replace"] * 2
    assert re.search(r"netem limit \d+ loss gemodel 1% 25% 50% 0%$", step.ops[1].text())
    p = parse(profile(TORUS, [{"at": "0us", "link": "0-1", "burst_loss": {"p": "1%", "r": "25%"}}], links=rates_only),
              "e.yaml")
    assert p.impaired and build(p, K).needs_netem      # burst loss needs netem: the microVM where it is missing


@pytest.mark.parametrize("evts, key, expected", [
    ([{"at": "1us", "link": "9-9", "state": "down"}], "events[0].link", "no link '9-9' in this torus topology"),
    ([{"at": "1us", "link": "0-1", "class": "b", "state": "down"}], "events[0]", "either link:"),
    ([{"at": "1us", "class": "b", "state": "down"}], "events[0].state", "a state goes with link:"),
    ([{"at": "1us", "link": "0-1", "state": "up"}], "events[0].state", "no earlier event takes it down"),
    ([{"at": "1us", "link": "0-1"}], "events[0]", "expected either state: down|up or a change"),
    ([{"at": "1us", "link": "0-1", "state": "down", "rate": "1Gbit/s"}], "events[0]", "either state"),
    ([{"at": "1us", "link": "0-1", "burst_loss": {"p": "1%", "r": 0}}], "events[0].burst_loss.r", "never end"),
    ([{"at": "1us", "link": "0-1", "burst_loss": {"p": "1%"}}], "events[0].burst_loss.r", "missing required key"),
    ([{"at": "3us", "link": "0-1", "rate": "1Gbit/s"}, {"at": "1us", "link": "0-1", "rate": "2Gbit/s"}], "events",
     "in the order of their `at`"),
    ([{"at": "soon", "link": "0-1", "rate": "1Gbit/s"}], "events[0].at", "soon"),
    ({"at": "1us"}, "events", "expected a list"),
])
def test_a_bad_event_names_its_key(evts, key, expected):
    with pytest.raises(ProfileError) as info:
        parse(profile(TORUS, evts), "e.yaml")
    assert f"e.yaml: {key}: " in str(info.value) and expected in str(info.value)


def test_events_and_stragglers_do_not_mix():
    with pytest.raises(ProfileError, match="events: events and stragglers in one profile"):
        parse(profile(TORUS, [{"at": "1us", "link": "0-1", "state": "down"}],
                      stragglers=[{"rank": 1, "delay": "1us"}]), "e.yaml")


def test_every_kind_names_its_links_and_each_name_is_a_link_of_its_plan():
    for topo in (TORUS, TWO_TIER, RAIL, HEXAGON, {"kind": "flat", "ranks": 4, "link": "a"}):
        plan = build(parse(profile(topo, []), "e.yaml"), K)
        for name in plan.profile.topology.link_names():
            assert plan.profile.topology.links_named(plan, name), name
    assert set(itertools.islice(parse(profile(HEXAGON, []), "e.yaml").topology.link_names(), 0, None)) >= {
        "rank:6", "0-1", "5-6", "satellite:3"}


# ---- on the kernel: a reroute, and a link with no way round ---------------------------------
def _run(tmp_path, data, timeout=300):
    import subprocess
    import sys
    import time

    import yaml

    from conftest import ROOT
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fabric.cli", "run", str(tmp_path / "p.yaml"), "--out",
                           str(tmp_path / "o"), "--vm", "never"], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    return done, time.monotonic() - began


RATES_ONLY = {"a": {"rate": "1.6Tbit/s"}, "b": {"rate": "400Gbit/s"}}


@pytest.mark.root
def test_a_torus_link_that_fails_for_good_is_routed_around(tmp_path):
    """A ring of 4 (a 1-D torus, rates only: no netem needed) whose 0-1 link fails 0.3 s into
    the run and stays down: ring all-reduces between neighbours keep going, 0 -> 1 the long way
    round (0 > 3 > 2 > 1).  Without the moved routes 0's packets to 1 would have nowhere to go
    and the run would end at gloo's timeout; it ends correct, the event in results.json and in
    the table, and nothing left."""
    import json

    from fabric import cleanup
    data = profile({"kind": "torus", "dims": [4], "intra": "a", "link": "b"},
                   [{"at": "15us", "link": "0-1", "state": "down"}, {"at": "30us", "class": "b", "rate": "200Gbit/s"}],
                   links=RATES_ONLY)
    data.update(scale=20000, workload=[{"op": "all_reduce", "bytes": "256KiB", "iters": 10, "warmup": 1,
                                        "algorithm": "ring"}])
    done, _ = _run(tmp_path, data)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["correct"] for r in doc["results"]] == [True]
    e, rate = doc["events"]
    assert e["what"] == "link 0-1 down" and e["routes_moved"] == 4 and not e["lost"]
    assert e["applied_s"] == pytest.approx(0.3, abs=0.1)
    assert rate["what"] == "class b: rate 200Gbit/s" and rate["operations"] == 2 * 4 * 2     # HTB classes changed
    assert "#   0: link 0-1 down at 15us real, 0.3 s emulated: applied at +0.3" in done.stdout
    assert not cleanup.leftovers()


@pytest.mark.root
def test_a_link_without_a_detour_stops_the_run_at_once_with_one_line(tmp_path):
    """A flat fabric whose rank 1 loses its port 0.1 s in: the run ends within seconds (not at
    gloo's timeout), exit code 1, one line naming the event, the link and the moment."""
    from fabric import cleanup
    data = profile({"kind": "flat", "ranks": 4, "link": "a"}, [{"at": "5us", "link": "rank:1", "state": "down"}],
                   links=RATES_ONLY)
    data.update(scale=20000, workload=[{"op": "all_reduce", "bytes": "1MiB", "iters": 20, "warmup": 1}])
    done, took = _run(tmp_path, data)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "run failed" in line]
    assert len(errors) == 1 and "event 0 at 5us real (0.1 s emulated): link rank:1 down" in errors[0]
    assert "no detour, 6 rank pairs without a path (0->1, 1->0, 1->2, 1->3, 2->1, 3->1)" in errors[0]
    assert took < 60
    assert not cleanup.leftovers()


@pytest.mark.root
def test_exec_applies_the_events_to_any_program(tmp_path):
    """fabric exec: the ring's 0-1 link fails 0.1 s after the programs start; rank 0 then pings
    rank 1 and is answered the long way round; exec.json says what happened.  On a flat fabric
    a rank's port going down stops every program with the one line, exit code 1."""
    import json
    import subprocess
    import sys
    import time

    import yaml

    from conftest import ROOT
    from fabric import cleanup
    ring = profile({"kind": "torus", "dims": [4], "intra": "a", "link": "b"},
                   [{"at": "5us", "link": "0-1", "state": "down"}], links=RATES_ONLY, scale=20000)
    (tmp_path / "ring.yaml").write_text(yaml.safe_dump(ring))
    script = ('if [ "$RANK" = 0 ]; then sleep 0.5; ping -c 3 -W 2 "$(echo $FABRIC_ADDRS | cut -d, -f2)"; '
              'else sleep 2; fi')
    done = subprocess.run([sys.executable, "-m", "fabric.cli", "exec", str(tmp_path / "ring.yaml"), "--out",
                           str(tmp_path / "o"), "--vm", "never", "--timeout", "60", "--", "sh", "-c", script],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    assert "3 received" in done.stdout
    [e] = json.loads((tmp_path / "o" / "exec.json").read_text())["events"]
    assert e["routes_moved"] == 4 and e["applied_s"] == pytest.approx(0.1, abs=0.1)
    flat = profile({"kind": "flat", "ranks": 3, "link": "a"}, [{"at": "5us", "link": "rank:2", "state": "down"}],
                   links=RATES_ONLY, scale=20000)
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(flat))
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fabric.cli", "exec", str(tmp_path / "flat.yaml"), "--out",
                           str(tmp_path / "f"), "--vm", "never", "--timeout", "60", "--", "sleep", "30"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and time.monotonic() - began < 20
    [line] = [l for l in done.stderr.splitlines() if "exec:" in l]
    assert "event 0 at 5us real (0.1 s emulated): link rank:2 down" in line and "no detour" in line
    assert not cleanup.leftovers()
