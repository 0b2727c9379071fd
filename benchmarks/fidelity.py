"""How faithfully does this host emulate a link?  Bus efficiency of a large all-reduce
(busbw / shaped link rate) across emulated rates and rank counts, flat topology, no
impairments, through the whole pipeline (Mininet + HTB + gloo ranks).

    sudo .venv/bin/python benchmarks/fidelity.py [--rates 50Mbit/s,200Mbit/s,1Gbit/s,5Gbit/s]
                                                 [--ranks 2,4,8,16] [--seconds 0.4] [--json FILE]

Each cell runs an all-reduce sized so one iteration takes about --seconds at the shaped rate
(capped at 64 MiB per rank), 3 timed iterations after 1 warmup; the cell shows busEff of the
median iteration.  1.00 means the shaper, not the host, set the pace; TCP/IP headers alone
cost about 0.6 % at MTU 9000.
"""
from __future__ import annotations

import argparse
import json
import sys
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="50Mbit/s,200Mbit/s,1Gbit/s,5Gbit/s")
    ap.add_argument("--ranks", default="2,4,8,16")
    ap.add_argument("--seconds", type=float, default=0.4)
    ap.add_argument("--json", help="also write the cells to this file")
    args = ap.parse_args()
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
    if args.json:
        Path(args.json).write_text(json.dumps(cells, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
