"""One rank: join the gloo group, run the workload, write this rank's times.

fabric.ranks forks one process per rank into the rank's host namespace and calls run_job(job)
with job = {rank, world, master, port, timeout_s, margin_s, out, ops: [{op, bytes, iters,
warmup, splits, root}]}.  Every iteration starts at one instant agreed by all ranks (they
share the host's monotonic clock), so each rank's time is measured from the same start.
"""
from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from types import SimpleNamespace

from collectives import COLLECTIVES

def agree_start(torch, dist, margin_s: float) -> float:
    """The latest of every rank's now + margin: a start all ranks can still make."""
    t = torch.tensor([time.monotonic() + margin_s], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def wait_until(t: float) -> bool:
    """Sleep, then spin for the last stretch.  False if t had already passed (a late start)."""
    now = time.monotonic()
    if now > t:
        return False
    if t - now > 0.002:
        time.sleep(t - now - 0.001)
    while time.monotonic() < t:
        pass
    return True


MAX_MARGIN_S = 1.0


def run_op(torch, dist, rank: int, world: int, op: dict, margin_s: float) -> tuple[dict, float]:
    """Run one op/size; returns its record and the start margin that worked (for the next op)."""
    coll = COLLECTIVES[op["op"]]
    spec = SimpleNamespace(**op)
    state = coll.prepare(torch, rank, world, op["bytes"], spec)
    times, correct, late = [], True, 0
    for i in range(op["warmup"] + op["iters"]):
        coll.reset(state)
        start = agree_start(torch, dist, margin_s)
        on_time = wait_until(start)
        coll.run(dist, state)
        end = time.monotonic()
        correct &= coll.check(torch, state)
        if not on_time:   # this rank could not make the agreed start: give it more lead next time
            margin_s = min(MAX_MARGIN_S, 2 * margin_s)
        if i >= op["warmup"]:
            times.append(end - start)
            late += not on_time
    record = {"op": op["op"], "bytes": op["bytes"], "times_s": times, "correct": bool(correct), "late_starts": late}
    return record, margin_s


def run_job(job: dict) -> None:
    """The whole life of one rank; raises on any failure (the caller turns that into an exit code)."""
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://{job['master']}:{job['port']}", rank=job["rank"],
                            world_size=job["world"], timeout=timedelta(seconds=job["timeout_s"]))
    results, margin = [], job["margin_s"]
    for op in job["ops"]:
        record, margin = run_op(torch, dist, job["rank"], job["world"], op, margin)
        results.append(record)
    dist.barrier()
    dist.destroy_process_group()
    with open(job["out"], "w") as f:
        json.dump({"rank": job["rank"], "results": results}, f)


if __name__ == "__main__":   # by hand: python -m collectives.rank JOB.json (in the right namespace)
    run_job(json.loads(open(sys.argv[1]).read()))
