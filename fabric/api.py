"""fabric as a library: build a profile's fabric, reach its hosts, run programs there, tear it down.

    from fabric.api import Fabric

    with Fabric("profiles/flat-200m.yaml") as fab:          # built here; removed on leaving
        for h in fab.hosts:
            print(h.name, h.ip, h.netns)
        print(fab.cmd("h1", "ping", "-c", "3", fab.host("h0").ip).stdout)
        outcome = fab.exec(["python3", "train.py"], out=Path("runs/mine"))   # once per rank

`fabric up`, `fabric exec` and `fabric probe` are this object behind a command line.  It runs
where the profile can run natively: a profile with latency, jitter or loss needs netem in this
kernel (the CLI's microVM path re-runs a whole command inside a VM; a library caller is the
process that would have to move there).  Hosts are named as Mininet names them, h0..h<n-1>
for the ranks and s0.. (and core) for the bridges; the kernel sees them with the run's prefix
(fab1a2bh0), which is also their name for `ip netns exec` when built with named=True.
While it is up, SIGTERM unwinds like Ctrl-C (when built in the main thread), so a killed
caller still removes everything; `fabric cleanup` removes what a dead one left.
"""
from __future__ import annotations

import contextlib
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from fabric import launch, scale as scales
from fabric.emulation import Emulation, EmulationError
from fabric.plan import Plan, build
from fabric.profile import Profile, load, parse

__all__ = ["Fabric", "Host", "EmulationError"]


@dataclass(frozen=True)
class Host:
    """One node of a built fabric."""
    name: str                # h3, s0, core: the name the CLI and this API take
    node: str                # fab1a2bh3: the kernel's name (Mininet node, named namespace)
    kind: str                # "host" (a rank) | "switch" (a bridge)
    rank: int | None
    ip: str | None
    intf: str | None         # a rank's shaped interface (GLOO_SOCKET_IFNAME)
    pid: int                 # the node's shell, which holds its namespace
    netns: str               # /proc/PID/ns/net: for setns, nsenter --net=, pyroute2


def short_name(plan: Plan, node: str) -> str:
    """fab1a2bh3 -> h3 (and s0, core)."""
    return node[len(plan.prefix):]


class Fabric:
    """A profile's fabric, built on entering and removed on leaving (also on error, Ctrl-C and
    SIGTERM).  profile: a path, a YAML mapping or a Profile; scale: k (default: the profile's
    own, else the k fabric chooses from this host's cached calibration or default figures);
    named: also give every node's namespace its name under /run/netns, so `ip netns exec
    fab1a2bh0 ...`, `ip -n` and `tc -n` reach it."""

    def __init__(self, profile: str | Path | dict | Profile, scale: float | scales.Choice | None = None,
                 named: bool = False, run_id: str | None = None):
        from fabric.runner import new_run_id
        if isinstance(profile, (str, Path)):
            profile = load(profile)
        elif isinstance(profile, dict):
            profile = parse(profile)
        self.profile: Profile = profile
        self.choice = scale if isinstance(scale, scales.Choice) else choice(profile, scale)
        self.named = named
        self.plan: Plan = build(profile, self.choice.k, run_id=run_id or new_run_id())   # pure: nothing built yet
        self.emulation: Emulation | None = None
        self._guard = None

    # ---- building and removing --------------------------------------------------------
    def __enter__(self) -> Fabric:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Check this host, build the plan's nodes, links and shapers; EmulationError or
        runner.HostUnfit (with the fix) when it cannot."""
        from fabric.runner import check_host, sigterm_unwinds
        check_host(self.profile, torch=False)
        if threading.current_thread() is threading.main_thread():
            self._guard = contextlib.ExitStack()
            self._guard.enter_context(sigterm_unwinds())
        try:
            self.emulation = Emulation(self.plan).__enter__()
            if self.named:
                self.emulation.name_namespaces()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Remove everything the fabric made (processes, namespaces, names); idempotent."""
        try:
            if self.emulation is not None:
                self.emulation.stop()
        finally:
            self.emulation = None
            if self._guard is not None:
                self._guard.close()
                self._guard = None

    @property
    def up(self) -> bool:
        """The fabric is built and its node shells are alive (`fabric cleanup` ends them)."""
        return self.emulation is not None and self.emulation.alive()

    # ---- reaching the hosts -----------------------------------------------------------
    @property
    def hosts(self) -> list[Host]:
        """The ranks' hosts, in rank order."""
        return [self.host(r) for r in range(self._built().ranks)]

    @property
    def nodes(self) -> list[Host]:
        """Every node: the ranks' hosts, then the bridges."""
        plan = self._built()
        return self.hosts + [self.host(short_name(plan, n.name)) for n in plan.switches]

    def host(self, which: int | str) -> Host:
        """A node by rank (3), short name (h3, s0, core) or kernel name (fab1a2bh3)."""
        plan, emu = self._built(), self.emulation
        node = plan.hosts[which].name if isinstance(which, int) and 0 <= which < plan.ranks else (
            which if isinstance(which, str) and which.startswith(plan.prefix) else f"{plan.prefix}{which}")
        found = next((n for n in plan.nodes if n.name == node), None)
        if found is None:
            names = ", ".join(short_name(plan, n.name) for n in plan.hosts + plan.switches)
            raise ValueError(f"no node {which!r} in this fabric (its nodes: {names})")
        rank = found.rank
        return Host(short_name(plan, found.name), found.name, found.kind, rank, found.ip,
                    plan.host_intf(rank) if rank is not None else None, emu.nodes[found.name].pid,
                    emu.netns(found.name))

    def environment(self, rank: int) -> dict[str, str]:
        """What rank's programs get beside the caller's environment: torchrun's variables,
        GLOO_SOCKET_IFNAME, FABRIC_SCALE (k) and FABRIC_ADDRS (fabric.launch)."""
        return launch.environment(self._built(), rank)

    def popen(self, which: int | str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start argv in a node's namespace (a rank's gets its environment); the caller waits."""
        h = self.host(which)
        if h.rank is not None:
            import os
            kwargs["env"] = {**(kwargs.get("env") or os.environ), **self.environment(h.rank)}
        return self.emulation.nodes[h.node].popen(argv, **kwargs)

    def cmd(self, which: int | str, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run argv in a node's namespace and wait (at most timeout seconds: then it is killed
        and subprocess.TimeoutExpired raised); stdout and stderr as text."""
        proc = self.popen(which, list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

    def exec(self, argv: list[str], out: Path, timeout_s: float = 600.0, echo=print, log=print) -> launch.Outcome:
        """argv once per rank, torchrun-style (fabric.launch): output per rank in out, bounded;
        the profile's events (fabric.events) happen at their moments after the programs start."""
        from fabric.events import Timeline
        timeline = Timeline(self.emulation, log) if self.plan.profile.events else None
        return launch.launch(self.emulation, argv, out, timeout_s, echo=echo, timeline=timeline)

    def counters(self) -> dict[str, dict]:
        """The kernel's packet, byte and drop counters of every shaped link direction."""
        return self.emulation.counters()

    def _built(self) -> Plan:
        if self.emulation is None:
            raise RuntimeError("the fabric is not built: use `with Fabric(...) as fab:` or call start()")
        return self.plan


def choice(profile: Profile, k: float | None = None) -> scales.Choice:
    """The time dilation for profile: k given, else the profile's own scale, else the one
    fabric chooses from this host's cached calibration (default figures when none)."""
    if k is not None:
        return scales.Choice(k, "given")
    if profile.scale is not None:
        return scales.choose(profile, scales.DEFAULT)
    return scales.choose(profile, scales.cached() or scales.DEFAULT)
