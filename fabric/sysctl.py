"""Kernel-wide settings a run raises and puts back.

Most of what a run changes lives in its own namespaces and dies with them.  A few settings
are the whole kernel's (net.core.netdev_max_backlog has no per-namespace copy): a run raises
such a setting where it is lower than the run needs, records the value it found, and the last
run to finish (or `fabric cleanup`, for runs that crashed) writes that value back.  Each holder
is a file named after its run's prefix, so several runs at once share one original.
"""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

STATE = Path("/run/fabric/sysctl")       # tmpfs: gone at reboot, as the kernel's values are
PROC = Path("/proc/sys")
BACKLOG = "net.core.netdev_max_backlog"


def _path(name: str) -> Path:
    return PROC / name.replace(".", "/")


@contextmanager
def _locked(name: str):
    d = STATE / name
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield d


def _holders(d: Path) -> dict[str, int]:
    return {p.name: int(p.read_text()) for p in d.iterdir() if not p.name.startswith((".", "original"))}


def hold(name: str, prefix: str, at_least: int) -> None:
    """Raise `name` to at least `at_least` for the run `prefix` (unchanged where it is higher)."""
    with _locked(name) as d:
        original = d / "original"
        if not original.exists():
            original.write_text(_path(name).read_text().strip())
        (d / prefix).write_text(str(at_least))
        want = max(int(original.read_text()), *_holders(d).values())
        if int(_path(name).read_text()) != want:
            _path(name).write_text(str(want))


def release(name: str, prefix: str | None = None) -> bool:
    """Drop run `prefix`'s hold (every run's: None); the last one out writes the original
    back.  True if something was released."""
    if not (STATE / name).exists():
        return False
    with _locked(name) as d:
        gone = [p for p in _holders(d) if prefix is None or p == prefix]
        for p in gone:
            (d / p).unlink()
        original = d / "original"
        if not original.exists():
            return bool(gone)
        rest = _holders(d)
        _path(name).write_text(str(max(int(original.read_text()), *rest.values())) if rest
                               else original.read_text())
        if not rest:
            original.unlink()
        return bool(gone)


def held(name: str) -> dict[str, int]:
    """{prefix: value} of the runs that hold `name` now."""
    d = STATE / name
    return _holders(d) if d.exists() else {}


def value(name: str) -> int:
    return int(_path(name).read_text().split()[0])

