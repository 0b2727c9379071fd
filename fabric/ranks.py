"""Start one rank process per host, wait for all of them, bounded, and read their times."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fabric.emulation import Emulation

PROJECT = Path(__file__).resolve().parent.parent
PORT = 29500        # every run has its own namespaces, so runs never share this port


class RankError(RuntimeError):
    """A rank failed or the ranks ran out of time; the message names which and why."""


@dataclass(frozen=True)
class RankResult:
    rank: int
    op: str
    bytes: int
    times_s: list[float]
    correct: bool
    late_starts: int


def run(emu: Emulation, jobs: list[dict], workdir: Path, timeout_s: float, op_timeout_s: float,
        margin_s: float) -> list[RankResult]:
    """Run `jobs` (the same op list for every rank) and return every rank's results."""
    plan = emu.plan
    n = plan.ranks
    master = plan.hosts[0].ip
    workdir.mkdir(parents=True, exist_ok=True)
    procs, logs = [], []
    for host in plan.hosts:
        job = {"rank": host.rank, "world": n, "master": master, "port": PORT, "timeout_s": op_timeout_s,
               "margin_s": margin_s, "out": str(workdir / f"rank{host.rank}.json"), "ops": jobs}
        job_path = workdir / f"rank{host.rank}.job.json"
        job_path.write_text(json.dumps(job))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
               "PYTHONPATH": str(PROJECT), "GLOO_SOCKET_IFNAME": plan.host_intf(host.rank),
               "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        log = open(workdir / f"rank{host.rank}.log", "wb")
        logs.append(log)
        procs.append(emu.popen(host.rank, [sys.executable, "-m", "collectives.rank", str(job_path),
                                           "--fabric-run", plan.prefix],
                               env=env, stdout=log, stderr=log, cwd=str(PROJECT)))
    try:
        _wait(procs, workdir, timeout_s)
    finally:
        for log in logs:
            log.close()
    out = []
    for host in plan.hosts:
        data = json.loads((workdir / f"rank{host.rank}.json").read_text())
        out += [RankResult(host.rank, r["op"], r["bytes"], r["times_s"], r["correct"], r["late_starts"])
                for r in data["results"]]
    return out


def _wait(procs, workdir: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        codes = [p.poll() for p in procs]
        failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            r = failed[0]
            raise RankError(f"rank {r} exited with code {codes[r]}: {_tail(workdir / f'rank{r}.log')}")
        if all(c == 0 for c in codes):
            return
        if time.monotonic() > deadline:
            late = [r for r, c in enumerate(codes) if c is None]
            raise RankError(f"ranks {late} still running after {timeout_s:.0f} s (the run's time limit)")
        time.sleep(0.05)


def _tail(log: Path) -> str:
    try:
        lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return "(no log)"
    # the last line of a Python traceback says what went wrong
    return lines[-1][:300] if lines else "(no output)"
