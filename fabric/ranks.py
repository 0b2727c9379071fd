"""Start one rank process per host, wait for all of them, bounded, and read their times.

The ranks are forked from this process after it imported torch once: on a slow CPU (a
software-emulated microVM) importing torch costs tens of seconds per process, so eight ranks
importing it each would cost minutes.  Each child enters its host's network namespace, names
itself fab<id>r<rank> (visible in /proc/PID/comm), and dies with its parent.
"""
from __future__ import annotations

import json
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from fabric.emulation import Emulation

GRACE_S = 1.0       # how long the peers of a failed rank get to fail too, before we say which failed first
PORT = 29500        # every run has its own namespaces, so runs never share this port


class RankError(RuntimeError):
    """A rank failed or the ranks ran out of time; the message names which and why."""


@dataclass(frozen=True)
class RankResult:
    rank: int
    op: str
    bytes: int
    times_s: list[float]
    correct: bool | None     # None: not checked
    late_starts: int


@dataclass(frozen=True)
class RankWorkload:
    """One rank's run of one inference workload entry: per iteration, each phase's end
    (seconds after the agreed start; None where the rank takes no part)."""
    rank: int
    entry: int
    ends_s: list[list[float | None]]
    correct: bool
    late_starts: int


def run(emu: Emulation, work: list, workdir: Path, timeout_s: float, op_timeout_s: float,
        margin_s: float, delays: dict | None = None, seed: int = 0,
        on_progress=None) -> tuple[list[RankResult], list[RankWorkload], list[dict]]:
    """Run `work` (fabric.work: every op size, then every workload entry; the same list for every
    rank) once and return every rank's results.  delays: rank -> its delay laws
    (collectives.delays), emulated seconds.  on_progress(item, iterations done): called as rank 0
    finishes iterations.  The third list: per rank, the seconds it took to join the gloo group,
    its memory (collectives.rank.memory_bytes) and the segments it resent to each rank."""
    [(results, workloads)], own = run_passes(emu, work, workdir, timeout_s, op_timeout_s, margin_s,
                                             [delays or {}], seed, on_progress)
    return results, workloads, own


def run_passes(emu: Emulation, work: list, workdir: Path, timeout_s: float, op_timeout_s: float,
               margin_s: float, passes: list[dict], seed: int = 0, on_progress=None,
               timeline=None) -> tuple[list[tuple[list[RankResult], list[RankWorkload]]], list[dict]]:
    """Run `work` once per entry of `passes` (rank -> its delay laws in that pass) on one fabric
    and one gloo group, in order; (every pass's results and workloads, per rank's own figures as
    run() gives them).  on_progress's item counts on over the passes (pass p's item j is
    p x len(work) + j).  timeline: the run's events (fabric.events.Timeline), begun when the
    ranks are released; an event that leaves ranks without a path ends the run (RankError)."""
    from fabric.host import GLOO_FIX, load_torch
    _, gloo = load_torch()     # imported once, by the host checks; every forked rank inherits it
    if not gloo:
        raise RankError(f"this torch has no gloo backend: {GLOO_FIX}")
    from collectives import rank as rank_main
    plan = emu.plan
    workdir.mkdir(parents=True, exist_ok=True)
    clock = rank_main.StartClock(plan.ranks, op_timeout_s)
    held = emu.hold_latency()     # the ranks join the group with the links' latency off

    def release() -> bool:
        """Once every rank has joined: the links' latency back on, and the ranks go (polled)."""
        if not clock.all_joined():
            return False
        if held:
            emu.hold_latency(False)
        clock.go()
        if timeline:
            timeline.begin()
        return True
    pids = {}
    try:
        for host in plan.hosts:
            job = {"rank": host.rank, "world": plan.ranks, "master": plan.hosts[0].ip, "port": PORT,
                   "timeout_s": op_timeout_s, "margin_s": margin_s,
                   "addrs": [plan.ip(r) for r in range(plan.ranks)], "work": work, "k": plan.scale,
                   "passes": [laws.get(host.rank, []) for laws in passes], "seed": seed * 1009 + host.rank,
                   "out": str(workdir / f"rank{host.rank}.json"),
                   "progress": str(workdir / "progress") if on_progress and host.rank == 0 else None}
            env = {"GLOO_SOCKET_IFNAME": plan.host_intf(host.rank), "OMP_NUM_THREADS": "1"}
            pids[emu.fork(host.rank, _child(rank_main.run_job, job, clock, env, workdir / f"rank{host.rank}.log"),
                          name=f"{plan.prefix}r{host.rank}")] = host.rank
        _wait(pids, workdir, timeout_s, on_progress, release, timeline)
    finally:
        emu.reap(list(pids))
    out, own = [([], []) for _ in passes], []
    for host in plan.hosts:
        data = json.loads((workdir / f"rank{host.rank}.json").read_text())
        for (results, workloads), done in zip(out, data["passes"]):
            results += [RankResult(host.rank, r["op"], r["bytes"], r["times_s"], r["correct"], r["late_starts"])
                        for r in done["results"]]
            workloads += [RankWorkload(host.rank, r["entry"], r["ends_s"], r["correct"], r["late_starts"])
                          for r in done["workloads"]]
        own.append({"rank": host.rank, "join_s": data["join_s"], "memory": data["memory"],
                    "retransmitted_to": data.get("retransmitted_to")})
    return out, own


def _child(fn, job: dict, clock, env: dict, log: Path):
    def body() -> int:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.update(env)
        try:
            fn(job, clock)
            return 0
        except BaseException:
            traceback.print_exc()
            return 1
    return body


def _wait(pids: dict[int, int], workdir: Path, timeout_s: float, on_progress=None,
          on_joined=lambda: True, timeline=None) -> None:
    """Wait for every rank, bounded; on_joined() is polled until it says it has released them;
    the timeline's events are applied as their moments come."""
    from fabric.events import EventError
    deadline = time.monotonic() + timeout_s
    running = dict(pids)
    seen, released = 0, False
    while running:
        if not released:
            released = on_joined()
        if timeline:
            try:
                timeline.tick()
            except EventError as exc:
                raise RankError(str(exc)) from None
        if on_progress:
            seen = _read_progress(workdir / "progress", seen, on_progress)
        failed = _reap_finished(running)
        if failed:
            # a dead rank makes its peers fail a moment later with "connection reset": give them
            # that moment, then blame the rank that died first of a signal, else the first to fail
            grace = time.monotonic() + GRACE_S
            while running and time.monotonic() < grace:
                time.sleep(0.05)
                failed += _reap_finished(running)
            r, code = min(failed, key=lambda f: (f[1] >= 0, failed.index(f)))
            others = sorted(x for x, _ in failed if x != r)
            also = f" (then rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} failed too)" \
                if others else ""
            raise RankError(f"rank {r} exited with code {code}: {_tail(workdir / f'rank{r}.log')}{also}")
        if running and time.monotonic() > deadline:
            raise RankError(f"ranks {sorted(running.values())} still running after {timeout_s:.0f} s "
                            f"(the run's time limit)")
        due = timeline and timeline.due()
        time.sleep(min(0.05, max(0.0, due - time.monotonic())) if due else 0.05)


def _read_progress(path: Path, seen: int, on_progress) -> int:
    """Pass rank 0's new complete progress lines to on_progress; return the bytes read so far."""
    try:
        with open(path, "rb") as f:
            f.seek(seen)
            data = f.read()
    except FileNotFoundError:
        return seen
    complete = data[:data.rfind(b"\n") + 1]
    for line in complete.decode().splitlines():
        item, done = map(int, line.split())
        on_progress(item, done)
    return seen + len(complete)


def _reap_finished(running: dict[int, int]) -> list[tuple[int, int]]:
    """Remove the ranks that have exited from `running`; return (rank, exit code) of those that failed."""
    failed = []
    for pid in list(running):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            r = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                failed.append((r, code))
    return failed


TORCH_LOG_LINE = re.compile(r"^\[[WIEF]\d{4} ")    # c10d's own log lines: "[W1207 13:45:01.12 123 socket.cpp:...]"


def _tail(log: Path) -> str:
    """The line of a rank's log that says what went wrong: the last, but not torch's own
    warnings written after it (they stay in the log)."""
    try:
        lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return "(no log)"
    # the last line of a Python traceback says what went wrong
    said = [l for l in lines if not TORCH_LOG_LINE.match(l)] or lines
    return said[-1][:300] if said else "(no output)"
