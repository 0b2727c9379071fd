"""fabric probe's arithmetic, without root: what a path should show, and what probes showed."""
from dataclasses import asdict

import pytest

from fabric import probe
from fabric.plan import build
from fabric.profile import parse
from test_profile import IB


def test_paths_cover_each_path_type():
    two = build(parse(IB, "ib.yaml"), 1000.0)
    assert probe.paths(two) == [("intra-domain", "nvlink4", 0, 1), ("inter-domain", "ndr", 0, 4)]
    flat = build(parse({"name": "f", "links": {"l": {"rate": "1Gbit/s"}}, "topology":
                        {"kind": "flat", "ranks": 2, "link": "l"}, "workload": [{"op": "all_reduce", "bytes": 4}]},
                       "f.yaml"), 1.0)
    assert probe.paths(flat) == [("flat", "l", 0, 1)]


def test_expected_sums_delays_adds_variances_compounds_loss():
    profile = parse({"name": "f", "scale": 10, "links": {"l": {"rate": "1Gbit/s", "latency": "1ms", "jitter": "0.2ms",
                                                                "loss": "1%"}},
                     "topology": {"kind": "flat", "ranks": 2, "link": "l"},
                     "workload": [{"op": "all_reduce", "bytes": 4}]}, "f.yaml")
    e = probe.expected(build(profile, 10.0), 0, 1)
    assert e.one_way_s == pytest.approx(10e-3)          # 1 ms x k over the two hops of the path
    assert e.jitter_s == pytest.approx(2e-3)            # 0.2 ms x k: sigma/sqrt(2) per hop, variances add
    assert e.loss == pytest.approx(0.01)                # 1 - sqrt(0.99) per hop, compounded
    assert e.rate_bps == pytest.approx(1e8)
    assert e.in_order                                   # reorder: false, the default


def test_probe_table_says_when_jitter_keeps_packets_in_order():
    def doc(reorder):
        profile = parse({"name": "f", "scale": 1, "links": {"l": {"rate": "1Gbit/s", "latency": "1ms",
                                                                  "jitter": "0.2ms", "reorder": reorder}},
                         "topology": {"kind": "flat", "ranks": 2, "link": "l"},
                         "workload": [{"op": "all_reduce", "bytes": 4}]}, "f.yaml")
        e = probe.expected(build(profile, 1.0), 0, 1)
        m = probe.Measured(100, 1e-3, 2e-3, 2e-4, 5e-4, 3e-4, 0.0, 0.0, 2e-3, 1e9, 0.0)
        return {"scale": 1, "profile": {"name": "f", "source": "f.yaml"}, "emulation": {"netem": "native"},
                "paths": [{"path": "flat", "link": "l", "src": 0, "dst": 1,
                           "expected": {**asdict(e), "tcp_rate_bps": e.tcp_rate_bps}, "measured": asdict(m)}]}
    assert "in order (reorder: false)" in probe.table(doc(False))
    assert "in order" not in probe.table(doc(True))
    assert "jitter (p75 - p25)" in probe.table(doc(True))
    few = doc(True)
    few["paths"][0]["measured"].update(probes=50, loss=0.1, one_way_p99_s=None, jitter_p99_p50_s=None)
    assert probe.table(few).count("n/a (n=45)") == 2          # p99 of 45 arrived probes: not printed


def test_inter_domain_path_sees_the_uplink():
    e = probe.expected(build(parse(IB, "ib.yaml"), 1000.0), 0, 4)
    assert e.one_way_s == pytest.approx(1.5e-3) and e.rate_bps == pytest.approx(400e9 / 1000)


def test_summarize_counts_loss_reordering_and_uses_kernel_send_stamps():
    ms = 1_000_000
    # probes 0..9 sent; 3 and 7 lost; 5 arrives after 6.  User send times are 1 ms late on purpose:
    # the kernel's TX_SCHED stamps (tx_sched_ns) must win.
    sent_at = {i: i * 10 * ms for i in range(10)}
    order = [0, 1, 2, 4, 6, 5, 8, 9]
    # the responder took 2 ms to echo each probe: not part of the network's round trip
    rx = {"records": [(i, sent_at[i] + ms, sent_at[i] + 5 * ms, sent_at[i] + 7 * ms) for i in order]}
    tx = {"sent": 10, "echoes": [(i, sent_at[i] + ms, sent_at[i] + 12 * ms) for i in order],
          "tx_sched_ns": {str(i): t for i, t in sent_at.items()}}
    sink = {"samples": [(0.0, 0), (1.0, 1_000_000), (2.0, 3_000_000)]}
    m = probe.summarize(rx, tx, sink, {"out_segs": 400, "retrans_segs": 6})
    assert m.probes == 10 and m.loss == pytest.approx(0.2)
    assert m.reordered == pytest.approx(1 / 8)
    assert m.one_way_p50_s == pytest.approx(5e-3) and m.jitter_std_s == pytest.approx(0.0)
    assert m.rtt_p50_s == pytest.approx(10e-3)
    assert m.tcp_rate_bps == pytest.approx(2_000_000 * 8)   # second half: 2 MB in 1 s
    assert m.tcp_retransmitted == pytest.approx(0.015)
    assert m.one_way_p99_s is None and m.jitter_p99_p50_s is None      # 8 probes cannot carry a p99


def test_expected_tcp_rate_under_loss_is_the_mathis_bound():
    clean = probe.Expected(one_way_s=0.01, jitter_s=0, loss=0, rate_bps=100e6)
    assert clean.tcp_rate_bps == 100e6
    lossy = probe.Expected(one_way_s=0.01, jitter_s=0, loss=0.01, rate_bps=100e6)
    # MSS 8,948 B (9,000 B MTU) per 20 ms round trip x sqrt(1.5 / 0.01) = 43.8 Mbit/s
    assert lossy.tcp_rate_bps == pytest.approx(8948 * 8 / 0.02 * 12.247, rel=1e-3)
    assert probe.Expected(0.01, 0, 1e-6, 100e6).tcp_rate_bps == 100e6   # rare loss: the link limits


def test_probes_stay_a_small_share_of_the_link():
    e = probe.Expected(one_way_s=0.01, jitter_s=0, loss=0, rate_bps=1e6)
    gap = probe.interval_s(e)
    assert (probe.PROBE_BYTES + probe.HEADERS) * 8 / gap <= probe.PROBE_SHARE * 1e6 * 1.0001
    assert probe.interval_s(probe.Expected(0.01, 0, 0, 1e12)) == probe.MIN_INTERVAL_S


def test_the_tcp_sink_ends_at_its_deadline_while_the_flow_is_still_queued(tmp_path):
    """A slow emulated link still holds the flow's bytes when the sink's deadline comes (at
    k = 50 000 an ISL of 16 Mbit/s drains the 16 MiB initial window for 8 s): the sink writes
    what it received instead of failing the probe with a socket timeout."""
    import json
    import socket
    import threading
    import time

    from fabric import probe
    out, ready = tmp_path / "sink.json", tmp_path / "ready"
    done = threading.Thread(target=probe._tcp_sink, args=("127.0.0.1", time.monotonic() + 1.0, out, ready))
    done.start()
    while not ready.exists():
        time.sleep(0.01)
    client = socket.create_connection(("127.0.0.1", probe.TCP_PORT))
    client.sendall(b"x" * 1000)                       # then silence: the rest still "queued"
    done.join(timeout=5)
    client.close()
    assert not done.is_alive()
    assert json.loads(out.read_text())["samples"][-1][1] == 1000
