"""Sweeps: one profile run over message sizes (nccl-tests' -b -e -f), or at several straggler
delays or rank counts, to show how the tail grows (a collective waits for its slowest rank,
and more ranks draw more late ones).

`--op`: the profile's fabric runs that one op at every size from -b to -e (× -f), without its
workload and stragglers, and the α-β model is fitted to the times (fabric.fit).  `--delay`:
the profile's first late-rank straggler takes each delay in turn; one baseline run without
stragglers serves every point.  `--ranks`: the topology takes each rank count (flat: ranks;
two_tier: ranks per domain) and each point runs its own baseline when the profile has
stragglers (else the first point is the baseline of the others).  Variants are made on the
YAML and checked like any profile, so a workload that does not fit a rank count is a
one-line error naming the point.
"""
from __future__ import annotations

import copy
from pathlib import Path

from fabric import results
from fabric.profile import ProfileError, parse
from fabric.stats import fmt, fmt_interval
from fabric.units import fmt_time


def sizes(begin: int, end: int, factor: float) -> list[int]:
    """nccl-tests' sizes: begin, begin × factor, ... up to end."""
    if begin < 1 or end < begin or factor <= 1 and end > begin:
        raise ValueError(f"expected 1 <= -b <= -e and -f > 1, got -b {begin} -e {end} -f {factor:g}")
    out = [begin]
    while out[-1] * factor <= end:
        out.append(int(out[-1] * factor))
    return out


def size_variant(data: dict, source: str, op: str, nbytes: list[int], iters: int, warmup: int, check: bool):
    """The profile's fabric with one op over `nbytes` as its whole workload (no stragglers)."""
    d = copy.deepcopy(data)
    if not isinstance(d, dict):
        return parse(d, source)   # the usual error
    d.pop("stragglers", None)
    d["workload"] = [{"op": op, "bytes": list(nbytes), "iters": iters, "warmup": warmup, "check": check}]
    return parse(d, f"{source} (sweep over bytes)")


def read(run_dir: Path) -> dict:
    return results.read_json(run_dir / "sweep.json", lambda d: "points" in d,
                             "expected a sweep.json written by fabric sweep (with points)")


def variants(data: dict, source: str, over: str, values: list) -> list:
    """(value, Profile) per point; ProfileError when a point is not a valid profile."""
    out = []
    for v in values:
        d = copy.deepcopy(data)
        if over == "delay":
            entry = next((s for s in d.get("stragglers") or [] if isinstance(s, dict) and "rank" in s), None)
            if entry is None:
                raise ProfileError(source, "stragglers", "a sweep over --delay needs a {rank, delay} straggler")
            entry["delay"] = v
        else:
            from fabric.topology import KINDS
            topo = d.get("topology") or {}
            topo[KINDS[topo["kind"]].RANKS_KEY if topo.get("kind") in KINDS else "ranks"] = v
        out.append((v, parse(d, f"{source} ({over} = {v})")))
    return out


def run(data: dict, source: str, over: str, values: list, k: float, netem: str, log, progress=None,
        algorithm: str = "auto") -> dict:
    """Every point's results document and, per op/workload, its slowdown against its baseline."""
    from fabric.runner import _execute, _execute_once, execute
    points = variants(data, source, over, values)
    shared, ran = None, [None] * len(points)
    if over == "delay":
        base = points[0][1].without_stragglers()
        if all(p.late_ranks_only for _, p in points):
            # late ranks only: the baseline and every delay run on one fabric and one gloo group
            log(f"fabric sweep: baseline without stragglers, then {over} = {', '.join(map(str, values))}, on one fabric")
            docs = _execute(base, k, netem, log, None, progress, algorithm=algorithm,
                            passes=[("baseline: ", base)] + [(f"{over} = {v}: ", p) for v, p in points])
            shared, ran = docs[0], docs[1:]
        else:
            log("fabric sweep: baseline without stragglers")
            shared = _execute_once(base, k, netem, log, None, progress, "baseline: ", algorithm)
    docs = []
    for (v, profile), done in zip(points, ran):
        if done is None:
            log(f"fabric sweep: {over} = {v}")
        doc = done or (_execute_once(profile, k, netem, log, None, progress, f"{over} = {v}: ", algorithm)
                       if shared else execute(profile, k, netem, log, progress=progress, algorithm=algorithm))
        # against the shared baseline, the point's own (stragglers), or else the first point
        if shared:
            base = shared
        elif "stragglers" in doc:
            base = doc["stragglers"]["baseline"]
        else:
            base = docs[0]["doc"] if docs else doc
        docs.append({"value": v, "slowdown": results.slowdown(base, doc), "doc": doc})
    return {"over": over, "values": values, "points": docs, "baseline": shared}


def table(sweep: dict) -> str:
    """One row per point and op/workload: swept p50/p99 (real), their ratios to the baseline,
    the p50 ratio's 95 % interval, and the samples behind them (p99: n/a below 100)."""
    lines = [f"# sweep over {sweep['over']}: real time (emulated / k); x = against the baseline without stragglers;"
             " n = iterations per point; x p50 95% = the ratio's bootstrap interval",
             f"#{sweep['over']:>9} {'n':>5} {'p50':>10} {'p99':>10} {'x p50':>6} {'x p50 95%':>12} {'x p99':>6}  what"]
    for point in sweep["points"]:
        for row in point["slowdown"]:
            s, x = row["straggler_us"], row["ratio"]
            n = row.get("samples", {}).get("straggler", "?")
            ci = (row.get("ratio_ci") or {}).get("p50")
            p99 = fmt(None, n) if s["p99"] is None else fmt_time(s["p99"] * 1e-6)
            lines.append(f"{str(point['value']):>10} {n:>5} {fmt_time(s['p50'] * 1e-6):>10} {p99:>10} "
                         f"{_x(x['p50']):>6} {fmt_interval(ci, n):>12} {_x(x['p99']):>6}"
                         f"  {row['name']}")
    return "\n".join(lines)


def _x(r) -> str:
    return f"{r:.2f}" if r is not None else "-"
