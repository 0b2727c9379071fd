"""One rank: join the gloo group, run the work, write this rank's times.

fabric.ranks forks one process per rank into the rank's host namespace and calls run_job(job)
with job = {rank, world, master, port, timeout_s, margin_s, k, out, work: [fabric.work.Work],
passes: [this rank's lateness laws in each pass over the work], seed}.  (The work carries
schedules and programs: it reaches the rank by fork, not as JSON.)  Every iteration starts at
one instant agreed by all ranks (they share the host's monotonic clock), so each rank's time is
measured from the same start; each rank posts the iteration's receives before it agrees
(collectives.executor).  The ranks agree out of band
(StartClock: a barrier in shared memory), not over the emulated fabric: agreeing with an
all-reduce there costs a whole small all-reduce per iteration (at k = 100000 that is seconds)
and its own latency made ranks miss the start it agreed on.
"""
from __future__ import annotations

import json
import multiprocessing
import sys
import threading
import time
from datetime import timedelta

from collectives.delays import Delays
from collectives.executor import RankRun, TorchBackend, wait_until


class StartClock:
    """Agreed start instants, out of band: made before the ranks are forked, shared by them.

    maximum(rank, value) returns the largest of every rank's value, the same in every rank: of
    now + margin, the agreed start; of an iteration's own time, the slowest rank's (iters:
    auto).  Each round writes one half of a shared array, then waits at a barrier; a rank can
    only write that half again after passing the next barrier, when every rank has read it."""

    def __init__(self, world: int, timeout_s: float):
        ctx = multiprocessing.get_context("fork")
        self._ready = ctx.RawArray("d", 2 * world)
        self._barrier = ctx.Barrier(world)
        self._joined = ctx.Value("i", 0)
        self._go = ctx.Event()
        self._world, self._timeout_s, self._round = world, timeout_s, 0

    def joined(self) -> None:
        """A rank has joined the gloo group: count it, and wait for the parent's go (it puts the
        links' latency on once every rank has joined: Emulation.hold_latency)."""
        with self._joined.get_lock():
            self._joined.value += 1
        if not self._go.wait(self._timeout_s):
            raise TimeoutError(f"no go from fabric within {self._timeout_s:.0f} s of joining the gloo group "
                               f"(another rank failed to join)")

    def all_joined(self) -> bool:
        return self._joined.value == self._world

    def go(self) -> None:
        self._go.set()

    def maximum(self, rank: int, value: float) -> float:
        """The largest of every rank's value, the same in every rank (each waits for all)."""
        half = (self._round % 2) * self._world
        self._round += 1
        self._ready[half + rank] = value
        try:
            self._barrier.wait(self._timeout_s)
        except threading.BrokenBarrierError:
            raise TimeoutError(f"not every rank reached agreement {self._round} within "
                               f"{self._timeout_s:.0f} s (another rank failed or stalled)") from None
        return max(self._ready[half:half + self._world])


def maximum_over_gloo(torch, dist, value: float) -> float:
    """StartClock.maximum over the fabric, for a rank started by hand (no shared StartClock)."""
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


MAX_MARGIN_S = 1.0


def native_groups(dist, work: list, world: int) -> dict:
    """Every rank group a gloo (torch's own) call uses, as a process group, created in the same
    order on every rank (torch.distributed requires it)."""
    groups = {}
    for w in work:
        for p in w.parts:
            if p.kind == "call" and p.schedule is not None and p.schedule.native and p.call.op != "p2p":
                for g in p.call.groups:
                    if g not in groups:
                        groups[g] = dist.group.WORLD if len(g) == world else dist.new_group(list(g))
    return groups


def run_item(backend, rank: int, w, k: float, margin_s: float, agree, delays: Delays | None = None,
             done=lambda i: None, maximum=None, sample=lambda: None) -> tuple[dict, float]:
    """Run one op size or workload entry; returns its record and the start margin that worked.
    With `iters: auto` (w.until) the ranks share each measured iteration's time (maximum: the
    slowest rank's), so every rank holds the same samples and stops after the same iteration."""
    run = RankRun(backend, rank, w.parts, k, delays)
    ends, correct, late, slowest, first = [], True, 0, [], None
    for i in range(w.warmup + w.iters):
        run.reset()
        recvs = run.post()
        start = agree(margin_s)
        on_time = wait_until(start)
        got, ok = run.run(recvs, start)
        if w.check:
            correct &= ok
        if not on_time:   # this rank could not make the agreed start: give it more lead next time
            margin_s = min(MAX_MARGIN_S, 2 * margin_s)
        if i >= w.warmup:
            ends.append(got)
            late += not on_time
        done(i + 1)
        if w.until is not None and i >= w.warmup:
            own = got[0] if w.op else max((e for e in got if e is not None), default=0.0)
            slowest.append(maximum(own))
            first = start if first is None else first
            if w.until.done(slowest, start + slowest[-1] - first):
                break
    sample()          # while this item's buffers are still held
    if w.op:
        return {"op": w.op, "bytes": w.nbytes, "times_s": [e[0] for e in ends],
                "correct": bool(correct) if w.check else None, "late_starts": late}, margin_s
    return {"ends_s": ends, "correct": bool(correct), "late_starts": late}, margin_s


def run_job(job: dict, clock: StartClock | None = None) -> None:
    """The whole life of one rank; raises on any failure (the caller turns that into an exit code)."""
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    joining = time.monotonic()
    dist.init_process_group("gloo", init_method=f"tcp://{job['master']}:{job['port']}", rank=job["rank"],
                            world_size=job["world"], timeout=timedelta(seconds=job["timeout_s"]))
    backend = TorchBackend(torch, dist, native_groups(dist, job["work"], job["world"]))
    joined_s = time.monotonic() - joining
    if clock is not None:
        clock.joined()      # every group is made: fabric puts the links' latency on, then says go

        def maximum(value):
            return clock.maximum(job["rank"], value)
    else:
        def maximum(value):
            return maximum_over_gloo(torch, dist, value)

    def agree(margin_s):
        return maximum(time.monotonic() + margin_s)
    margin = job["margin_s"]
    progress = open(job["progress"], "a", buffering=1) if job.get("progress") else None

    def done(item):   # "item iterations-done" lines: the parent's progress bar (rank 0 only)
        return (lambda i: progress.write(f"{item} {i}\n")) if progress else (lambda i: None)
    memory, passes = {}, []

    def sample():     # the most this rank held: after each item, before its buffers go
        nonlocal memory
        now = memory_bytes()
        if now.get("own", 0) >= memory.get("own", 0):
            memory = now
    # one pass over the work per entry of job["passes"] (this rank's lateness laws in that pass):
    # a baseline and its straggler runs share the fabric and the gloo group
    for p, laws in enumerate(job["passes"]):
        delays = Delays(laws, job.get("seed", 0))
        results, workloads = [], []
        for j, w in enumerate(job["work"]):
            record, margin = run_item(backend, job["rank"], w, job["k"], margin, agree, delays,
                                      done(p * len(job["work"]) + j), maximum, sample)
            if w.op:
                results.append(record)
            else:
                workloads.append({"entry": len(workloads), **record})
        passes.append({"results": results, "workloads": workloads})
    resent = retransmitted_by_peer(job.get("addrs", []))
    dist.barrier()
    dist.destroy_process_group()
    with open(job["out"], "w") as f:
        json.dump({"rank": job["rank"], "passes": passes, "join_s": joined_s, "memory": memory,
                   "retransmitted_to": resent}, f)


def retransmitted_by_peer(addrs: list[str]) -> list[int] | None:
    """Segments this rank's TCP sockets resent to each rank (indexed like addrs, every rank's
    address), read from the kernel's tcp_info of its connections (sock_diag) while they are
    open: this rank is alone in its namespace, so every socket there is its own.  None where
    the kernel could not be asked."""
    import socket
    try:
        from pyroute2 import DiagSocket
        with DiagSocket() as diag:
            diag.bind()
            stats = diag.get_sock_stats(family=socket.AF_INET, states=1 << 1, extensions=1 << 1)  # ESTABLISHED; INFO
    except Exception:     # noqa: BLE001 - no sock_diag here: the run stands without it
        return None
    index, out = {a: i for i, a in enumerate(addrs)}, [0] * len(addrs)
    for s in stats:
        info = dict(s["attrs"]).get("INET_DIAG_INFO") or {}
        if s["idiag_dst"] in index:
            out[index[s["idiag_dst"]]] += info.get("tcpi_total_retrans", 0)
    return out


def memory_bytes(path: str = "/proc/self/smaps_rollup") -> dict:
    """This process's memory: "own" (its private pages: what one more rank costs; the pages
    it shares with the parent, torch's code and data forked after one import, are not counted),
    "rss" (every resident page, shared ones too) and "peak_rss" (the most rss ever was)."""
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                if rest.strip().endswith("kB"):
                    fields[name] = int(rest.split()[0]) * 1024
    except OSError:
        return {}
    import resource
    return {"own": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0), "rss": fields.get("Rss", 0),
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


if __name__ == "__main__":   # by hand: python -m collectives.rank JOB (a pickled job, in the right namespace)
    import pickle
    run_job(pickle.loads(open(sys.argv[1], "rb").read()))
