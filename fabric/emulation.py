"""The emulation: a Plan made real, and undone.

Mininet builds the nodes (one network namespace each, held by a shell process).  Everything
else (the veth links between them, addresses, MTU, bridges, HTB, netem, filters, routes, and the
events of a run) goes through pyroute2, the same objects `fabric plan` prints as ip/tc commands.  Bridges live in
their own namespaces, so the host's root namespace, its sysctls and its firewall are never
touched.  stop() removes everything; when fabric dies too hard for stop() to run, the node
shells exit with it and `fabric cleanup` removes what is left (fabric.cleanup).
"""
from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
from dataclasses import replace

from fabric import cleanup, netem, sysctl, tc
from fabric.plan import BACKLOG_PACKETS, PREFIX_LEN, Plan, Shaper


CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
SETUP_TIMEOUT_S = 120          # every node's set-up shell (Emulation._node_setup)
# TcpExt counters of segments a receiving host threw away: its socket's queue or backlog full,
# its buffer pruned, out-of-order queue full, or a zero window
RECEIVER_DROPS = ("TCPRcvQDrop", "TCPBacklogDrop", "RcvPruned", "OfoPruned", "TCPOFODrop", "TCPZeroWindowDrop")
# ... and the times TCP's memory, shared by every namespace of the kernel (net.ipv4.tcp_mem), ran short
MEMORY = ("TCPMemoryPressures", "TCPRcvCollapsed", "PruneCalled")
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
CONFIGURE_PROCESSES = os.cpu_count() or 1     # _configure_all


class EmulationError(RuntimeError):
    """The kernel refused something the plan needs; the message says what."""


def _mininet():
    try:
        from mininet.link import Link
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.node import Host
        from mininet.nodelib import LinuxBridge
    except ImportError as exc:
        raise EmulationError(f"Mininet is not importable ({exc}); install it: apt-get install mininet") from None
    setLogLevel("error")

    class OwnShell:
        """A node whose shell says it is fabric's (bash ... fabric:fab1a2bh0), not Mininet's
        (mininet:NAME): `mn -c`, a Mininet user's habit, kills every process whose command line
        holds `mininet:`, and would take a running fabric's nodes with it (fabric.cleanup
        finds them by their marker)."""

        def _popen(self, cmd, **params):
            if cmd and cmd[-1] == f"mininet:{self.name}":
                cmd = [*cmd[:-1], f"{cleanup.SHELL_MARK}{self.name}"]
            return super()._popen(cmd, **params)

    class FabricHost(OwnShell, Host):
        pass

    class NamespacedBridge(OwnShell, LinuxBridge):
        """A Linux bridge in its own namespace; the emulation configures it via netlink."""

        def __init__(self, name, **params):
            params["inNamespace"] = True
            super().__init__(name, **params)

        @classmethod
        def setup(cls):  # LinuxBridge.setup exits the process when brctl is missing; netlink needs no brctl
            pass

        def start(self, _controllers):  # pragma: no cover - configured by Emulation instead
            pass

        def stop(self, deleteIntfs=True):
            # the bridge dies with the namespace; skip LinuxBridge's brctl calls
            super(LinuxBridge, self).stop(deleteIntfs)

    return Mininet, FabricHost, Link, NamespacedBridge


class Emulation:
    """with Emulation(plan) as emu: ... — nodes, links and shaping exist inside the block."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.net = None
        self.nodes = {}
        self.pids: list[int] = []

    def __enter__(self) -> Emulation:
        try:
            self.start()
        except SystemExit:   # Mininet prints an error and calls exit(); make it ours
            self.stop()
            raise EmulationError("Mininet could not build the topology (its message is above)") from None
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- building -------------------------------------------------------------------
    def start(self) -> None:
        if os.geteuid() != 0:
            raise EmulationError("building the emulation needs root (network namespaces, tc)")
        Mininet, Host, _, Bridge = _mininet()
        sysctl.hold(sysctl.BACKLOG, self.plan.prefix, BACKLOG_PACKETS)     # cleanup.remove lets go
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False)
        for i, node in enumerate(self.plan.nodes):
            if node.kind == "host":
                self.nodes[node.name] = self.net.addHost(node.name, cls=Host, ip=None)
            else:
                # Mininet derives a switch's datapath id from the digits in its name and fails
                # when there are none (a run id of letters only, "fabcafecore"): give one
                self.nodes[node.name] = self.net.addSwitch(node.name, cls=Bridge, dpid=f"{i + 1:016x}")
        self._add_links()
        self._node_setup()
        self._configure_all()

    def netns(self, node_name: str) -> str:
        return f"/proc/{self.nodes[node_name].pid}/ns/net"

    def name_namespaces(self) -> None:
        """Give every node's namespace its node's name under /run/netns, as `ip netns attach`
        does, so `ip netns exec`, `ip -n` and `tc -n` reach it.  A name holds its namespace
        alive after its shell is gone: stop() and `fabric cleanup` remove them (cleanup.remove)."""
        from pyroute2 import netns
        for name, node in self.nodes.items():
            try:
                netns.attach(name, node.pid)
            except OSError as exc:
                raise EmulationError(f"cannot name {name}'s namespace under {cleanup.NETNS_DIR}: "
                                     f"{exc.strerror or exc}") from None

    def alive(self) -> bool:
        """Every node's shell is still there (`fabric cleanup` or a kill ends them)."""
        return bool(self.nodes) and all(n.shell is not None and n.shell.poll() is None for n in self.nodes.values())

    def _ipr(self, node_name: str):
        """pyroute2 on a netlink socket opened in node's namespace by this thread (setns there and
        back): pyroute2's own netns= forks a helper per socket, 0.17 s each in the software-
        emulated microVM against 0.02 s this way (2026-12-07)."""
        from pyroute2 import IPRoute
        return IPRoute(fileno=_netlink_socket(self.netns(node_name)).detach())

    def _node_setup(self) -> None:
        """Plan.node_setup's lines, one shell per node, every node's at once: a process costs
        ~0.2 s in the software-emulated microVM, and the node_setup of 11 nodes, one after
        another, took 6-9 s there (2026-12-07).  The first line's failure is not fatal (a kernel
        without one of its sysctls); any other's is an EmulationError naming the line."""
        if shutil.which("ethtool") is None and any(self.plan.offloads_off(n.name) for n in self.plan.nodes):
            raise EmulationError("ethtool is missing (apt-get install ethtool; make setup installs it)")
        procs = {}
        try:
            for node in self.plan.nodes:
                first, *checked = self.plan.node_setup(node.name)
                script = "\n".join([f"( {first} ) >/dev/null 2>&1"] + [
                    f"out=$({line} 2>&1) || {{ echo {shlex.quote(line + ' failed:')} \"$out\" >&2; exit 1; }}"
                    for line in checked])
                procs[node.name] = self.nodes[node.name].popen("sh", "-c", script)
            for name, proc in procs.items():
                try:
                    out, err = proc.communicate(timeout=SETUP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    raise EmulationError(f"{name}: its set-up commands did not finish within "
                                         f"{SETUP_TIMEOUT_S} s") from None
                if proc.returncode != 0:
                    text = " ".join((err or out).decode(errors="replace").split())
                    raise EmulationError(f"{name}: {text or f'exit code {proc.returncode}'}")
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def _add_links(self) -> None:
        """Every veth pair, made in its first node's namespace with its peer put straight into
        the other's, as `fabric plan` prints it (netlink: Mininet's addLink ran a few processes
        per link, 0.36 s each in the software-emulated microVM, 17 s for a 4 x 4 torus's 48)."""
        from pyroute2.netlink.exceptions import NetlinkError
        by_node: dict[str, list] = {}
        for link in self.plan.links:
            by_node.setdefault(link.a_node, []).append(link)
        for node, links in by_node.items():
            with self._ipr(node) as ipr:
                for link in links:
                    peer = os.open(self.netns(link.b_node), os.O_RDONLY)
                    try:
                        ipr.link("add", ifname=link.a_intf, kind="veth", mtu=self.plan.mtu,
                                 peer={"ifname": link.b_intf, "mtu": self.plan.mtu, "net_ns_fd": peer})
                    except NetlinkError as exc:
                        raise EmulationError(f"{node}: ip link add name {link.a_intf} type veth peer name "
                                             f"{link.b_intf} netns <{link.b_node}> failed: {exc.args[-1]} "
                                             f"(errno {exc.code})") from None
                    finally:
                        os.close(peer)

    def _configure_all(self) -> None:
        """_configure every node, the nodes shared among one process per CPU: pyroute2 encodes
        each tc operation in Python (an HTB class's rate tables too), 0.85 ms here and tens of
        ms in the software-emulated microVM, where a 4 x 4 torus's ~1,100 operations took 37 s
        in one process (2026-12-07)."""
        nodes = list(self.plan.nodes)
        shares = [nodes[i::CONFIGURE_PROCESSES] for i in range(min(CONFIGURE_PROCESSES, len(nodes)))]
        children = []
        for share in shares[1:]:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                os.close(read)
                code = 0
                try:
                    for node in share:
                        self._configure(node)
                except BaseException as exc:     # noqa: BLE001 - said to the parent, which raises it
                    os.write(write, (str(exc) or exc.__class__.__name__).encode()[:4000])
                    code = 1
                finally:
                    os._exit(code)
            os.close(write)
            children.append((pid, read))
        failure = None
        try:
            for node in shares[0] if shares else []:
                self._configure(node)
        except EmulationError as exc:
            failure = exc
        finally:
            for pid, read in children:
                with os.fdopen(read, "rb") as said:
                    text = said.read().decode(errors="replace")
                _, status = os.waitpid(pid, 0)
                if status and failure is None:
                    failure = EmulationError(text or f"a configuring process ended with status {status}")
        if failure:
            raise failure

    def _configure(self, node) -> None:
        ports = self.plan.interfaces(node.name)
        bridged = self.plan.bridged(node.name) if node.kind == "switch" else []
        with self._ipr(node.name) as ipr:
            ipr.link("set", index=_index(ipr, "lo", node.name), state="up")
            if node.kind == "switch":
                if not node.routed:       # a routed switch made its bridge in its set-up (plan.router_setup)
                    ipr.link("add", ifname=node.name, kind="bridge")
                bridge = _index(ipr, node.name, node.name)
            for intf in ports:
                idx = _index(ipr, intf, node.name)
                ipr.link("set", index=idx, mtu=self.plan.mtu)
                if intf in bridged:
                    ipr.link("set", index=idx, master=bridge)
                ipr.link("set", index=idx, state="up")
            if node.kind == "switch":
                ipr.link("set", index=bridge, mtu=self.plan.mtu, state="up")
                self._route_between_domains(ipr, node)
            else:
                idx = _index(ipr, self.plan.host_intf(node.rank), node.name)
                ipr.addr("add", index=idx, address=node.ip, prefixlen=PREFIX_LEN)
                self._route(ipr, node)
            for shaper in self.plan.shapers.values():
                if shaper.node == node.name:
                    self._shape(ipr, shaper)

    def _route_between_domains(self, ipr, node) -> None:
        """A routed switch's addresses and its route to every other domain (Plan.addresses, routes)."""
        from fabric.events import Route
        for dev, cidr in self.plan.addresses.get(node.name, []):
            addr, bits = cidr.split("/")
            ipr.addr("add", index=_index(ipr, dev, node.name), address=addr, prefixlen=int(bits))
        for dst, dev in self.plan.routes.get(node.name, []):
            _apply_op(ipr, Route(node.name, dst, dev))

    def _route(self, ipr, node) -> None:
        """The host's routes to the fabric, with TCP's initial windows (plan.RouteSetup)."""
        from pyroute2.netlink.exceptions import NetlinkError
        for r in self.plan.host_routes(node.rank):
            net, bits = r.dst.split("/")
            try:
                ipr.route("replace", dst=net, dst_len=int(bits), oif=_index(ipr, r.dev, node.name), prefsrc=r.src,
                          proto=2, scope=253, metrics={"initcwnd": r.window, "initrwnd": r.window})
            except NetlinkError as exc:
                raise EmulationError(f"{node.name}: {r.text()} failed: {exc.args[-1]} (errno {exc.code})") from None

    def _shape(self, ipr, s: Shaper) -> None:
        """The shaper's tc operations (Shaper.ops, the ones `fabric plan` prints) through netlink."""
        from pyroute2.netlink.exceptions import NetlinkError
        idx = _index(ipr, s.intf, s.node)
        for op in s.ops():
            try:
                _apply(ipr, idx, op)
            except NetlinkError as exc:
                raise EmulationError(f"{s.node}: {tc.text(op, s.intf)} failed: {exc.args[-1]} "
                                     f"(errno {exc.code})") from None

    # ---- using ----------------------------------------------------------------------
    def apply(self, ops: list) -> None:
        """An event's operations (fabric.events: link states, routes, tc) in their order, each
        node's through one netlink socket of its own namespace."""
        by_node: dict[str, list] = {}
        for op in ops:
            by_node.setdefault(op.node, []).append(op)
        for node, mine in by_node.items():
            with self._ipr(node) as ipr:
                for op in mine:
                    _apply_op(ipr, op)

    def hold_latency(self, held: bool = True) -> int:
        """Take every netem leaf's delay and jitter off (held) or put the plan's back; loss, queue
        lengths and rates stay.  The ranks join the gloo group while it is held: every rendezvous
        message and each of the n(n-1)/2 connections' handshakes crosses the links a few times,
        which at the emulated latency took 10-19 s for 8 ranks at k = 100 000 in the microVM and
        would take tens of minutes for 72 at k = 5 000 000 (20 s round trips; held: 31.9 s).
        Returns the leaves changed."""
        from pyroute2.netlink.exceptions import NetlinkError
        changed = 0
        for s in self.plan.shapers.values():
            bands = [b for b in s.bands if b.delay_s or b.jitter_s]
            if not bands:
                continue
            with self._ipr(s.node) as ipr:
                idx = _index(ipr, s.intf, s.node)
                for b in bands:
                    band = replace(b, delay_s=0.0, jitter_s=0.0) if held else b
                    try:
                        netem.add(ipr, idx, b.minor << 16, tc.handle(b.minor), band, command="replace")
                    except NetlinkError as exc:
                        raise EmulationError(f"{s.node}: {netem.command(band)} on {s.intf} (replace) failed: "
                                             f"{exc.args[-1]} (errno {exc.code})") from None
                    changed += 1
        return changed

    def fork(self, rank: int, body, name: str) -> int:
        """Fork a child into rank's host namespace that runs body() and exits with its return
        value; it is called `name` (/proc/PID/comm) and dies with this process."""
        ns = os.open(self.netns(self.plan.hosts[rank].name), os.O_RDONLY)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                libc.prctl(PR_SET_NAME, name.encode()[:15])
                if libc.setns(ns, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
                os.close(ns)
                code = body()
            finally:
                os._exit(code)
        os.close(ns)
        self.pids.append(pid)
        return pid

    def reap(self, pids: list[int]) -> None:
        """Kill and collect children that are still there (after a failure or a timeout)."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            if pid in self.pids:
                self.pids.remove(pid)

    def tc_bytes(self, node_name: str, intf: str) -> int:
        """Bytes the root HTB qdisc of node:intf has sent."""
        with self._ipr(node_name) as ipr:
            return _root_qdisc(ipr, intf, node_name).get(("TCA_STATS2", "TCA_STATS_BASIC"))["bytes"]

    def counters(self) -> dict[str, dict]:
        """What the kernel counted on every shaped link direction so far (keys: plan.shapers'):
        the root HTB's packets and bytes sent, its drops (a leaf's drop, a full queue or netem's
        loss, is the root's too) and requeues, and overlimits (packets the rate held back:
        shaping at work, not loss).  One netlink socket per node."""
        by_node: dict[str, list] = {}
        for key, s in self.plan.shapers.items():
            by_node.setdefault(s.node, []).append((key, s.intf))
        out = {}
        for node, shaped in by_node.items():
            with self._ipr(node) as ipr:
                for key, intf in shaped:
                    root = _root_qdisc(ipr, intf, node)
                    basic = root.get(("TCA_STATS2", "TCA_STATS_BASIC"))
                    queue = root.get(("TCA_STATS2", "TCA_STATS_QUEUE"))
                    out[key] = {"packets": basic["packets"], "bytes": basic["bytes"], "drops": queue["drops"],
                                "requeues": queue["requeues"], "overlimits": queue["overlimits"]}
        return out

    def tcp_counters(self) -> dict[str, list[int]]:
        """Per rank, what its namespace's TCP counted (read through the node shell, which lives
        in that namespace): segments retransmitted (/proc/net/snmp RetransSegs), of them
        retransmission timeouts and tail-loss probes (/proc/net/netstat TCPTimeouts,
        TCPLossProbes: they resend without a drop when an ACK is late), and segments the rank's
        own TCP threw away on receipt (RECEIVER_DROPS), which no qdisc counter sees."""
        out: dict = {"retransmitted": [], "timeouts": [], "loss_probes": [], "receiver_drops": [],
                     "receiver_drops_by": {k: [] for k in RECEIVER_DROPS + MEMORY}}
        for h in self.plan.hosts:
            pid = self.nodes[h.name].pid
            snmp, ext = _proc_counters(f"/proc/{pid}/net/snmp", "Tcp:"), _proc_counters(f"/proc/{pid}/net/netstat", "TcpExt:")
            out["retransmitted"].append(snmp["RetransSegs"])
            out["timeouts"].append(ext.get("TCPTimeouts", 0))
            out["loss_probes"].append(ext.get("TCPLossProbes", 0))
            out["receiver_drops"].append(sum(ext.get(k, 0) for k in RECEIVER_DROPS))
            for k, counts in out["receiver_drops_by"].items():
                counts.append(ext.get(k, 0))
        out["receiver_drops_by"] = {k: v for k, v in out["receiver_drops_by"].items() if any(v)}
        return out

    # ---- undoing --------------------------------------------------------------------
    def stop(self) -> None:
        """Kill every process in the run's namespaces (ranks and strays), then the node shells."""
        cleanup.remove(self.plan.prefix)
        self.reap(list(self.pids))
        for node in self.nodes.values():
            try:
                node.terminate()   # closes Mininet's pty; interfaces and bridges went with the namespace
            except Exception:      # a half-built node: cleanup.remove already killed its shell
                pass
        self.net = None
        self.nodes.clear()


def _root_qdisc(ipr, intf: str, node: str):
    """The root qdisc (fabric's HTB) of node:intf, with its statistics."""
    root = next((q for q in ipr.get_qdiscs(index=_index(ipr, intf, node)) if q.get("parent") == 0xFFFFFFFF), None)
    if root is None:
        raise EmulationError(f"no root qdisc on {node}:{intf}")
    return root


def _proc_counters(path: str, prefix: str) -> dict[str, int]:
    """One section of a /proc/net counter file: a line of names, then a line of values."""
    with open(path) as f:
        names, values = [line.split() for line in f if line.startswith(prefix)][:2]
    return {n: int(v) for n, v in zip(names[1:], values[1:])}


def _netlink_socket(netns_path: str) -> socket.socket:
    """A NETLINK_ROUTE socket of the namespace at netns_path; the calling thread returns to its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    own, target = os.open("/proc/thread-self/ns/net", os.O_RDONLY), os.open(netns_path, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise EmulationError(f"cannot enter {netns_path}: {os.strerror(ctypes.get_errno())}")
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:    # never leave this thread in a fabric namespace
                raise OSError(ctypes.get_errno(), "setns back to fabric's own network namespace failed")
    finally:
        os.close(own)
        os.close(target)


def _index(ipr, ifname: str, node: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise EmulationError(f"interface {ifname} is missing in {node}")
    return found[0]


def _apply_op(ipr, op) -> None:
    """One of fabric.events' operations (a link state, a route, a tc operation) through ipr, a
    socket in op.node's namespace; the kernel's refusal as an EmulationError naming the command."""
    from pyroute2.netlink.exceptions import NetlinkError

    from fabric import events
    try:
        idx = _index(ipr, op.dev if isinstance(op, events.Route) else op.intf, op.node)
        if isinstance(op, events.LinkState):
            ipr.link("set", index=idx, state="up" if op.up else "down")
        elif isinstance(op, events.Route):
            net, bits = op.dst.split("/")
            ipr.route("replace", dst=net, dst_len=int(bits), oif=idx, scope=253, proto=3)   # ip route's own: boot
        else:
            _apply(ipr, idx, op.op, op.verb)
    except NetlinkError as exc:
        raise EmulationError(f"{op.text()} failed: {exc.args[-1]} (errno {exc.code})") from None


def _apply(ipr, idx: int, op: tc.Op, verb: str = "add") -> None:
    """One tc operation (fabric.tc) as pyroute2 calls; verb: what it does to what is there (tc.VERBS)."""
    if isinstance(op, tc.Root):
        ipr.tc(verb, "htb", index=idx, handle=tc.handle(0), default=op.default)
    elif isinstance(op, tc.Class):
        ipr.tc(f"{verb}-class", "htb", index=idx, handle=tc.handle(op.minor), parent=op.parent,
               rate=tc.bytes_per_s(op.rate_bps), ceil=tc.bytes_per_s(op.ceil_bps), burst=op.burst, cburst=op.burst,
               quantum=op.quantum)
    elif isinstance(op, tc.Leaf):
        handle, parent = op.minor << 16, tc.handle(op.minor)
        if verb == "delete":
            ipr.tc("del", index=idx, handle=handle, parent=parent)
        elif op.band.netem:
            netem.add(ipr, idx, handle, parent, op.band, command=verb)
        else:
            ipr.tc(verb, "pfifo", index=idx, handle=handle, parent=parent, limit=op.band.limit)
    else:
        ipr.tc(f"{verb}-filter", "u32", index=idx, parent=tc.handle(0), prio=1, protocol=0x0800,
               target=tc.handle(op.minor), keys=[_u32_key(op.field, op.cidr)])


def _u32_key(field: str, cidr: str) -> str:
    """pyroute2's u32 key 'value/mask+offset' for an IPv4 src (offset 12) or dst (16) prefix."""
    addr, bits = cidr.split("/")
    value = int.from_bytes(bytes(int(x) for x in addr.split(".")), "big")
    mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF
    return f"0x{value:08x}/0x{mask:08x}+{12 if field == 'src' else 16}"
