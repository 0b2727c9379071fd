"""Results: per op and size, the nccl-tests metrics, the projection to the real fabric and
the α-β prediction beside them.  results.json and results.csv are written from here.

Conventions (nccl-tests): algbw = S / t, busbw = algbw x bus factor, GB/s = 1e9 B/s, where S
is the size rule of the op (collectives/*.py).  An iteration's time is the slowest rank's
time from the common start; algbw and busbw use the median (p50) iteration.  Projection to
the real fabric: times / k, bandwidths x k.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from collectives import COLLECTIVES
from fabric.dilation import Dilation
from fabric.plan import Plan
from fabric.ranks import RankResult, RankWorkload
from fabric.stats import ratio_interval, summary, tail

SCHEMA = 2


@dataclass(frozen=True)
class Result:
    op: str
    bytes: int
    count: int
    type: str
    ranks: int
    algorithm: str           # collectives/algorithms: what ran (auto's choice, or the forced one)
    iters: int
    time_us: dict            # n; min, p50, p95, p99, max of the per-iteration slowest-rank time (fabric.stats:
                             # None where n cannot carry it); p50_ci
    algbw_GBps: float
    busbw_GBps: float
    projected: dict          # time_us, algbw_GBps, busbw_GBps on the real fabric
    link_GBps: float         # emulated rate of the bottleneck link direction
    bus_efficiency: float    # busbw / link_GBps
    model_time_us: float     # α-β prediction, emulated
    measured_over_model: float
    correct: bool | None     # None: not checked (check: false)
    late_starts: int         # iterations some rank began after the agreed start
    rank_time_us: list       # per rank, per iteration (emulated µs)
    skew_us: list            # per rank: mean over iterations of its time - the fastest rank's (real µs)
    last_counts: list        # per rank: iterations in which it finished last


def summarize(plan: Plan, work: list, rank_results: list[RankResult]) -> list[Result]:
    """One Result per op size of `work` (fabric.work), from every rank's times."""
    by_rank: dict[int, list[RankResult]] = {}
    for rr in rank_results:                   # each rank's records come in the order of the work
        by_rank.setdefault(rr.rank, []).append(rr)
    n, dil = plan.ranks, plan.dilation
    out = []
    for j, w in enumerate(w for w in work if w.op):
        op, nbytes, per_rank = w.op, w.nbytes, [by_rank[r][j] for r in sorted(by_rank)]
        assert all((rr.op, rr.bytes) == (op, nbytes) for rr in per_rank), "rank records out of order"
        coll = COLLECTIVES[op]
        iters = len(per_rank[0].times_s)
        slowest = [max(rr.times_s[i] for rr in per_rank) for i in range(iters)]
        stats = summary(slowest, 1e6)
        algbw = nbytes / (stats["p50"] * 1e-6) / 1e9
        busbw = algbw * coll.bus_factor(n)
        pred = w.prediction
        link = pred.bottleneck_bps / 8 / 1e9
        model_us = pred.time_s * 1e6
        out.append(Result(
            op=op, bytes=nbytes, count=nbytes // coll.ITEM, type=coll.dtype, ranks=n, algorithm=w.algorithm,
            iters=iters,
            time_us=stats, algbw_GBps=algbw, busbw_GBps=busbw,
            projected={"time_us": dil.real(stats["p50"]), "algbw_GBps": dil.real_rate(algbw),
                       "busbw_GBps": dil.real_rate(busbw)},
            link_GBps=link, bus_efficiency=busbw / link, model_time_us=model_us,
            measured_over_model=stats["p50"] / model_us if model_us > 0 else float("nan"),
            correct=None if per_rank[0].correct is None else all(rr.correct for rr in per_rank),
            late_starts=sum(rr.late_starts for rr in per_rank),
            rank_time_us=[[t * 1e6 for t in rr.times_s] for rr in per_rank],
            **skew([rr.times_s for rr in per_rank], dil),
        ))
    return out


def skew(per_rank: list[list[float | None]], dil: Dilation) -> dict:
    """DeepSpeed-style skew: per rank, the mean of (own time - fastest rank's time) over the
    iterations, real µs; and how often each rank finished last.  None = not taking part."""
    n, iters = len(per_rank), len(per_rank[0])
    total, last = [0.0] * n, [0] * n
    for i in range(iters):
        times = [(t[i], r) for r, t in enumerate(per_rank) if t[i] is not None]
        if not times:       # nothing ran (dp with math: add)
            continue
        fastest = min(t for t, _ in times)
        for t, r in times:
            total[r] += t - fastest
        last[max(times)[1]] += 1
    return {"skew_us": [dil.real(x / iters) * 1e6 if per_rank[r][0] is not None else None for r, x in enumerate(total)],
            "last_counts": last}


def summarize_workloads(plan: Plan, work: list, rank_runs: list[RankWorkload]) -> list[dict]:
    """Per inference workload entry: the iteration (slowest rank), each phase label's time,
    the α-β prediction, the kind's own figures on the real fabric (workloads/*.py: figures),
    the algorithm of each collective phase, and per-rank skew."""
    from workloads.base import Timings
    dil, out = plan.dilation, []
    for i, item in enumerate(w for w in work if not w.op):
        entry = item.spec
        per_rank = sorted((r for r in rank_runs if r.entry == i), key=lambda r: r.rank)
        w, iters = entry.workload, len(per_rank[0].ends_s)
        phases = w.phases(plan.ranks)
        iteration, by_label = [], {}
        own = [[max((e for e in r.ends_s[it] if e is not None), default=None) for it in range(iters)]
               for r in per_rank]
        for it in range(iters):
            ends = [max((r.ends_s[it][p] for r in per_rank if r.ends_s[it][p] is not None), default=None)
                    for p in range(len(phases))]
            previous, sums = 0.0, {}
            for p, end in zip(phases, ends):
                if end is None:
                    continue
                sums[p.label] = sums.get(p.label, 0.0) + max(0.0, end - previous)
                previous = end
            iteration.append(max((e for e in ends if e is not None), default=0.0))   # dp with math: add has no phases
            for label, v in sums.items():
                by_label.setdefault(label, []).append(v)
        t = Timings(dil, iteration, by_label)
        model = item.seconds
        stats = summary(iteration, 1e6)
        out.append({
            "kind": w.kind, "label": entry.label, "config": entry.config, "ranks": plan.ranks, "iters": iters,
            "algorithms": {c.label: c.algorithm for c in item.choices},
            "iteration_us": stats, "projected_iteration_us": summary(iteration, dil.real(1e6)),
            "phases_us": {label: summary(v, dil.real(1e6))["p50"] for label, v in by_label.items()},
            "model_iteration_us": model * 1e6, "measured_over_model": stats["p50"] / (model * 1e6) if model else None,
            "figures": w.figures(t), "correct": all(r.correct for r in per_rank),
            "late_starts": sum(r.late_starts for r in per_rank),
            "rank_time_us": [[x * 1e6 if x is not None else None for x in o] for o in own], **skew(own, dil),
        })
    return out


def slowest(rank_time_us: list[list[float | None]]) -> list[float]:
    """Per iteration, the slowest taking-part rank's time: the samples every percentile here
    rests on (a results.json entry's rank_time_us)."""
    return [max(t for t in it if t is not None) for it in zip(*rank_time_us) if any(t is not None for t in it)]


def slowdown(baseline: dict, straggled: dict) -> list[dict]:
    """Per op/size and per workload: the straggler run against the baseline run of the same
    invocation: real µs and ratios at p50, p95, p99 (None where either run's samples cannot
    carry the percentile), the p50 ratio's bootstrap 95 % interval, each run's sample count,
    and the straggler run's skew."""
    dil = Dilation.of(straggled)
    pairs = [(f"{a['op']} {a['bytes']} B", a, b) for a, b in zip(baseline["results"], straggled["results"])]
    pairs += [(a["label"], a, b) for a, b in zip(baseline["workloads"], straggled["workloads"])]
    out = []
    for name, a, b in pairs:
        base, slow = slowest(a["rank_time_us"]), slowest(b["rank_time_us"])
        at = {q: (tail(base, p), tail(slow, p)) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
        both = {q: v for q, v in at.items() if None not in v}
        ci = ratio_interval(base, slow)
        out.append({"name": name, "samples": {"baseline": len(base), "straggler": len(slow)},
                    "baseline_us": {q: None if v[0] is None else dil.real(v[0]) for q, v in at.items()},
                    "straggler_us": {q: None if v[1] is None else dil.real(v[1]) for q, v in at.items()},
                    "added_us": {q: dil.real(v[1] - v[0]) if q in both else None for q, v in at.items()},
                    "ratio": {q: v[1] / v[0] if q in both and v[0] else None for q, v in at.items()},
                    "ratio_ci": {"p50": None if ci is None else list(ci)},
                    "skew_us": b["skew_us"], "last_counts": b["last_counts"]})
    return out


def graph(plan: Plan) -> dict:
    """The fabric as the report draws it: each switch or router where its topology puts it
    (layout, x and y in [0, 1]) and each rank beside the switch of its first port; every link
    as [node, node, link class, role] by node index."""
    where = plan.profile.topology.layout(plan)
    nodes = [n.name for n in plan.switches] + [h.name for h in plan.hosts]
    index = {name: i for i, name in enumerate(nodes)}
    return {"switches": [{"name": n.name[len(plan.prefix):], "x": round(where[n.name][0], 4),
                          "y": round(where[n.name][1], 4)} for n in plan.switches],
            "ranks": len(plan.hosts),
            "links": [[index[l.a_node], index[l.b_node], l.link_class, l.role] for l in plan.links]}


def document(plan: Plan, results: list[Result], netem: str, extra: dict | None = None,
             workloads: list[dict] = ()) -> dict:
    """The results.json document (schema SCHEMA, see README)."""
    prof = plan.profile
    return {
        "schema": SCHEMA,
        "profile": {"name": prof.name, "source": prof.source, "description": prof.description},
        "scale": plan.scale,
        "emulation": {"netem": netem, "ranks": plan.ranks, "topology": prof.topology.kind,
                      "domains": prof.topology.domains, "shape": prof.topology.describe(), "run_id": plan.prefix,
                      "graph": graph(plan), **(extra or {})},
        "results": [asdict(r) for r in results],
        "workloads": list(workloads),
    }


NCCL_JSON = "nccl-tests.json"
CSV_FIELDS = ["op", "bytes", "count", "type", "ranks", "algorithm", "iters", "time_us.min", "time_us.p50", "time_us.p95",
              "time_us.p99", "time_us.max", "algbw_GBps", "busbw_GBps", "projected.time_us",
              "projected.algbw_GBps", "projected.busbw_GBps", "link_GBps", "bus_efficiency", "model_time_us",
              "measured_over_model", "correct", "late_starts"]


WORKLOAD_CSV_FIELDS = (["kind", "label", "ranks", "iters"]
                       + [f"{f}.{q}" for f in ("iteration_us", "projected_iteration_us")
                          for q in ("min", "p50", "p95", "p99", "max")]
                       + ["model_iteration_us", "measured_over_model", "correct", "late_starts"])


def write(out_dir: Path, doc: dict) -> None:
    """results.json, and from it results.csv (one row per op and size), nccl-tests.json (the op
    results in nccl-tests' JSON layout, fabric.nccl_json) and, when the profile has inference
    workloads, workloads.csv (one row per entry)."""
    from fabric import nccl_json
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_csv(out_dir, doc)
    if doc["results"]:
        (out_dir / NCCL_JSON).write_text(json.dumps(nccl_json.document(doc), indent=1) + "\n")


def write_csv(out_dir: Path, doc: dict) -> None:
    tables = [("results.csv", CSV_FIELDS, doc["results"])]
    if doc.get("workloads"):
        tables.append(("workloads.csv", WORKLOAD_CSV_FIELDS, doc["workloads"]))
    for name, fields, records in tables:
        with open(out_dir / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(fields)
            for r in records:
                w.writerow([_get(r, field) for field in fields])


def read(run_dir: Path) -> dict:
    """A past run's results.json (fabric report); ValueError says what is wrong with it."""
    return read_json(run_dir / "results.json", lambda d: d.get("schema") == SCHEMA,
                     f"schema: expected {SCHEMA} (a results.json written by this fabric)")


def read_json(path: Path, fits, expected: str) -> dict:
    """A JSON document fabric wrote: a mapping for which fits(doc) holds, else ValueError
    naming the file and, when it parsed, what was expected."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(doc, dict) or not fits(doc):
        raise ValueError(f"{path}: {expected}")
    return doc


def _get(record: dict, dotted: str):
    for part in dotted.split("."):
        if part not in record:      # a field a run written before it existed does not have
            return ""
        record = record[part]
    return record


def lossless_dropped(link: dict) -> bool:
    """A lossless link class (a results.json `links` entry) that dropped packets no configured loss explains."""
    d = link.get("drops") or {}
    return bool(link.get("lossless", True) and d.get("packets") and not link.get("loss_configured", link.get("loss")))
