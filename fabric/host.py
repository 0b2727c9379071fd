"""What this host can emulate: root, namespaces, veth, bridge, htb, netem, Mininet, torch/gloo.

The kernel probes run in a forked child inside a fresh network namespace, so they leave
nothing behind: the namespace and everything made in it vanish when the child exits.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _probe_child(write_fd: int) -> None:
    out = {}
    try:
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        out["netns"] = [True, "new network namespace"]
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            steps = [
                ("veth", lambda: ipr.link("add", ifname="fabprobe0", kind="veth", peer="fabprobe1")),
                ("bridge", lambda: ipr.link("add", ifname="fabprobebr", kind="bridge")),
            ]
            for name, fn in steps:
                try:
                    fn()
                    out[name] = [True, "created"]
                except Exception as exc:  # the probe reports every failure, whatever its kind
                    out[name] = [False, str(exc)]
            idx = (ipr.link_lookup(ifname="fabprobe0") or ipr.link_lookup(ifname="lo"))[0]
            for name, args in (("htb", dict(kind="htb", handle=0x10000)),
                               ("netem", dict(kind="netem", handle=0x20000, parent=0x10001, delay=1000))):
                try:
                    if name == "netem":
                        ipr.tc("add-class", "htb", index=idx, handle=0x10001, parent=0x10000, rate=1_000_000)
                    ipr.tc("add", index=idx, **args)
                    out[name] = [True, "qdisc created"]
                except Exception as exc:
                    out[name] = [False, f"{exc.args[-1] if exc.args else exc}"]
    except Exception as exc:
        out.setdefault("netns", [False, str(exc)])
    os.write(write_fd, json.dumps(out).encode())


@functools.lru_cache(maxsize=1)
def kernel() -> dict:
    """{feature: (ok, detail)} for netns, veth, bridge, htb, netem; needs root."""
    if os.geteuid() != 0:
        return {}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            _probe_child(w)
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return {k: tuple(v) for k, v in json.loads(data or b"{}").items()}


def netem_available() -> bool:
    return kernel().get("netem", (False, ""))[0]


def checks(torch: bool = True) -> list[Check]:
    """Every check; torch: also torch and gloo (imports it: ~35 s in the software-emulated microVM),
    which fabric's own ranks need and a foreign program (fabric exec, fabric up) does not."""
    out = []
    root = os.geteuid() == 0
    out.append(Check("root", root, "running as root" if root else f"running as uid {os.geteuid()}",
                     "run fabric as root (sudo): namespaces and tc need it"))
    probe = kernel()
    fixes = {"netns": "a kernel with network namespaces", "veth": "a kernel with veth",
             "bridge": "a kernel with Linux bridge support",
             "htb": "a kernel with sch_htb",
             "netem": "a kernel with sch_netem (Ubuntu/Debian stock kernels have it), or fabric's microVM "
                      "path (see the microvm line); without either only profiles with no latency, jitter or "
                      "loss run here"}
    for name, fix in fixes.items():
        if not root:
            out.append(Check(name, False, "not probed (needs root)", "run fabric doctor as root"))
        else:
            ok, detail = probe.get(name, (False, "not probed (an earlier step failed)"))
            out.append(Check(name, ok, detail, "" if ok else fix))
    mnexec = shutil.which("mnexec")
    mininet = importlib.util.find_spec("mininet") is not None
    out.append(Check("mininet", bool(mnexec and mininet),
                     f"python package {'found' if mininet else 'missing'}, mnexec {mnexec or 'missing'}",
                     "apt-get install mininet (make test / make demo do it)"))
    out.append(Check("pyroute2", importlib.util.find_spec("pyroute2") is not None, "python package",
                     "pip install pyroute2 (make installs it into .venv)"))
    if torch:
        out.append(_torch_check())
    return out


GLOO_FIX = "a torch build with the gloo backend"


def _torch_check() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("torch/gloo", False, "torch missing", "pip install torch==2.13.0 (make installs it)")
    torch, ok = load_torch()
    return Check("torch/gloo", ok, f"torch {torch.__version__}, gloo {'available' if ok else 'missing'}",
                 "" if ok else GLOO_FIX)


def can_run(torch: bool = True) -> list[Check]:
    """The failed checks of those a run needs (netem is decided per profile).  It imports torch
    (unless not torch), in this thread and before the fabric is built: an import in a background
    thread beside the build (pyroute2, Mininet and their lazy imports) deadlocked on the import
    locks about one run in 30."""
    return [c for c in checks(torch) if c.name != "netem" and not c.ok]


def load_torch():
    """(the torch module, gloo available)."""
    import torch
    import torch.distributed as dist
    return torch, bool(dist.is_available() and dist.is_gloo_available())
