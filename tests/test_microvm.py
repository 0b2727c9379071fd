"""Real netem, inside the microVM (software emulation here; a few minutes in all).

Delay, jitter and loss measured with packets by `fabric probe`, and a small all-reduce against
the α-β model, with the tolerances the README states.  Where the host kernel has netem the
microVM packages are not installed (make installs them only where netem is missing): skipped.
All but one run in one boot (`vm`); the round-trip test goes through the CLI's own `--vm always`.
"""
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import one_boot
from conftest import ROOT
from fabric import cli, host, microvm, netem
from fabric.profile import parse
from fabric.stats import percentile

pytestmark = [pytest.mark.root, pytest.mark.microvm]
FABRIC = [sys.executable, "-m", "fabric.cli"]


def _need_microvm():
    if microvm.missing():
        if host.netem_available():
            pytest.skip("this kernel has netem, so the microVM path is not installed")
        pytest.fail("no netem here and the microVM path is missing: " + "; ".join(microvm.missing()))


@pytest.fixture(autouse=True)
def microvm_path():
    _need_microvm()
    yield
    assert not _qemu_running(), "a QEMU process outlived the run"


def _qemu_running() -> bool:
    out = subprocess.run(["pgrep", "-f", "qemu-system-x86_64 -name virtme-ng"], capture_output=True, text=True)
    return bool(out.stdout.strip())


def fabric_vm(*args, timeout=600):
    done = subprocess.run(FABRIC + list(args) + ["--vm", "always"], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    return done


def _profile(name, link, workload=None):
    return {"name": name, "description": name, "scale": 1, "links": {"l": {"rate": "100Mbit/s", **link}},
            "topology": {"kind": "flat", "ranks": 2, "link": "l"},
            "workload": workload or [{"op": "all_reduce", "bytes": "4KiB"}]}


CONSTELLATION = {
    "name": "constellation-7", "description": "7 satellites, 2 ranks each", "scale": 200000,
    "links": {"nvlink4": {"rate": "450GB/s", "latency": "2us"}, "isl": {"rate": "800Gbit/s", "latency": "2us"}},
    "topology": {"kind": "constellation", "satellites": 7, "spacing": "150m", "ranks_per_satellite": 2,
                 "intra": "nvlink4", "isl": "isl", "range": "200m"},
    "workload": [{"op": op, "bytes": size, "iters": 4, "warmup": 1}
                 for op, size in (("all_reduce", "16KiB"), ("all_to_all", "64KiB"), ("sendrecv", "64KiB"))]}
# 4 x 4 nodes, 1 rank each, wrap-around links: routes of up to 4 hops, dimension by dimension
TORUS = {
    "name": "torus-4x4", "description": "a 4 x 4 torus", "scale": 200000,
    "links": {"chip": {"rate": "1.6Tbit/s", "latency": "1us"}, "ici": {"rate": "400Gbit/s", "latency": "1us"}},
    "topology": {"kind": "torus", "dims": [4, 4], "intra": "chip", "link": "ici"},
    "workload": [{"op": op, "bytes": size, "iters": 4, "warmup": 1}
                 for op, size in (("all_reduce", "16KiB"), ("all_to_all", "64KiB"), ("sendrecv", "64KiB"))]}
# 2 nodes x 4 GPUs: NVLink inside a node, GPU i's NIC on rail switch i, the rails joined by a
# spine at 2:1 (its uplinks carry one NIC's rate each, nodes x 400 Gbit/s / 2)
RAIL = {
    "name": "rail-2x4", "description": "2 nodes x 4 rails", "scale": 200000,
    "links": {"nvlink4": {"rate": "450GB/s", "latency": "2us"}, "ndr": {"rate": "400Gbit/s", "latency": "1.5us"}},
    "topology": {"kind": "rail", "nodes": 2, "gpus_per_node": 4, "intra": "nvlink4", "rail": "ndr",
                 "oversubscription": 2},
    "workload": [{"op": op, "bytes": size, "iters": 4, "warmup": 1}
                 for op, size in (("all_reduce", "64KiB"), ("all_to_all", "256KiB"), ("sendrecv", "256KiB"))]}
# four satellites in a ring (150 m sides; the diagonals, 212 m, out of range), 1 rank each,
# whose ISL 0-1 fails 1 s (emulated) into an all-to-all and stays down: every pair keeps
# talking, 0 and 1 the long way round (0 > 3 > 2 > 1)
VERIFY = {
    "name": "netem-verify", "description": "every kind of netem leaf", "scale": 1,
    "links": {"a": {"rate": "100Mbit/s", "latency": "1ms", "jitter": "0.2ms", "loss": "0.5%", "lossless": False},
              "b": {"rate": "50Mbit/s", "latency": "3ms", "jitter": "1ms", "distribution": "pareto", "reorder": True}},
    "topology": {"kind": "two_tier", "domains": 2, "ranks_per_domain": 2, "intra": "a", "inter": "b"},
    "workload": [{"op": "all_reduce", "bytes": "4KiB"}]}
EVENTS = {**CONSTELLATION, "name": "constellation-event",
          "topology": {"kind": "constellation", "positions": [[0, 0], [150, 0], [150, 150], [0, 150]],
                       "ranks_per_satellite": 1, "intra": "nvlink4", "isl": "isl", "range": "200m"},
          "workload": [{"op": "all_to_all", "bytes": "64KiB", "iters": 8, "warmup": 1}],
          "events": [{"at": "5us", "link": "0-1", "state": "down"},
                     # netem changed in place (an ISL's), and put where a pfifo was (a satellite's port
                     # towards its rank): applied, or the run would stop with the kernel's refusal
                     {"at": "6us", "link": "2-3", "latency": "3us"},
                     {"at": "7us", "link": "rank:3", "loss": "0.01%"}]}
# Gilbert-Elliott loss on both ends of each rank's port from the start (p 1 %, r 50 %: 1.96 %
# of packets, in bursts of 2 on average), captured: 20 MiB each way at 50 Mbit/s
BURSTS = (1e-2, 0.5)
PROBE_K = 10000       # the constellation's probe (test_a_two_hop_paths_delay_is_its_two_hops)
STEP_OPS = [{"op": "sendrecv", "bytes": 4, "algorithm": "direct"},
            {"op": "all_reduce", "bytes": 4, "algorithm": "one_shot"},
            {"op": "all_reduce", "bytes": 4, "algorithm": "ring"},
            {"op": "sendrecv", "bytes": 4, "algorithm": "gloo"},
            {"op": "all_reduce", "bytes": 16, "algorithm": "gloo"}]     # one element in each of gloo's 4 segments
# name: (profile, the fabric command and its options)
RUNS = {
    "probe": (_profile("netem-10ms", {"latency": "10ms", "jitter": "3ms", "loss": "1%", "reorder": True}),
              ["probe", "--count", "6000"]),
    "pareto": (_profile("netem-pareto", {"latency": "40ms", "jitter": "12ms", "distribution": "pareto",
                                         "reorder": True}), ["probe", "--count", "3000"]),
    "fifo": (_profile("netem-fifo", {"latency": "10ms", "jitter": "3ms"}), ["probe", "--count", "2000"]),
    "steps": (_profile("netem-steps", {"latency": "200ms"}, [dict(op, iters=6, warmup=1) for op in STEP_OPS]),
              ["run"]),
    # Debian's iperf3 and ping on a fabric, through fabric exec: rank 1 measures towards rank 0,
    # one after the other (ping's round trips not queued behind iperf3's bytes); {out}: the folder
    # (10 Mbit/s: a rate this software-emulated VM keeps through its stalls, README "Rates inside
    # the microVM"; at 25 Mbit/s one CI run measured 22.6; iperf3 leaves out its first 2 s, TCP's
    # start, as its users do)
    "tools": (_profile("netem-tools", {"rate": "10Mbit/s", "latency": "50ms"}),
              ["exec", "--", "sh", "-c",
               'if [ "$RANK" = 0 ]; then iperf3 -s -1 -B "$MASTER_ADDR"; exit; fi; '
               'for i in $(seq 40); do iperf3 -c "$MASTER_ADDR" -t 10 -O 2 -J > {out}/iperf3.json && break; '
               'sleep 0.5; done; ping -c 40 -i 0.1 "$MASTER_ADDR" > {out}/ping.txt']),
    # every shaped direction recorded: light traffic (4 KiB all-reduces), so a packet's time
    # between the two ends of a rank's port is netem's 20 ms, not a queue behind the rate
    "capture": (_profile("netem-capture", {"latency": "20ms"}, [{"op": "all_reduce", "bytes": "4KiB", "iters": 20,
                                                                 "warmup": 2}]), ["run", "--capture"]),
    # 7 satellites in a hexagon, 2 ranks each, ISLs to neighbours only: the ring's satellites
    # reach each other through the centre (2 hops), every ISL 2 us at its ends + 0.5 us of flight
    "constellation": (CONSTELLATION, ["run"]),
    "constellation-probe": ({**CONSTELLATION, "scale": PROBE_K, "workload": None}, ["probe", "--count", "400"]),
    "torus": (TORUS, ["run"]),
    "rail": (RAIL, ["run"]),
    "events": (EVENTS, ["run"]),
    # fabric plan's printed commands against the build, netem leaves and all: uniform jitter in a
    # FIFO line with loss, pareto jitter (iproute2's table) in a reordering one
    "verify": (VERIFY, ["verify"]),
    "bursts": ({**_profile("netem-bursts", {"rate": "50Mbit/s", "latency": "5ms"},
                           [{"op": "all_reduce", "bytes": "2MiB", "iters": 10, "warmup": 1}]),
                "events": [{"at": "0us", "class": "l", "burst_loss": {"p": f"{BURSTS[0]:%}", "r": f"{BURSTS[1]:%}"}}]},
               ["run", "--capture"]),
}


def vm_commands(d: Path) -> one_boot.Commands | None:
    """RUNS as fabric command lines, their profiles and output folders in d (the shared boot);
    None where these tests skip (a kernel with netem: the microVM path is not installed)."""
    if microvm.missing() and host.netem_available():
        return None
    d.mkdir(parents=True, exist_ok=True)
    commands = {}
    for name, (profile, argv) in RUNS.items():
        (d / f"{name}.yaml").write_text(yaml.safe_dump({k: v for k, v in profile.items() if v is not None}))
        ours, program = cli._split_command(argv)
        program = [word.replace("{out}", str(d / name)) for word in program]
        commands[name] = [ours[0], str(d / f"{name}.yaml"), *ours[1:], "--out", str(d / name)] + (
            ["--", *program] if program else [])
    ranks = max(parse({k: v for k, v in p.items() if v is not None}).topology.ranks for p, _ in RUNS.values())
    return one_boot.Commands(commands, ranks, max_bytes=1 << 20, limit_s=30 * 60)


@pytest.fixture(scope="module")
def vm(one_vm, tmp_path_factory):
    """Every command of RUNS, run in the session's one microVM boot; {name: its output folder}."""
    _need_microvm()
    for name in RUNS:
        code, out, err = one_vm.done[name]
        assert code == 0, f"{name} exited {code}: {err}{out[-2000:]}"
    return {name: one_vm.module(__name__) / name for name in RUNS}


def test_iperf3_and_ping_measure_the_shaped_rate_and_twice_the_latency(vm):
    """Debian's iperf3 within 5 % of the shaped 10 Mbit/s (its TCP payload: the shaper counts whole
    frames of the fabric's MTU) and ping's round trip within 10 % of twice the 50 ms latency, k = 1."""
    sent = json.loads((vm["tools"] / "iperf3.json").read_text())
    received = sent["end"]["sum_received"]["bits_per_second"]
    mtu = json.loads((vm["tools"] / "exec.json").read_text())["mtu"]
    assert received == pytest.approx(10e6 * (mtu - 52) / (mtu + 14), rel=0.05)
    rtts = [float(t) for t in re.findall(r"time=([0-9.]+) ms", (vm["tools"] / "ping.txt").read_text())]
    assert len(rtts) >= 38 and percentile(rtts, 50) == pytest.approx(100.0, rel=0.10), rtts


def test_capture_counts_what_the_qdiscs_count_and_sees_the_links_delay(vm):
    """fabric run --capture: every direction's pcap bytes within 1 % of its root qdisc's byte
    counter over the capture; on each rank's port (where the path's 20 ms is) the per-packet
    delay, queued to sent, p50 within 10 % of it; the pcaps readable as pcaps."""
    doc = json.loads((vm["capture"] / "results.json").read_text())["capture"]
    assert len(doc["directions"]) == 4
    for d in doc["directions"]:
        assert d["qdisc_bytes"] > 0 and d["bytes"] == pytest.approx(d["qdisc_bytes"], rel=0.01), d["key"]
        assert not d["truncated"] and d["tcpdump_dropped"] == {"queued": 0, "sent": 0}
    ports = [d for d in doc["directions"] if d["role"] == "host"]
    for d in ports:
        assert d["delay_s"]["n"] >= 50 and d["delay_s"]["p50"] == pytest.approx(0.020, rel=0.10), d["delay_s"]
    assert doc["flows_total"] >= 2 and sum(f["bytes"] for f in doc["flows"]) > 0
    with open(vm["capture"] / "capture" / ports[0]["files"]["sent"], "rb") as f:
        assert struct.unpack("<I", f.read(4))[0] == 0xA1B23C4D          # nanosecond pcap, as tcpdump reads it


def test_the_report_draws_link_utilisation_in_chromium(vm):
    """report.html of the captured run carries the utilisation picture, and Chromium renders it."""
    import shutil
    from test_html import _chromium
    from fabric import html
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs chromium and chromium-driver (make test installs them as root)")
    html.for_folder(vm["capture"])
    page = (vm["capture"] / "report.html").read_text()
    assert 'alt="link_utilisation"' in page
    driver = _chromium()
    try:
        driver.get((vm["capture"] / "report.html").as_uri())
        width = driver.execute_script(
            "const i = document.querySelector('img[alt=link_utilisation]'); return i.complete ? i.naturalWidth : 0")
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    finally:
        driver.quit()
    assert width > 300 and errors == []


def test_a_constellation_runs_each_collective_correctly_within_its_model(vm):
    """Every rank's result right over routes of up to 2 ISL hops, and each op within 15 % of the
    α-β model, which charges each ISL hop its latency and the most loaded ISL on the way.  At
    k = 200 000 (measured 1.08-1.09x one-shot all-reduce, 1.03x all-to-all, 0.99x sendrecv in
    three boots); at 50 000 this VM's cost per forwarded packet showed (1.23-1.26x, 1.26-1.30x,
    1.09-1.10x, with 1 or 4 warm-up iterations alike)."""
    doc = json.loads((vm["constellation"] / "results.json").read_text())
    assert [r["op"] for r in doc["results"]] == ["all_reduce", "all_to_all", "sendrecv"]
    for r in doc["results"]:
        assert r["correct"] is True, r["op"]
        assert r["time_us"]["p50"] == pytest.approx(r["model_time_us"], rel=0.15), r["op"]


def test_a_torus_runs_each_collective_correctly_within_its_model(vm):
    """4 x 4 nodes, routes of up to 4 hops dimension by dimension: every result right and each
    op within 15 % of the model (k = 200 000: measured 0.90-0.91x one-shot all-reduce,
    0.97-0.98x all-to-all, 0.98-0.99x sendrecv in two boots)."""
    doc = json.loads((vm["torus"] / "results.json").read_text())
    assert doc["emulation"]["shape"] == "4 x 4 nodes of 1 rank, 32 links, up to 4 hops"
    for r in doc["results"]:
        assert r["correct"] is True, r["op"]
        assert r["time_us"]["p50"] == pytest.approx(r["model_time_us"], rel=0.15), r["op"]


def test_a_rail_fabric_runs_each_collective_correctly_within_its_model(vm):
    """2 nodes x 4 GPUs, each with an NVLink port and a NIC on its rail, rails joined by a
    spine at 2:1: every result right and each op within 15 % of the model (k = 200 000:
    measured 0.99-1.00x hierarchical all-reduce, 1.08-1.10x all-to-all, 0.99x sendrecv in two
    boots)."""
    doc = json.loads((vm["rail"] / "results.json").read_text())
    assert doc["emulation"]["shape"] == "2 nodes x 4 GPUs on 4 rails, 1 spine, 2:1"
    for r in doc["results"]:
        assert r["correct"] is True, r["op"]
        assert r["time_us"]["p50"] == pytest.approx(r["model_time_us"], rel=0.15), r["op"]


def test_a_failed_isl_is_routed_around_and_reported(vm, one_vm):
    """ISL 0-1 down 1 s (emulated) into the run, for good: the all-to-all between every pair
    of satellites stays correct (without the moved routes 0 and 1 could not reach each other
    and the run would end at gloo's timeout), and the event is in results.json and the table."""
    doc = json.loads((vm["events"] / "results.json").read_text())
    assert [r["correct"] for r in doc["results"]] == [True]
    e, latency, loss = doc["events"]
    assert e["what"] == "link 0-1 down" and e["routes_moved"] > 0 and e["lost"] == []
    assert e["applied_s"] == pytest.approx(1.0, abs=0.5)
    assert latency["operations"] == 2 and latency["applied_s"] is not None
    # rank 3's port: its 4 classes (the default and one per peer) and the satellite's 1, each a
    # pfifo deleted and a netem put in its place
    assert loss["operations"] == 2 * (4 + 1) and loss["applied_s"] is not None
    assert "#   0: link 0-1 down at 5us real, 1 s emulated: applied at +" in one_vm.done["events"][1]


def test_burst_loss_is_gilbert_elliott_in_the_queues_own_units(vm):
    """netem's loss gemodel, set by an event: over the four captured directions, the share of
    packets lost (in the queue's units: netem drops a GSO packet whole) within 35 % of
    p / (p + r), and the losses in bursts of 1/r on average, where independent losses of the same
    share would come one at a time (a mean burst of 1.02)."""
    doc = json.loads((vm["bursts"] / "results.json").read_text())
    assert [r["correct"] for r in doc["results"]] == [True]
    assert doc["events"][0]["what"] == "class l: burst loss p 1% r 50% bad 100% good 0%"
    ds = doc["capture"]["directions"]
    units, lost, bursts = (sum(d[key] for d in ds) for key in ("queued_units", "lost_units", "loss_bursts"))
    p, r = BURSTS
    assert units > 5000 and lost / units == pytest.approx(p / (p + r), rel=0.35), (units, lost, bursts)
    assert 1.6 < lost / bursts < 2.6, (lost, bursts)


def test_a_two_hop_paths_delay_is_its_two_hops(vm):
    """fabric probe across the formation: a 2-hop path's one-way delay is its two ISLs' (each
    2 us + 150 m at c, x k), not one's or three's.  Three boots here measured 1.02x 1-hop and
    1.05x 2-hop (the issue's 10 %); one CI run 1.13x 2-hop, its p99 three times the path's (the VM
    stalling; the probe at k = 50 000, where a stall weighs a fifth as much, timed out its TCP
    flow).  The VM only adds delay, so the bound is 5 % below and 20 % above: a hop too many or
    too few is 50 % off."""
    paths = {p["path"]: p for p in json.loads((vm["constellation-probe"] / "probe.json").read_text())["paths"]}
    assert set(paths) == {"intra-satellite", "1-hop", "2-hop"}
    hop = (2e-6 + 150 / 299_792_458) * PROBE_K
    assert paths["2-hop"]["expected"]["one_way_s"] == pytest.approx(2 * hop)
    assert 0.95 * 2 * hop <= paths["2-hop"]["measured"]["one_way_p50_s"] <= 1.20 * 2 * hop
    assert 0.95 * hop <= paths["1-hop"]["measured"]["one_way_p50_s"] <= 1.20 * hop


def test_probe_measures_the_profiles_delay_jitter_and_loss(vm):
    """10 ms one-way with 3 ms jitter (std dev) and 1 % loss on a 2-rank flat fabric, k = 1.
    (3 ms keeps the uniform draw, 10 ms +- 5.2 ms, clear of netem's clamp at 0.)  The spread is
    checked by the uniform draw's p75 - p25, half its 10.4 ms width; the std dev and p99 - p50
    only from below, since the software-emulated VM's stalls in the top per cent add to them
    (on CI runs: std dev 4.1 ms for 3, p99 - p50 6.0 ms for 5.1)."""
    doc = json.loads((vm["probe"] / "probe.json").read_text())
    assert doc["emulation"]["netem"] == "microvm"
    [p] = doc["paths"]
    m = p["measured"]
    assert m["probes"] == 6000
    # the VM only adds (timers, stalls): 0.6-0.8 ms here, up to 1.74 ms on a CI machine (the pareto probe's)
    assert 10e-3 - 0.5e-3 <= m["one_way_p50_s"] <= 10e-3 + 3e-3
    assert m["jitter_iqr_s"] == pytest.approx(0.5 * 2 * netem.UNIFORM_SIGMA * 3e-3, rel=0.15)
    assert m["jitter_p99_p50_s"] > 0.85 * 0.98 * netem.UNIFORM_SIGMA * 3e-3
    assert m["jitter_std_s"] > 0.85 * 3e-3
    assert 0.005 <= m["loss"] <= 0.015
    assert m["reordered"] > 0.2          # netem draws each packet's delay on its own


def test_pareto_jitter_has_the_tables_quantiles_and_heavy_tail(vm):
    """distribution: pareto sends iproute2's table; sigma is scaled by the table's spread, so the
    one-way delay is 40 ms + sigma x table / 8192 with the table's quantiles (12 ms jitter).  The
    quantiles, not the standard deviation, are what this checks: the software-emulated VM stalls
    now and then, and a few stalled probes in the top 1 % move the std dev (at 3 ms jitter:
    measured 4.1-4.4 ms, while p50 sat 0.5-0.8 ms above the table's) and, on one CI run, p99 - p50
    (19.1 ms for 15.8).  So the spread is checked by p75 - p25 and the tail only from below.  The
    VM's own spread adds ~0.6 ms to p75 - p25 (2.94 ms measured for the table's 2.37 at 3 ms
    jitter, 24 %): 12 ms jitter, a 9.5 ms p75 - p25, keeps it near 6 %.  The median is checked within what
    the VM adds to every probe (0.5 ms below, 3 ms above)."""
    m = json.loads((vm["pareto"] / "probe.json").read_text())["paths"][0]["measured"]
    raw = netem.table("pareto")
    sigma = 12e-3 / netem.TABLE_SIGMA["pareto"]
    delays = sorted(40e-3 + sigma * v / netem.TABLE_SCALE for v in struct.unpack(f"{len(raw) // 2}h", raw))
    p25, p50, p75, p99 = (percentile(delays, p) for p in (25, 50, 75, 99))   # 32.2, 35.3, 41.7, 98.6 ms
    # the VM only adds: +0.66 and +0.70 ms in two boots here, +1.74 ms on one CI machine
    assert p50 - 0.5e-3 <= m["one_way_p50_s"] <= p50 + 3e-3
    assert m["jitter_iqr_s"] == pytest.approx(p75 - p25, rel=0.15)
    assert m["jitter_p99_p50_s"] > 0.85 * (p99 - p50)
    assert m["jitter_p99_p50_s"] > 4 * 12e-3         # heavy tail: a normal draw gives 2.3 sigma
    assert m["one_way_p50_s"] < 40e-3                # right-skewed: the median sits below the mean


def test_jitter_keeps_packets_in_order_by_default(vm):
    """Jitter as a FIFO line (reorder: false, the default): netem's rate option makes each packet
    leave after the one before."""
    m = json.loads((vm["fifo"] / "probe.json").read_text())["paths"][0]["measured"]
    # the VM's two vCPUs alone reorder 0-3.5 % of probes (per-CPU backlogs), with no jitter at all
    assert m["reordered"] < 0.05


def test_probe_round_trip_is_twice_the_one_way_delay(write_profile, tmp_path):
    """RTT semantics: a round trip crosses the path twice (there and back), so RTT = 2 x one-way.
    Through the CLI's own --vm always, the path every user without netem takes."""
    path = write_profile({"name": "netem-rtt", "description": "rtt", "scale": 1,
                          "links": {"l": {"rate": "100Mbit/s", "latency": "50ms"}},
                          "topology": {"kind": "flat", "ranks": 2, "link": "l"},
                          "workload": [{"op": "all_reduce", "bytes": "4KiB"}]})
    fabric_vm("probe", str(path), "--out", str(tmp_path / "out"), "--count", "1000")
    m = json.loads((tmp_path / "out" / "probe.json").read_text())["paths"][0]["measured"]
    # The VM only adds delay, and adds it to each measurement on its own: a CI machine measured
    # one way 15.0 ms and the round trip 25.3 ms on a 10 ms path (+5 ms each), so the ratio of
    # the two is no test.  Bounded 5 % below and 15 ms above each, at 50 ms a hop: a round trip
    # reported as one way (100 ms) or one way as a round trip (50 ms) is 35 ms outside.
    assert 0.95 * 50e-3 <= m["one_way_p50_s"] <= 50e-3 + 15e-3
    assert 0.95 * 100e-3 <= m["rtt_p50_s"] <= 100e-3 + 15e-3


def test_the_printed_commands_build_what_the_emulation_builds_netem_and_all(vm):
    """fabric verify with netem: every qdisc, class, filter, route and link the emulation made
    through netlink is what `fabric plan`'s lines make with iproute2 (tests/test_verify.py does
    every shipped profile natively, without their netem leaves; isl-800g was verified here
    together with this profile in 52 s in CI; by hand, the 16-rank EP profiles in 1-2 min and
    constellation-81 in ~7 min)."""
    found = json.loads((vm["verify"] / "verify.json").read_text())["profiles"]
    assert [Path(f["profile"]).name for f in found] == ["verify.yaml"]
    assert found[0]["differences"] == [], found[0]["differences"][:3]
    from fabric.plan import build
    lines = build(parse(VERIFY), 1).commands()
    assert found[0]["counts"]["netem"] == sum(" netem " in line for line in lines) >= 6
    assert any("distribution pareto" in line for line in lines) and any(" loss 0.5%" in line for line in lines)


def test_a_pre_posted_step_costs_one_way_and_gloo_a_round_trip(vm):
    """2 ranks, 200 ms one way, k = 1: a 4-byte send/recv and a one-shot 4-byte all-reduce cost
    one way (their receives were posted before the start), the ring's 2 steps two; gloo's own
    send/recv a round trip, its all-reduce two (4 one-way latencies).  Each within ±15 % of the
    model.  The host's software adds 2.5-8 ms per message in the software-emulated VM (at 10 ms
    one way the same measured 12.6, 13.5, 24.7, 26.1 and 51 ms; at 50 ms a CI machine measured
    57.8 ms for the one-way send): 200 ms keeps that a few per cent."""
    doc = json.loads((vm["steps"] / "results.json").read_text())
    assert doc["emulation"]["netem"] == "microvm" and all(r["correct"] for r in doc["results"])
    direct, one_shot, ring, gloo_sr, gloo_ar = doc["results"]
    assert [r["algorithm"] for r in doc["results"]] == ["direct", "one_shot", "ring", "gloo", "gloo"]
    for r, ways in ((direct, 1), (one_shot, 1), (ring, 2), (gloo_sr, 2), (gloo_ar, 4)):
        assert r["model_time_us"] == pytest.approx(ways * 200e3, rel=0.01), r["algorithm"]
        assert r["time_us"]["p50"] == pytest.approx(r["model_time_us"], rel=0.15), r["algorithm"]
    assert gloo_sr["time_us"]["p50"] > 1.7 * direct["time_us"]["p50"]   # the ready notice's trip back
