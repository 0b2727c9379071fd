"""What the packet capture (--capture) saw on each shaped link direction: files in, figures out.

Every shaped direction (a veth's egress: HTB root, netem/pfifo leaves) has two nanosecond pcaps
on one kernel clock.  `queued` holds the packets as they were handed to the direction's queue,
mirrored by a clsact egress filter before the qdisc; `sent` holds them as they left it for the
wire.  Both are needed because a capture on an interface sees an outgoing packet only after
the qdisc, so after HTB's rate limit and netem's delay: the time a packet spent crossing the
link is the gap between the two copies of it.

The figures, per direction (emulated seconds, real = emulated / k):
  packets, bytes      sent: wire lengths with the Ethernet header, what HTB's byte counter counts
  delay_s             queued -> sent per packet (queueing behind the rate limit plus netem's
                      delay), a fabric.stats summary: p95/p99 only where n carries them
  lost                queued, never sent, and queued before the last packet that was sent
  unsent_at_end       queued after the last packet that was sent: still in the queue when the
                      captures stopped, or dropped; the two are not told apart
  queued_units, lost_units, loss_bursts
                      the same in the queue's own units: a GSO packet is one (netem drops or keeps
                      it whole), and a burst is a run of lost units one after another in the
                      queue's order: lost_units / loss_bursts is the mean burst (Gilbert-Elliott
                      with a 100 % bad state: 1/r; a random loss: about 1)
  unmatched_sent      sent with no queued copy (one capture started before the other)
  retransmissions     TCP segments in `queued` with payload whose sequence range (mod 2**32)
                      the flow had already sent: loss recovery or a timeout, as the sender saw it
  utilisation         per timeline bin, bits sent / bin time / the shaped rate (1.0 = full; a
                      busy bin can read a little over 1: it holds a whole packet more)
  mean_utilisation    over the direction's own busy span, first to last packet sent, with every
                      packet's bytes but the last (a rate-limited link spends the gap after a
                      packet sending it); a flow's rate_bps the same way
Flows (TCP/UDP 5-tuples) are counted on the host directions' `sent` pcaps only: a flow's first
hop, so each flow once.  Non-IPv4 frames (ARP) count in bytes and utilisation, nothing else.

A packet's identity across the two pcaps: IP src, dst, protocol, id, total length, and the
ports, TCP seq and ack.  Linux gives a retransmitted segment a new IP id, so a key repeats only
by accident; repeats are matched first-in first-out, as a queue releases them.

Reading: scapy's RawPcapReader for the records, the few header fields by hand (scapy's
dissectors take ~160 us a packet here, 16 s for 100 000), numpy for the timelines.  Measured
here, 2-core host, 2026-12-07, with benchmarks/capture_read.py (a pair of 100 000-packet pcaps,
analyse() end to end, best of 3, three runs): 180 000 packets/s, 1.1 s for the pair; reading one
pcap alone 270 000 packets/s.
"""
from __future__ import annotations

import re
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fabric import stats
from fabric.dilation import Dilation

DLT_EN10MB = 1
ETHERTYPE_IPV4 = b"\x08\x00"
TCP, UDP = 6, 17
PROTO_NAMES = {TCP: "tcp", UDP: "udp"}
SEQ_SPACE = 2**32
FLOWS_KEPT = 64
RUN_PREFIX = re.compile(r"^fab[0-9a-f]{4}")


@dataclass(frozen=True)
class Direction:
    key: str            # "fab1a2bh0:fab1a2br0": the shaped direction, node:interface (Plan.shapers' key)
    link_class: str     # the profile's link class name, e.g. "nvlink"
    role: str           # "host" (a rank's own port: its sending side) | "switch" (a bridge port)
    rate_bps: float     # the shaped (emulated) rate in bits/s: 1.0 utilisation = this rate
    queued: Path        # pcap: packets handed to the queue (before the qdisc)
    sent: Path          # pcap: packets that left it (on the wire)
    mtu: int | None = None   # the fabric's MTU: a longer TCP packet in `queued` is a GSO one (_segments)


@dataclass
class _Pcap:
    """One pcap's records, field by field (None where a packet has no such field)."""
    ts: list            # ns
    wirelen: list
    keys: list          # identity across queued/sent (IPv4 only)
    flows: list         # src ip, dst ip, sport, dport, proto as bytes (TCP/UDP only)
    seqs: list          # TCP seq where the segment has payload
    payload: list       # TCP payload bytes


def _read(path: Path, mtu: int | None = None, since_ns: int = 0) -> _Pcap:
    """The whole records of a pcap from since_ns on; a file cut short (tcpdump killed
    mid-write), empty or missing reads as what it holds whole.  mtu: TCP packets longer than it
    are counted as the segments they leave as (_segments)."""
    from scapy.data import MTU
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader
    out = _Pcap([], [], [], [], [], [])
    try:
        reader = RawPcapReader(str(path))
    except (OSError, EOFError, Scapy_Exception):
        return out
    with reader:
        if reader.linktype != DLT_EN10MB:
            raise ValueError(f"{path}: link type {reader.linktype}, not Ethernet ({DLT_EN10MB}): capture on the veth")
        scale = 1 if reader.nano else 1000
        for data, meta in reader:
            if len(data) < min(meta.caplen, MTU):   # the reader hands out at most MTU bytes of a record
                break                                # the record tcpdump was writing when it died
            ts = meta.sec * 1_000_000_000 + meta.usec * scale
            if ts < since_ns:
                continue
            if mtu and meta.wirelen > mtu + 14 and _segments(out, data, ts, mtu):
                continue
            out.ts.append(ts)
            out.wirelen.append(meta.wirelen)
            key = flow = seq = payload = None
            if data[12:14] == ETHERTYPE_IPV4 and len(data) >= 34 and data[14] >> 4 == 4:
                ihl, proto = (data[14] & 15) * 4, data[23]
                l4 = 14 + ihl
                key = data[16:20] + data[23:24] + data[26:34]       # total length, id, protocol, src, dst
                first_fragment = (data[20] & 0x1f) == 0 and data[21] == 0
                if proto == TCP and first_fragment and len(data) >= l4 + 13:
                    key += data[l4:l4 + 12]                         # ports, seq, ack
                    flow = data[26:34] + data[l4:l4 + 4] + data[23:24]
                    payload = ((data[16] << 8) | data[17]) - ihl - (data[l4 + 12] >> 4) * 4
                    seq = int.from_bytes(data[l4 + 4:l4 + 8], "big") if payload > 0 else None
                elif proto == UDP and first_fragment and len(data) >= l4 + 4:
                    key += data[l4:l4 + 4]
                    flow = data[26:34] + data[l4:l4 + 4] + data[23:24]
            out.keys.append(key)
            out.flows.append(flow)
            out.seqs.append(seq)
            out.payload.append(payload)
    return out


def _segments(out: _Pcap, data: bytes, ts: int, mtu: int) -> bool:
    """A TCP packet longer than the MTU as the segments it leaves as; False when it is not one.
    TCP hands the qdisc GSO packets of up to 64 KiB whatever the interface's offloads say (one
    at 200 Mbit/s natively: 1 140 packets of 43.8 kB on average into a host's queue, 5 588
    segments out of it); they are cut into MTU-sized segments after the qdisc, each with the
    next IP id and its own share of the sequence space.  A copy mirrored before the qdisc is
    the GSO packet: counted as its segments, each is matched with its copy on the wire."""
    if data[12:14] != ETHERTYPE_IPV4 or len(data) < 34 or data[14] >> 4 != 4 or data[23] != TCP:
        return False
    ihl = (data[14] & 15) * 4
    l4 = 14 + ihl
    if len(data) < l4 + 13:
        return False
    headers = ihl + (data[l4 + 12] >> 4) * 4
    total, ident = int.from_bytes(data[16:18], "big"), int.from_bytes(data[18:20], "big")
    payload, each = total - headers, mtu - headers
    if payload <= each or each <= 0:
        return False
    seq = int.from_bytes(data[l4 + 4:l4 + 8], "big")
    addrs, ports, ack = data[23:24] + data[26:34], data[l4:l4 + 4], data[l4 + 8:l4 + 12]
    flow = data[26:34] + ports + data[23:24]
    for i, done in enumerate(range(0, payload, each)):
        size = min(each, payload - done)
        s = (seq + done) % SEQ_SPACE
        out.ts.append(ts)
        out.wirelen.append(14 + headers + size)
        out.keys.append((headers + size).to_bytes(2, "big") + ((ident + i) & 0xFFFF).to_bytes(2, "big") + addrs +
                        ports + s.to_bytes(4, "big") + ack)
        out.flows.append(flow)
        out.seqs.append(s)
        out.payload.append(size)
    return True


def _retransmissions(p: _Pcap) -> dict:
    """flow -> TCP segments whose sequence range had been sent before on that flow (a range
    starting below the highest sequence sent so far, in serial arithmetic mod 2**32)."""
    high, counts = {}, defaultdict(int)
    half = SEQ_SPACE // 2
    for flow, seq, length in zip(p.flows, p.seqs, p.payload):
        if seq is None:
            continue
        end = (seq + length) % SEQ_SPACE
        top = high.get(flow)
        if top is None:
            high[flow] = end
            continue
        if 0 < (top - seq) % SEQ_SPACE < half:
            counts[flow] += 1
        if 0 < (end - top) % SEQ_SPACE < half:
            high[flow] = end
    return counts


def _match(queued: _Pcap, sent: _Pcap) -> tuple[list[int], list[bool], int]:
    """Per-packet delay (ns) of each sent packet found in queued; which queued packets went
    out; how many sent packets had no queued copy.  A repeated key goes first-in first-out."""
    waiting = defaultdict(deque)
    for i, key in enumerate(queued.keys):
        if key is not None:
            waiting[key].append(i)
    delays, went, unmatched = [], [False] * len(queued.keys), 0
    for key, t in zip(sent.keys, sent.ts):
        if key is None:
            continue
        q = waiting.get(key)
        if not q or queued.ts[q[0]] > t:      # a packet leaves after it was queued, on one clock: a later
            unmatched += 1                     # copy (a SYN resent, id 0 both times) is another packet
            continue
        i = q.popleft()
        went[i] = True
        delays.append(t - queued.ts[i])
    return delays, went, unmatched


def _loss_bursts(queued_ts: list[int], lost: list[int]) -> tuple[int, int, int]:
    """(units queued, units lost, runs of lost units): a unit is one record the queue took, a GSO
    packet's segments sharing its record's time stamp (_segments)."""
    unit, units, last = [], -1, None
    for t in queued_ts:
        if t != last:
            units, last = units + 1, t
        unit.append(units)
    gone = {unit[i] for i in lost}
    return units + 1, len(gone), sum(1 for u in gone if u - 1 not in gone)


def _timeline(p: _Pcap, start: int, span: int, bins: int, rate_bps: float) -> list[float]:
    if not p.ts:
        return [0.0] * bins
    ts = np.asarray(p.ts, dtype=np.int64)
    idx = np.minimum((ts - start) * bins // span, bins - 1)
    sent = np.bincount(idx, weights=np.asarray(p.wirelen, dtype=np.float64), minlength=bins)
    bin_s = span / bins / 1e9
    return [round(float(u), 4) for u in sent * 8 / bin_s / rate_bps]


def _busy_rate(ts: list[int], wirelen: list[int]) -> float | None:
    """bits/s from the first to the last packet: every packet's bytes but the last one's, since a
    rate-limited link spends the gap after each packet sending it.  None for a single packet."""
    first, last = min(ts), max(ts)
    if last == first:
        return None
    return (sum(wirelen) - wirelen[ts.index(last)]) * 8 / ((last - first) / 1e9)


def analyse(directions: list[Direction], k: float, bins: int = 200, since_ns: int = 0) -> dict:
    """results.json's "capture": per direction the totals, per-packet delays, losses,
    retransmissions and a utilisation timeline of `bins` bins over the whole capture; the
    flows seen on the ranks' own ports, largest first.  since_ns: the moment every tcpdump
    was listening (CLOCK_REALTIME, the pcaps' clock); what came before, one file of a pair
    may hold and the other not."""
    read = [(d, _read(d.queued, d.mtu, since_ns), _read(d.sent, since_ns=since_ns)) for d in directions]
    stamps = [t for _, q, s in read for p in (q, s) if p.ts for t in (min(p.ts), max(p.ts))]
    start, end = (min(stamps), max(stamps)) if stamps else (None, None)
    span = max(end - start, 1) if stamps else 1
    out = {"k": k, "start_ns": start, "end_ns": end, "bin_s": span / bins / 1e9 if stamps else None,
           "bins": bins, "directions": []}
    flows: dict[bytes, dict] = {}
    for d, queued, sent in read:
        delays, went, unmatched = _match(queued, sent)
        delays_s = [ns / 1e9 for ns in delays]
        last_out = max((i for i, w in enumerate(went) if w), default=-1)
        unsent = [i for i, (key, w) in enumerate(zip(queued.keys, went)) if key is not None and not w]
        units, lost_units, bursts = _loss_bursts(queued.ts, [i for i in unsent if i < last_out])
        retrans = _retransmissions(queued)
        timeline = _timeline(sent, start, span, bins, d.rate_bps) if stamps else [0.0] * bins
        busy = _busy_rate(sent.ts, sent.wirelen) if sent.ts else None
        out["directions"].append({
            "key": d.key, "link_class": d.link_class, "role": d.role, "rate_bps": d.rate_bps,
            "packets": len(sent.ts), "bytes": sum(sent.wirelen),
            "queued_packets": len(queued.ts), "queued_bytes": sum(queued.wirelen),
            "lost": sum(i < last_out for i in unsent), "unsent_at_end": sum(i > last_out for i in unsent),
            "queued_units": units, "lost_units": lost_units, "loss_bursts": bursts,
            "unmatched_sent": unmatched,
            "delay_s": stats.summary(delays_s), "delay_real_s": stats.summary(delays_s, scale=Dilation(k).real(1.0)),
            "retransmissions": sum(retrans.values()),
            "utilisation": timeline, "peak_utilisation": max(timeline) if sent.ts else None,
            "mean_utilisation": None if busy is None else round(busy / d.rate_bps, 4)})
        if d.role == "host":
            _add_flows(flows, sent, retrans)
    out["flows_total"] = len(flows)
    out["flows"] = [_flow_entry(f, start) for f in sorted(flows.values(), key=lambda f: -f["bytes"])[:FLOWS_KEPT]]
    return out


def _add_flows(flows: dict, sent: _Pcap, retrans: dict) -> None:
    for flow, t, size in zip(sent.flows, sent.ts, sent.wirelen):
        if flow is None:
            continue
        f = flows.get(flow)
        if f is None:
            f = flows[flow] = {"id": flow, "ts": [], "wirelen": [], "bytes": 0, "retransmissions": 0}
        f["ts"].append(t)
        f["wirelen"].append(size)
        f["bytes"] += size
    for flow, n in retrans.items():
        if flow in flows:
            flows[flow]["retransmissions"] += n


def _flow_entry(f: dict, start: int) -> dict:
    b = f["id"]
    ip = lambda raw: ".".join(str(x) for x in raw)          # noqa: E731
    return {"src": f"{ip(b[0:4])}:{int.from_bytes(b[8:10], 'big')}",
            "dst": f"{ip(b[4:8])}:{int.from_bytes(b[10:12], 'big')}",
            "proto": PROTO_NAMES.get(b[12], str(b[12])), "packets": len(f["ts"]), "bytes": f["bytes"],
            "first_s": (min(f["ts"]) - start) / 1e9, "last_s": (max(f["ts"]) - start) / 1e9,
            "rate_bps": _busy_rate(f["ts"], f["wirelen"]), "retransmissions": f["retransmissions"]}


def short_key(key: str) -> str:
    """"fab1a2bh0:fab1a2br0" -> "h0:r0": a direction's name without the run's prefix."""
    return ":".join(RUN_PREFIX.sub("", part) for part in key.split(":"))


_COLS = [("direction", "", 14), ("class", "", 8), ("packets", "", 8), ("MB", "", 8), ("util", "peak", 6),
         ("util", "mean", 6), ("delay", "p50 us", 11), ("delay", "p99 us", 11), ("lost", "", 6),
         ("retrans", "", 7)]


def table(doc: dict) -> str:
    """The per-direction figures for the terminal: delays on the real fabric (emulated / k)."""
    lines = [f"# packet capture: {len(doc['directions'])} shaped link directions, {doc.get('flows_total', 0)} flows;"
             f" delay = queued -> sent per packet, real us (p99 from {stats.needed(99)} packets);"
             f" util = sent / shaped rate",
             "#" + " ".join(f"{name:>{w}}" for name, _, w in _COLS)[1:],
             "#" + " ".join(f"{unit:>{w}}" for _, unit, w in _COLS)[1:]]
    for d in doc["directions"]:
        delay, n = d["delay_real_s"], d["delay_real_s"]["n"]
        us = {q: None if delay[q] is None else delay[q] * 1e6 for q in ("p50", "p99")}
        util = {q: "-" if d[q] is None else f"{d[q]:.2f}" for q in ("peak_utilisation", "mean_utilisation")}
        cells = [short_key(d["key"]), d["link_class"], d["packets"], f"{d['bytes'] / 1e6:.3f}",
                 util["peak_utilisation"], util["mean_utilisation"], _us(us["p50"], n), _us(us["p99"], n),
                 d["lost"], d["retransmissions"]]
        lines.append(" ".join(f"{str(c):>{w}}" for c, (_, _, w) in zip(cells, _COLS)))
    return "\n".join(line.rstrip() for line in lines)


def _us(value: float | None, n: int) -> str:
    return stats.fmt(value, n, ".1f" if value is not None and value >= 100 else ".4g")
