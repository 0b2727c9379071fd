"""The microVM path: real netem where the host kernel has none.

When a profile needs delay, jitter or loss and this kernel has no sch_netem, fabric runs
itself again inside a microVM: virtme-ng boots the distro's kernel package (Debian's
linux-image-amd64 ships sch_netem and sch_htb as modules) under QEMU, with the host's root
filesystem (9p) and the run's output folder and fabric's cache writable, so results.json lands
where the user asked.  The exit code of the run inside comes back out.

KVM is used only when a short probe boot with it succeeds (on some hosts /dev/kvm exists but a
KVM boot hangs); otherwise QEMU emulates the CPU in software.  The probe's verdict and the boot
time are cached per host.
"""
from __future__ import annotations

import glob
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fabric import scale

BOOT_TIMEOUT_S = 120          # a software-emulated boot takes ~15 s here
KVM_PROBE_TIMEOUT_S = 10      # a KVM boot takes a few seconds where KVM works
READY = "fabric: inside the microVM"   # the first line the inner fabric prints
ENV = "FABRIC_MICROVM"                 # set inside: {"kernel", "kvm"} as JSON
PACKAGES = "qemu-system-x86 busybox-static linux-image-amd64 (apt) and virtme-ng (pip)"


class MicroVMError(RuntimeError):
    """The microVM path is unavailable or failed to boot (exit code 3)."""


@dataclass(frozen=True)
class Host:
    kvm: bool
    boot_s: float | None      # seconds from QEMU start to the inner fabric's first line, last run
    key: str = ""


def inside() -> dict | None:
    """{kernel, kvm} when this process runs inside fabric's microVM."""
    raw = os.environ.get(ENV)
    return json.loads(raw) if raw else None


def kernel() -> tuple[str, str] | None:
    """(image, release) of an installed kernel whose modules include sch_netem."""
    for image in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        release = image.split("vmlinuz-", 1)[1]
        if glob.glob(f"/lib/modules/{release}/kernel/net/sched/sch_netem.ko*"):
            return image, release
    return None


VM_NODE = "virtme-ng"    # the host name virtme-ng gives the guest: part of its calibration's key


def calibration() -> scale.Calibration | None:
    """The calibration a run inside the microVM measured and cached (None: none yet), as the
    host sees it before booting: a plan made here for a run that goes there needs the guest's
    figures, a software-emulated CPU's (k 10x the host's)."""
    found = kernel()
    return scale.cached(scale.host_key(VM_NODE, found[1], os.cpu_count() or 1)) if found else None


def vng() -> str | None:
    here = Path(sys.executable).parent / "vng"
    return str(here) if here.exists() else shutil.which("vng")


def missing() -> list[str]:
    """What the microVM path lacks on this host (empty: it can be used)."""
    out = []
    if kernel() is None:
        out.append("a kernel package with sch_netem (apt-get install linux-image-amd64)")
    if shutil.which("qemu-system-x86_64") is None:
        out.append("QEMU (apt-get install qemu-system-x86)")
    if vng() is None:
        out.append("virtme-ng (pip install virtme-ng)")
    if shutil.which("busybox") is None:
        out.append("busybox (apt-get install busybox-static)")
    return out


def _cache() -> Path:
    return scale.cache_path().parent / "microvm.json"


def host_info(probe: bool = True) -> Host | None:
    """Whether KVM works here (probed once with a short boot) and the last boot time; cached."""
    try:
        cached = Host(**json.loads(_cache().read_text()))
        if cached.key == scale.host_key():
            return cached
    except (OSError, ValueError, TypeError):
        pass
    if not probe:
        return None
    kvm = False
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        cmd = command("true", True, cpus=1, memory_mb=512, rwdirs=[])
        kvm = _run(cmd, KVM_PROBE_TIMEOUT_S, quiet=True) == 0
    return _store(Host(kvm, None, scale.host_key()))


def _store(info: Host) -> Host:
    _cache().parent.mkdir(parents=True, exist_ok=True)
    _cache().write_text(json.dumps(asdict(info)) + "\n")
    return info


ROOT_TAG = "fabricroot"          # a second, cached export of the host's root filesystem
VM_ROOT = "/tmp/fabric-vmroot"  # where the guest mounts it (the guest's /tmp is writable)


def command(exec_line: str, kvm: bool, cpus: int, memory_mb: int, rwdirs: list[str]) -> list[str]:
    """The vng command line booting the microVM and running `exec_line` (shell) in it."""
    found = kernel()
    if found is None or vng() is None:
        raise MicroVMError("the microVM path needs " + "; ".join(missing()))
    cmd = [vng(), "--run", found[0], "--force-9p", "--cpus", str(cpus), "--memory", f"{memory_mb}M",
           "--cwd", os.getcwd(),
           f"--qemu-opts=-virtfs local,path=/,mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap"]
    if not kvm:
        cmd.append("--disable-kvm")
    for d in rwdirs:
        cmd += ["--rwdir", d]
    return cmd + ["--exec", exec_line]


def guest_script(argv: list[str], env: str, rwdirs: list[str], cwd: str) -> str:
    """The shell line the guest runs: enter the cached root, then exec fabric.

    virtme-ng mounts the host's root over 9p without caching, so every stat() is a round trip
    through QEMU: importing torch took 92 s in the guest here (5,471 stat and 9,705 lstat calls
    at 2-4 ms each).  The same root mounted read-only with cache=loose, entered with chroot, took
    38 s (measured with software emulation, 2 vCPUs).  The host's files do not change during a run;
    the writable folders (output, cache), /proc, /sys, /dev and virtme-ng's /tmp (the host's, with
    writes kept in the guest) are bound in, /run is a fresh tmpfs.  If the cached mount fails, fabric runs from virtme-ng's root as before.
    It goes to the guest as a file: the kernel command line that carries --exec holds 2 KiB."""
    q = _quote
    inner = f"cd {q(cwd)} && {ENV}={q(env)} exec " + " ".join(q(a) for a in argv)
    binds = " && ".join(
        [f"mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,msize=512000,ro {ROOT_TAG} {VM_ROOT}"] +
        [f"mount --rbind /{d} {VM_ROOT}/{d}" for d in ("proc", "sys", "dev")] +
        [f"mount --bind /tmp {VM_ROOT}/tmp", f"mount -t tmpfs fabric {VM_ROOT}/run"] +
        [f"mkdir -p {VM_ROOT}{q(d)} && mount --bind {q(d)} {VM_ROOT}{q(d)}" for d in rwdirs])
    # TCP's memory is one pool for every namespace of a kernel (net.ipv4.tcp_mem, by default about
    # 1/16 of RAM at most): 56 connections with 16 MiB windows need more.  The guest's kernel is
    # fabric's alone, so it may have up to 3/4 of its RAM; on a user's own kernel fabric leaves it.
    tcp_mem = ("p=$(awk '/MemTotal/ {print int($2 / 4)}' /proc/meminfo) && "
               "sysctl -qw net.ipv4.tcp_mem=\"$((p / 4)) $((p / 2)) $((p * 3 / 4))\"; ")
    return (f"{tcp_mem}mkdir -p {VM_ROOT} && if {binds}; then exec chroot {VM_ROOT} sh -c {q(inner)}; "
            f"else echo 'fabric: no cached root in the microVM, running from the uncached one (slower)' >&2; "
            f"{inner}; fi")


def _quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"  # vng runs virtme-run
    return env


def _run(cmd: list[str], timeout_s: float, quiet: bool = False, ready_timeout_s: float | None = None,
         on_ready=None, on_line=None) -> int | None:
    """Run QEMU (through vng) in its own session; kill the whole session on timeout or Ctrl-C.
    Returns the exit code, or None on timeout.  With ready_timeout_s, the inner fabric must
    print READY within that time (the boot); on_ready(seconds) is called when it does.
    The guest's output arrives as one stream: its fabric log lines go to stderr (unless
    on_line(line) took them: progress), the rest (tables, JSON) to stdout."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
                            stderr=subprocess.DEVNULL if quiet else subprocess.STDOUT, env=_env(),
                            start_new_session=True)
    deadline = t0 + timeout_s
    ready_by = t0 + ready_timeout_s if ready_timeout_s else None
    buf = ""

    def show(data: bytes, final: bool = False) -> None:
        nonlocal buf, ready_by
        buf += data.decode(errors="replace")
        *lines, buf = buf.split("\n")
        if final and buf:
            lines, buf = lines + [buf], ""
        for line in lines:
            if ready_by is not None and READY in line:
                ready_by = None
                if on_ready:
                    on_ready(time.monotonic() - t0)
            line = line.rstrip("\r")
            if on_line is not None and on_line(line):
                continue
            print(line, file=sys.stderr if line.startswith("fabric") else sys.stdout, flush=True)

    try:
        while True:
            if proc.stdout is not None and select.select([proc.stdout], [], [], 0.1)[0]:
                show(os.read(proc.stdout.fileno(), 65536))
            elif proc.stdout is None:
                time.sleep(0.1)
            if proc.poll() is not None:
                if proc.stdout is not None:
                    while data := os.read(proc.stdout.fileno(), 65536):
                        show(data)
                    show(b"", final=True)
                return proc.returncode
            now = time.monotonic()
            if ready_by is not None and now > ready_by:
                raise MicroVMError(f"the microVM did not boot within {BOOT_TIMEOUT_S} s")
            if now > deadline:
                return None
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def run(argv: list[str], out_dir: Path, ranks: int, max_bytes: int, timeout_s: float, on_line=None) -> int:
    """Run `argv` (a fabric command line) inside the microVM; return its exit code.
    on_line(line) -> bool: offered each line of the guest's output first (True: handled)."""
    info = host_info()
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = scale.cache_path().parent
    cache.mkdir(parents=True, exist_ok=True)
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    memory = int(min(total_mb * 3 // 4, 2048 + ranks * (512 + 4 * max_bytes / 2**20)))
    env = json.dumps({"kernel": kernel()[1] if kernel() else "", "kvm": info.kvm})
    rwdirs = [str(out_dir.resolve()), str(cache)]
    with tempfile.NamedTemporaryFile("w", dir=cache, prefix="microvm-", suffix=".sh") as script:
        script.write(guest_script(argv, env, rwdirs, os.getcwd()) + "\n")
        script.flush()
        cmd = command(f"sh {_quote(script.name)}", info.kvm, os.cpu_count() or 1, memory, rwdirs)
        code = _run(cmd, BOOT_TIMEOUT_S + timeout_s, ready_timeout_s=BOOT_TIMEOUT_S,
                    on_ready=lambda s: _store(Host(info.kvm, round(s, 1), info.key)), on_line=on_line)
    if code is None:
        raise MicroVMError(f"the run inside the microVM did not finish within {BOOT_TIMEOUT_S + timeout_s:.0f} s")
    return code
