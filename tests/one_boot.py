"""Many fabric commands in one microVM boot (or on this kernel, where it has netem).

Every selected test module that needs the microVM (test_labs, test_microvm) says what it runs
with a `vm_commands(folder)`; the session's first such test runs them all in one boot
(`shared`, the `one_vm` fixture of conftest.py), which saves a boot and a torch import.

One Python process runs the commands in turn (fabric.cli.main), so the microVM boots once and
torch is imported once for all of them: each costs ~25 s and ~35 s in the software-emulated
microVM.  Each command's stdout and stderr (its ranks' too: the file descriptors) go to
NAME.out and NAME.err, its exit code to NAME.rc, and a line "fabric: NAME exit N, S s" to the
console, which lands in the test's output when it fails.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT
from fabric import host, microvm

DRIVER = """
import json, os, sys, time, traceback
from fabric.cli import main
folder, commands = sys.argv[1], json.loads(sys.argv[2])
for name, argv in commands.items():
    start, saved = time.monotonic(), (os.dup(1), os.dup(2))
    with open(f"{folder}/{name}.out", "w") as out, open(f"{folder}/{name}.err", "w") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            code = main(argv)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    for fd in saved:
        os.close(fd)
    with open(f"{folder}/{name}.rc", "w") as rc:
        rc.write(f"{code}\\n")
    print(f"fabric: {name} exit {code}, {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
"""


def _never(argv: list[str]) -> list[str]:
    """argv with --vm never among fabric's own options: before exec's `-- CMD`, if any."""
    i = argv.index("--") if "--" in argv else len(argv)
    return argv[:i] + ["--vm", "never"] + argv[i:]


def run(commands: dict[str, list[str]], d: Path, ranks: int, max_bytes: int, limit_s: float) -> dict:
    """Run {name: fabric argv} in one boot, each with --vm never; {name: (exit code or None when
    it never ended, its stdout, the tail of its stderr)}."""
    (d / "commands.py").write_text(DRIVER)
    argv = {name: _never(a) for name, a in commands.items()}
    script = d / "commands.sh"
    script.write_text(f"echo {shlex.quote(microvm.READY)} '(one boot)'\ncd {shlex.quote(str(ROOT))}\n"
                      f"{shlex.quote(sys.executable)} {shlex.quote(str(d / 'commands.py'))} {shlex.quote(str(d))} "
                      f"{shlex.quote(json.dumps(argv))}\n")
    if host.netem_available():
        subprocess.run(["sh", str(script)], cwd=ROOT, timeout=limit_s, check=True)
    else:
        assert microvm.run(["sh", str(script)], d, ranks=ranks, max_bytes=max_bytes, timeout_s=limit_s) == 0
    out = {}
    for name in commands:
        rc, stdout, stderr = (d / f"{name}.{x}" for x in ("rc", "out", "err"))
        out[name] = (int(rc.read_text()) if rc.exists() else None,
                     stdout.read_text() if stdout.exists() else "",
                     stderr.read_text()[-3000:] if stderr.exists() else "")
    return out


@dataclass(frozen=True)
class Commands:
    """What one test module runs in the shared boot."""
    argv: dict[str, list[str]]      # name (unique across modules) -> fabric argv
    ranks: int                      # the most ranks one of them runs (sizes the VM's memory)
    max_bytes: int                  # the largest message one of them moves
    limit_s: float                  # how long they may take together


@dataclass(frozen=True)
class Booted:
    folder: Path                    # a module's files are in folder / its name
    done: dict                      # name -> (exit code or None, stdout, stderr tail), every module's

    def module(self, name: str) -> Path:
        return self.folder / name


def shared(modules: list, d: Path) -> Booted:
    """Every module's vm_commands(its folder under d) in one boot (a module's None: nothing)."""
    wanted = [(m, m.vm_commands(d / m.__name__)) for m in sorted(modules, key=lambda m: m.__name__)]
    wanted = [(m, c) for m, c in wanted if c is not None]      # None: that module's tests skip here
    if not wanted:
        return Booted(d, {})
    argv: dict[str, list[str]] = {}
    for m, c in wanted:
        clash = set(argv) & set(c.argv)
        assert not clash, f"{m.__name__}: command names used twice: {sorted(clash)}"
        argv.update(c.argv)
    return Booted(d, run(argv, d, ranks=max(c.ranks for _, c in wanted),
                         max_bytes=max(c.max_bytes for _, c in wanted), limit_s=sum(c.limit_s for _, c in wanted)))
