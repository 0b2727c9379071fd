"""fabric verify: the commands `fabric plan` prints build what the emulation builds.

The emulation applies its plan through netlink (pyroute2); `fabric plan` prints the same plan
as ip/tc command lines for people to read and run.  verify builds the profile's fabric, then
runs those printed lines themselves, with iproute2, in a second set of namespaces (the same
plan under another run id), and compares what the kernel holds in each: every node's links
(name, kind, MTU, up, bridge), addresses, routes (with their metrics), qdiscs, HTB classes and
u32 filters, as netlink dumps them, counters and kernel-chosen numbers (indexes, MAC
addresses, pointers) left out.  A difference is a printed command that does not say what the
emulation did.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fabric import cleanup
from fabric.plan import Plan

LINE_TIMEOUT_S = 600            # one node's printed lines (a 72-rank plan's node: ~430 tc lines)
HOST_WIDE = "host "             # plan.commands' lines for the host itself, not a node (the backlog sysctl)
# netlink attributes that are counters, or numbers the kernel picks (not what a command said)
_VOLATILE_ATTRS = {"TCA_STATS", "TCA_STATS2", "TCA_XSTATS", "TCA_STATS_APP", "TCA_CHAIN", "TCA_HW_OFFLOAD",
                   "IFLA_STATS", "IFLA_STATS64", "IFLA_AF_SPEC", "IFLA_ADDRESS", "IFLA_BROADCAST",
                   "IFLA_PERM_ADDRESS", "IFLA_LINK", "IFLA_LINK_NETNSID", "IFLA_XDP", "IFLA_MAP",
                   "IFLA_CARRIER_CHANGES", "IFLA_CARRIER_UP_COUNT", "IFLA_CARRIER_DOWN_COUNT",
                   "IFLA_PROTO_DOWN", "IFLA_OPERSTATE", "IFLA_CARRIER", "IFLA_QDISC", "IFLA_EVENT",
                   "IFLA_NEW_NETNSID", "IFLA_NEW_IFINDEX", "IFLA_NUM_TX_QUEUES", "IFLA_NUM_RX_QUEUES",
                   "IFA_CACHEINFO", "RTA_CACHEINFO", "UNKNOWN"}
_BRIDGE_RUNTIME = ("IFLA_BR_BRIDGE_ID", "IFLA_BR_ROOT_", "IFLA_BR_TOPOLOGY_CHANGE", "IFLA_BRPORT_BRIDGE_ID",
                   "IFLA_BRPORT_ROOT_ID", "IFLA_BRPORT_DESIGNATED_", "IFLA_BRPORT_STATE", "IFLA_BRPORT_CONFIG_PENDING",
                   "IFLA_BRPORT_TOPOLOGY_CHANGE_ACK")
# what the kernel counts as traffic passes (a bridge port's multicast groups joined, as hosts
# bring their addresses up, in a different order in each build) and its timers
_RUNTIME_SUFFIXES = ("_TIMER", "_CNT", "_N_GROUPS", "_N_LEARNED", "_QUERIER_STATE")
_RUNTIME_FLAGS = 0x40 | 0x10000 | 0x20000      # IFF_RUNNING, IFF_LOWER_UP, IFF_DORMANT: the kernel's
# RTNH_F_DEAD, RTNH_F_LINKDOWN: a route's link without carrier when dumped (the kernel's link
# watch passes a veth's carrier on up to a second after both ends are up)
_ROUTE_RUNTIME_FLAGS = 0x1 | 0x10
_VOLATILE_FIELDS = {"header", "index", "ifi_change", "change", "ifi_index", "event"}


class VerifyError(RuntimeError):
    """A printed line that the kernel refused (node, line, its message)."""


@dataclass(frozen=True)
class Difference:
    node: str            # the node's name without its run id (fab*h0)
    what: str            # links | addresses | routes | qdiscs | classes | filters
    built: tuple         # what the emulation's namespace holds and the replay's does not
    printed: tuple       # what the printed commands made and the emulation did not

    def text(self) -> str:
        head = f"{self.node} {self.what}: {len(self.built)} in the build only, {len(self.printed)} from the printed only"
        if self.built and self.printed:
            a, b = _apart(self.built[0], self.printed[0])
            return f"{head}; the first differ at: build {a} / printed {b}"
        return f"{head}: {(self.built or self.printed)[0][:240]}"


def _apart(a: str, b: str, context: int = 60) -> tuple[str, str]:
    """Where two canonical items differ, with some context on either side."""
    start = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    lo = max(0, start - context)
    return a[lo:len(a) - end + 20], b[lo:len(b) - end + 20]


MARK = "@fabric-line "          # a node script says on stderr which printed line runs next


@dataclass(frozen=True)
class NodeScript:
    """One node's printed lines after its veths, as one shell script; lines[i] is what MARK i names."""
    node: str
    lines: list[str]

    def text(self) -> str:
        out, batch, first = ["set -e"], [], 0

        def flush():
            if batch:
                out.append(f"echo '{MARK}{first}' >&2")
                out.append("tc -batch - <<'FABRIC_TC'\n" + "\n".join(x[3:] for x in batch) + "\nFABRIC_TC")
                batch.clear()
        for i, line in enumerate(self.lines):
            if line.startswith("tc "):
                if not batch:
                    first = i          # MARK names the batch by its first line's index
                batch.append(line)
                continue
            flush()
            out += [f"echo '{MARK}{i}' >&2", line]
        flush()
        return "\n".join(out) + "\n"

    def failed_line(self, stderr: str) -> str:
        """The printed line a failed run of text() stopped at, from its stderr."""
        marks = [int(x.split(MARK, 1)[1]) for x in stderr.splitlines() if x.startswith(MARK)]
        if not marks:
            return ""
        i = marks[-1]
        if self.lines[i].startswith("tc "):   # tc -batch: "Command failed -:N", N counting from the batch's first
            said = [x for x in stderr.splitlines() if x.startswith("Command failed -:")]
            if said:
                i += int(said[-1].rsplit(":", 1)[1]) - 1
        return self.lines[i]


def node_scripts(plan: Plan) -> tuple[dict[str, list[str]], dict[str, NodeScript]]:
    """plan.commands() split into ({node: its veth lines}, {node: a NodeScript of its other
    lines}): the veth lines run first (a peer goes into another node's namespace, which must
    exist, and its later lines need it); a node's tc lines run through `tc -batch`."""
    veths: dict[str, list[str]] = {}
    lines: dict[str, list[str]] = {}
    for line in plan.commands():
        if line.startswith(HOST_WIDE):
            continue
        node, command = line.split(" ", 1)
        lines.setdefault(node, [])
        if command.startswith("ip link add ") and " type veth " in command:
            veths.setdefault(node, []).append(command.replace("netns <", "netns ").rstrip(">"))
        else:
            lines[node].append(command)
    return veths, {node: NodeScript(node, mine) for node, mine in lines.items()}


@contextlib.contextmanager
def replay(plan: Plan, jobs: int | None = None):
    """The plan's printed commands run in namespaces named after its nodes (/run/netns); the
    names are removed (and with them everything the commands made) when the block ends."""
    names = [n.name for n in plan.nodes]
    try:
        _run(["sh", "-ec", "".join(f"ip netns add {shlex.quote(n)}\n" for n in names)], "ip netns add")
        veths, scripts = node_scripts(plan)
        for node, lines in veths.items():
            _run(["ip", "-n", node, "-batch", "-"], node, stdin="\n".join(x[3:] for x in lines) + "\n")
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            for failure in pool.map(_try, scripts.values()):
                if failure:
                    raise failure
        yield names
    finally:
        cleanup.remove(plan.prefix)


def _try(script: NodeScript) -> VerifyError | None:
    try:
        _run(["ip", "netns", "exec", script.node, "sh", "-s"], script.node, script.text(), script)
    except VerifyError as exc:
        return exc
    return None


def _run(argv: list[str], node: str, stdin: str | None = None, script: NodeScript | None = None) -> None:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=LINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VerifyError(f"{node}: its printed commands did not finish within {LINE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        said = [x for x in (done.stderr or done.stdout).splitlines() if x.strip() and not x.startswith(MARK)]
        line = script.failed_line(done.stderr) if script else ""
        why = said[0] if said else f"exit code {done.returncode}"
        raise VerifyError(f"{node}: the printed command {line!r} failed: {why[:300]}" if line else
                          f"{node}: a printed command failed: {why[:300]}")


def state(netns_path: str, prefix: str) -> dict[str, list]:
    """What the kernel holds in one namespace, by kind, each item a canonical string: indexes
    turned into interface names, the run id `prefix` into fab*, counters left out."""
    from pyroute2 import IPRoute

    from fabric.emulation import _netlink_socket
    with IPRoute(fileno=_netlink_socket(netns_path).detach()) as ipr:
        links = list(ipr.get_links())
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in links}
        out = {"links": [_canon(m, names, prefix) for m in links],
               "addresses": [_canon(m, names, prefix) for m in ipr.get_addr()],
               "routes": [_canon(m, names, prefix) for m in ipr.get_routes(table=254)],
               "qdiscs": [], "classes": [], "filters": []}
        for index in names:
            out["qdiscs"] += [_canon(m, names, prefix) for m in ipr.get_qdiscs(index=index)]
            out["classes"] += [_canon(m, names, prefix) for m in ipr.get_classes(index=index)]
            out["filters"] += [_canon(m, names, prefix) for m in ipr.get_filters(index=index, parent=0x10000)]
    return {kind: sorted(items) for kind, items in out.items()}


def _canon(msg, names: dict[int, str], prefix: str) -> str:
    dump = msg.dump()
    fields = {k: v for k, v in dump.items() if k not in _VOLATILE_FIELDS and k != "attrs"}
    if "flags" in fields and "ifi_type" in fields:      # a link: what was set, not carrier and running
        fields["flags"] &= ~_RUNTIME_FLAGS
    elif "flags" in fields and "dst_len" in fields:     # a route: not whether its link had carrier yet
        fields["flags"] &= ~_ROUTE_RUNTIME_FLAGS
    if "index" in dump:
        fields["dev"] = names.get(dump["index"], dump["index"])
    fields["attrs"] = _attrs(dump.get("attrs", []), names)
    return repr(fields).replace(prefix, "fab*")


def _volatile(name: str) -> bool:
    """Counters, timers and what the bridge's spanning-tree machinery derives from random MACs
    (a configured count, such as IFLA_BR_MCAST_LAST_MEMBER_CNT, goes with them: both builds
    leave it at the kernel's default)."""
    return (name in _VOLATILE_ATTRS or name.endswith(_RUNTIME_SUFFIXES) or name.startswith(_BRIDGE_RUNTIME))


def _attrs(attrs, names):
    out = []
    for name, value in attrs:
        if _volatile(name):
            continue
        if name == "TCA_HTB_INIT":
            value = {k: v for k, v in value.items() if k != "direct_pkts"}     # a counter
        if name in ("IFLA_MASTER", "RTA_OIF", "IFA_INDEX"):
            value = names.get(value, value)
        elif isinstance(value, dict) and "attrs" in value:
            value = _attrs(value["attrs"], names)
        out.append((name, value))
    return out


def compare(built: dict[str, dict], printed: dict[str, dict]) -> list[Difference]:
    """Differences between two {node without run id: state()} maps."""
    out = []
    for node in sorted(set(built) | set(printed)):
        a, b = built.get(node, {}), printed.get(node, {})
        for what in ("links", "addresses", "routes", "qdiscs", "classes", "filters"):
            left, right = list(a.get(what, [])), list(b.get(what, []))
            only_a = [x for x in left if x not in right or right.remove(x)]
            if only_a or right:
                out.append(Difference(node, what, tuple(only_a), tuple(right)))
    return out


@dataclass(frozen=True)
class Verdict:
    nodes: int
    commands: int
    counts: dict[str, int]
    differences: list[Difference]


def verify(emu, replica: Plan) -> Verdict:
    """Compare the running emulation `emu` with `replica` (the same profile's plan under another
    run id) built from its printed commands."""
    prefix = emu.plan.prefix
    built = {n.name.replace(prefix, "fab*"): state(emu.netns(n.name), prefix) for n in emu.plan.nodes}
    with replay(replica):
        printed = {n.name.replace(replica.prefix, "fab*"): state(f"{cleanup.NETNS_DIR}/{n.name}", replica.prefix)
                   for n in replica.nodes}
    counts = {what: sum(len(s[what]) for s in built.values())
              for what in ("links", "addresses", "routes", "qdiscs", "classes", "filters")}
    counts["netem"] = sum("('TCA_KIND', 'netem')" in q for s in built.values() for q in s["qdiscs"])
    commands = sum(1 for line in replica.commands() if not line.startswith(HOST_WIDE))
    return Verdict(len(built), commands, counts, compare(built, printed))
