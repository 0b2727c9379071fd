"""How far one box goes: ranks 8 -> 72 on a flat fabric, set-up time, memory per rank, bus efficiency.

    sudo .venv/bin/python benchmarks/scale.py [--ranks 8,16,32,64,72] [--rate 100Gbit/s]
        [--per-peer 256KiB] [--scale auto|K] [--iters 5] [--warmup 1] [--timeout S] [--json FILE]
    .venv/bin/python benchmarks/scale.py --markdown FILE.json     # a past run's rows as a table

Each rank count is one `fabric run` of a flat, bandwidth-only profile (every rank's port at
--rate, no latency: it runs on this kernel, which has HTB but may lack netem) with two ops at
auto's algorithm: an all-to-all of --per-peer bytes to every peer (n x 256 KiB per rank by
default, even splits; at 1 MiB per peer 64 ranks held ~290 MiB each, 18.8 GB together) and a
4 MiB all-reduce.  A row: the run's wall time, the fabric's set-up, the slowest rank's join of
the gloo group, each rank's own memory (private pages), and per op the bus efficiency
(busbw / port rate), measured / model, the packets the ports dropped and TCP's
retransmissions.  k (--scale, default auto) sets the emulated port rate: n ports at rate / k
must stay within what this host's CPUs move at once, so auto's k grows with n.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.units import UnitError, parse_rate, parse_size  # noqa: E402


def profile(n: int, rate: str, k, iters: int, warmup: int, per_peer: int) -> dict:
    return {"name": f"scale-{n}", "description": f"{n} ranks on one flat switch, {rate} ports, bandwidth only",
            "scale": k, "links": {"port": {"rate": rate}},
            "topology": {"kind": "flat", "ranks": n, "link": "port"},
            "workload": [{"op": "all_to_all", "bytes": n * per_peer, "iters": iters, "warmup": warmup},
                         {"op": "all_reduce", "bytes": 4 << 20, "iters": iters, "warmup": warmup}]}


def row(n: int, doc: dict, wall_s: float) -> dict:
    res, [link] = doc["resources"], doc["links"]
    out = {"ranks": n, "k": doc["scale"], "wall_s": wall_s, "setup_s": res["setup_s"], "join_s": res["join_s"],
           "teardown_s": res["teardown_s"], "own_MiB": res["rank_memory_bytes"]["own_p50"] / 2**20,
           "own_max_MiB": res["rank_memory_bytes"]["own_max"] / 2**20,
           "drops": link["drops"]["packets"] if link.get("drops") else None,
           "retransmitted": sum(doc["tcp"]["retransmitted"]) if doc.get("tcp") else None}
    for r in doc["results"]:
        out[r["op"]] = {"algorithm": r["algorithm"], "bytes": r["bytes"], "n": r["time_us"]["n"],
                        "bus_efficiency": r["bus_efficiency"], "measured_over_model": r["measured_over_model"],
                        "correct": r["correct"]}
    return out


def markdown(rows: list[dict]) -> str:
    out = ["| ranks | k | wall (s) | set-up (s) | gloo join (s) | memory per rank (MiB, own) | all-to-all bus eff. "
           "| all-to-all meas / model | all-reduce 4 MiB bus eff. | all-reduce meas / model | drops | TCP retrans. |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['ranks']} | {r['k']} | {r['wall_s']:.0f} | failed: {r['error']} |||||||||")
            continue
        a, b = r["all_to_all"], r["all_reduce"]
        out.append(f"| {r['ranks']} | {r['k']:g} | {r['wall_s']:.0f} | {r['setup_s']:.1f} | {r['join_s']:.1f} | "
                   f"{r['own_MiB']:.0f} (max {r['own_max_MiB']:.0f}) | {a['bus_efficiency']:.2f} ({a['algorithm']}) | "
                   f"{a['measured_over_model']:.2f} | {b['bus_efficiency']:.2f} ({b['algorithm']}) | "
                   f"{b['measured_over_model']:.2f} | {r['drops']} | {r['retransmitted']} |"
                   + ("" if a["correct"] and b["correct"] else " WRONG"))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="8,16,32,64,72")
    ap.add_argument("--rate", default="100Gbit/s")
    ap.add_argument("--per-peer", default="256KiB", help="all-to-all bytes each rank sends each peer")
    ap.add_argument("--scale", default="auto", help="time dilation k, or auto (fabric/scale.py)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one rank count may take")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--markdown", help="print the rows of this --json file as a markdown table (no runs)")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    try:      # a bad rate or size fails here, before any run
        parse_rate(args.rate)
        per_peer = parse_size(args.per_peer)
    except UnitError as exc:
        ap.error(str(exc))
    tmp = Path(tempfile.mkdtemp(prefix="fabric-scale-"))
    rows = []
    for n in (int(x) for x in args.ranks.split(",")):
        path, out = tmp / f"ranks{n}.json", tmp / f"ranks{n}"
        k = args.scale if args.scale == "auto" else float(args.scale)
        path.write_text(json.dumps(profile(n, args.rate, k, args.iters, args.warmup, per_peer)))
        began = time.monotonic()
        try:      # fabric run bounds itself; this bounds a run that does not
            proc = subprocess.run([sys.executable, "-m", "fabric.cli", "run", str(path), "--out", str(out),
                                   "--vm", "never", "--quiet"], cwd=ROOT, capture_output=True, text=True,
                                  timeout=args.timeout)
            code, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            code, err = -1, f"no result within {args.timeout} s"
        wall = time.monotonic() - began
        if code != 0:
            err = (err.strip().splitlines() or ["(no message)"])[-1][:200]
            rows.append({"ranks": n, "k": args.scale, "wall_s": wall, "error": err})
        else:
            rows.append(row(n, json.loads((out / "results.json").read_text()), wall))
        print(markdown(rows).splitlines()[-1], flush=True)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all("error" not in r and r["all_to_all"]["correct"] and r["all_reduce"]["correct"] for r in rows) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
