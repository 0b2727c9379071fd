"""How faithfully does this host emulate a link?  Three tables:

1. bandwidth: bus efficiency of a large all-reduce (busbw / shaped link rate) across emulated
   rates and rank counts, flat topology, no impairments, through the whole pipeline
   (Mininet + HTB + gloo ranks);
2. delay, jitter, loss: `fabric probe` on a 2-rank flat link per setting (inside the microVM
   where the kernel has no netem), profile vs measured;
3. offloads: one TCP flow under 1 % loss with segmentation offloads off (fabric's default) and
   on (`offloads: true`), rate and retransmitted share, against the Mathis bound.

    sudo .venv/bin/python benchmarks/fidelity.py [--rates 50Mbit/s,200Mbit/s,1Gbit/s,5Gbit/s]
                                                 [--ranks 2,4,8,16] [--seconds 0.4] [--json FILE]
                                                 [--netem 1ms/0/0,10ms/3ms/1%,50ms/5ms/0.1%]
                                                 [--only bandwidth|netem|offloads]

Each cell runs an all-reduce sized so one iteration takes about --seconds at the shaped rate
(capped at 64 MiB per rank), 3 timed iterations after 1 warmup; the cell shows busEff of the
median iteration.  1.00 means the shaper, not the host, set the pace; TCP/IP headers alone
cost about 0.6 % at MTU 9000.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fabric.profile import parse  # noqa: E402
from fabric.runner import check_host, execute  # noqa: E402
from fabric.units import fmt_rate, parse_rate  # noqa: E402

MAX_BYTES = 64 * 2**20


def cell(rate_bps: float, ranks: int, seconds: float) -> dict:
    nbytes = rate_bps / 8 * seconds / (2 * (ranks - 1) / ranks)
    nbytes = int(min(MAX_BYTES, max(4096, nbytes))) // (4 * ranks) * (4 * ranks)
    profile = parse({
        "name": f"fidelity-{ranks}x{fmt_rate(rate_bps)}", "scale": 1,
        "links": {"port": {"rate": f"{rate_bps}bit/s"}},
        "topology": {"kind": "flat", "ranks": ranks, "link": "port"},
        "workload": [{"op": "all_reduce", "bytes": nbytes, "iters": 3, "warmup": 1}],
    }, "<fidelity>")
    t0 = time.monotonic()
    r = execute(profile, 1.0, "none", log=lambda *_: None)["results"][0]
    return {"rate_bps": rate_bps, "ranks": ranks, "bytes": nbytes, "bus_efficiency": r["bus_efficiency"],
            "p50_us": r["time_us"]["p50"], "model_us": r["model_time_us"], "correct": r["correct"],
            "wall_s": time.monotonic() - t0}


def netem_cell(latency: str, jitter: str, loss: str, count: int = 4000, rate: str = "100Mbit/s",
               offloads: bool = False) -> dict:
    """One `fabric probe` of a 2-rank flat link with these impairments (k = 1)."""
    import yaml
    with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp:
        prof = Path(tmp) / "link.yaml"
        prof.write_text(yaml.safe_dump({
            "name": "fidelity-link", "scale": 1,
            "links": {"l": {"rate": rate, "latency": latency, "jitter": jitter, "loss": loss,
                            "offloads": offloads, "reorder": True}},   # netem's own draw
            "topology": {"kind": "flat", "ranks": 2, "link": "l"},
            "workload": [{"op": "all_reduce", "bytes": 4}]}))
        done = subprocess.run([sys.executable, "-m", "fabric.cli", "probe", str(prof), "--out", tmp,
                               "--count", str(count)], capture_output=True, text=True, timeout=900,
                              cwd=Path(__file__).resolve().parent.parent)
        if done.returncode != 0:
            raise SystemExit(f"fabric probe failed: {done.stderr.strip().splitlines()[-1]}")
        doc = json.loads((Path(tmp) / "probe.json").read_text())
    path = doc["paths"][0]
    return {"latency": latency, "jitter": jitter, "loss": loss, "rate": rate, "offloads": offloads,
            "netem": doc["emulation"]["netem"],
            **{f"expected_{k}": v for k, v in path["expected"].items()}, **path["measured"]}


def netem_table(settings: list[str]) -> list[dict]:
    print("delay, jitter, loss: fabric probe, 2 ranks, flat 100 Mbit/s link, k = 1 (one-way = kernel stamps)")
    print(f"{'latency':>8} {'jitter':>7} {'loss':>6} | {'p50':>9} {'ratio':>6} {'p99':>9} {'std':>8} {'ratio':>6} "
          f"{'loss':>7} {'RTT p50':>9} {'reord':>6}  where")
    cells = []
    for setting in settings:
        latency, jitter, loss = setting.split("/")
        c = netem_cell(latency, jitter, loss)
        cells.append(c)
        ms = lambda s: "n/a" if s is None else f"{s * 1e3:.2f}ms"  # noqa: E731 (p99: None below 100 probes)
        jr = f"{c['jitter_std_s'] / c['expected_jitter_s']:.2f}" if c["expected_jitter_s"] else "-"
        print(f"{latency:>8} {jitter:>7} {loss:>6} | {ms(c['one_way_p50_s']):>9} "
              f"{c['one_way_p50_s'] / c['expected_one_way_s']:>6.2f} {ms(c['one_way_p99_s']):>9} "
              f"{ms(c['jitter_std_s']):>8} {jr:>6} {c['loss']:>7.2%} {ms(c['rtt_p50_s']):>9} "
              f"{c['reordered']:>6.1%}  {c['netem']}", flush=True)
    return cells


def offloads_table(settings: list[str], repeat: int) -> list[dict]:
    print("one TCP flow under loss, segmentation offloads off vs on: fabric probe, 2 ranks, flat, k = 1")
    print(f"{'rate':>10} {'latency':>8} {'loss':>6} {'offloads':>9} | {'Mathis':>12} {'TCP rate':>12} "
          f"{'retransmitted':>14}  where")
    cells = []
    for setting in settings:
        rate, latency, loss = setting.rsplit("/", 2)
        for _ in range(repeat):
            for offloads in (False, True):
                c = netem_cell(latency, "0", loss, count=1000, rate=rate, offloads=offloads)
                cells.append(c)
                print(f"{rate:>10} {latency:>8} {loss:>6} {'on' if offloads else 'off':>9} | "
                      f"{c['expected_tcp_rate_bps'] / 1e6:>7.1f} Mb/s {c['tcp_rate_bps'] / 1e6:>7.1f} Mb/s "
                      f"{c['tcp_retransmitted']:>14.2%}  {c['netem']}", flush=True)
    return cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="50Mbit/s,200Mbit/s,1Gbit/s,5Gbit/s")
    ap.add_argument("--ranks", default="2,4,8,16")
    ap.add_argument("--seconds", type=float, default=0.4)
    ap.add_argument("--json", help="also write the cells to this file")
    ap.add_argument("--netem", default="1ms/0/0,10ms/3ms/1%,50ms/5ms/0.1%",
                    help="latency/jitter/loss settings for the probe table")
    ap.add_argument("--offloads", default="100Mbit/s/10ms/1%,1Gbit/s/1ms/1%",
                    help="rate/latency/loss settings for the offloads table")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each offloads setting")
    ap.add_argument("--only", choices=("bandwidth", "netem", "offloads"))
    args = ap.parse_args()
    if args.only in ("netem", "offloads"):
        cells = (netem_table(args.netem.split(",")) if args.only == "netem"
                 else offloads_table(args.offloads.split(","), args.repeat))
        if args.json:
            Path(args.json).write_text(json.dumps(cells, indent=1) + "\n")
        return 0
    rates = [parse_rate(r) for r in args.rates.split(",")]
    ranks = [int(n) for n in args.ranks.split(",")]
    check_host(parse({"name": "x", "links": {"a": {"rate": "1Gbit/s"}}, "topology":
                      {"kind": "flat", "ranks": 2, "link": "a"}, "workload": [{"op": "all_reduce", "bytes": 4}]}))
    cells = []
    print("all-reduce bus efficiency (busbw / link rate), flat topology, large messages")
    print(f"{'rate':>12} " + "".join(f"{n:>8} ranks"[-14:].rjust(14) for n in ranks))
    for rate in rates:
        row = []
        for n in ranks:
            c = cell(rate, n, args.seconds)
            cells.append(c)
            row.append(f"{c['bus_efficiency']:.2f}" + ("" if c["correct"] else " WRONG"))
        print(f"{fmt_rate(rate):>12} " + "".join(f"{v:>14}" for v in row), flush=True)
    if args.only != "bandwidth":
        print()
        cells += netem_table(args.netem.split(","))
        print()
        cells += offloads_table(args.offloads.split(","), args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(cells, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
