"""Recording every shaped link direction into pcaps (`--capture`), for fabric.capture to read.

A capture on an interface sees an outgoing packet only once the qdisc lets it go, so after HTB's
rate and netem's delay: both ends of a veth see it at the same moment.  To know when a packet
was handed to a link direction as well, a clsact filter on the interface's egress mirrors every
packet, before the qdisc, to a tap: a veth pair of its own in the node's namespace, with nothing
beyond it.  tcpdump records the tap (`queued`) and the interface's own egress (`sent`): the two
moments of the same packet, on one clock.  Headers only (SNAPLEN), and at most BUDGET_PACKETS
over all files, so a long run cannot fill the disk; a file that reached its share says so.
Taps and filters live in the node namespaces and go with them.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabric.capture import Direction
from fabric.emulation import EmulationError

SNAPLEN = 128                  # bytes of each packet kept: Ethernet, IP and TCP headers with options
BUDGET_PACKETS = 1_000_000     # over every file of a capture (~150 MB at most)
TCPDUMP_BUFFER_KIB = 16384     # its kernel ring: a burst of a run's packets waits there, not lost
READY_TIMEOUT_S = 60           # every tcpdump listening (a process costs ~0.2 s in the software-emulated microVM)
STOP_TIMEOUT_S = 30            # every tcpdump flushed and gone after SIGINT
TC_H_CLSACT_EGRESS = 0xFFFFFFF3


class RecorderError(EmulationError):
    """A tap or a tcpdump could not be set up; the message says which and why."""


@dataclass
class Recording:
    """What a capture recorded: its files, and the kernel's own counts over the same span."""
    folder: Path
    directions: list[Direction]
    limit: int                                   # packets per file (tcpdump -c)
    start_ns: int = 0                            # every tcpdump listening (CLOCK_REALTIME, as in the pcaps)
    counted: dict[str, dict] = field(default_factory=dict)      # key -> qdisc bytes/packets during it
    dropped: dict[str, int] = field(default_factory=dict)       # file name -> packets tcpdump lost


def file_stem(plan, key: str) -> str:
    """h0-r0 for fab1a2bh0:fab1a2br0: the files of a direction, without the run's prefix."""
    node, intf = key.split(":")
    return f"{node[len(plan.prefix):]}-{intf[len(plan.prefix):]}"


def tap_names(plan, i: int) -> tuple[str, str]:
    """The tap veth pair of shaped direction number i (its mirror's target, and the far end)."""
    return f"{plan.prefix}m{i}", f"{plan.prefix}n{i}"


class Recorder:
    """with Recorder(emu, folder) as rec: ... — every shaped direction recorded inside the block;
    rec.recording says what, once it ended."""

    def __init__(self, emu, folder: Path, budget: int = BUDGET_PACKETS):
        self.emu, self.folder = emu, Path(folder)
        plan = emu.plan
        for old in self.folder.glob("*.pcap"):       # a former capture into the same --out
            old.unlink()
        self.limit = max(1000, budget // (2 * len(plan.shapers)))
        self.recording = Recording(self.folder, [], self.limit)
        self._procs: dict[str, subprocess.Popen] = {}
        self._before: dict[str, dict] = {}

    def __enter__(self) -> Recorder:
        try:
            self.start()
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        from fabric.emulation import _index
        from pyroute2.netlink.exceptions import NetlinkError
        emu, plan = self.emu, self.emu.plan
        if shutil.which("tcpdump") is None:
            raise RecorderError("tcpdump is missing (apt-get install tcpdump; make setup installs it)")
        self.folder.mkdir(parents=True, exist_ok=True)
        for i, (key, s) in enumerate(plan.shapers.items()):
            tap, far = tap_names(plan, i)
            try:
                with emu._ipr(s.node) as ipr:
                    ipr.link("add", ifname=tap, kind="veth", peer=far)
                    for name in (tap, far):
                        ipr.link("set", index=_index(ipr, name, s.node), mtu=plan.mtu, state="up")
                    idx = _index(ipr, s.intf, s.node)
                    ipr.tc("add", "clsact", index=idx)
                    ipr.tc("add-filter", "u32", index=idx, parent=TC_H_CLSACT_EGRESS, prio=1, protocol=0x0003, target=0,
                           keys=["0x0/0x0+0"], action={"kind": "mirred", "direction": "egress", "action": "mirror",
                                                       "ifindex": _index(ipr, tap, s.node)})
            except NetlinkError as exc:
                raise RecorderError(f"{s.node}: a tap mirroring {s.intf} before its qdisc: {exc.args[-1]} "
                                    f"(errno {exc.code})") from None
            stem = file_stem(plan, key)
            role = plan.node(s.node).kind
            d = Direction(key, s.link_class, role, s.rate_bps, self.folder / f"{stem}.queued.pcap",
                          self.folder / f"{stem}.pcap", plan.mtu)
            self.recording.directions.append(d)
            for path, intf in ((d.queued, tap), (d.sent, s.intf)):
                self._procs[path.name] = self._tcpdump(s.node, intf, path)
        self._wait_listening()
        self.recording.start_ns = time.time_ns()
        self._before = emu.counters()

    def _tcpdump(self, node: str, intf: str, path: Path) -> subprocess.Popen:
        # -Q out: what leaves the interface; -Z root: write where fabric writes (no drop to user tcpdump)
        argv = ["tcpdump", "-p", "-n", "-Q", "out", "-i", intf, "-s", str(SNAPLEN), "-B", str(TCPDUMP_BUFFER_KIB),
                "--time-stamp-precision=nano", "--immediate-mode", "-c", str(self.limit), "-Z", "root", "-w", str(path)]
        err = open(path.with_suffix(".log"), "wb")
        try:
            return self.emu.nodes[node].popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        except OSError as exc:
            raise RecorderError(f"cannot start tcpdump ({exc.strerror or exc}): apt-get install tcpdump "
                                f"(make setup installs it)") from None
        finally:
            err.close()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = dict(self._procs)
        while waiting:
            for name, proc in list(waiting.items()):
                log = (self.folder / name).with_suffix(".log").read_text(errors="replace")
                if "listening on" in log:
                    del waiting[name]
                elif proc.poll() is not None:
                    raise RecorderError(f"tcpdump for {name} exited {proc.returncode}: {' '.join(log.split())[:300]}")
            if waiting and time.monotonic() > deadline:
                raise RecorderError(f"{len(waiting)} tcpdumps not listening after {READY_TIMEOUT_S} s "
                                    f"({', '.join(sorted(waiting)[:4])})")
            time.sleep(0.05)

    def stop(self) -> None:
        """The kernel's counts over the capture, then every tcpdump flushed and ended (bounded)."""
        if not self._procs:
            return
        try:
            after = self.emu.counters()
            self.recording.counted = {k: {"bytes": after[k]["bytes"] - b["bytes"],
                                          "packets": after[k]["packets"] - b["packets"]}
                                      for k, b in self._before.items()}
        finally:
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while time.monotonic() < deadline and any(p.poll() is None for p in self._procs.values()):
                time.sleep(0.05)
            self._kill()
        for name in list(self._procs):
            log = (self.folder / name).with_suffix(".log")
            self.recording.dropped[name] = _dropped(log.read_text(errors="replace"))
            log.unlink()
        self._procs.clear()

    def _kill(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def figures(recording: Recording, k: float) -> dict:
    """results.json's "capture": fabric.capture's analysis of the files, each direction with the
    kernel's own count over the same span beside it (its root qdisc's bytes and packets), what
    tcpdump lost, and whether a file stopped at its share of the budget (truncated)."""
    from fabric import capture
    doc = capture.analyse(recording.directions, k, since_ns=recording.start_ns)
    for d, entry in zip(recording.directions, doc["directions"]):
        counted = recording.counted.get(d.key, {})
        entry["qdisc_bytes"], entry["qdisc_packets"] = counted.get("bytes"), counted.get("packets")
        entry["tcpdump_dropped"] = {"queued": recording.dropped.get(d.queued.name, 0),
                                    "sent": recording.dropped.get(d.sent.name, 0)}
        entry["truncated"] = entry["packets"] >= recording.limit or entry["queued_packets"] >= recording.limit
        entry["files"] = {"queued": d.queued.name, "sent": d.sent.name}
    doc["folder"] = recording.folder.name
    doc["limit_packets"] = recording.limit
    return doc


def _dropped(log: str) -> int:
    """tcpdump's own count of packets it could not keep ("N packets dropped by kernel")."""
    for line in log.splitlines():
        if line.endswith("packets dropped by kernel"):
            return int(line.split()[0])
    return 0
