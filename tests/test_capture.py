"""The packet capture's figures from synthetic pcaps written with scapy (no root, no kernel):
the queued copy of each packet before the qdisc, the sent copy after it, nanosecond stamps."""
import copy
import json
from pathlib import Path

import pytest

from fabric import capture, html, stats
from fabric.capture import Direction

pytest.importorskip("scapy")
from scapy.all import ARP, IP, TCP, UDP, Ether, Raw  # noqa: E402
from scapy.utils import PcapWriter  # noqa: E402

T0 = 1_700_000_000 * 10**9          # ns
MS = 1_000_000
SNAPLEN = 128
STORED = json.loads((Path(__file__).parent / "data" / "isl-800g" / "results.json").read_text())


def tcp(seq=0, payload=1000, ip_id=1, src="10.0.0.1", dst="10.0.1.2", sport=40000, dport=29500, ack=7) -> bytes:
    return bytes(Ether() / IP(src=src, dst=dst, id=ip_id) / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags="A")
                 / Raw(b"x" * payload))


def udp(payload=100, ip_id=1, src="10.0.0.1", dst="10.0.1.2", sport=5000, dport=5001) -> bytes:
    return bytes(Ether() / IP(src=src, dst=dst, id=ip_id) / UDP(sport=sport, dport=dport) / Raw(b"u" * payload))


def arp() -> bytes:
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst="10.0.1.2"))


def pcap(path: Path, records: list[tuple[int, bytes]]) -> Path:
    """records (ns, frame) as tcpdump -s 128 --time-stamp-precision=nano writes them: the frame
    cut to the snaplen, its whole length kept as the wire length."""
    w = PcapWriter(str(path), linktype=1, nano=True, snaplen=SNAPLEN)
    w.write_header(None)
    for ns, frame in records:
        w.write_packet(frame[:SNAPLEN], sec=ns // 10**9, usec=ns % 10**9, wirelen=len(frame))
    w.close()
    return path


def direction(tmp_path, name, queued, sent, role="host", rate_bps=1e9, link_class="nvlink") -> Direction:
    key = f"fab1a2b{name}:fab1a2b{'r' if role == 'host' else 'p'}{name[-1]}"
    return Direction(key, link_class, role, rate_bps, pcap(tmp_path / f"{name}-queued.pcap", queued),
                     pcap(tmp_path / f"{name}-sent.pcap", sent))


def delayed(frames: list[bytes], gap_ns=MS, delay_ns=2 * MS, start=T0):
    """(queued, sent) records: frame i queued at start + i gaps and sent delay_ns later."""
    queued = [(start + i * gap_ns, f) for i, f in enumerate(frames)]
    return queued, [(t + delay_ns, f) for t, f in queued]


def frames(n, payload=1000, **kw) -> list[bytes]:
    return [tcp(seq=i * payload, payload=payload, ip_id=i + 1, **kw) for i in range(n)]


def one(tmp_path, queued, sent, k=1000.0, **kw) -> dict:
    doc = capture.analyse([direction(tmp_path, "h0", queued, sent, **kw)], k=k)
    json.dumps(doc)                                     # it goes into results.json as it is
    return doc["directions"][0]


def test_totals_are_wire_lengths_with_the_ethernet_header(tmp_path):
    sizes = [100, 1448, 0, 700]
    fs = [tcp(seq=i * 2000, payload=p, ip_id=i + 1) for i, p in enumerate(sizes)]
    queued, sent = delayed(fs)
    d = one(tmp_path, queued + [(T0 + 9 * MS, tcp(seq=99999, ip_id=99))], sent)
    # Ethernet 14 + IP 20 + TCP 20 + payload, though the pcap holds only the first 128 bytes
    assert d["bytes"] == sum(14 + 20 + 20 + p for p in sizes) == sum(len(f) for f in fs)
    assert d["packets"] == 4 and d["queued_packets"] == 5
    assert d["queued_bytes"] == d["bytes"] + 14 + 20 + 20 + 1000


def test_delay_is_queued_to_sent_per_packet_in_emulated_and_real_seconds(tmp_path):
    fs = frames(30)
    queued, sent = delayed(fs)
    sent = [(t + (3 * MS if i % 10 == 0 else 0), f) for i, (t, f) in enumerate(sent)]  # 3 of 30 at 5 ms
    d = one(tmp_path, queued, sent, k=1000.0)
    assert d["delay_s"]["n"] == 30
    assert d["delay_s"]["p50"] == pytest.approx(2e-3) and d["delay_s"]["max"] == pytest.approx(5e-3)
    assert d["delay_real_s"]["p50"] == pytest.approx(2e-6)            # emulated / k
    assert d["delay_s"]["p95"] == pytest.approx(5e-3)                 # 30 samples carry p95 ...
    assert d["delay_s"]["p99"] is None and d["delay_real_s"]["p99"] is None   # ... but not p99


def test_p99_is_there_from_100_packets(tmp_path):
    queued, sent = delayed(frames(100))
    d = one(tmp_path, queued, sent)
    assert d["delay_s"]["n"] == 100 and d["delay_s"]["p99"] == pytest.approx(2e-3)


def test_lost_are_queued_packets_never_sent_and_the_tail_is_told_apart(tmp_path):
    fs = frames(10)
    queued, sent = delayed(fs)
    sent = [r for i, r in enumerate(sent) if i not in (3, 6, 9)]   # 3 and 6 dropped; 9 still queued at the end
    d = one(tmp_path, queued, sent)
    assert d["lost"] == 2 and d["unsent_at_end"] == 1
    assert d["packets"] == 7 and d["delay_s"]["n"] == 7
    assert (d["queued_units"], d["lost_units"], d["loss_bursts"]) == (10, 2, 2)


def test_loss_bursts_are_runs_of_lost_packets_in_the_queues_order(tmp_path):
    fs = frames(12)
    queued, sent = delayed(fs)
    sent = [r for i, r in enumerate(sent) if i not in (2, 3, 4, 7, 9, 10)]    # runs of 3, 1 and 2
    d = one(tmp_path, queued, sent)
    assert (d["lost"], d["lost_units"], d["loss_bursts"]) == (6, 6, 3)


def test_a_sent_packet_without_a_queued_copy_counts_in_bytes_not_in_delays(tmp_path):
    fs = frames(5)
    queued, sent = delayed(fs)
    d = one(tmp_path, queued[2:], sent)                  # the queued capture started late
    assert d["packets"] == 5 and d["unmatched_sent"] == 2 and d["delay_s"]["n"] == 3 and d["lost"] == 0


def test_retransmissions_are_resent_sequence_ranges_also_across_the_wrap(tmp_path):
    a = dict(sport=40000)
    wrap = dict(sport=40001)
    top = 2**32
    segments = [tcp(seq=0, ip_id=1, **a), tcp(seq=1000, ip_id=2, **a), tcp(seq=2000, ip_id=3, **a),
                tcp(seq=1000, ip_id=4, **a),                                   # resent: 1
                tcp(seq=3000, payload=0, ip_id=5, **a), tcp(seq=500, payload=0, ip_id=6, **a),   # no payload: 0
                tcp(seq=top - 1500, ip_id=7, **wrap), tcp(seq=top - 500, ip_id=8, **wrap),  # ends at 500
                tcp(seq=500, ip_id=9, **wrap),                                 # new, past the wrap
                tcp(seq=top - 500, ip_id=10, **wrap),                          # resent across it: 1
                tcp(seq=1500, ip_id=11, **wrap)]                               # new: 0
    queued, sent = delayed(segments)
    doc = capture.analyse([direction(tmp_path, "h0", queued, sent)], k=1.0)
    assert doc["directions"][0]["retransmissions"] == 2
    assert {f["src"]: f["retransmissions"] for f in doc["flows"]} == {"10.0.0.1:40000": 1, "10.0.0.1:40001": 1}


def test_a_repeated_key_is_matched_first_in_first_out(tmp_path):
    same = tcp(seq=0, ip_id=7)
    queued = [(T0, same), (T0 + 1 * MS, same)]
    sent = [(T0 + 2 * MS, same), (T0 + 3 * MS + MS // 2, same)]
    d = one(tmp_path, queued, sent)
    # FIFO: 2 ms and 2.5 ms; the other way round would read 1 ms and 3.5 ms
    assert d["delay_s"]["min"] == pytest.approx(2e-3) and d["delay_s"]["max"] == pytest.approx(2.5e-3)
    assert d["lost"] == 0


def test_utilisation_at_half_the_shaped_rate_reads_half(tmp_path):
    fs = frames(1000)
    gap = 100_000                                        # 0.1 ms
    rate = len(fs[0]) * 8 / (gap / 1e9) * 2              # the link could send two in each gap
    queued, sent = delayed(fs, gap_ns=gap, delay_ns=0)
    doc = capture.analyse([direction(tmp_path, "h0", queued, sent, rate_bps=rate)], k=10.0, bins=10)
    d = doc["directions"][0]
    assert doc["bins"] == 10 and len(d["utilisation"]) == 10
    assert doc["bin_s"] == pytest.approx(999 * gap / 1e9 / 10)
    assert d["mean_utilisation"] == pytest.approx(0.5)
    assert all(u == pytest.approx(0.5, abs=0.01) for u in d["utilisation"])
    assert d["peak_utilisation"] == max(d["utilisation"])


def test_utilisation_is_zero_where_a_direction_was_idle_and_its_mean_is_over_its_own_span(tmp_path):
    fs = frames(100)
    gap = 100_000
    rate = len(fs[0]) * 8 / (gap / 1e9)                  # back to back at the full rate
    early, _ = delayed(fs, gap_ns=gap, delay_ns=0)
    late = [(t + 100 * gap, f) for t, f in early]        # the second direction only in the second half
    doc = capture.analyse([direction(tmp_path, "h0", early, early, rate_bps=rate),
                           direction(tmp_path, "h1", late, late, rate_bps=rate)], k=1.0, bins=4)
    first, second = doc["directions"]
    assert second["utilisation"][:2] == [0.0, 0.0] and first["utilisation"][2:] == [0.0, 0.0]
    assert second["utilisation"][2] == pytest.approx(1.0, abs=0.05)
    assert second["mean_utilisation"] == pytest.approx(1.0)             # not 0.5 over the whole capture
    assert doc["start_ns"] == T0 and doc["end_ns"] == T0 + 199 * gap


def test_flows_are_counted_once_on_their_first_hop_and_sorted_by_bytes(tmp_path):
    small = frames(3, sport=1)
    big = frames(5, sport=2, dst="10.0.1.3")
    dgrams = [udp(ip_id=100 + i) for i in range(4)]
    mixed = [f for trio in zip(small, big, dgrams) for f in trio] + big[3:] + dgrams[3:]
    queued, sent = delayed(mixed, gap_ns=MS)
    host = direction(tmp_path, "h0", queued, sent)
    relayed = [(t + MS // 2, f) for t, f in sent]
    bridge = direction(tmp_path, "s0", sent, relayed, role="switch")     # the same packets one hop on
    doc = capture.analyse([host, bridge], k=1.0)
    assert doc["flows_total"] == 3
    assert [(f["src"], f["dst"], f["proto"], f["packets"]) for f in doc["flows"]] == [
        ("10.0.0.1:2", "10.0.1.3:29500", "tcp", 5), ("10.0.0.1:1", "10.0.1.2:29500", "tcp", 3),
        ("10.0.0.1:5000", "10.0.1.2:5001", "udp", 4)]
    f = doc["flows"][0]
    assert f["bytes"] == sum(len(x) for x in big)
    first, last = sent[mixed.index(big[0])][0], sent[mixed.index(big[-1])][0]
    assert f["first_s"] == pytest.approx((first - T0) / 1e9) and f["last_s"] == pytest.approx((last - T0) / 1e9)
    # every packet but the last over the span: a rate-limited link spends the gap after a packet sending it
    assert f["rate_bps"] == pytest.approx(4 * len(big[0]) * 8 / ((last - first) / 1e9))
    assert doc["directions"][1]["packets"] == len(mixed)                  # the bridge port still counts them


def test_flows_keep_the_64_largest_and_say_how_many_there_were(tmp_path):
    fs = [tcp(payload=100 + i, sport=1000 + i, ip_id=i + 1) for i in range(70)]
    queued, sent = delayed(fs)
    doc = capture.analyse([direction(tmp_path, "h0", queued, sent)], k=1.0)
    assert doc["flows_total"] == 70 and len(doc["flows"]) == capture.FLOWS_KEPT == 64
    assert [f["bytes"] for f in doc["flows"]] == sorted((len(f) for f in fs), reverse=True)[:64]
    assert doc["flows"][0]["rate_bps"] is None                           # one packet: no rate


def test_a_pcap_cut_short_reads_what_is_whole(tmp_path):
    queued, sent = delayed(frames(10))
    d = direction(tmp_path, "h0", queued, sent)
    whole = d.sent.read_bytes()
    d.sent.write_bytes(whole[:-50])                      # tcpdump killed in the last record
    d.queued.write_bytes(whole[:10])                     # ... or in the file header
    doc = capture.analyse([d], k=1.0)
    assert doc["directions"][0]["packets"] == 9 and doc["directions"][0]["queued_packets"] == 0
    missing = Direction("fab1a2bh1:fab1a2br1", "nvlink", "host", 1e9, tmp_path / "none.pcap", tmp_path / "no.pcap")
    assert capture.analyse([missing], k=1.0)["directions"][0]["packets"] == 0


def test_arp_counts_in_bytes_but_is_neither_matched_nor_a_flow(tmp_path):
    fs = frames(3)
    queued, sent = delayed(fs)
    queued.append((T0 + 10 * MS, arp()))
    sent.append((T0 + 10 * MS, arp()))
    queued.append((T0 + 11 * MS, arp()))                 # an unmatched ARP is not a loss either
    doc = capture.analyse([direction(tmp_path, "h0", queued, sent)], k=1.0)
    d = doc["directions"][0]
    assert d["packets"] == 4 and d["bytes"] == sum(len(f) for f in fs) + len(arp())
    assert d["delay_s"]["n"] == 3 and d["lost"] == d["unsent_at_end"] == d["unmatched_sent"] == 0
    assert doc["flows_total"] == 1


def test_no_packets_at_all(tmp_path):
    doc = capture.analyse([direction(tmp_path, "h0", [], [])], k=1.0, bins=5)
    d = doc["directions"][0]
    assert doc["start_ns"] is None and d["packets"] == 0 and d["utilisation"] == [0.0] * 5
    assert d["mean_utilisation"] is None and d["peak_utilisation"] is None and d["delay_s"]["p50"] is None
    assert "n/a (n=0)" in capture.table(doc)


def test_table_strips_the_run_prefix_and_prints_na_for_an_unsupported_p99(tmp_path):
    queued, sent = delayed(frames(30))
    doc = capture.analyse([direction(tmp_path, "h0", queued, sent),
                           direction(tmp_path, "s0", sent, sent, role="switch", link_class="isl")], k=1000.0)
    lines = capture.table(doc).splitlines()
    rows = [line for line in lines if not line.startswith("#")]
    assert len(rows) == 2 and "fab" not in "\n".join(rows)
    cells = rows[0].split()
    assert cells[:3] == ["h0:r0", "nvlink", "30"] and rows[1].split()[:2] == ["s0:p0", "isl"]
    assert cells[6] == "2" and "n/a (n=30)" in rows[0]                 # p50 2 real us; p99 needs 100
    assert capture.short_key("fab1a2bcore:fab1a2bd1") == "core:d1"


def _capture_doc(tmp_path, k=1000.0):
    queued, sent = delayed(frames(50))
    dirs = [direction(tmp_path, "h0", queued, sent), direction(tmp_path, "h1", [], []),
            direction(tmp_path, "s0", sent, sent, role="switch")]
    return dict(copy.deepcopy(STORED), capture=capture.analyse(dirs, k=k, bins=40))


def test_the_utilisation_picture_has_a_row_per_busy_direction(tmp_path):
    pytest.importorskip("matplotlib")
    from fabric import plots
    doc = _capture_doc(tmp_path)
    fig = plots.link_utilisation(doc)
    image, = fig.axes[0].images
    assert image.get_array().shape == (2, 40)           # h1 sent nothing
    assert image.get_clim() == (0, 1)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["h0:r0 nvlink", "s0:p0 nvlink"]
    assert "µs" in fig.axes[0].get_xlabel()             # 49 ms emulated / k = 49 real us
    assert "link_utilisation" in plots.run_figures(doc) and "link_utilisation" in html.CAPTIONS
    assert plots.link_utilisation(STORED) is None
    nothing = dict(doc, capture=capture.analyse([direction(tmp_path, "h2", [], [])], k=1.0))
    assert plots.link_utilisation(nothing) is None


def test_the_utilisation_picture_keeps_the_busiest_rows_and_says_so(tmp_path):
    pytest.importorskip("matplotlib")
    from fabric import plots
    doc = _capture_doc(tmp_path)
    template = doc["capture"]["directions"][0]
    doc["capture"]["directions"] = [dict(template, key=f"fab1a2bh{i}:fab1a2br{i}", bytes=i) for i in range(70)]
    fig = plots.link_utilisation(doc)
    assert fig.axes[0].images[0].get_array().shape == (64, 40)
    assert "the 64 busiest of 70" in fig.axes[0].get_title()
    assert fig.axes[0].get_yticklabels()[0].get_text() == "h6:r6 nvlink"    # 0-5 sent least, left out


def test_a_gso_packet_queued_is_counted_and_matched_as_the_segments_it_leaves_as(tmp_path):
    """TCP hands a host's queue packets of up to 64 KiB; they are cut into MTU-sized segments
    after the qdisc, each with the next IP id and its share of the sequence space.  Given the
    MTU, the queued super-packet is its segments: every one matched, the bytes the same."""
    mtu, payload = 1500, 1460                       # IP 20 + TCP 20 + 1460
    big = tcp(seq=2**32 - 1000, payload=3 * payload + 500, ip_id=0xFFFF)    # 4 segments, seq and id wrap
    segments = [tcp(seq=(2**32 - 1000 + i * payload) % 2**32, payload=min(payload, 3 * payload + 500 - i * payload),
                    ip_id=(0xFFFF + i) & 0xFFFF) for i in range(4)]
    queued = [(T0, big)]
    sent = [(T0 + (2 + i) * MS, f) for i, f in enumerate(segments)]
    d = capture.analyse([Direction("fab1a2bh0:fab1a2br0", "l", "host", 1e9, pcap(tmp_path / "q.pcap", queued),
                                   pcap(tmp_path / "s.pcap", sent), mtu)], k=1.0)["directions"][0]
    assert d["queued_packets"] == d["packets"] == 4 and d["queued_bytes"] == d["bytes"] == sum(map(len, segments))
    assert d["delay_s"]["n"] == 4 and d["delay_s"]["min"] == pytest.approx(2e-3) and d["lost"] == 0
    assert d["retransmissions"] == 0 and d["unmatched_sent"] == 0
    # without the MTU the super-packet is one packet that never went out as such
    unsplit = capture.analyse([Direction("fab1a2bh0:fab1a2br0", "l", "host", 1e9, tmp_path / "q.pcap",
                                         tmp_path / "s.pcap")], k=1.0)["directions"][0]
    assert unsplit["queued_packets"] == 1 and unsplit["delay_s"]["n"] == 0
    # dropped whole (netem takes a GSO packet as one), with a packet before and one after it sent:
    # 4 segments lost, one unit, one burst
    before, after = tcp(seq=2**32 - 2000, payload=1000, ip_id=0xFFFE), tcp(seq=3 * payload + 500 - 1000, ip_id=3)
    d = capture.analyse([Direction("fab1a2bh0:fab1a2br0", "l", "host", 1e9,
                                   pcap(tmp_path / "q2.pcap", [(T0, before), (T0 + MS, big), (T0 + 2 * MS, after)]),
                                   pcap(tmp_path / "s2.pcap", [(T0 + 3 * MS, before), (T0 + 4 * MS, after)]), mtu)],
                        k=1.0)["directions"][0]
    assert (d["lost"], d["queued_units"], d["lost_units"], d["loss_bursts"]) == (4, 3, 1, 1)


def test_a_sent_packet_is_never_matched_with_a_later_queued_copy(tmp_path):
    """A packet whose queued copy was missed (its tcpdump not yet listening) and whose key comes
    again later (a SYN resent, IP id 0 both times) stays unmatched: no negative delay."""
    syn = tcp(seq=5, payload=0, ip_id=0)
    queued = [(T0 + 800 * MS, syn)]                       # only the resent SYN's queued copy
    sent = [(T0, syn), (T0 + 801 * MS, syn)]
    d = one(tmp_path, queued, sent)
    assert d["unmatched_sent"] == 1 and d["delay_s"]["n"] == 1 and d["delay_s"]["min"] == pytest.approx(1e-3)


def test_what_came_before_every_tcpdump_listened_is_left_out(tmp_path):
    """A bridge's IGMP report while a direction's two tcpdumps start may be in one file only."""
    queued, sent = delayed(frames(4), delay_ns=MS // 100)
    doc = capture.analyse([direction(tmp_path, "h0", queued[1:], sent)], k=1.0, since_ns=T0 + MS // 2)
    d = doc["directions"][0]
    assert d["packets"] == 3 and d["unmatched_sent"] == 0 and d["lost"] == 0 and doc["start_ns"] == T0 + MS
    whole = capture.analyse([direction(tmp_path, "h0", queued[1:], sent)], k=1.0)["directions"][0]
    assert whole["packets"] == 4 and whole["unmatched_sent"] == 1
