"""Find and remove what fabric runs left behind — only fabric's own objects.

Every node of a run is a Mininet shell whose command line carries `fabric:fab<id>...` (not
Mininet's own `mininet:`, which `mn -c` kills);
every rank is named fab<id>r<rank> (/proc/PID/comm).  A run's namespaces are the network namespaces
those processes are in; killing every process in them frees the namespaces, and with them
every veth, bridge and qdisc the run made.  A namespace `fabric up` named under /run/netns
(fab<id><node>) lives on until its name is removed too.  Nothing in the root namespace is
fabric's, but a link named fab<4 hex><letter> there (a crash mid-creation) is removed too, and
the kernel-wide settings a run raised (fabric.sysctl) go back to what they were.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from fabric import sysctl

SHELL_MARK = "fabric:"                              # a node's shell: bash ... fabric:fab1a2bh0 (emulation)
OWN = re.compile(r"(?:fabric|mininet):(fab[0-9a-f]{4})")   # and mininet:fab... from runs before the mark
RANK = re.compile(r"^(fab[0-9a-f]{4})r\d+$")        # a rank's /proc/PID/comm: fab1a2br3
OWN_LINK = re.compile(r"^fab[0-9a-f]{4}[a-z]")
OWN_NAME = re.compile(r"^(fab[0-9a-f]{4})[a-z]")    # a named namespace (fab1a2bh0) or fabric up's state file
NETNS_DIR = Path("/run/netns")                      # where `ip netns` keeps names (a bind mount each)
STATE_DIR = Path("/run/fabric")                     # fabric up's <run>.json: what it built, its pid


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _netns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def leftovers(prefix: str | None = None) -> dict[str, list[int]]:
    """{'fab1a2b': [pids...]}: processes of fabric runs (all runs, or the one with `prefix`),
    including any other process that entered one of their namespaces.  Zombies are left out:
    they hold no namespace, and only their parent (or init) can collect them."""
    pids = [p for p in os.listdir("/proc") if p.isdigit() and not _zombie(int(p))]
    runs: dict[str, set[int]] = {}
    spaces: dict[str, str] = {}
    for name, run in named().items():      # a named namespace of a run whose shells are gone
        if prefix is None or run == prefix:
            runs.setdefault(run, set())
            try:
                spaces[f"net:[{(NETNS_DIR / name).stat().st_ino}]"] = run
            except OSError:
                pass
    for pid in pids:
        shell = OWN.search(_cmdline(pid))
        m = shell or RANK.match(_comm(pid))
        if m and (prefix is None or m.group(1) == prefix):
            runs.setdefault(m.group(1), set()).add(int(pid))
            ns = _netns(pid)
            if shell and ns and ns != _netns("1"):
                spaces[ns] = m.group(1)
    for pid in pids:
        run = spaces.get(_netns(pid) or "")
        if run and int(pid) != os.getpid():
            runs[run].add(int(pid))
    return {run: sorted(p) for run, p in runs.items()}


def named() -> dict[str, str]:
    """{namespace name: its run} of fabric's named namespaces (/run/netns/fab1a2bh0)."""
    try:
        return {n: m.group(1) for n in os.listdir(NETNS_DIR) if (m := OWN_NAME.match(n))}
    except OSError:
        return {}


def root_links() -> list[str]:
    try:
        return [n for n in os.listdir("/sys/class/net") if OWN_LINK.match(n)]
    except OSError:
        return []


def remove(prefix: str | None = None, timeout_s: float = 10.0) -> tuple[int, int]:
    """Kill fabric's leftover processes (one run's, or all) and delete stray links.
    Returns (processes killed, links deleted)."""
    pids = sorted({p for ps in leftovers(prefix).values() for p in ps})
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and not _zombie(p) for p in pids):
        time.sleep(0.05)
    names = [n for n, run in named().items() if prefix is None or run == prefix]
    if names:        # after the kill: a name alone holds a namespace, with its links, alive
        from pyroute2 import netns
        for name in names:
            with contextlib.suppress(OSError):
                netns.remove(name)
    for state in STATE_DIR.glob("fab*.json"):
        if prefix is None or state.stem == prefix:
            state.unlink(missing_ok=True)
    sysctl.release(sysctl.BACKLOG, prefix)      # the last run out puts the kernel's value back
    links = [n for n in root_links() if prefix is None or n.startswith(prefix)]
    if links:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            for name in links:
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)
    return len(pids), len(links)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True
