"""One rank: join the gloo group, run the workload, write this rank's times.

fabric.ranks forks one process per rank into the rank's host namespace and calls run_job(job)
with job = {rank, world, master, port, timeout_s, margin_s, out, ops: [{op, bytes, iters,
warmup, splits, root}], workloads: [{entry, phases, iters, warmup, k}], delays: [laws],
seed}.  (workloads carry phase objects: they reach the rank by fork, not as JSON.)  Every iteration starts at one instant agreed by all ranks (they
share the host's monotonic clock), so each rank's time is measured from the same start.
The ranks agree out of band (StartClock: a barrier in shared memory), not over the emulated
fabric: agreeing with an all-reduce there costs a whole small all-reduce per iteration (at
k = 100000 that is seconds) and its own latency made ranks miss the start it agreed on.
"""
from __future__ import annotations

import json
import multiprocessing
import sys
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

from collectives import COLLECTIVES
from collectives.delays import Delays

class StartClock:
    """Agreed start instants, out of band: made before the ranks are forked, shared by them.

    agree(rank, margin) returns the latest of every rank's now + margin, the same value in every
    rank.  Each round writes one half of a shared array, then waits at a barrier; a rank can
    only write that half again after passing the next barrier, when every rank has read it."""

    def __init__(self, world: int, timeout_s: float):
        ctx = multiprocessing.get_context("fork")
        self._ready = ctx.RawArray("d", 2 * world)
        self._barrier = ctx.Barrier(world)
        self._world, self._timeout_s, self._round = world, timeout_s, 0

    def agree(self, rank: int, margin_s: float) -> float:
        half = (self._round % 2) * self._world
        self._round += 1
        self._ready[half + rank] = time.monotonic() + margin_s
        try:
            self._barrier.wait(self._timeout_s)
        except threading.BrokenBarrierError:
            raise TimeoutError(f"not every rank reached iteration start {self._round} within "
                               f"{self._timeout_s:.0f} s (another rank failed or stalled)") from None
        return max(self._ready[half:half + self._world])


def agree_over_gloo(torch, dist, margin_s: float) -> float:
    """The same agreement over the fabric, for a rank started by hand (no shared StartClock)."""
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


def run_op(torch, dist, rank: int, world: int, op: dict, margin_s: float, agree,
           delays: Delays | None = None, done=lambda i: None) -> tuple[dict, float]:
    """Run one op/size; returns its record and the start margin that worked (for the next op)."""
    coll = COLLECTIVES[op["op"]]
    spec = SimpleNamespace(**op)
    state = coll.prepare(torch, rank, world, op["bytes"], spec)
    times, correct, late = [], True, 0
    for i in range(op["warmup"] + op["iters"]):
        coll.reset(state)
        start = agree(margin_s)
        on_time = wait_until(start)
        if delays:
            delays.wait()
        coll.run(dist, state)
        end = time.monotonic()
        if op.get("check", True):
            correct &= coll.check(torch, state)
        if not on_time:   # this rank could not make the agreed start: give it more lead next time
            margin_s = min(MAX_MARGIN_S, 2 * margin_s)
        if i >= op["warmup"]:
            times.append(end - start)
            late += not on_time
        done(i + 1)
    record = {"op": op["op"], "bytes": op["bytes"], "times_s": times,
              "correct": bool(correct) if op.get("check", True) else None, "late_starts": late}
    return record, margin_s


def run_workload(torch, dist, rank: int, world: int, entry: dict, margin_s: float, agree,
                 delays: Delays | None = None, done=lambda i: None) -> tuple[dict, float]:
    """Run one inference workload entry (workloads.execute): per iteration, each phase's end."""
    from workloads import execute
    phases = entry["phases"]
    groups = execute.make_groups(dist, phases, world)
    states = [execute.prepare(torch, rank, p) for p in phases]
    ends, correct, late = [], True, 0
    for i in range(entry["warmup"] + entry["iters"]):
        start = agree(margin_s)
        on_time = wait_until(start)
        got, ok = execute.run_iteration(torch, dist, phases, states, groups, entry["k"], start, delays)
        correct &= ok
        if not on_time:
            margin_s = min(MAX_MARGIN_S, 2 * margin_s)
        if i >= entry["warmup"]:
            ends.append(got)
            late += not on_time
        done(i + 1)
    return {"entry": entry["entry"], "ends_s": ends, "correct": bool(correct), "late_starts": late}, margin_s


def run_job(job: dict, clock: StartClock | None = None) -> None:
    """The whole life of one rank; raises on any failure (the caller turns that into an exit code)."""
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://{job['master']}:{job['port']}", rank=job["rank"],
                            world_size=job["world"], timeout=timedelta(seconds=job["timeout_s"]))
    if clock is not None:
        def agree(margin_s):
            return clock.agree(job["rank"], margin_s)
    else:
        def agree(margin_s):
            return agree_over_gloo(torch, dist, margin_s)
    delays = Delays(job.get("delays", []), job.get("seed", 0))
    results, workloads, margin = [], [], job["margin_s"]
    progress = open(job["progress"], "a", buffering=1) if job.get("progress") else None

    def done(item):   # "item iterations-done" lines: the parent's progress bar (rank 0 only)
        return (lambda i: progress.write(f"{item} {i}\n")) if progress else (lambda i: None)
    for j, op in enumerate(job["ops"]):
        record, margin = run_op(torch, dist, job["rank"], job["world"], op, margin, agree, delays, done(j))
        results.append(record)
    for j, entry in enumerate(job.get("workloads", [])):
        record, margin = run_workload(torch, dist, job["rank"], job["world"], entry, margin, agree, delays,
                                      done(len(job["ops"]) + j))
        workloads.append(record)
    dist.barrier()
    dist.destroy_process_group()
    with open(job["out"], "w") as f:
        json.dump({"rank": job["rank"], "results": results, "workloads": workloads}, f)


if __name__ == "__main__":   # by hand: python -m collectives.rank JOB.json (in the right namespace)
    run_job(json.loads(open(sys.argv[1]).read()))
