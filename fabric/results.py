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
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from collectives import COLLECTIVES
from fabric.model import predict
from fabric.plan import Plan
from fabric.ranks import RankResult

SCHEMA = 1


@dataclass(frozen=True)
class Result:
    op: str
    bytes: int
    count: int
    type: str
    ranks: int
    iters: int
    time_us: dict            # min, p50, p95, p99, max of the per-iteration slowest-rank time
    algbw_GBps: float
    busbw_GBps: float
    projected: dict          # time_us, algbw_GBps, busbw_GBps on the real fabric
    link_GBps: float         # emulated rate of the bottleneck link direction
    bus_efficiency: float    # busbw / link_GBps
    model_time_us: float     # α-β prediction, emulated
    measured_over_model: float
    correct: bool
    late_starts: int         # iterations some rank began after the agreed start
    rank_time_us: list       # per rank, per iteration (emulated µs)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(plan: Plan, spec_of: dict, rank_results: list[RankResult]) -> list[Result]:
    """spec_of maps (op, bytes) to the OpSpec it came from."""
    grouped: dict[tuple[str, int], list[RankResult]] = {}
    for rr in rank_results:
        grouped.setdefault((rr.op, rr.bytes), []).append(rr)
    n, k = plan.ranks, plan.scale
    out = []
    for (op, nbytes), per_rank in grouped.items():
        per_rank.sort(key=lambda rr: rr.rank)
        coll = COLLECTIVES[op]
        iters = len(per_rank[0].times_s)
        slowest = [max(rr.times_s[i] for rr in per_rank) for i in range(iters)]
        stats = {name: percentile(slowest, q) * 1e6
                 for name, q in (("min", 0), ("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))}
        algbw = nbytes / (stats["p50"] * 1e-6) / 1e9
        busbw = algbw * coll.bus_factor(n)
        pred = predict(plan, coll.schedule(n, nbytes, spec_of[(op, nbytes)]))
        link = pred.bottleneck_bps / 8 / 1e9
        model_us = pred.time_s * 1e6
        out.append(Result(
            op=op, bytes=nbytes, count=nbytes // coll.ITEM, type=coll.dtype, ranks=n, iters=iters,
            time_us=stats, algbw_GBps=algbw, busbw_GBps=busbw,
            projected={"time_us": stats["p50"] / k, "algbw_GBps": algbw * k, "busbw_GBps": busbw * k},
            link_GBps=link, bus_efficiency=busbw / link, model_time_us=model_us,
            measured_over_model=stats["p50"] / model_us if model_us > 0 else float("nan"),
            correct=all(rr.correct for rr in per_rank), late_starts=sum(rr.late_starts for rr in per_rank),
            rank_time_us=[[t * 1e6 for t in rr.times_s] for rr in per_rank],
        ))
    return out


def document(plan: Plan, results: list[Result], netem: str, extra: dict | None = None) -> dict:
    """The results.json document (schema 1, see README)."""
    prof = plan.profile
    return {
        "schema": SCHEMA,
        "profile": {"name": prof.name, "source": prof.source, "description": prof.description},
        "scale": plan.scale,
        "emulation": {"netem": netem, "ranks": plan.ranks, "topology": prof.topology.kind,
                      "domains": prof.topology.domains, "run_id": plan.prefix, **(extra or {})},
        "results": [asdict(r) for r in results],
    }


CSV_FIELDS = ["op", "bytes", "count", "type", "ranks", "iters", "time_us.min", "time_us.p50", "time_us.p95",
              "time_us.p99", "time_us.max", "algbw_GBps", "busbw_GBps", "projected.time_us",
              "projected.algbw_GBps", "projected.busbw_GBps", "link_GBps", "bus_efficiency", "model_time_us",
              "measured_over_model", "correct", "late_starts"]


def write(out_dir: Path, doc: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in doc["results"]:
            w.writerow([_get(r, name) for name in CSV_FIELDS])


def _get(record: dict, dotted: str):
    for part in dotted.split("."):
        record = record[part]
    return record
