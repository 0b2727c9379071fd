"""Link fidelity measured with packets: `fabric probe PROFILE`.

For every path type of the topology (flat: rank to rank; two tiers: inside a domain, and
across domains through the shared uplinks) fabric builds the emulation and measures, between
two ranks' namespaces:
  * one-way delay, from timestamped UDP probes: the kernel stamps each probe as it enters the
    sender's qdiscs (SO_TIMESTAMPING, TX_SCHED) and as it arrives in the receiver's namespace
    (SO_TIMESTAMPNS), so neither end's process scheduling counts; both namespaces share one
    kernel clock, so arrival - departure is the one-way delay.  p50, p99, standard deviation and
    p99 - p50 (jitter), the share lost, and the share reordered (a probe arriving after a
    later one);
  * the round trip, from the same probes echoed back (RTT = there + back, from the same kernel
    send stamp to the echo's kernel arrival stamp; the responder's own turnaround, measured in
    it, is subtracted, as if the kernel had answered like ping's ICMP echo);
  * the rate one TCP flow reaches, over the second half of a transfer (after slow start), and
    the share of its segments retransmitted (the sender namespace's counters).
Expected values come from the plan (the sum of the hops' delays, the hops' jitter added as
independent variances, their losses compounded, the narrowest hop's rate, or under loss the
Mathis bound on one TCP flow if lower), in emulated units;
real-fabric values are emulated / k for times and x k for rates.
"""
from __future__ import annotations

import json
import math
import os
import select
import socket
import statistics
import struct
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fabric.emulation import Emulation
from fabric.plan import MTU, Plan
from fabric.stats import percentile, supported

UDP_PORT, TCP_PORT = 5201, 5202
PROBE = struct.Struct("!QQ")        # sequence number, departure time (ns, CLOCK_REALTIME)
PROBE_BYTES = 64                    # UDP payload
HEADERS = 14 + 20 + 8               # Ethernet, IPv4, UDP
PROBE_SHARE = 0.05                  # probes use at most this share of the narrowest rate
TCP_MSS = MTU - 20 - 32              # IPv4 and TCP headers with timestamps (a lossy fabric's MTU is MTU)
MIN_INTERVAL_S = 0.001              # gentle on a software-emulated CPU; 1,000 probes per second
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)   # Linux; Python names it only on some builds
SO_TIMESTAMPING = 37
TX_SCHED = (1 << 8) | (1 << 4) | (1 << 7) | (1 << 11)    # TX_SCHED | SOFTWARE | OPT_ID | OPT_TSONLY
IP_RECVERR = 11


@dataclass(frozen=True)
class Expected:
    one_way_s: float
    jitter_s: float
    loss: float
    rate_bps: float
    in_order: bool = True    # every jittered hop a FIFO line (reorder: false)

    @property
    def tcp_rate_bps(self) -> float:
        """One TCP flow: the narrowest rate or, with loss, Mathis et al.'s bound
        MSS / RTT x sqrt(3/2) / sqrt(p) (one window halving per loss event), whichever is lower."""
        if self.loss <= 0 or self.one_way_s <= 0:
            return self.rate_bps
        return min(self.rate_bps, TCP_MSS * 8 / (2 * self.one_way_s) * math.sqrt(1.5 / self.loss))


@dataclass(frozen=True)
class Measured:
    probes: int
    one_way_p50_s: float
    one_way_p99_s: float | None      # None: fewer than 100 probes arrived (fabric.stats)
    jitter_std_s: float
    jitter_p99_p50_s: float | None
    jitter_iqr_s: float          # p75 - p25: the spread a few stalled probes cannot move
    loss: float
    reordered: float
    rtt_p50_s: float
    tcp_rate_bps: float
    tcp_retransmitted: float     # share of the TCP flow's segments sent again


def paths(plan: Plan) -> list[tuple[str, str, int, int]]:
    """(path type, link class, src rank, dst rank) for each path type of the topology."""
    return plan.profile.topology.probe_paths()


def expected(plan: Plan, src: int, dst: int) -> Expected:
    hops = plan.path(src, dst)
    keep = 1.0
    for _, b in hops:
        keep *= 1 - b.loss
    return Expected(one_way_s=sum(b.delay_s for _, b in hops),
                    jitter_s=math.sqrt(sum(b.jitter_s ** 2 for _, b in hops)),
                    loss=1 - keep, rate_bps=min(s.rate_bps for s, _ in hops),
                    in_order=all(b.keep_order for _, b in hops if b.jitter_s))


def interval_s(exp: Expected) -> float:
    return max(MIN_INTERVAL_S, (PROBE_BYTES + HEADERS) * 8 / (PROBE_SHARE * exp.rate_bps))


def probe(emu: Emulation, count: int, log=print) -> list[dict]:
    """Measure every path type of a running emulation; one dict per path."""
    plan = emu.plan
    out = []
    with tempfile.TemporaryDirectory(prefix="fabric-probe-") as tmp:
        for kind, link, src, dst in paths(plan):
            exp = expected(plan, src, dst)
            log(f"fabric: probing {kind} ({link}, rank {src} -> rank {dst}): {count} probes, one TCP flow")
            meas = _measure(emu, src, dst, exp, count, Path(tmp) / kind)
            out.append({"path": kind, "link": link, "src": src, "dst": dst,
                        "expected": {**asdict(exp), "tcp_rate_bps": exp.tcp_rate_bps}, "measured": asdict(meas)})
    return out


def _measure(emu: Emulation, src: int, dst: int, exp: Expected, count: int, work: Path) -> Measured:
    work.mkdir(parents=True)
    plan = emu.plan
    dst_ip, src_ip = plan.hosts[dst].ip, plan.hosts[src].ip
    gap = interval_s(exp)
    slack = 1.0 + 4 * (exp.one_way_s + 6 * exp.jitter_s)      # the last echo's way back, and then some
    send_s = count * gap
    deadline = time.monotonic() + 2 + send_s + slack
    _pair(emu, dst, lambda: _udp_echo(dst_ip, deadline, work / "rx.json", work / "ready"),
          src, lambda: _udp_source(dst_ip, src_ip, count, gap, slack, work / "tx.json"),
          work / "ready", timeout_s=deadline - time.monotonic() + 5, name="u")
    rx = json.loads((work / "rx.json").read_text())
    tx = json.loads((work / "tx.json").read_text())
    rtt = 2 * (exp.one_way_s + 3 * exp.jitter_s) + 4 * (PROBE_BYTES + HEADERS) * 8 / exp.rate_bps
    # under loss TCP's rate swings with each window halving: average over more round trips
    seconds = min(10.0, max(1.5, (200 if exp.loss else 40) * rtt))
    deadline = time.monotonic() + seconds + 10
    _pair(emu, dst, lambda: _tcp_sink(dst_ip, deadline, work / "sink.json", work / "ready2"),
          src, lambda: _tcp_source(dst_ip, src_ip, seconds, work / "source.json"),
          work / "ready2", timeout_s=seconds + 15, name="t")
    sink = json.loads((work / "sink.json").read_text())
    source = json.loads((work / "source.json").read_text())
    return summarize(rx, tx, sink, source)


def summarize(rx: dict, tx: dict, sink: dict, source: dict) -> Measured:
    got = len({r[0] for r in rx["records"]})
    late, highest = 0, -1
    for seq, *_ in rx["records"]:
        if seq < highest:
            late += 1
        highest = max(highest, seq)
    tx_at = {int(i): t for i, t in tx.get("tx_sched_ns", {}).items()}
    delays = sorted(r[2] - tx_at.get(r[0], r[1]) for r in rx["records"])
    # the echo's own turnaround (arrival stamp to its send call, in the responder's process) is
    # not the network's: subtract it, as if the kernel had answered (like ping)
    turnaround = {r[0]: r[3] - r[2] for r in rx["records"]}
    rtts = sorted(back - tx_at.get(seq, sent) - turnaround.get(seq, 0) for seq, sent, back in tx["echoes"])
    p99 = _tail(delays, 99)
    return Measured(
        probes=tx["sent"],
        one_way_p50_s=_pct(delays, 50) * 1e-9, one_way_p99_s=p99,
        jitter_std_s=(statistics.pstdev(delays) if len(delays) > 1 else 0.0) * 1e-9,
        jitter_p99_p50_s=None if p99 is None else p99 - _pct(delays, 50) * 1e-9,
        jitter_iqr_s=(_pct(delays, 75) - _pct(delays, 25)) * 1e-9,
        loss=1 - got / tx["sent"] if tx["sent"] else 0.0,
        reordered=late / got if got else 0.0,
        rtt_p50_s=_pct(rtts, 50) * 1e-9,
        tcp_rate_bps=_second_half_rate(sink["samples"]),
        tcp_retransmitted=source["retrans_segs"] / source["out_segs"] if source["out_segs"] else 0.0)


def _pct(xs: list[float], p: float) -> float:
    return percentile(xs, p) if xs else float("nan")


def _tail(delays_ns: list[float], p: float) -> float | None:
    """Percentile p of the delays in seconds, None when too few probes arrived to carry it."""
    return percentile(delays_ns, p) * 1e-9 if supported(p, len(delays_ns)) else None


def _second_half_rate(samples: list[list[float]]) -> float:
    """Bits per second over the second half of the transfer (slow start is over by then)."""
    if len(samples) < 2:
        return 0.0
    t0, t1 = samples[0][0], samples[-1][0]
    mid = next(s for s in samples if s[0] >= (t0 + t1) / 2)
    dt = t1 - mid[0]
    return (samples[-1][1] - mid[1]) * 8 / dt if dt > 0 else 0.0


# ---- the two ends, each forked into a rank's namespace ------------------------------------
def _pair(emu: Emulation, dst: int, server, src: int, client, ready: Path, timeout_s: float, name: str) -> None:
    """Start server() in dst's namespace, wait until it is listening, run client() in src's;
    both bounded by timeout_s; raises RuntimeError if either fails."""
    pids = []
    try:
        pids.append(emu.fork(dst, _exits(server), name=f"{emu.plan.prefix}{name}s"))
        until = time.monotonic() + 10
        while not ready.exists():
            if time.monotonic() > until:
                raise RuntimeError("the probe receiver did not start within 10 s")
            time.sleep(0.01)
        pids.append(emu.fork(src, _exits(client), name=f"{emu.plan.prefix}{name}c"))
        deadline = time.monotonic() + timeout_s
        for pid in pids:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    if os.waitstatus_to_exitcode(status) != 0:
                        raise RuntimeError(f"a probe process failed (exit {os.waitstatus_to_exitcode(status)})")
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"probes did not finish within {timeout_s:.0f} s")
                time.sleep(0.02)
    finally:
        emu.reap(pids)


def _exits(fn):
    def body() -> int:
        try:
            fn()
            return 0
        except BaseException as exc:   # the parent reports the exit code; say why on stderr
            os.write(2, f"fabric probe: {type(exc).__name__}: {exc}\n".encode())
            return 1
    return body


def _rx_time(ancdata) -> int:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def _udp_socket(bind_ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((bind_ip, port))
    return s


def _udp_echo(ip: str, deadline: float, out: Path, ready: Path) -> None:
    s = _udp_socket(ip, UDP_PORT)
    ready.touch()
    records = []
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([s], [], [], min(left, 0.2))[0]:
            continue
        data, anc, _, addr = s.recvmsg(2048, socket.CMSG_SPACE(16))
        rx = _rx_time(anc)
        echo_at = time.time_ns()
        s.sendto(data, addr)
        seq, sent = PROBE.unpack_from(data)
        records.append((seq, sent, rx, echo_at))
    out.write_text(json.dumps({"records": records}))


def _udp_source(dst_ip: str, src_ip: str, count: int, gap: float, slack: float, out: Path) -> None:
    s = _udp_socket(src_ip, UDP_PORT)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_SCHED)   # ids count sends from 0 = seq
    s.connect((dst_ip, UDP_PORT))
    s.setblocking(False)
    pad = b"\0" * (PROBE_BYTES - PROBE.size)
    echoes, tx_at, sent = [], {}, 0
    next_t = time.monotonic()
    stop = math.inf
    while (now := time.monotonic()) < stop:
        if sent < count and now >= next_t:
            s.send(PROBE.pack(sent, time.time_ns()) + pad)
            sent += 1
            next_t += gap
            if sent == count:
                stop = now + slack
            _tx_stamps(s, tx_at)
            continue
        wait = (next_t if sent < count else stop) - now
        if select.select([s], [], [], max(0.0, min(wait, 0.2)))[0]:
            while True:
                try:
                    data, anc, _, _ = s.recvmsg(2048, socket.CMSG_SPACE(16))
                except BlockingIOError:
                    break
                echoes.append((*PROBE.unpack_from(data), _rx_time(anc)))
            _tx_stamps(s, tx_at)
    _tx_stamps(s, tx_at)
    out.write_text(json.dumps({"sent": sent, "echoes": echoes, "tx_sched_ns": tx_at}))


def _tx_stamps(s: socket.socket, tx_at: dict) -> None:
    """Collect the kernel's TX_SCHED stamps (the error queue): id -> ns."""
    while True:
        try:
            _, anc, _, _ = s.recvmsg(0, 512, socket.MSG_ERRQUEUE)
        except (BlockingIOError, InterruptedError):
            return
        stamp, ident = None, None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING:
                sec, nsec = struct.unpack_from("qq", data)
                stamp = sec * 1_000_000_000 + nsec
            elif level == socket.IPPROTO_IP and kind == IP_RECVERR:
                ident = struct.unpack_from("=IBBBBII", data)[6]
        if stamp and ident is not None:   # a probe is stamped again at each later qdisc: keep the first
            tx_at[ident] = min(stamp, tx_at.get(ident, stamp))


def _tcp_sink(ip: str, deadline: float, out: Path, ready: Path) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, TCP_PORT))
    srv.listen(1)
    ready.touch()
    srv.settimeout(max(0.1, deadline - time.monotonic()))
    conn, _ = srv.accept()
    samples, total = [], 0
    while (left := deadline - time.monotonic()) > 0:
        conn.settimeout(left)
        try:
            data = conn.recv(1 << 20)
        except TimeoutError:        # the deadline came while the queues still held the flow (a slow link)
            break
        if not data:
            break
        total += len(data)
        samples.append((time.monotonic(), total))
    out.write_text(json.dumps({"samples": samples}))


def _tcp_source(dst_ip: str, src_ip: str, seconds: float, out: Path) -> None:
    before = _tcp_counters()
    s = socket.create_connection((dst_ip, TCP_PORT), timeout=30, source_address=(src_ip, 0))
    chunk = b"\0" * (256 << 10)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(chunk)
    s.close()
    after = _tcp_counters()
    out.write_text(json.dumps({k: after[k] - before[k] for k in ("out_segs", "retrans_segs")}))


def _tcp_counters() -> dict:
    """This namespace's TCP segment counters (/proc/net/snmp is per network namespace)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
    tcp = dict(zip(rows[0][1:], (int(v) for v in rows[1][1:])))
    return {"out_segs": tcp["OutSegs"], "retrans_segs": tcp["RetransSegs"]}


# ---- the table ----------------------------------------------------------------------------
def table(doc: dict) -> str:
    """Profile vs measured vs ratio for each path type; times emulated (real = emulated / k)."""
    k = doc["scale"]
    rows = [f"# fabric probe: {doc['profile']['name']} ({doc['profile']['source']}), scale k = {k:g}, "
            f"netem: {doc['emulation']['netem']}",
            "# emulated units (real fabric: times / k, rates x k); expected = the plan's hops on the path"]
    for p in doc["paths"]:
        e, m = p["expected"], p["measured"]
        rows.append(f"#\n# {p['path']} ({p['link']}): rank {p['src']} -> rank {p['dst']}, {m['probes']} probes")
        if e["jitter_s"] and e.get("in_order", False):     # probe.json files before the key: netem reordered
            rows.append("#   in order (reorder: false): a probe closer behind another than the jitter's spread "
                        "waits for it, so the spread narrows and the delay grows")
        rows.append(f"#   {'metric':<22}{'profile':>14}{'measured':>14}{'ratio':>8}")
        for name, want, got in (
                ("one-way delay p50", e["one_way_s"], m["one_way_p50_s"]),
                ("one-way delay p99", None, m["one_way_p99_s"]),
                ("jitter (std dev)", e["jitter_s"], m["jitter_std_s"]),
                ("jitter (p99 - p50)", None, m["jitter_p99_p50_s"]),
                ("jitter (p75 - p25)", None, m["jitter_iqr_s"]),
                ("round trip p50", 2 * e["one_way_s"], m["rtt_p50_s"]),
                ("loss", e["loss"], m["loss"]),
                ("reordered", None, m["reordered"]),
                ("TCP rate", e["tcp_rate_bps"], m["tcp_rate_bps"]),
                ("TCP retransmitted", e["loss"], m["tcp_retransmitted"])):
            fmt = _rate if name == "TCP rate" else (_share if name in ("loss", "reordered", "TCP retransmitted")
                                                    else _time)
            ratio = f"{got / want:8.2f}" if want and got is not None else f"{'':>8}"
            shown = fmt(got) if got is not None else f"n/a (n={round(m['probes'] * (1 - m['loss']))})"
            rows.append(f"    {name:<22}{fmt(want) if want is not None else '':>14}{shown:>14}{ratio}")
    return "\n".join(rows)


def _time(s: float) -> str:
    return "nan" if s != s else (f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us")


def _share(x: float) -> str:
    return f"{x:.3%}"


def _rate(bps: float) -> str:
    return f"{bps / 1e6:.2f} Mbit/s"
