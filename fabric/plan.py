"""The plan: which nodes, links and qdiscs a run builds, as plain data (no root, no kernel).

Topology (what Mininet builds): the profile's topology kind adds its nodes, links and shapers
(fabric/topology/, one file per kind) from the shaping vocabulary here (_add_port, _add_shaper):
  flat      n hosts -- one bridge.
  two_tier  per domain: ranks -- a domain bridge; every domain bridge -- one core bridge
            through the domain's uplink, shared by the domain's ranks.
Every host and every bridge lives in its own network namespace, so nothing touches the
host's root namespace and killing a node's process removes all it held.

Latency semantics (one-way, rank to rank, emulated = real x k):
  * a path inside a domain (or a flat fabric) crosses two shaped hops, rank port egress
    and switch port egress, and has the intra (flat: link) latency, jitter and loss, all
    on the sender's hop (the rank port); the switch port towards the receiver only shapes;
  * a path between domains has the inter latency, jitter and loss, all on the sending
    domain's uplink hop; the core's port towards the receiving domain only shapes.  The
    rank ports classify traffic by the peer's domain (u32 filter), so remote traffic gets
    no intra delay there; both classes share the port's rate (HTB parent class).
  * one netem per direction of a path keeps the profile's jitter distribution exactly (a
    sum of two draws would not be uniform, nor pareto) and pays a netem timer once (the
    software-emulated microVM adds ~0.3 ms per timer).
Rates are per direction: every hop is shaped on the egress of both link ends.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field, replace

from fabric import tc
from fabric.dilation import Dilation
from fabric.profile import LinkClass, Profile

PREFIX = "fab"                 # every kernel object and process a run makes carries fab<run id>
NETWORK = "198.18"             # 198.18.0.0/15 is reserved for benchmarking (RFC 2544)
PREFIX_LEN = 16
MTU = 9000                     # jumbo frames: fewer packets per byte for the host to move
JUMBO_MTU = 65000              # veth's limit is 65535: where a packet's time on the wire is cheap (mtu())
SERIALIZATION_SHARE = 0.05     # a packet's wire time at most this share of the smallest α·β (mtu())
QUANTUM_MAX = 200_000          # above this HTB warns "quantum is big"
NETEM_MIN_LIMIT = 1000         # netem's own default queue length, in packets
INIT_WINDOW = 16 << 20         # bytes a TCP connection may send before its first ACK (route initcwnd)
DEFAULT_MINOR = 0x10           # the HTB class of traffic no filter matches (ARP)
DEST_MINOR = 0x100             # + rank: a rank port's class towards that rank
CPUS = os.cpu_count() or 1     # receive packet steering spreads flows over all of them (rps_setup)
# Run in every node's own namespace: no IPv6 chatter on shaped links, no netfilter on bridged frames,
# and TCP is not what limits a transfer: it keeps its window between iterations (no slow start
# after idle) and its socket buffers cover an emulated bandwidth-delay product many times over
# (with the initial window of the routes, RouteSetup, TCP never probes its way up to the rate).
# A socket starts with its most, 64 MiB, four initial windows: a 65 kB jumbo packet is charged ~128 kB of
# memory, so a 16 MiB window takes ~32 MiB, and at the former 32 MiB start a one-shot all-reduce
# of 16 MiB on 8 ranks (7 windows into each rank at once) had its receivers prune their
# out-of-order queues 6,600 times and TCP resend 15,914 segments (microVM, k = 50 000).
# Every packet a veth passes on waits in its CPU's backlog, one queue per CPU for the whole kernel
# (net.core.netdev_max_backlog, no per-namespace copy), and what overflows it is lost before any
# counter of the fabric's sees it.  At this machine's 5,000 a 16-rank all-to-all (natively, k = 500)
# lost 7,408 packets there; at 100,000 none at 16 and 32 ranks.  A run raises it to this while it
# lasts (fabric.sysctl puts the kernel's value back).
BACKLOG_PACKETS = 100_000
NODE_SETUP = ("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 "
              "net.ipv4.tcp_slow_start_after_idle=0 "
              "net.ipv4.tcp_rmem='4096 67108864 67108864' net.ipv4.tcp_wmem='4096 67108864 67108864'; "
              "for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e $f ] && echo 0 > $f; done")


def router_setup(node: str) -> str:
    """The shell line that makes a routed switch (Node.routed) one: its bridge made here, before
    its ARP settings, so they reach it too; it forwards, answers ARP for what it routes elsewhere,
    and at once (a kernel holds a proxy reply back up to 0.8 s by default, proxy_delay, and a
    namespace has no default of its own to set: in the microVM that put a 1-hop probe's one-way
    p50 at 0.69 s for 25 ms, and collectives at 1.25x their model); it takes packets whose
    source it reaches another way (a detour around a failed link)."""
    return (f"ip link add name {node} type bridge && "
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.proxy_arp=1 net.ipv4.conf.default.proxy_arp=1 "
            "net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.send_redirects=0 && "
            "for f in /proc/sys/net/ipv4/neigh/*/proxy_delay; do echo 0 > $f || exit 1; done")


def frame(mtu: int) -> int:
    """What HTB counts per full packet (Ethernet header, no FCS)."""
    return mtu + 14


FRAME = frame(MTU)


@dataclass(frozen=True)
class RouteSetup:
    """A host's route to the whole fabric with TCP's initial windows raised (initcwnd,
    initrwnd, in segments of the fabric's MSS): under dilation a round trip lasts tens of ms,
    so probing the rate up from TCP's 10 segments took whole iterations, and cubic left slow
    start at about one bandwidth-delay product (measured in the microVM, 8 ranks, k = 50000:
    cwnd stuck at 198 segments, 87 % of the shaped rate; with these windows 98-99 %)."""
    dst: str
    dev: str
    src: str
    window: int             # segments

    def text(self) -> str:
        return (f"ip route replace {self.dst} dev {self.dev} proto kernel scope link src {self.src} "
                f"initcwnd {self.window} initrwnd {self.window}")


def rps_setup(intfs: list[str], cpus: int) -> str:
    """The shell line that makes every CPU steer each flow's packets to one CPU's backlog
    (receive packet steering) on a node's interfaces.  A veth hands a packet to the backlog
    of the CPU that sent it; with two CPUs dequeueing one qdisc, packets of one flow took
    both backlogs and overtook each other, and TCP answered with spurious fast retransmits
    (microVM, 8 ranks: 60-150 out-of-order segments per host per run; none with RPS).
    rps_cpus is only in sysfs, and the node's devices only in a sysfs mounted from its own
    namespace: mounted in a private mount namespace that ends with the command (where /sys
    already is this namespace's, as under `ip netns exec`, the mount fails and /sys serves)."""
    mask = rps_mask(cpus)
    files = " ".join(f"/sys/class/net/{i}/queues/rx-0/rps_cpus" for i in intfs)
    return (f"unshare -m sh -c 'mount -t sysfs fabric /sys 2>/dev/null; "
            f"for f in {files}; do echo {mask} > $f || exit 1; done'")


def rps_mask(cpus: int) -> str:
    """sysfs's CPU mask for CPUs 0..cpus-1: hex, in comma-separated groups of 32 bits."""
    bits = f"{(1 << cpus) - 1:x}"
    groups = []
    while bits:
        groups.insert(0, bits[-8:])
        bits = bits[:-8]
    return ",".join(groups)


# Segmentation offloads off on every fabric interface: with them on, TCP hands the qdiscs
# 64 KiB super-packets, so HTB meters and netem drops whole bursts of MTU-sized packets
# (README, "Offloads", has the measured difference).
OFFLOADS = ("tso", "gso", "gro")


@dataclass(frozen=True)
class Node:
    name: str
    kind: str                   # "host" | "switch"
    rank: int | None = None
    domain: int | None = None   # None for the core switch
    ip: str | None = None
    # a switch that also routes IPv4 between domains (a satellite): its bridge holds an address,
    # it forwards, and answers ARP for the ranks it routes to (proxy ARP), so every rank keeps
    # one on-link route to the whole fabric whatever the topology
    routed: bool = False


@dataclass(frozen=True)
class Link:
    """A veth pair: a_node:a_intf <-> b_node:b_intf, shaped as link_class in both directions."""
    a_node: str
    a_intf: str
    b_node: str
    b_intf: str
    link_class: str
    role: str                   # "port" (rank to its switch) | "uplink" (domain to core) | a kind's own

    @property
    def ends(self) -> tuple[str, str]:
        """Its two ends as Shaper keys (node:intf)."""
        return f"{self.a_node}:{self.a_intf}", f"{self.b_node}:{self.b_intf}"


@dataclass(frozen=True)
class Band:
    """An HTB leaf class and the netem (or fifo) below it."""
    minor: int                  # HTB class minor, written in hex by tc (0x10 is 1:10)
    rate_bps: float             # guaranteed share of the shaper's rate
    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    limit: int = NETEM_MIN_LIMIT
    match: tuple[str, str] | None = None   # ("dst" | "src", cidr) or None for the default band
    keep_order: bool = False    # netem must not reorder under jitter (the link class says reorder: false)
    distribution: str = "uniform"   # of the jitter
    burst_loss: tuple[float, float, float, float] | None = None   # Gilbert-Elliott (p, r, bad, good), an event's

    @property
    def netem(self) -> bool:
        return self.delay_s > 0 or self.jitter_s > 0 or self.loss > 0 or self.burst_loss is not None


@dataclass(frozen=True)
class Shaper:
    """HTB on one interface's egress: one link direction."""
    node: str
    intf: str
    link_class: str
    rate_bps: float
    burst: int                  # bytes
    quantum: int                # bytes
    bands: tuple[Band, ...]
    default_minor: int = DEFAULT_MINOR

    @property
    def key(self) -> str:
        return f"{self.node}:{self.intf}"

    def band_to(self, ip: str) -> Band:
        """The band a packet to `ip` takes: the one whose filter matches it, else the default."""
        for b in self.bands:
            if b.match and _contains(b.match[1], ip):
                return b
        return next(b for b in self.bands if b.minor == self.default_minor)

    def ops(self) -> list[tc.Op]:
        """The tc operations that build this shaper, in order (fabric.tc renders and applies them)."""
        out: list[tc.Op] = [tc.Root(self.default_minor),
                            tc.Class(1, 0x10000, self.rate_bps, self.rate_bps, self.burst, self.quantum)]
        for b in self.bands:
            out += [tc.Class(b.minor, tc.handle(1), b.rate_bps, self.rate_bps, self.burst, self.quantum),
                    tc.Leaf(b.minor, b)]
            if b.match:
                out.append(tc.Filter(b.match[0], b.match[1], b.minor))
        return out


@functools.lru_cache(maxsize=1 << 16)     # the model asks for every pair's path: 4,032 at 64 ranks
def _contains(cidr: str, ip: str) -> bool:
    addr, bits = cidr.split("/")
    mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF
    return _ip4(addr) & mask == _ip4(ip) & mask


def _ip4(text: str) -> int:
    return int.from_bytes(bytes(int(x) for x in text.split(".")), "big")


@dataclass
class Plan:
    profile: Profile
    run_id: str
    scale: float
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    shapers: dict[str, Shaper] = field(default_factory=dict)
    mtu: int = MTU
    addresses: dict[str, list[tuple[str, str]]] = field(default_factory=dict)   # routed node -> (dev, cidr)
    routes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)      # routed node -> (dst cidr, dev)

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.run_id}"

    @property
    def dilation(self) -> Dilation:
        return Dilation(self.scale)

    @property
    def hosts(self) -> list[Node]:
        return sorted((n for n in self.nodes if n.kind == "host"), key=lambda n: n.rank)

    @property
    def switches(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "switch"]

    @property
    def ranks(self) -> int:
        return self.profile.topology.ranks

    @property
    def needs_netem(self) -> bool:
        return any(b.netem for s in self.shapers.values() for b in s.bands) or \
            any(e.needs_netem for e in self.profile.events)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def host_intf(self, rank: int) -> str:
        return f"{self.prefix}r{rank}"

    def ip(self, rank: int) -> str:
        topo = self.profile.topology
        return f"{NETWORK}.{topo.domain_of(rank)}.{rank % topo.ranks_per_domain + 1}"

    def route(self, rank: int, dst: str = f"{NETWORK}.0.0/{PREFIX_LEN}", dev: str | None = None) -> RouteSetup:
        """rank's route to dst (default: the whole fabric) through dev (default: its port)."""
        mss = self.mtu - 52          # IPv4 and TCP headers with timestamps
        return RouteSetup(dst, dev or self.host_intf(rank), self.ip(rank), math.ceil(INIT_WINDOW / mss))

    def host_routes(self, rank: int) -> list[RouteSetup]:
        """rank's routes, in the order they are set (its topology's: one to the whole fabric on
        its port, unless its host has several)."""
        return self.profile.topology.host_routes(self, rank)

    def interfaces(self, node: str) -> list[str]:
        """node's fabric interfaces (its veth ends)."""
        return [intf for link in self.links for n, intf in ((link.a_node, link.a_intf), (link.b_node, link.b_intf))
                if n == node]

    def bridged(self, node: str) -> list[str]:
        """A switch's interfaces that are ports of its bridge: all, but a routed switch's links to
        other routers (they are routed, not bridged)."""
        routed = self.node(node).routed
        return [intf for link in self.links if not (routed and link.role != "port")
                for n, intf in ((link.a_node, link.a_intf), (link.b_node, link.b_intf)) if n == node]

    def emulated(self, link: LinkClass) -> LinkClass:
        """A link class as emulated (fabric.dilation)."""
        return self.dilation.link(link)

    def size_text(self) -> str:
        """What building this plan makes, for the log."""
        return (f"{self.ranks} hosts, {len(self.switches)} bridges, {len(self.shapers)} shaped link directions "
                f"({self.prefix})")

    def node_setup(self, node: str) -> list[str]:
        """The shell lines run in node's namespace once its interfaces exist: its sysctls
        (NODE_SETUP, whose failure on a kernel without a key is not fatal), then segmentation
        offloads off and receive packet steering on its interfaces (these must succeed)."""
        off = " ".join(f"{o} off" for o in OFFLOADS)
        return ([NODE_SETUP] + [f"ethtool -K {intf} {off}" for intf in self.offloads_off(node)] +
                [rps_setup(self.interfaces(node), CPUS)] + ([router_setup(node)] if self.node(node).routed else []))

    def offloads_off(self, node: str) -> list[str]:
        """node's interfaces whose segmentation offloads fabric turns off (all, unless the link
        class says offloads: true)."""
        return [intf for link in self.links if not self.profile.links[link.link_class].offloads
                for n, intf in ((link.a_node, link.a_intf), (link.b_node, link.b_intf)) if n == node]

    # ---- paths, for the α-β model and for probes ---------------------------------------
    def path(self, src: int, dst: int) -> list[tuple[Shaper, Band]]:
        """The shaped hops a packet from rank src to rank dst crosses, in order (its topology's)."""
        return self.profile.topology.path(self, src, dst)

    def path_latency(self, src: int, dst: int) -> float:
        return sum(b.delay_s for _, b in self.path(src, dst))

    # ---- the exact commands ---------------------------------------------------------
    def commands(self) -> list[str]:
        """What the emulation applies, as Mininet-CLI-style lines: `<node> <command>`."""
        from fabric.events import Route
        lines = [f"host sysctl -w net.core.netdev_max_backlog={BACKLOG_PACKETS}   # where lower; put back after"]
        for link in self.links:
            lines.append(f"{link.a_node} ip link add name {link.a_intf} mtu {self.mtu} type veth "
                         f"peer name {link.b_intf} mtu {self.mtu} netns <{link.b_node}>")
        for node in self.nodes:
            lines += [f"{node.name} {line}" for line in self.node_setup(node.name)]
            lines.append(f"{node.name} ip link set lo up")
        for node in self.hosts:
            lines.append(f"{node.name} ip addr add {node.ip}/{PREFIX_LEN} dev {self.host_intf(node.rank)}")
            lines += [f"{node.name} ip link set {intf} up" for intf in self.interfaces(node.name)]
            lines += [f"{node.name} {r.text()}" for r in self.host_routes(node.rank)]
        for sw in self.switches:
            if not sw.routed:                    # a routed one's is made by its set-up line (router_setup)
                lines.append(f"{sw.name} ip link add name {sw.name} type bridge")
            for intf in self.interfaces(sw.name):
                lines.append(f"{sw.name} ip link set {intf} " + ("master {sw.name} up" if intf in self.bridged(sw.name)
                                                                  else "up").format(sw=sw))
            lines.append(f"{sw.name} ip link set {sw.name} mtu {self.mtu} up")
            lines += [f"{sw.name} ip addr add {cidr} dev {dev}" for dev, cidr in self.addresses.get(sw.name, [])]
            lines += [Route(sw.name, dst, dev).text() for dst, dev in self.routes.get(sw.name, [])]
        for s in self.shapers.values():
            lines.extend(f"{s.node} {tc.text(op, s.intf)}" for op in s.ops())
        return lines


def flow_control(link: LinkClass) -> str:
    """How a link class's switch queues treat a burst, in words (fabric plan, the run's table)."""
    buffer = lossy_buffer(link)
    if buffer is None:
        return "lossless (switch queues hold every window)"
    how = "its buffer" if link.buffer_bytes else "one bandwidth-delay product"
    return f"lossy (drop-tail switch queues of {buffer:,} B beyond the wire: {how})"


# ---------------------------------------------------------------------------------------
# Building a plan from a profile

def shaping(rate_bps: float, frame_bytes: int = FRAME) -> tuple[int, int]:
    """(burst, quantum) in bytes: about 1 ms of data, never less than one full frame.  HTB
    sends a packet whenever its bucket is not empty (the tokens may go below zero), so a
    burst below two frames costs no rate; each byte of burst is one that leaves at once after
    an idle spell, a time the α-β model does not give away."""
    burst = max(math.ceil(rate_bps / 8 * 1e-3), frame_bytes)
    return burst, min(max(burst, frame_bytes), QUANTUM_MAX)


def queue_limit(rate_bps: float, delay_s: float, jitter_s: float, frame_bytes: int = FRAME,
                connections: int = 4, buffer_bytes: int | None = None) -> int:
    """Queue length in packets.  Lossless (buffer_bytes None): twice the bandwidth-delay product
    (delay + 4 sigma) or what TCP's initial window of every connection through it can put there
    at once (at least 4), at least netem's default: no fabric queue drops what the senders'
    windows allow.  A rank's receiving port carries a connection from every other rank: a
    one-shot all-reduce of 16 MiB on 8 ranks put 7 windows of 16 MiB into it at once, and with
    room for 4 the kernel dropped 197 packets there and TCP resent 7,745 segments (113
    timeouts): 1.72x its model (microVM, k = 50 000; 2.6-3.0x in the benchmark).
    Lossy (a switch port of a drop-tail link class): what is on the wire (netem holds it in its
    delay line, and counts it against its limit) plus buffer_bytes, at least two frames; a
    packet beyond that is dropped, as a shallow-buffered Ethernet switch does under incast."""
    bdp = rate_bps / 8 * (delay_s + 4 * jitter_s)
    if buffer_bytes is not None:
        return math.ceil(bdp / frame_bytes) + max(2, math.ceil(buffer_bytes / frame_bytes))
    windows = max(4, connections) * INIT_WINDOW
    return max(NETEM_MIN_LIMIT, math.ceil(2 * bdp / frame_bytes), math.ceil(windows / frame_bytes))


def lossy_buffer(link: LinkClass) -> int | None:
    """A switch port's queue beyond the wire, in bytes, for a lossy link class (None: lossless):
    the link class's `buffer`, else one bandwidth-delay product of a round trip across it
    (rate x 2 x latency), the rule of thumb for a drop-tail router buffer (docs/sources.md,
    "Lossless and lossy links").  The same in real and in emulated numbers (rate / k x latency x k)."""
    if link.lossless:
        return None
    return link.buffer_bytes or math.ceil(link.rate_bps / 8 * 2 * link.latency_s)


def mtu(profile: Profile) -> int:
    """The fabric's MTU: jumbo (JUMBO_MTU) where one packet's wire time stays below
    SERIALIZATION_SHARE of the smallest latency x rate of a used link class, else 9000, and
    9000 wherever a link loses packets, from the start or by an event (loss is per packet).
    Fewer, larger packets cost the host less per byte: in the microVM an 8-rank all-to-all (512
    KiB per pair, k = 50000) took 1.31-1.44x its model at MTU 9000 and 1.14-1.21x at 65000.  A
    shaper lets a packet leave as soon as its bucket holds any token, so a message's first
    packet crosses without its wire time: at most one packet's, which the rule keeps small next
    to α·β."""
    links = [profile.link(n) for n in profile.used_links()]
    if any(l.loss for l in links) or any(getattr(s, "loss", 0) for s in profile.stragglers) or \
            any(e.loss or e.burst_loss for e in profile.events):
        return MTU
    smallest = min(l.latency_s * l.rate_bps / 8 for l in links)
    return max(MTU, min(JUMBO_MTU, int(SERIALIZATION_SHARE * smallest) // 1000 * 1000))


def build(profile: Profile, scale: float, run_id: str = "0000") -> Plan:
    plan = Plan(profile=profile, run_id=run_id, scale=scale, mtu=mtu(profile))
    profile.topology.build(plan)
    return plan


def _slowed(plan: Plan, link: LinkClass, slow) -> tuple[LinkClass, LinkClass, LinkClass | None]:
    """Emulated (sending hop, receiving hop, extra impairment) of one link, made worse by a
    straggler's SlowLink: the rate drops both ways; the extra latency, jitter and loss are
    added to the sending hop's and also put on the receiving hop, so paths both into and out
    of the slow link get them once."""
    if slow is None:
        return plan.emulated(link), plan.emulated(replace(link, latency_s=0, jitter_s=0, loss=0)), None
    rate = link.rate_bps * slow.rate_factor
    extra = replace(link, rate_bps=rate, latency_s=slow.extra_latency_s, jitter_s=slow.extra_jitter_s, loss=slow.loss)
    out = replace(link, rate_bps=rate, latency_s=link.latency_s + slow.extra_latency_s,
                  jitter_s=math.hypot(link.jitter_s, slow.extra_jitter_s), loss=1 - (1 - link.loss) * (1 - slow.loss))
    return plan.emulated(out), plan.emulated(extra), plan.emulated(extra) if extra.impaired else None


def _band(minor: int, rate_bps: float, link: LinkClass, frame_bytes: int, impair: LinkClass | None,
          match: tuple[str, str] | None = None, connections: int = 1, buffer_bytes: int | None = None) -> Band:
    """One HTB class and its leaf: netem with `impair`'s latency, jitter and loss, or a pfifo;
    its queue drop-tail beyond `buffer_bytes` (a lossy switch port) or holding every window."""
    i = impair or replace(link, latency_s=0, jitter_s=0, loss=0)
    return Band(minor, rate_bps, i.latency_s, i.jitter_s, i.loss,
                queue_limit(link.rate_bps, i.latency_s, i.jitter_s, frame_bytes, connections, buffer_bytes),
                match=match, keep_order=not link.reorder, distribution=link.distribution)


def _add_port(plan: Plan, rank: int, link: LinkClass, remote: LinkClass | None) -> None:
    """A rank's port: one HTB class per destination rank (a virtual output queue, as switches
    and NICs keep one per destination), all sharing the port's rate.  With a single queue, the
    messages a rank sends to many peers at once (an all-to-all's n-1) left the port one after
    another, so their receivers were served in turn and idled in turn: 8-rank all-to-all
    1.57-1.66x its model in the microVM; with a class per destination, HTB's round robin
    interleaves them packet by packet (1.17-1.18x, the rest being the host's CPU).  A class to
    the own domain carries the intra latency, jitter and loss; one to another domain none (its
    latency is on the uplinks) unless `remote` (a slow link's extra impairment) says so."""
    topo = plan.profile.topology
    local = link if link.impaired else None
    add_rank_port(plan, rank, plan.host_intf(rank), link,
                  {d: local if topo.domain_of(d) == topo.domain_of(rank) else remote for d in range(topo.ranks) if d != rank})


def add_rank_port(plan: Plan, rank: int, intf: str, link: LinkClass, peers: dict[int, LinkClass | None]) -> None:
    """A port of rank's host on intf (its only one, or one of several: a rail's NIC), shaped at
    link's rate with one class per peer it reaches there (_add_port says why), each with the
    impairment given (None: none)."""
    f = frame(plan.mtu)
    burst, quantum = shaping(link.rate_bps, f)
    share = link.rate_bps / (len(peers) + 1)    # children's guarantees fit the parent
    bands = [_band(DEFAULT_MINOR, share, link, f, None)]
    bands += [_band(DEST_MINOR + d, share, link, f, impair, match=("dst", f"{plan.ip(d)}/32"))
              for d, impair in sorted(peers.items())]
    node = f"{plan.prefix}h{rank}"
    plan.shapers[f"{node}:{intf}"] = Shaper(node, intf, link.name, link.rate_bps, burst, quantum, tuple(bands))


def _add_shaper(plan: Plan, node: str, intf: str, link: LinkClass, impaired: bool = True,
                connections: int = 1, buffer_bytes: int | None = None) -> None:
    """One switch port's egress shaper with a single class at the link class's rate; `impaired`:
    its netem adds the link class's latency, jitter and loss (the sending side of a path);
    `connections`: how many rank pairs' connections cross it (a lossless queue holds all their
    windows); `buffer_bytes`: a lossy link class's buffer (lossy_buffer), drop-tail beyond it.
    A rank's own port (_add_port) is a host's queue, which holds what its sockets send on either
    kind of link (TCP small queues)."""
    f = frame(plan.mtu)
    burst, quantum = shaping(link.rate_bps, f)
    band = _band(DEFAULT_MINOR, link.rate_bps, link, f, link if impaired and link.impaired else None,
                 connections=connections, buffer_bytes=buffer_bytes)
    plan.shapers[f"{node}:{intf}"] = Shaper(node, intf, link.name, link.rate_bps, burst, quantum, (band,))
