"""Each collective algorithm x size x rank count: the α-β model beside what the emulation measures.

    sudo .venv/bin/python benchmarks/algorithms.py [--profile profiles/nvlink4-h100.yaml]
        [--ranks 8] [--repeat 3] [--iters 6] [--warmup 2] [--slowest 6] [--no-gloo] [--json FILE]
        [--sizes "all_reduce=16KiB,1MiB,16MiB all_to_all=4MiB ..."] [--scale K]
    .venv/bin/python benchmarks/algorithms.py --markdown FILE.json     # a past run's rows as a table

For every rank count the profile is run once per repeat with one workload entry per (op, size,
algorithm): every algorithm that applies and gloo (torch's own call, the baseline), but those the
model puts more than --slowest times above the fastest for that op and size (they take minutes
of dilated wall time and say nothing new).  Where the kernel lacks netem, every run
goes through one microVM boot.  The table shows real-fabric microseconds (emulated / k): the
model, the measured p50 of each repeat, and measured / model; the last column marks what auto
picks.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectives import COLLECTIVES  # noqa: E402
from fabric import host, microvm  # noqa: E402
from fabric import work as works  # noqa: E402
from fabric.plan import build  # noqa: E402
from fabric.profile import OpSpec, parse, read  # noqa: E402
from fabric.units import parse_size  # noqa: E402

SIZES = "all_reduce=1KiB,16KiB,32KiB,1MiB,16MiB all_gather=1MiB reduce_scatter=1MiB broadcast=1MiB " \
        "all_to_all=64KiB,4MiB,64MiB sendrecv=4MiB"


def entries(data: dict, source: str, sizes: dict, slowest: float, iters: int, warmup: int,
            gloo: bool = True) -> list[dict]:
    """One workload entry per (op, size, algorithm) worth running on this profile variant."""
    plan = build(parse({**data, "workload": [{"op": "all_reduce", "bytes": 4}]}, source), 1.0)
    b, out = works.Builder(plan), []
    for op, nbytes in ((op, n) for op, ns in sizes.items() for n in ns):
        size = COLLECTIVES[op].size(nbytes, plan.ranks)
        w = b.op(OpSpec(op, (size,), splits="uneven" if op == "all_to_all" else "even"), size)
        times = dict(w.choices[0].times)                      # every candidate auto weighed
        best = min(times.values())
        if gloo:
            times["gloo"] = works.predict(plan, [b.part(w.parts[0].call, "gloo", op)]).time_s
        out += [{"op": op, "bytes": size, "algorithm": name, "iters": iters, "warmup": warmup,
                 **({"splits": "uneven"} if op == "all_to_all" else {})}
                for name, t in sorted(times.items(), key=lambda kv: kv[1]) if t <= slowest * best or name == "gloo"]
    return out


def markdown(rows: list[dict]) -> str:
    """The rows as a table: real us, measured over the runs (min-max) beside the model."""
    best = {}
    for r in rows:
        key = (r["ranks"], r["op"], r["bytes"])
        if r["algorithm"] != "gloo" and (key not in best or r["model_us"] < best[key]["model_us"]):
            best[key] = r
    out = ["| ranks | op | size | algorithm | model (us) | measured (us) | measured / model | busbw measured (GB/s) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["ranks"], r["op"], r["bytes"], r["model_us"])):
        m = r["measured_us"]
        ratio = [x / r["model_us"] for x in m]
        factor = COLLECTIVES[r["op"]].bus_factor(r["ranks"])
        busbw = sorted(r["bytes"] / (x * 1e-6) / 1e9 * factor for x in m)[len(m) // 2]
        name = f"**{r['algorithm']}** (auto)" if best.get((r["ranks"], r["op"], r["bytes"])) is r else r["algorithm"]
        out.append(f"| {r.get('shape', r['ranks'])} | {r['op']} | {_size(r['bytes'])} | {name} | {r['model_us']:.4g} | "
                   f"{min(m):.4g}-{max(m):.4g} | {min(ratio):.2f}-{max(ratio):.2f} | {busbw:.4g} |"
                   + ("" if r["correct"] else " WRONG"))
    return "\n".join(out)


def _size(n: int) -> str:
    for unit, f in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= f and n % f == 0:
            return f"{n // f} {unit}"
    return f"{n} B"


def variant(data: dict, ranks: int) -> dict:
    d = json.loads(json.dumps(data))
    topo = d["topology"]
    topo["ranks" if topo["kind"] == "flat" else "ranks_per_domain"] = ranks
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="profiles/nvlink4-h100.yaml")
    ap.add_argument("--ranks", default="8", help="rank counts (flat: ranks; two tiers: ranks per domain)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--slowest", type=float, default=6.0)
    ap.add_argument("--sizes", default=SIZES)
    ap.add_argument("--no-gloo", action="store_true", help="leave out the gloo baseline (it is slow on big sizes)")
    ap.add_argument("--scale", type=float, help="time dilation k (default: the profile's, auto)")
    ap.add_argument("--json", help="also write every row to this file")
    ap.add_argument("--markdown", help="print the rows of this --json file as a markdown table (no runs)")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    sizes = {op: [parse_size(v) for v in vs.split(",")] for op, vs in (kv.split("=") for kv in args.sizes.split())}
    base = read(args.profile)
    tmp = Path(tempfile.mkdtemp(prefix="fabric-algorithms-"))
    lines, runs = [f"echo {shlex.quote(microvm.READY)} '(algorithms)'", f"cd {shlex.quote(str(ROOT))}"], []
    for n in (int(x) for x in args.ranks.split(",")):
        d = variant(base, n)
        d["workload"] = entries(d, args.profile, sizes, args.slowest, args.iters, args.warmup,
                                 gloo=not args.no_gloo)
        d["stragglers"] = []
        if args.scale:
            d["scale"] = args.scale
        path = tmp / f"ranks{n}.yaml"
        path.write_text(json.dumps(d))
        for rep in range(args.repeat):
            out = tmp / f"ranks{n}-{rep}"
            runs.append((n, rep, out))
            cmd = [sys.executable, "-m", "fabric.cli", "run", str(path), "--out", str(out), "--vm", "never", "--quiet"]
            lines.append(" ".join(map(shlex.quote, cmd)) + f" > {out}.log 2>&1; echo $? > {out}.rc")
    script = tmp / "run.sh"
    script.write_text("\n".join(lines) + "\n")
    needs_vm = not host.netem_available()
    print(f"# {len(runs)} runs ({'one microVM' if needs_vm else 'this kernel'}); files in {tmp}", file=sys.stderr)
    if needs_vm:
        code = microvm.run(["sh", str(script)], tmp, ranks=max(n for n, _, _ in runs), max_bytes=64 << 20,
                           timeout_s=6 * 3600)
    else:
        code = subprocess.run(["sh", str(script)], cwd=ROOT).returncode
    if code != 0:
        print(f"the runs failed (exit {code}); logs in {tmp}", file=sys.stderr)
        return 1
    rows = {}
    for n, rep, out in runs:
        shape = n if base["topology"]["kind"] == "flat" else f"{base['topology']['domains']} x {n}"
        rc = int((Path(f"{out}.rc")).read_text())
        if rc != 0:
            print(f"ranks {n}, repeat {rep}: exit {rc}: {Path(f'{out}.log').read_text()[-500:]}", file=sys.stderr)
            return 1
        doc = json.loads((out / "results.json").read_text())
        k = doc["scale"]
        for r in doc["results"]:
            key = (n, r["op"], r["bytes"], r["algorithm"])
            # ranks: all of them (the bus factor's n); shape: as the table shows them (2 x 4)
            row = rows.setdefault(key, {"ranks": r["ranks"], "shape": shape, "op": r["op"], "bytes": r["bytes"],
                                        "algorithm": r["algorithm"],
                                        "k": k, "model_us": r["model_time_us"] / k, "measured_us": [],
                                        "model_busbw_GBps": r["bytes"] / (r["model_time_us"] / k * 1e-6) / 1e9
                                        * COLLECTIVES[r["op"]].bus_factor(r["ranks"]), "correct": True})
            row["measured_us"].append(r["projected"]["time_us"])
            row["correct"] &= bool(r["correct"])
    auto = {}
    for key, row in rows.items():
        group = (row["ranks"], row["op"], row["bytes"])
        if row["algorithm"] != "gloo" and (group not in auto or row["model_us"] < rows[auto[group]]["model_us"]):
            auto[group] = key
    print(f"# {args.profile}: model vs measured, real-fabric us (emulated / k); busbw from the model; "
          f"{args.iters} iterations per run, p50 per run")
    print(f"#{'ranks':>5} {'op':>15} {'size':>10} {'algorithm':>13} {'k':>7} {'model':>9} {'busbw':>7} "
          f"{'measured':>24} {'meas/model':>18}  auto  check")
    for key in sorted(rows, key=lambda k: (k[0], k[1], k[2], rows[k]["model_us"])):
        row = rows[key]
        meas = " ".join(f"{m:.4g}" for m in row["measured_us"])
        ratio = " ".join(f"{m / row['model_us']:.2f}" for m in row["measured_us"])
        print(f"{row['ranks']:>6} {row['op']:>15} {row['bytes']:>10} {row['algorithm']:>13} {row['k']:>7.0f} "
              f"{row['model_us']:>9.4g} {row['model_busbw_GBps']:>7.4g} {meas:>24} {ratio:>18}  "
              f"{'<' if auto.get(key[:3]) == key else ' ':>4}  {'ok' if row['correct'] else 'WRONG'}")
    if args.json:
        Path(args.json).write_text(json.dumps(list(rows.values()), indent=1) + "\n")
    return 0 if all(r["correct"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
