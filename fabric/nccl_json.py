"""A run's results in nccl-tests' own JSON layout (nccl-tests.json beside results.json), so the
tools that read nccl-tests' `-J` output read fabric's: its field names and nesting as nccl-tests
writes them (src/util.cu, JSON file version 3: config, results with out_of_place and
out_of_place_per_iter, out_of_bounds, average_bus_bandwidth; tools/analyze_perf_json.py reads the
per-iteration part), in real-fabric numbers.

What fabric puts where nccl-tests has a GPU: a rank is a process (`ngpus` 1, one `devices` entry
per rank, its host's name); `per_process_max_times_us` is each rank's own iteration times, and
`times_us` their maximum per iteration, the slowest rank's, as fabric times an iteration; only
out-of-place results (`in_place` null); `nwrong` counts wrong results (0 or 1 per op and size: fabric
checks results, not elements); the per-iteration percentiles are nccl-tests' own (nearest
rank, whatever the count: with fewer than 100 iterations its p99 is the slowest one, a tail
fabric's own table and results.json do not claim).  Whatever nccl-tests writes that
has no meaning here (`env`, `nccl_version`, `graph`) is left out; `fabric` says where it came from.
"""
from __future__ import annotations

import statistics
import time

from fabric.dilation import Dilation

VERSION = 3           # nccl-tests' JSON_FILE_VERSION whose layout this follows


def document(doc: dict, argv: list[str] | None = None) -> dict:
    """nccl-tests' JSON for a fabric results document (results.json's)."""
    k, results = doc["scale"], doc["results"]
    emu = doc["emulation"]
    iters = max((r["iters"] for r in results), default=0)
    out = {"version": VERSION, "start_time": time.strftime("%Y-%m-%d %H:%M:%S"), "args": list(argv or []),
           "fabric": {"profile": doc["profile"]["name"], "scale": k, "netem": emu["netem"],
                      "note": "real-fabric numbers: emulated times / k, bandwidths x k"},
           "config": {"nthreads": 1, "ngpus": 1, "minimum_bytes": min((r["bytes"] for r in results), default=0),
                      "maximum_bytes": max((r["bytes"] for r in results), default=0), "warmup_iters": None,
                      "iterations": iters, "aggregated_iterations": 1, "validation": int(any(
                          r["correct"] is not None for r in results)), "blocking_collectives": "false",
                      "per_iter_timing": "true", "per_iter_skip": 0,
                      "devices": [{"rank": r, "group": 0, "pid": None, "hostname": f"{emu.get('run_id', 'fab')}h{r}",
                                   "device": 0, "device_hex": "", "device_info": "fabric rank"}
                                  for r in range(emu["ranks"])]},
           "results": [_result(r, Dilation(k)) for r in results]}
    wrong = sum(r["correct"] is False for r in results)
    out["out_of_bounds"] = {"count": wrong, "okay": "true" if wrong == 0 else "false"}
    mean = sum(r["projected"]["busbw_GBps"] for r in results) / len(results) if results else 0.0
    out["average_bus_bandwidth"] = {"bandwidth": mean, "okay": "unchecked"}
    out["end_time"] = out["start_time"]
    return out


def _result(r: dict, dil: Dilation) -> dict:
    p = r["projected"]
    per_rank = [[dil.real(t) for t in times] for times in r["rank_time_us"]]
    slowest = [max(times[i] for times in per_rank) for i in range(min(map(len, per_rank)))] if per_rank else []
    ranked = sorted(slowest) or [0.0]
    avg = statistics.fmean(ranked)
    std = statistics.pstdev(ranked)
    return {"size": r["bytes"], "count": r["count"], "type": r["type"],
            "redop": {"all_reduce": "sum", "reduce_scatter": "sum", "reduce": "sum"}.get(r["op"], "none"),
            "root": str(r.get("root", -1)),
            "out_of_place": {"time": p["time_us"], "alg_bw": p["algbw_GBps"], "bus_bw": p["busbw_GBps"],
                             "nwrong": None if r["correct"] is None else float(r["correct"] is False)},
            "in_place": None,
            "out_of_place_per_iter": {"skipped_iterations": 0, "min_us": ranked[0], "max_us": ranked[-1],
                                      "avg_us": avg, "p50_us": ranked[len(ranked) // 2],
                                      "p95_us": _nearest_rank(ranked, 95), "p99_us": _nearest_rank(ranked, 99),
                                      "stdev_us": std,
                                      "cv_pct": std / avg * 100 if avg > 0 else 0.0, "times_us": slowest,
                                      "per_process_max_times_us": per_rank},
            "actual_iterations": r["iters"], "experiment_name": f"{r['op']} ({r.get('algorithm', 'gloo')})"}


def _nearest_rank(ranked: list[float], p: int) -> float:
    """nccl-tests' percentile: the nearest rank, whatever the count (below 100 iterations p99 is
    the slowest; fabric's own table prints no p99 there, results.json none)."""
    return ranked[min(len(ranked) - 1, (len(ranked) * p + 99) // 100 - 1)]
