"""Any program on the fabric: `fabric exec PROFILE -- CMD [ARGS...]` starts CMD once per rank,
in that rank's host, with torchrun's environment, as torchrun starts one worker per GPU.

Every rank is its own host (its own address and shaped port), so, in torchrun's terms, every
rank is a node of one process: WORLD_SIZE ranks, LOCAL_RANK 0, LOCAL_WORLD_SIZE 1, GROUP_RANK =
RANK.  MASTER_ADDR is rank 0's address; GLOO_SOCKET_IFNAME pins gloo to the shaped interface
(without it gloo may pick an interface by the host name's address).  FABRIC_SCALE is k: the
program's network is k times slower than the profile's, its compute is not, so what it measures
divides by k (times) or multiplies by k (bandwidth) to describe the real fabric only where the
network is what it measures.  FABRIC_ADDRS lists every rank's address, in rank order.  As
torchrun does with several processes per node, OMP_NUM_THREADS is 1 unless the caller set it:
every rank shares this host's few CPUs.

Each rank's output (stdout and stderr together) goes to the terminal, each line prefixed
`[r3] `, and to rank3.log in the output folder.  The first rank to fail sets the exit code; as
torchrun does, the others are then stopped (after GRACE_S, so their own error lines arrive).
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabric.emulation import Emulation

MASTER_PORT = 29500       # every run has its own namespaces, so runs never share it
GRACE_S = 1.0             # a failed rank's peers get this long to fail on their own
STOP_S = 3.0              # after SIGTERM, this long before SIGKILL


class LaunchError(RuntimeError):
    """A rank's program could not be started; the message says which rank and why."""


def environment(plan, rank: int) -> dict[str, str]:
    """The variables rank's process gets beside the caller's environment (torchrun's and fabric's)."""
    n = plan.ranks
    return {"MASTER_ADDR": plan.ip(0), "MASTER_PORT": str(MASTER_PORT), "RANK": str(rank), "WORLD_SIZE": str(n),
            "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "GROUP_RANK": str(rank), "ROLE_RANK": str(rank),
            "ROLE_WORLD_SIZE": str(n), "GLOO_SOCKET_IFNAME": plan.host_intf(rank),
            "FABRIC_SCALE": f"{plan.scale:g}", "FABRIC_ADDRS": ",".join(plan.ip(r) for r in range(n))}


@dataclass
class Outcome:
    codes: dict[int, int | None]            # rank -> exit code (None: stopped by fabric)
    first_failed: int | None = None         # the rank whose failure set the exit code
    timed_out: bool = False
    wall_s: float = 0.0
    stopped: list[int] = field(default_factory=list)   # ranks fabric stopped after the failure
    event_error: str | None = None          # an event left ranks without a path: fabric stopped them
    events: list[dict] = field(default_factory=list)   # what the events did (fabric.events.Timeline.summary)

    @property
    def code(self) -> int:
        """The first failing rank's exit code (128 + N for a rank killed by signal N, as a shell
        says it), 1 when the time limit stopped them, else 0."""
        if self.first_failed is not None:
            code = self.codes[self.first_failed] or 1
            return 128 - code if code < 0 else code
        return 1 if self.timed_out or self.event_error else 0


def launch(emu: Emulation, argv: list[str], out: Path, timeout_s: float, echo=print, timeline=None) -> Outcome:
    """Run argv once per rank in the emulation's hosts; wait for all (bounded); return how they
    ended.  echo(line): each output line, already prefixed with its rank.  timeline: the
    profile's events (fabric.events.Timeline), begun once every rank has started; one that
    leaves ranks without a path stops them all (Outcome.event_error)."""
    from fabric.events import EventError
    plan = emu.plan
    out.mkdir(parents=True, exist_ok=True)
    procs: dict[int, subprocess.Popen] = {}
    logs = {r: open(out / f"rank{r}.log", "wb") for r in range(plan.ranks)}
    sel = selectors.DefaultSelector()
    exits: dict[int, int] = {}
    began = time.monotonic()
    outcome = Outcome(codes={})
    try:
        for r in range(plan.ranks):
            env = {"OMP_NUM_THREADS": "1", **os.environ, **environment(plan, r)}
            try:
                proc = emu.nodes[plan.hosts[r].name].popen(argv, env=env, stdin=subprocess.DEVNULL,
                                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            except OSError as exc:
                raise LaunchError(f"rank {r}: cannot start {argv[0]}: {exc.strerror or exc}") from None
            procs[r] = proc
            os.set_blocking(proc.stdout.fileno(), False)
            sel.register(proc.stdout, selectors.EVENT_READ, r)
            # readable the moment the rank exits: the first to fail is told from the peers it
            # takes down with it (they fail a few ms later), not found by a later poll
            exits[r] = os.pidfd_open(proc.pid)
            sel.register(exits[r], selectors.EVENT_READ, -1 - r)
        partial = {r: b"" for r in procs}
        deadline, stop_at, all_exited = began + timeout_s, None, None
        if timeline:
            timeline.begin()
        while sel.get_map() or any(p.poll() is None for p in procs.values()):
            if timeline:
                try:
                    timeline.tick()
                except EventError as exc:
                    outcome.event_error = str(exc)
                    outcome.stopped = _stop(procs, outcome.codes)
                    break
            due = timeline and timeline.due()
            for key, _ in sel.select(timeout=min(0.1, max(0.0, due - time.monotonic())) if due else 0.1):
                if key.data < 0:              # a rank exited: reaped by the poll below
                    sel.unregister(key.fd)
                    continue
                r = key.data
                try:
                    data = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:                  # end of the rank's output
                    sel.unregister(key.fileobj)
                    data = b"\n" if partial[r] else b""
                logs[r].write(data)
                partial[r] += data
                *lines, partial[r] = partial[r].split(b"\n")
                for line in lines:
                    echo(f"[r{r}] {line.decode(errors='replace')}")
            now = time.monotonic()
            for r, p in procs.items():
                if r not in outcome.codes and p.poll() is not None:
                    outcome.codes[r] = p.returncode
                    if p.returncode != 0 and outcome.first_failed is None:
                        outcome.first_failed, stop_at = r, now + GRACE_S
            if stop_at is not None and now > stop_at:
                outcome.stopped = _stop(procs, outcome.codes)
                stop_at = None
            if now > deadline and any(p.poll() is None for p in procs.values()):
                outcome.timed_out = True
                outcome.stopped = _stop(procs, outcome.codes)
                break
            if len(outcome.codes) == len(procs):
                # every rank has exited; what still holds its output open (a child it left in the
                # background) gets GRACE_S, then stops with its rank's process group
                all_exited = all_exited or now
                if now > all_exited + GRACE_S:
                    break
    finally:
        _stop(procs, outcome.codes)      # on any error or interrupt: nothing keeps running
        sel.close()
        for fd in exits.values():
            os.close(fd)
        for f in logs.values():
            f.close()
    outcome.wall_s = time.monotonic() - began
    for r, p in procs.items():
        outcome.codes.setdefault(r, p.returncode)
    if timeline:
        outcome.events = timeline.summary()
    return outcome


def _stop(procs: dict[int, subprocess.Popen], codes: dict[int, int | None]) -> list[int]:
    """SIGTERM every rank still running (its whole process group: mnexec -d made it a session
    leader), then SIGKILL every rank's group after STOP_S at most; return the ranks stopped."""
    alive = [r for r, p in procs.items() if p.poll() is None]
    for r in alive:
        _signal(procs[r], signal.SIGTERM)
    end = time.monotonic() + STOP_S
    while time.monotonic() < end and any(procs[r].poll() is None for r in alive):
        time.sleep(0.05)
    for r, p in procs.items():            # exited ranks too: what they left in their group
        _signal(p, signal.SIGKILL)
    for r in alive:
        procs[r].wait()
        codes.setdefault(r, None)
    return alive


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def summary(plan, outcome: Outcome, argv: list[str]) -> str:
    """One line for the log: how the ranks ended."""
    if outcome.event_error:
        return f"{outcome.event_error}; fabric stopped ranks {outcome.stopped}"
    if outcome.timed_out:
        return f"ranks {sorted(outcome.stopped)} still running after the time limit: stopped"
    if outcome.first_failed is not None:
        r = outcome.first_failed
        also = [x for x, c in sorted(outcome.codes.items()) if x != r and c not in (0, None)]
        return (f"rank {r} ({plan.hosts[r].name}, {plan.ip(r)}) exited with code {outcome.codes[r]} first"
                + (f"; ranks {also} failed too" if also else "")
                + (f"; fabric stopped ranks {outcome.stopped}" if outcome.stopped else ""))
    return f"all {plan.ranks} ranks of {' '.join(argv)[:80]} exited 0 in {outcome.wall_s:.1f} s"
