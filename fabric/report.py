"""The terminal table, read like nccl-tests' (size, count, type, time, algbw, busbw), with the
tail (p99), the bottleneck link and bus efficiency, the α-β model, and the real-fabric projection."""
from __future__ import annotations

from collectives import COLLECTIVES
from fabric.units import fmt_rate, fmt_time

_COLS = [("size", "(B)", 11), ("count", "(elements)", 10), ("type", "", 7), ("time", "(us)", 10),
         ("p99", "(us)", 10), ("algbw", "(GB/s)", 9), ("busbw", "(GB/s)", 9), ("link", "(GB/s)", 9),
         ("busEff", "", 6), ("model", "(us)", 10), ("meas/", "model", 6), ("real:time", "(us)", 10),
         ("algbw", "(GB/s)", 9), ("busbw", "(GB/s)", 9), ("check", "", 5)]


def header(doc: dict) -> list[str]:
    prof, emu, k = doc["profile"], doc["emulation"], doc["scale"]
    topo = f"{emu['domains']} domains x {emu['ranks'] // emu['domains']}" if emu["topology"] == "two_tier" \
        else "flat"
    lines = [f"# fabric run: {prof['name']} ({prof['source']}), {emu['ranks']} ranks, {topo}",
             f"# scale k = {k:g}: emulated rates = real / k, latencies = real x k; 'real:' columns project back"
             f" (time / k, bandwidth x k)",
             f"# netem: {emu['netem']}; time = slowest rank per iteration, p50 over iterations;"
             f" GB/s = 1e9 B/s"]
    for link in doc.get("links", []):
        lines.append(f"#   link {link['name']}: real {fmt_rate(link['rate_bps'])} {fmt_time(link['latency_s'])}"
                     f" -> emulated {fmt_rate(link['emulated_rate_bps'])} {fmt_time(link['emulated_latency_s'])}")
    return lines


def table(doc: dict) -> str:
    lines = header(doc)
    current = None
    for r in doc["results"]:
        if r["op"] != current:
            current = r["op"]
            lines.append("#")
            lines.append(f"# {current}: {COLLECTIVES[current].algorithm}")
            lines.append("#" + " ".join(f"{name:>{w}}" for name, _, w in _COLS)[1:])
            lines.append("#" + " ".join(f"{unit:>{w}}" for _, unit, w in _COLS)[1:])
        t, p = r["time_us"], r["projected"]
        cells = [r["bytes"], r["count"], r["type"], f"{t['p50']:.1f}", f"{t['p99']:.1f}",
                 _g(r["algbw_GBps"]), _g(r["busbw_GBps"]), _g(r["link_GBps"]),
                 f"{r['bus_efficiency']:.2f}", f"{r['model_time_us']:.1f}", f"{r['measured_over_model']:.2f}",
                 _t(p["time_us"]), _g(p["algbw_GBps"]), _g(p["busbw_GBps"]),
                 "ok" if r["correct"] else "WRONG"]
        lines.append(" ".join(f"{str(c):>{w}}" for c, (_, _, w) in zip(cells, _COLS)))
    wrong = sum(not r["correct"] for r in doc["results"])
    late = sum(r["late_starts"] for r in doc["results"])
    lines.append(f"# results: {len(doc['results'])} op/size pairs, {wrong} wrong"
                 + (f", {late} late rank starts (times include the lateness)" if late else ""))
    return "\n".join(lines)


def _g(x: float) -> str:
    """Four significant digits: emulated bandwidths are small, projected ones large."""
    return f"{x:.4g}"


def _t(us: float) -> str:
    return f"{us:.1f}" if us >= 100 else f"{us:.4g}"
