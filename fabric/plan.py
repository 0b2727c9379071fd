"""The plan: which nodes, links and qdiscs a run builds, as plain data (no root, no kernel).

Topology (what Mininet builds):
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

import math
from dataclasses import dataclass, field, replace

from fabric import netem
from fabric.profile import LinkClass, Profile

PREFIX = "fab"                 # every kernel object and process a run makes carries fab<run id>
NETWORK = "198.18"             # 198.18.0.0/15 is reserved for benchmarking (RFC 2544)
PREFIX_LEN = 16
MTU = 9000                     # jumbo frames: fewer packets per byte for the host to move
FRAME = MTU + 14               # what HTB counts per full packet (Ethernet header, no FCS)
QUANTUM_MAX = 200_000          # above this HTB warns "quantum is big"
NETEM_MIN_LIMIT = 1000         # netem's own default queue length, in packets
# Run in every node's own namespace: no IPv6 chatter on shaped links, no netfilter on bridged frames,
# and TCP is not what limits a transfer: it keeps its window between iterations (no slow start
# after idle) and starts with socket buffers that cover an emulated bandwidth-delay product.
NODE_SETUP = ("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 "
              "net.ipv4.tcp_slow_start_after_idle=0 "
              "net.ipv4.tcp_rmem='4096 4194304 33554432' net.ipv4.tcp_wmem='4096 4194304 33554432'; "
              "for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e $f ] && echo 0 > $f; done")


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


@dataclass(frozen=True)
class Link:
    """A veth pair: a_node:a_intf <-> b_node:b_intf, shaped as link_class in both directions."""
    a_node: str
    a_intf: str
    b_node: str
    b_intf: str
    link_class: str
    role: str                   # "port" (rank to its switch) | "uplink" (domain to core)


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

    @property
    def netem(self) -> bool:
        return self.delay_s > 0 or self.jitter_s > 0 or self.loss > 0


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
    default_minor: int = 0x10

    @property
    def key(self) -> str:
        return f"{self.node}:{self.intf}"


@dataclass
class Plan:
    profile: Profile
    run_id: str
    scale: float
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    shapers: dict[str, Shaper] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.run_id}"

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
        return any(b.netem for s in self.shapers.values() for b in s.bands)

    def host_intf(self, rank: int) -> str:
        return f"{self.prefix}r{rank}"

    def emulated(self, link: LinkClass) -> LinkClass:
        """A link class as emulated: rate / k, times x k."""
        k = self.scale
        return replace(link, rate_bps=link.rate_bps / k, latency_s=link.latency_s * k, jitter_s=link.jitter_s * k)

    def offloads_off(self, node: str) -> list[str]:
        """node's interfaces whose segmentation offloads fabric turns off (all, unless the link
        class says offloads: true)."""
        return [intf for link in self.links if not self.profile.links[link.link_class].offloads
                for n, intf in ((link.a_node, link.a_intf), (link.b_node, link.b_intf)) if n == node]

    # ---- paths, for the α-β model and for probes ---------------------------------------
    def path(self, src: int, dst: int) -> list[tuple[Shaper, Band]]:
        """The shaped hops a packet from rank src to rank dst crosses, in order."""
        topo = self.profile.topology
        ds, dd = topo.domain_of(src), topo.domain_of(dst)
        local = ds == dd
        out = self.shapers[f"{self.prefix}h{src}:{self.host_intf(src)}"]
        into = self.shapers[f"{self._switch(dd)}:{self.prefix}p{dst}"]
        hops = [(out, _band(out, local))]
        if not local:
            for key in (f"{self._switch(ds)}:{self.prefix}u{ds}", f"{self.prefix}core:{self.prefix}d{dd}"):
                s = self.shapers[key]
                hops.append((s, s.bands[0]))
        hops.append((into, _band(into, local)))
        return hops

    def path_latency(self, src: int, dst: int) -> float:
        return sum(b.delay_s for _, b in self.path(src, dst))

    def _switch(self, domain: int) -> str:
        return f"{self.prefix}s{domain}"

    # ---- the exact commands ---------------------------------------------------------
    def commands(self) -> list[str]:
        """What the emulation applies, as Mininet-CLI-style lines: `<node> <command>`."""
        lines = [f"{node.name} {NODE_SETUP}" for node in self.nodes]
        off = " ".join(f"{o} off" for o in OFFLOADS)
        for link in self.links:
            lines.append(f"{link.a_node} ip link add name {link.a_intf} mtu {MTU} type veth "
                         f"peer name {link.b_intf} mtu {MTU} netns <{link.b_node}>")
        for node in self.nodes:
            lines += [f"{node.name} ethtool -K {intf} {off}" for intf in self.offloads_off(node.name)]
        for node in self.hosts:
            lines.append(f"{node.name} ip addr add {node.ip}/{PREFIX_LEN} dev {self.host_intf(node.rank)}")
            lines.append(f"{node.name} ip link set {self.host_intf(node.rank)} up")
        for sw in self.switches:
            lines.append(f"{sw.name} ip link add name {sw.name} type bridge")
            for link in self.links:
                for node, intf in ((link.a_node, link.a_intf), (link.b_node, link.b_intf)):
                    if node == sw.name:
                        lines.append(f"{sw.name} ip link set {intf} master {sw.name} up")
            lines.append(f"{sw.name} ip link set {sw.name} up")
        for s in self.shapers.values():
            lines.extend(f"{s.node} {c}" for c in tc_commands(s))
        return lines


def _band(shaper: Shaper, local: bool) -> Band:
    if len(shaper.bands) == 1:
        return shaper.bands[0]
    return shaper.bands[0] if local else shaper.bands[1]


def tc_commands(s: Shaper) -> list[str]:
    """The tc commands for one shaper; the emulation sends the same objects via netlink."""
    dev = f"dev {s.intf}"
    out = [f"tc qdisc add {dev} root handle 1: htb default {s.default_minor:x}",
           f"tc class add {dev} parent 1: classid 1:1 htb rate {_kbit(s.rate_bps)} ceil {_kbit(s.rate_bps)} "
           f"burst {s.burst}b cburst {s.burst}b quantum {s.quantum}"]
    for b in s.bands:
        out.append(f"tc class add {dev} parent 1:1 classid 1:{b.minor:x} htb rate {_kbit(b.rate_bps)} "
                   f"ceil {_kbit(s.rate_bps)} burst {s.burst}b cburst {s.burst}b quantum {s.quantum}")
        if b.netem:
            out.append(f"tc qdisc add {dev} parent 1:{b.minor:x} handle {b.minor:x}: "
                       + netem.command(b))
        else:
            out.append(f"tc qdisc add {dev} parent 1:{b.minor:x} handle {b.minor:x}: pfifo limit {b.limit}")
        if b.match:
            fld, cidr = b.match
            out.append(f"tc filter add {dev} parent 1: protocol ip prio 1 u32 match ip {fld} {cidr} "
                       f"flowid 1:{b.minor:x}")
    return out


def _kbit(bps: float) -> str:
    return f"{max(1, round(bps / 1000))}kbit"


# ---------------------------------------------------------------------------------------
# Building a plan from a profile

def shaping(rate_bps: float) -> tuple[int, int]:
    """(burst, quantum) in bytes: about 1 ms of data, never less than two full frames."""
    burst = max(math.ceil(rate_bps / 8 * 1e-3), 2 * FRAME)
    return burst, min(max(burst, FRAME), QUANTUM_MAX)


def queue_limit(rate_bps: float, delay_s: float, jitter_s: float) -> int:
    """netem limit in packets: twice the bandwidth-delay product (delay + 4 sigma), at least netem's default."""
    bdp = rate_bps / 8 * (delay_s + 4 * jitter_s)
    return max(NETEM_MIN_LIMIT, math.ceil(2 * bdp / FRAME))


def build(profile: Profile, scale: float, run_id: str = "0000") -> Plan:
    plan = Plan(profile=profile, run_id=run_id, scale=scale)
    topo, p = profile.topology, plan.prefix
    two_tier = topo.kind == "two_tier" and topo.domains > 1
    for d in range(topo.domains):
        plan.nodes.append(Node(f"{p}s{d}", "switch", domain=d))
    for r in range(topo.ranks):
        d = topo.domain_of(r)
        plan.nodes.append(Node(f"{p}h{r}", "host", rank=r, domain=d,
                               ip=f"{NETWORK}.{d}.{r % topo.ranks_per_domain + 1}"))
        plan.links.append(Link(f"{p}h{r}", plan.host_intf(r), f"{p}s{d}", f"{p}p{r}", topo.intra, "port"))
        out, into, extra = _slowed(plan, profile.link(topo.intra), profile.slow_link("rank", r))
        _add_shaper(plan, f"{p}h{r}", plan.host_intf(r), out, local=f"{NETWORK}.{d}.0/24" if two_tier else None,
                    remote=extra)
        _add_shaper(plan, f"{p}s{d}", f"{p}p{r}", into, impaired=into.impaired)
    if two_tier:
        plan.nodes.append(Node(f"{p}core", "switch"))
        for d in range(topo.domains):
            plan.links.append(Link(f"{p}s{d}", f"{p}u{d}", f"{p}core", f"{p}d{d}", topo.inter, "uplink"))
            out, into, _ = _slowed(plan, profile.link(topo.inter), profile.slow_link("domain", d))
            _add_shaper(plan, f"{p}s{d}", f"{p}u{d}", out)
            _add_shaper(plan, f"{p}core", f"{p}d{d}", into, impaired=into.impaired)
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


def _add_shaper(plan: Plan, node: str, intf: str, link: LinkClass, local: str | None = None,
                impaired: bool = True, remote: LinkClass | None = None):
    """One egress shaper at the link class's rate; `impaired`: its netem adds the link class's
    latency, jitter and loss (the sending side of a path).  With `local` (the own domain's
    cidr), two bands: traffic to the own domain is impaired; other traffic is not (its latency
    is on the uplinks) unless `remote` (a slow link's extra impairment) says otherwise."""
    burst, quantum = shaping(link.rate_bps)
    plain = Band(0x10, link.rate_bps, limit=queue_limit(link.rate_bps, 0, 0))
    if not impaired or not link.impaired:
        bands = (plain,)
    else:
        share = link.rate_bps / 2 if local else link.rate_bps   # children's guarantees fit the parent
        bands = (Band(0x10, share, link.latency_s, link.jitter_s, link.loss,
                      queue_limit(link.rate_bps, link.latency_s, link.jitter_s),
                      match=("dst", local) if local else None, keep_order=not link.reorder,
                      distribution=link.distribution),)
        if local:
            r = remote or replace(link, latency_s=0, jitter_s=0, loss=0)
            bands += (Band(0x20, share, r.latency_s, r.jitter_s, r.loss,
                           queue_limit(link.rate_bps, r.latency_s, r.jitter_s), keep_order=not link.reorder,
                           distribution=link.distribution),)
    plan.shapers[f"{node}:{intf}"] = Shaper(node, intf, link.name, link.rate_bps, burst, quantum, bands,
                                            default_minor=bands[-1].minor)
