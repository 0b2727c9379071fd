"""The terminal table, read like nccl-tests' (size, count, type, time, algbw, busbw), with the
tail (p99), the bottleneck link and bus efficiency, the α-β model, and the real-fabric projection."""
from __future__ import annotations

from collectives.algorithms import ALGORITHMS, BASELINE
from fabric.dilation import Dilation
from fabric.results import lossless_dropped
from fabric.stats import fmt, fmt_interval, needed
from fabric.units import fmt_rate, fmt_time

# nccl-tests' columns first, in real-fabric numbers (what its users read as the answer: size,
# count, type, redop, root, time, algbw, busbw, #wrong), then fabric's own: the algorithm, the
# iterations, p99, the bottleneck link, busEff, the α-β model and meas/model (real too), and the
# emulated time and bandwidths that were measured before the projection (time / k, GB/s x k)
_COLS = [("size", "(B)", 12), ("count", "(elements)", 12), ("type", "", 8), ("redop", "", 6), ("root", "", 6),
         ("time", "(us)", 9), ("algbw", "(GB/s)", 9), ("busbw", "(GB/s)", 9), ("#wrong", "", 6),
         ("algo", "", 12), ("n", "", 4), ("p99", "(us)", 10), ("link", "(GB/s)", 9), ("busEff", "", 6),
         ("model", "(us)", 9), ("meas/", "model", 6),
         ("emu:time", "(us)", 11), ("algbw", "(GB/s)", 9), ("busbw", "(GB/s)", 9)]
REDOP = {"all_reduce": "sum", "reduce_scatter": "sum", "reduce": "sum"}    # nccl-tests' redop column


def header(doc: dict) -> list[str]:
    prof, emu, k = doc["profile"], doc["emulation"], doc["scale"]
    # "shape": the topology's own words (since topologies became plug-ins); before, two kinds
    topo = f"{emu['topology']}: {emu['shape']}" if "shape" in emu else \
        f"{emu['ranks']} ranks, " + (f"{emu['domains']} domains x {emu['ranks'] // emu['domains']}"
                                    if emu["topology"] == "two_tier" else "flat")
    lines = [f"# fabric run: {prof['name']} ({prof['source']}), {topo}",
             f"# scale k = {k:g}: emulated rates = real / k, latencies = real x k; every column is the real fabric's"
             f" (measured time / k, bandwidth x k) but the 'emu:' ones, as measured",
             f"# netem: {emu['netem']}; time = slowest rank per iteration, p50 over the n iterations;"
             f" p99 from {needed(99)} iterations up, p95 from {needed(95)} (fewer cannot carry them); GB/s = 1e9 B/s"]
    if doc.get("stragglers"):
        lines.append("# times include the stragglers (" + "; ".join(doc["stragglers"]["entries"]) + "); the model and"
                     " the baseline in the stragglers table are the fabric without them")
    if doc.get("events"):
        lines.append(f"# times include {len(doc['events'])} events on the links (below); the model is the fabric "
                     f"without them")
    for link in doc.get("links", []):
        e = link.get("endpoint") or {}
        cost = (f"; endpoint {fmt_time(e['op_s'])} per call, {fmt_time(e['step_s'])} per step (waited x k, in the model)"
                if e.get("op_s") or e.get("step_s") else "")
        lines.append(f"#   link {link['name']}: real {fmt_rate(link['rate_bps'])} {fmt_time(link['latency_s'])}"
                     f" -> emulated {fmt_rate(link['emulated_rate_bps'])} {fmt_time(link['emulated_latency_s'])}{cost}"
                     + _flow_control(link) + _dropped(link))
    if doc.get("tcp"):
        t = doc["tcp"]
        r = t["retransmitted"]
        lines.append(f"# TCP retransmitted segments: {sum(r):,}" + (
            f" (per rank: {' '.join(map(str, r))}; {sum(t['timeouts']):,} timeouts, {sum(t['loss_probes']):,}"
            f" tail-loss probes; receivers threw away {sum(t['receiver_drops']):,} segments{_pairs(t)})" if sum(r) else "")
            + _memory_pressure(t.get("receiver_drops_by") or {}))
    if doc.get("resources"):
        lines.append(_resources(doc["resources"]))
    return lines


def _resources(r: dict) -> str:
    """What the run cost this host: set-up, ranks, tear-down wall time and memory per rank."""
    m = r["rank_memory_bytes"]
    mem = (f"; memory per rank {m['own_p50'] / 2**20:.0f} MiB own (largest {m['own_max'] / 2**20:.0f}, of "
           f"{m['ranks']} ranks; up to {m['peak_rss_max'] / 2**20:.0f} MiB resident with torch's shared pages)"
           if m.get("own_p50") is not None else "")
    join = f" (joining the gloo group {r['join_s']:.1f} s)" if r.get("join_s") is not None else ""
    runs = (f"; {r['runs']} runs on this one fabric (baseline, then stragglers): the drop and TCP counters"
            f" above are theirs together" if r.get("runs", 1) > 1 else "")
    return (f"# host cost: set-up {r['setup_s']:.1f} s, ranks {r['ranks_s']:.1f} s{join}, tear-down "
            f"{r['teardown_s']:.1f} s{mem}{runs}")


def _pairs(t: dict) -> str:
    """The rank pairs that resent most (sender -> receiver)."""
    pairs = t.get("retransmitted_pairs")
    if not pairs:
        return ""
    top = ", ".join(f"{a}->{b} {n:,}" for a, b, n in pairs[:3])
    return f"; most between ranks {top} ({len(pairs)} pairs resent)"


def _memory_pressure(by: dict) -> str:
    """TCP's memory ran short (one pool per kernel, net.ipv4.tcp_mem): a host limit, not the fabric's."""
    n = sum(by.get("TCPMemoryPressures", []))
    return f"; TCP memory pressure {n:,} times (net.ipv4.tcp_mem of this kernel)" if n else ""


def _flow_control(link: dict) -> str:
    if link.get("lossless", True):
        return "; lossless"
    return f"; lossy, switch buffer {link['buffer_bytes']:,} B"


def _dropped(link: dict) -> str:
    """What the kernel dropped on a link class's shaped directions during the run; a warning
    where a lossless link dropped packets that no configured loss explains."""
    d = link.get("drops")
    if d is None:
        return ""
    if not d["packets"]:
        return f"; dropped 0 of {d['sent_packets']:,} packets"
    text = (f"; DROPPED {d['packets']:,} of {d['sent_packets']:,} packets on {d['directions_dropping']} of "
            f"{d['directions']} directions")
    if lossless_dropped(link):
        text += " -- WARNING: a lossless link dropped packets (its queues were too short for what was sent)"
    return text


def table(doc: dict) -> str:
    return "\n".join(header(doc) + ops_table(doc) + fit_lines(doc) + workloads_table(doc) + stragglers_table(doc) +
                     event_lines(doc) + capture_lines(doc))


def event_lines(doc: dict) -> list[str]:
    """What each event did and when (fabric.events): its moment real and emulated, and when it
    was applied, seconds after the ranks were released."""
    if not doc.get("events"):
        return []
    out = ["#", "# events (real time after the ranks start; emulated = real x k):"]
    for e in doc["events"]:
        when = f"{fmt_time(e['at_s']) if e['at_s'] else '0'} real, {e['emulated_at_s']:.3g} s emulated"
        if e["applied_s"] is None:
            out.append(f"#   {e['index']}: {e['what']} at {when}: not reached (the run ended first)")
            continue
        moved = f", {e['routes_moved']} routes moved" if e.get("routes_moved") else ""
        lost = f", {len(e['lost'])} rank pairs without a path: the run stopped" if e.get("lost") else ""
        out.append(f"#   {e['index']}: {e['what']} at {when}: applied at +{e['applied_s']:.3f} s in "
                   f"{e['took_s'] * 1e3:.0f} ms{moved}{lost}")
    return out


def capture_lines(doc: dict) -> list[str]:
    """The packet capture's per-link figures (fabric run --capture)."""
    if not doc.get("capture"):
        return []
    from fabric import capture
    return ["#"] + capture.table(doc["capture"]).splitlines()


def fit_lines(doc: dict) -> list[str]:
    """The α-β fit of a size sweep (fabric.fit), measured beside the profile's model."""
    lines = []
    for op, f in (doc.get("fit") or {}).items():
        lines += ["#", f"# α-β fit of {op} over {f['sizes']} sizes, t = latency + size / bandwidth, real fabric:",
                  f"#   latency term {f['alpha_us']:.4g} us (the profile's links: {f['profile_alpha_us']:.4g} us"
                  f"{_pct(f['alpha_diff'])})",
                  f"#   bandwidth {_rate(f['beta_bps'])} on the bottleneck link (the profile: "
                  f"{_rate(f['profile_beta_bps'])}{_pct(f['beta_diff'])})",
                  f"#   crossover (latency term = bandwidth term) at {_size(f.get('crossover_bytes'))} (the profile: "
                  f"{_size(f.get('profile_crossover_bytes'))}): latency-bound below, bandwidth-bound above"]
    return lines


def _pct(diff) -> str:
    if diff is None:
        return ""
    return ", the same within 1 %" if abs(diff) < 0.01 else f", {diff:+.0%}"


def _size(nbytes) -> str:
    if not nbytes:
        return "-"
    unit, factor = next((u, f) for u, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1))
                        if nbytes >= f or f == 1)
    return f"{nbytes / factor:.3g} {unit}"


def _rate(bps) -> str:
    return fmt_rate(bps) if bps is not None and bps > 0 else "- (no size-dependent term measured)"


def ops_table(doc: dict) -> list[str]:
    if not doc["results"]:
        return []
    lines = []
    current = None
    for r in doc["results"]:
        if r["op"] != current:
            current = r["op"]
            lines.append("#")
            used = list(dict.fromkeys(_algo(x) for x in doc["results"] if x["op"] == current))
            lines.append(f"# {current}: " + "; ".join(f"{a}: {ALGORITHMS[a].ops[current]}" for a in used
                                                      if a in ALGORITHMS and current in ALGORITHMS[a].ops))
            lines.append("#" + " ".join(f"{name:>{w}}" for name, _, w in _COLS)[1:])
            lines.append("#" + " ".join(f"{unit:>{w}}" for _, unit, w in _COLS)[1:])
        t, p, dil = r["time_us"], r["projected"], Dilation.of(doc)
        n = t.get("n", r["iters"])
        p99 = fmt(t["p99"], n) if t["p99"] is None else _t(dil.real(t["p99"]))
        cells = [r["bytes"], r["count"], r["type"], REDOP.get(r["op"], "none"), r.get("root", -1),
                 _t(p["time_us"]), _g(p["algbw_GBps"]), _g(p["busbw_GBps"]),
                 {True: "0", False: "WRONG", None: "N/A"}[r["correct"]],
                 _algo(r), n, p99, _g(dil.real_rate(r["link_GBps"])), f"{r['bus_efficiency']:.2f}",
                 _t(dil.real(r["model_time_us"])), f"{r['measured_over_model']:.2f}",
                 f"{t['p50']:.1f}", _g(r["algbw_GBps"]), _g(r["busbw_GBps"])]
        lines.append(" ".join(f"{str(c):>{w}}" for c, (_, _, w) in zip(cells, _COLS)))
    wrong = sum(r["correct"] is False for r in doc["results"])
    late = sum(r["late_starts"] for r in doc["results"])
    unchecked = sum(r["correct"] is None for r in doc["results"])
    lines.append(f"# results: {len(doc['results'])} op/size pairs, {wrong} wrong"
                 + (f", {unchecked} not checked (check: false)" if unchecked else "")
                 + (f", {late} late rank starts (times include the lateness)" if late else ""))
    return lines + nccl_footer(doc)


def nccl_footer(doc: dict) -> list[str]:
    """nccl-tests' closing lines, as its users' scripts grep them: the results that were wrong
    (nccl-tests counts wrong elements; here each wrong op/size pair counts once) and the mean
    busbw over the results, GB/s on the real fabric."""
    results = doc["results"]
    wrong = sum(r["correct"] is False for r in results)
    mean = sum(r["projected"]["busbw_GBps"] for r in results) / len(results)
    return [f"# {'Out of bounds values':<20} : {wrong} {'FAILED' if wrong else 'OK'}",
            f"# {'Avg bus bandwidth':<20} : {mean:g} ", "#"]


def _algo(r: dict) -> str:
    """The algorithm a result ran (results written before algorithms existed ran gloo's)."""
    return r.get("algorithm", BASELINE)


def _g(x: float) -> str:
    """Four significant digits: emulated bandwidths are small, projected ones large."""
    return f"{x:.4g}"


def _t(us: float) -> str:
    return f"{us:.1f}" if us >= 100 else f"{us:.4g}"


def _tn(us: float | None, n: int) -> str:
    """_t, or "n/a (n=3)" for a percentile n samples cannot carry."""
    return fmt(None, n) if us is None else _t(us)


def workloads_table(doc: dict) -> list[str]:
    """Inference workloads: iteration (slowest rank) emulated and real, the α-β model, and
    each kind's own figures on the real fabric (workloads/*.py: describe)."""
    from workloads import KINDS
    if not doc.get("workloads"):
        return []
    lines = ["#", "# inference workloads: iteration = slowest rank's end; real = emulated / k",
             f"#{'n':>4} {'iteration p50':>14} {'p99':>10} {'real p50':>12} {'real p99':>12} {'model':>10} {'meas/':>6} "
             f"{'check':>5}  workload",
             f"#{'':>4} {'(ms)':>14} {'(ms)':>10} {'(us)':>12} {'(us)':>12} {'(ms)':>10} {'model':>6} {'':>5}"]
    for w in doc["workloads"]:
        it, real = w["iteration_us"], w["projected_iteration_us"]
        n = it.get("n", w["iters"])
        ratio = f"{w['measured_over_model']:.2f}" if w["measured_over_model"] else "-"
        p99 = None if it["p99"] is None else it["p99"] / 1e3
        lines.append(f"{n:>5} {it['p50'] / 1e3:>14.2f} {fmt(p99, n, '.2f'):>10} {_t(real['p50']):>12} "
                     f"{_tn(real['p99'], n):>12} "
                     f"{w['model_iteration_us'] / 1e3:>10.2f} {ratio:>6} {'ok' if w['correct'] else 'WRONG':>5}  "
                     f"{w['label']}")
        lines.append(f"{'':>16}-> {KINDS[w['kind']].describe(w['figures'])}")
        if w.get("algorithms"):
            lines.append(f"{'':>16}   algorithms: " + ", ".join(f"{label} {a}" for label, a in w["algorithms"].items()))
    return lines


def stragglers_table(doc: dict) -> list[str]:
    """The straggler run against its baseline: added time and ratio at p50 (with its 95 %
    interval) and p99 (where both runs have the samples), the skew (own time - fastest
    rank's) and which rank finished last most often, each with its sample count."""
    s = doc.get("stragglers")
    if not s:
        return []
    lines = ["#", "# stragglers: " + "; ".join(s["entries"]),
             "# real us (emulated / k); baseline = the same workload without stragglers, in this invocation;"
             " n = iterations of each run; x p50 95% = the ratio's bootstrap interval",
             f"#{'n':>5} {'base p50':>10} {'slow p50':>10} {'x p50':>6} {'x p50 95%':>12} {'base p99':>10} "
             f"{'slow p99':>10} {'x p99':>6} {'+p99':>10} {'last':>9}  what"]
    for r in s["slowdown"]:
        b, sl, x, add = r["baseline_us"], r["straggler_us"], r["ratio"], r["added_us"]
        counts = r["last_counts"]
        n = r.get("samples", {}).get("straggler", sum(counts))
        nb = r.get("samples", {}).get("baseline", n)
        ci = (r.get("ratio_ci") or {}).get("p50")
        last = max(range(len(counts)), key=counts.__getitem__)
        lines.append(f"{(str(n) if nb == n else f'{nb}/{n}'):>6} {_t(b['p50']):>10} {_t(sl['p50']):>10} {_x(x['p50']):>6} "
                     f"{fmt_interval(ci, min(n, nb)):>12} {_tn(b['p99'], nb):>10} "
                     f"{_tn(sl['p99'], n):>10} {_x(x['p99']):>6} {_tn(add['p99'], min(n, nb)):>10} "
                     f"{f'r{last} {counts[last]}/{sum(counts)}':>9}  {r['name']}")
        skew = [f"r{i} {v:.3g}" for i, v in enumerate(r["skew_us"]) if v is not None]
        lines.append(f"{'':>12} skew us (own - fastest, mean of {sum(counts)}): {', '.join(skew)}")
    return lines


def _x(ratio) -> str:
    return f"{ratio:.2f}" if ratio is not None else "-"
