"""The plan is pure data: what a run builds, checked without root."""
import math

import pytest

from conftest import flat
from fabric.plan import (FRAME, INIT_WINDOW, JUMBO_MTU, MTU, QUANTUM_MAX, build, flow_control, lossy_buffer, mtu,
                         queue_limit, shaping)
from fabric.profile import parse
from test_profile import IB


def test_flat_plan_shapes_both_directions_of_every_port():
    plan = build(parse(flat(ranks=4), "f.yaml"), 1.0, run_id="abcd")
    assert [h.name for h in plan.hosts] == [f"fababcdh{r}" for r in range(4)]
    assert len(plan.switches) == 1 and len(plan.links) == 4
    assert len(plan.shapers) == 8                      # host egress + switch egress per link
    assert all(s.rate_bps == 200e6 for s in plan.shapers.values())
    assert not plan.needs_netem
    assert len({h.ip for h in plan.hosts}) == 4 and all(h.ip.startswith("198.18.") for h in plan.hosts)


def test_scale_divides_rates_and_multiplies_latencies():
    plan = build(parse(IB, "ib.yaml"), 1000.0)
    nv = plan.emulated(plan.profile.link("nvlink4"))
    assert nv.rate_bps == pytest.approx(3.6e9) and nv.latency_s == pytest.approx(2e-3)
    port = plan.shapers["fab0000h0:fab0000r0"]
    assert port.rate_bps == pytest.approx(3.6e9)


def test_latency_semantics_intra_and_inter_paths():
    """Inside a domain: the intra latency; between domains: the inter latency (issue semantics)."""
    plan = build(parse(IB, "ib.yaml"), 1000.0)
    assert plan.path_latency(0, 3) == pytest.approx(2e-3)       # nvlink4 2 us x 1000
    assert plan.path_latency(0, 5) == pytest.approx(1.5e-3)     # ndr 1.5 us x 1000
    assert plan.path_latency(6, 1) == pytest.approx(1.5e-3)
    assert len(plan.path(0, 3)) == 2 and len(plan.path(0, 5)) == 4


def test_jitter_and_loss_add_up_over_a_path():
    p = dict(IB, links={"nvlink4": {"rate": "450GB/s", "latency": "2us", "jitter": "0.4us", "loss": "1%"},
                        "ndr": {"rate": "400Gbit/s", "latency": "1.5us", "jitter": "0.2us", "loss": "2%"}})
    plan = build(parse(p, "ib.yaml"), 1000.0)
    for src, dst, jitter, loss in ((0, 1, 0.4e-3, 0.01), (0, 4, 0.2e-3, 0.02)):
        bands = [b for _, b in plan.path(src, dst)]
        assert math.sqrt(sum(b.jitter_s ** 2 for b in bands)) == pytest.approx(jitter)
        assert 1 - math.prod(1 - b.loss for b in bands) == pytest.approx(loss)


def test_rank_ports_have_a_class_per_destination_and_remote_traffic_skips_the_intra_delay():
    plan = build(parse(IB, "ib.yaml"), 1000.0)
    port = plan.shapers["fab0000h0:fab0000r0"]
    default, *dests = port.bands
    assert default.match is None and default.delay_s == 0 and port.default_minor == default.minor
    assert [b.match for b in dests] == [("dst", f"198.18.{r // 4}.{r % 4 + 1}/32") for r in range(1, 8)]
    assert [b.minor for b in dests] == [0x100 + r for r in range(1, 8)]
    local, remote = dests[:3], dests[3:]
    assert all(b.delay_s == pytest.approx(2e-3) for b in local) and all(b.delay_s == 0 for b in remote)
    assert sum(b.rate_bps for b in port.bands) == pytest.approx(port.rate_bps)   # guarantees fit the parent
    assert port.band_to("198.18.1.2") is remote[1] and port.band_to("198.18.9.9") is default
    into = plan.shapers["fab0000s1:fab0000p4"]
    assert len(into.bands) == 1 and into.bands[0].match is None


@pytest.mark.parametrize("rate", [1e6, 50e6, 200e6, 1e9, 5e9, 40e9])
def test_htb_burst_and_quantum(rate):
    burst, quantum = shaping(rate)
    assert burst >= rate / 8 * 1e-3 and burst >= FRAME              # about 1 ms, never below a frame
    assert FRAME <= quantum <= QUANTUM_MAX                              # no "quantum is big/small" warnings


def test_netem_limit_covers_the_bandwidth_delay_product():
    rate, delay, jitter = 1e9, 0.05, 0.005
    bdp_packets = rate / 8 * (delay + 4 * jitter) / FRAME
    assert queue_limit(rate, delay, jitter) >= 2 * bdp_packets
    assert queue_limit(1e6, 0, 0) * FRAME >= 4 * INIT_WINDOW          # what four connections send at once


def test_every_queue_holds_the_windows_of_every_connection_through_it():
    """An incast: all 7 peers' windows may land in a rank's receiving port at once; an uplink
    carries every pair between its domain and the rest."""
    plan = build(parse(flat(ranks=8, rate="1Gbit/s"), "f.yaml"), 1.0)
    f = plan.mtu + 14
    (into,) = plan.shapers["fab0000s0:fab0000p3"].bands
    assert into.limit * f >= 7 * INIT_WINDOW
    port = plan.shapers["fab0000h3:" + plan.host_intf(3)]
    assert all(b.limit * f >= 4 * INIT_WINDOW for b in port.bands)     # one connection per destination class
    two = build(parse({"name": "t", "description": "d", "scale": 1,
                       "links": {"nv": {"rate": "1Gbit/s"}, "ib": {"rate": "1Gbit/s"}},
                       "topology": {"kind": "two_tier", "domains": 2, "ranks_per_domain": 4, "intra": "nv",
                                    "inter": "ib"},
                       "workload": [{"op": "all_reduce", "bytes": "1KiB"}]}, "t.yaml"), 1.0)
    for name in ("fab0000s0:fab0000u0", "fab0000core:fab0000d1"):
        (band,) = two.shapers[name].bands
        assert band.limit * (two.mtu + 14) >= 16 * INIT_WINDOW        # 4 x 4 pairs cross it


def test_lossy_switch_ports_drop_beyond_one_bandwidth_delay_product_and_hosts_hold_their_windows():
    """Ethernet (lossless: false): a switch port queues one round trip's bytes beyond the wire;
    a rank's own port is its host's queue, which TCP does not overflow, lossy or not."""
    doc = flat(ranks=8, rate="100Gbit/s", latency="7.5us", lossless=False)
    plan = build(parse(doc, "f.yaml"), 1000.0)
    f = plan.mtu + 14
    bdp = 12.5e9 * 2 * 7.5e-6                                         # 187,500 B
    assert lossy_buffer(plan.profile.link("eth")) == pytest.approx(bdp)
    (into,) = plan.shapers["fab0000s0:fab0000p3"].bands
    assert into.limit == math.ceil(bdp / f) and not into.netem      # 21 frames of 9014 B
    port = plan.shapers["fab0000h3:" + plan.host_intf(3)]
    assert all(b.limit * f >= 4 * INIT_WINDOW for b in port.bands)
    assert "lossy" in flow_control(plan.profile.link("eth")) and "187,500 B" in flow_control(plan.profile.link("eth"))
    small = build(parse({**doc, "links": {"eth": {**doc["links"]["eth"], "buffer": "64KiB"}}}, "f.yaml"), 1000.0)
    assert small.shapers["fab0000s0:fab0000p3"].bands[0].limit == math.ceil(65536 / f)
    assert "its buffer" in flow_control(small.profile.link("eth"))


def test_a_lossy_uplink_counts_the_packets_on_its_wire_beside_its_buffer():
    two = parse({"name": "t", "description": "d", "scale": 1000,
                 "links": {"nv": {"rate": "450GB/s", "latency": "2us"},
                           "eth": {"rate": "100Gbit/s", "latency": "7.5us", "jitter": "1us", "lossless": False}},
                 "topology": {"kind": "two_tier", "domains": 2, "ranks_per_domain": 4, "intra": "nv", "inter": "eth"},
                 "workload": [{"op": "all_reduce", "bytes": "1KiB"}]}, "t.yaml")
    plan = build(two, 1000.0)
    f = plan.mtu + 14
    (up,) = plan.shapers["fab0000s0:fab0000u0"].bands              # netem: the inter latency
    wire = 12.5e9 * (7.5e-6 + 4 * 1e-6)                             # rate x (delay + 4 sigma): in netem's line
    assert up.netem and up.limit == math.ceil(wire / f) + math.ceil(12.5e9 * 15e-6 / f)
    (core,) = plan.shapers["fab0000core:fab0000d1"].bands
    assert not core.netem and core.limit == math.ceil(12.5e9 * 15e-6 / f)
    (into,) = plan.shapers["fab0000s1:fab0000p5"].bands           # NVLink stays lossless
    assert into.limit * f >= 7 * INIT_WINDOW and flow_control(two.link("nv")).startswith("lossless")


def test_jumbo_frames_only_where_a_packets_wire_time_is_small_and_nothing_is_lost():
    assert mtu(parse(dict(flat(rate="450GB/s", latency="2us")), "f.yaml")) == 45000     # 5 % of 900 kB
    assert mtu(parse(dict(flat(rate="3.2TB/s", latency="2us")), "f.yaml")) == JUMBO_MTU
    assert mtu(parse(dict(flat(rate="400Gbit/s", latency="1.5us")), "f.yaml")) == MTU    # 75 kB: 3.7 kB
    assert mtu(parse(dict(flat(rate="450GB/s", latency="2us", loss="0.1%")), "f.yaml")) == MTU
    assert mtu(parse(IB, "ib.yaml")) == MTU                          # the NDR uplink decides
    assert build(parse(flat(rate="450GB/s", latency="2us"), "f.yaml"), 1.0).mtu == 45000


def test_each_direction_of_a_path_has_one_netem_with_the_whole_link_class():
    """One draw per packet keeps the jitter distribution the profile's (a sum of two would not be)."""
    p = dict(IB, links={"nvlink4": {"rate": "450GB/s", "latency": "2us", "jitter": "0.4us", "loss": "1%"},
                        "ndr": {"rate": "400Gbit/s", "latency": "1.5us", "jitter": "0.2us", "loss": "2%"}})
    plan = build(parse(p, "ib.yaml"), 1000.0)
    for src, dst in ((0, 1), (1, 0), (0, 4), (4, 0)):
        [(hop, band)] = [(s, b) for s, b in plan.path(src, dst) if b.netem]
        first = plan.path(src, dst)[0 if plan.profile.topology.domain_of(src) == plan.profile.topology.domain_of(dst)
                                    else 1][0]
        assert hop is first                       # the sending side: rank port, or the sender's uplink
    assert all(not b.netem for b in plan.shapers["fab0000s0:fab0000p1"].bands)   # towards a rank: shaping only
    assert all(not b.netem for b in plan.shapers["fab0000core:fab0000d0"].bands)


def test_commands_are_the_applied_objects():
    plan = build(parse(IB, "ib.yaml"), 1000.0)
    cmds = plan.commands()
    text = "\n".join(cmds)
    assert f"mtu {MTU}" in text
    assert "fab0000h0 tc qdisc add dev fab0000r0 root handle 1: htb default 10" in cmds
    assert any(c.startswith("fab0000h0 tc class add dev fab0000r0 parent 1: classid 1:1 htb rate 3600000kbit")
               and "quantum" in c and "burst" in c for c in cmds)
    assert "fab0000h0 tc qdisc add dev fab0000r0 parent 1:101 handle 101: netem limit" in text
    assert "fab0000h0 tc qdisc add dev fab0000r0 parent 1:104 handle 104: pfifo limit" in text
    assert "u32 match ip dst 198.18.0.2/32 flowid 1:101" in text
    assert "fab0000s0 tc qdisc add dev fab0000u0 root handle 1: htb default 10" in cmds
    netems = [c for c in cmds if " netem " in c]
    assert len(netems) == 8 * 3 + 2              # 3 in-domain classes of 8 rank ports, the 2 domains' uplinks
    assert "fab0000h5 ip route replace 198.18.0.0/16 dev fab0000r5 proto kernel scope link src 198.18.1.2 " \
           "initcwnd 1875 initrwnd 1875" in cmds
    assert any(c.startswith("fab0000s1 unshare -m sh -c 'mount -t sysfs fabric /sys") and "fab0000u1/queues" in c
               for c in cmds)


def test_every_applied_tc_operation_is_a_printed_line():
    """fabric plan prints the same operation list the emulation applies (fabric.tc)."""
    from fabric import tc
    plan = build(parse(IB, "ib.yaml"), 1000.0)
    cmds = plan.commands()
    for s in plan.shapers.values():
        for op in s.ops():
            assert f"{s.node} {tc.text(op, s.intf)}" in cmds


def test_rps_mask_covers_every_cpu():
    from fabric.plan import rps_mask
    assert rps_mask(1) == "1" and rps_mask(2) == "3" and rps_mask(8) == "ff"
    assert rps_mask(40) == "ff,ffffffff"


def test_interface_names_fit_ifnamsiz():
    big = flat(ranks=64)
    plan = build(parse(big, "big.yaml"), 1.0, run_id="ffff")
    names = [l.a_intf for l in plan.links] + [l.b_intf for l in plan.links] + [n.name for n in plan.switches]
    assert max(len(n) for n in names) <= 15
    assert all(n.startswith("fabffff") for n in names)


def test_commands_turn_segmentation_offloads_off_on_every_interface():
    from conftest import flat
    from fabric.profile import parse
    from fabric.plan import build
    plan = build(parse(flat(ranks=2), "f.yaml"), 1.0, run_id="0000")
    lines = plan.commands()
    for link in plan.links:
        assert f"{link.a_node} ethtool -K {link.a_intf} tso off gso off gro off" in lines
        assert f"{link.b_node} ethtool -K {link.b_intf} tso off gso off gro off" in lines


def test_offloads_true_leaves_that_link_class_alone():
    from conftest import flat
    from fabric.profile import parse
    from fabric.plan import build
    plan = build(parse(flat(ranks=2, offloads=True), "f.yaml"), 1.0, run_id="0000")
    assert not [line for line in plan.commands() if "ethtool" in line]
    assert all(plan.offloads_off(n.name) == [] for n in plan.nodes)


def test_links_keep_order_by_default_with_netem_rate_only_where_there_is_jitter():
    from conftest import flat
    from fabric.profile import parse
    from fabric.plan import build
    fifo = build(parse(flat(ranks=2, latency="1ms", jitter="0.2ms"), "f.yaml"), 1.0, run_id="0000")
    assert all(b.keep_order for s in fifo.shapers.values() for b in s.bands if b.netem)
    assert "rate 34359738360bit" in "\n".join(fifo.commands())
    still = build(parse(flat(ranks=2, latency="1ms"), "f.yaml"), 1.0, run_id="0000")
    assert "rate " not in "\n".join(l for l in still.commands() if "netem" in l)
    drawn = build(parse(flat(ranks=2, latency="1ms", jitter="0.2ms", reorder=True), "f.yaml"), 1.0, run_id="0000")
    assert "rate " not in "\n".join(l for l in drawn.commands() if "netem" in l)


def test_distribution_tables_keep_the_profiles_std_dev():
    from fabric import netem
    from fabric.plan import Band
    normal = Band(0x10, 1e8, 5e-3, 1e-3, distribution="normal")
    pareto = Band(0x10, 1e8, 5e-3, 1e-3, distribution="pareto")
    uniform = Band(0x10, 1e8, 5e-3, 1e-3)
    assert netem.params(normal)["jitter"] == 1000 and netem.params(pareto)["jitter"] == 1220
    assert netem.params(uniform)["jitter"] == 1732 and "distribution" not in netem.params(uniform)
    assert netem.command(pareto) == "netem limit 1000 delay 5000us 1220us distribution pareto"
