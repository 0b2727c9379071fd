"""two_tier: domains of ranks, each domain on its own switch; every domain switch joined to
one core switch by the domain's uplink, which its ranks share (a leaf-spine pod with one spine,
NVLink domains on an InfiniBand or ISL uplink).

    topology: {kind: two_tier, domains: 2, ranks_per_domain: 4, intra: nvlink4, inter: isl}

A path inside a domain crosses the sender's port and the domain switch's port towards the
receiver, with the intra class's latency, jitter and loss on the sender's port; a path between
domains also crosses the sending domain's uplink and the core's port towards the receiving
domain, with the inter class's latency, jitter and loss on the sending uplink.  A rank's port
classifies traffic by the peer's domain, so remote traffic gets no intra delay there.
"""
from __future__ import annotations

from dataclasses import dataclass

from fabric.topology.base import Topology

KEYS = {"kind", "domains", "ranks_per_domain", "intra", "inter"}


@dataclass(frozen=True)
class TwoTier(Topology):
    RANKS_KEY = "ranks_per_domain"

    @classmethod
    def parse(cls, c, value: dict, links: dict, max_ranks: int) -> TwoTier:
        c.mapping(value, "topology", KEYS, required={"kind", "domains", "ranks_per_domain", "intra"})
        domains = c.integer(value["domains"], "topology.domains", 1, 250)
        per = c.integer(value["ranks_per_domain"], "topology.ranks_per_domain", 1, 250)
        if domains * per > max_ranks:
            c.fail("topology", f"expected at most {max_ranks} ranks in all, got {domains} x {per}")
        intra = c.link_name(value["intra"], "topology.intra", links)
        inter = None
        if domains > 1:
            if "inter" not in value:
                c.fail("topology.inter", "missing required key (the uplink class between domains)")
            inter = c.link_name(value["inter"], "topology.inter", links)
        elif "inter" in value:
            inter = c.link_name(value["inter"], "topology.inter", links)
        return cls("two_tier", domains, per, intra, inter)

    def describe(self) -> str:
        return f"{self.ranks} ranks in {self.domains} domains of {self.ranks_per_domain}"

    def build(self, plan) -> None:
        add_domains(plan, self)
        if self.domains > 1:
            add_uplinks(plan, self)

    def path(self, plan, src: int, dst: int) -> list:
        return path(plan, self, src, dst)

    def layout(self, plan) -> dict[str, tuple[float, float]]:
        """The core on top, the domains' switches in a row below it."""
        out = {f"{plan.prefix}s{d}": (0.1 + 0.8 * (d + 0.5) / self.domains, 0.45) for d in range(self.domains)}
        if self.domains > 1:
            out[f"{plan.prefix}core"] = (0.5, 0.08)
        return out

    def link_names(self) -> list[str]:
        return super().link_names() + ([f"domain:{d}" for d in range(self.domains)] if self.domains > 1 else [])

    def links_named(self, plan, name: str) -> list:
        kind, _, n = name.partition(":")
        if kind == "domain":
            return [l for l in plan.links if l.a_intf == f"{plan.prefix}u{n}"]
        return super().links_named(plan, name)

    def probe_paths(self) -> list[tuple[str, str, int, int]]:
        out = []
        if self.ranks_per_domain > 1 or not self.inter:
            out.append(("intra-domain", self.intra, 0, 1))
        out.append(("inter-domain", self.inter, 0, self.ranks_per_domain))
        return out


def add_domains(plan, topo: Topology, routed: bool = False, switch=None, local_only: bool = False) -> None:
    """Each domain's switch, and each rank's port on it (shaped both ways); routed: the switch
    also routes between domains (fabric.plan.Node.routed); switch(d): domain d's switch's name
    (default s<d>); local_only: the port reaches its own domain only (its host has another port
    for the rest: a rail's NIC)."""
    from fabric.plan import Link, Node, _add_port, _add_shaper, _slowed, add_rank_port, lossy_buffer
    p, profile = plan.prefix, plan.profile
    switch = switch or (lambda d: f"{p}s{d}")
    port_buffer = lossy_buffer(profile.link(topo.intra))
    for d in range(topo.domains):
        plan.nodes.append(Node(switch(d), "switch", domain=d, routed=routed))
    for r in range(topo.ranks):
        d = topo.domain_of(r)
        plan.nodes.append(Node(f"{p}h{r}", "host", rank=r, domain=d, ip=plan.ip(r)))
        plan.links.append(Link(f"{p}h{r}", plan.host_intf(r), switch(d), f"{p}p{r}", topo.intra, "port"))
        out, into, extra = _slowed(plan, profile.link(topo.intra), profile.slow_link("rank", r))
        if local_only:
            add_rank_port(plan, r, plan.host_intf(r), out, {x: out if out.impaired else None for x in range(topo.ranks)
                                                            if x != r and topo.domain_of(x) == d})
        else:
            _add_port(plan, r, out, extra)
        # towards the rank: traffic from its own domain already had the intra impairment on
        # the sender's port, traffic from others the inter one on their uplink
        _add_shaper(plan, switch(d), f"{p}p{r}", into, impaired=into.impaired, connections=topo.ranks - 1,
                    buffer_bytes=port_buffer)


def add_uplinks(plan, topo: Topology) -> None:
    """The core switch, and each domain's uplink to it (shaped both ways)."""
    from fabric.plan import Link, Node, _add_shaper, _slowed, lossy_buffer
    p, profile = plan.prefix, plan.profile
    plan.nodes.append(Node(f"{p}core", "switch"))
    for d in range(topo.domains):
        plan.links.append(Link(f"{p}s{d}", f"{p}u{d}", f"{p}core", f"{p}d{d}", topo.inter, "uplink"))
        out, into, _ = _slowed(plan, profile.link(topo.inter), profile.slow_link("domain", d))
        inside = sum(topo.domain_of(r) == d for r in range(topo.ranks))
        pairs = inside * (topo.ranks - inside)      # connections between the domain and the rest
        buffer = lossy_buffer(profile.link(topo.inter))
        _add_shaper(plan, f"{p}s{d}", f"{p}u{d}", out, connections=pairs, buffer_bytes=buffer)
        _add_shaper(plan, f"{p}core", f"{p}d{d}", into, impaired=into.impaired, connections=pairs,
                    buffer_bytes=buffer)


def path(plan, topo: Topology, src: int, dst: int) -> list:
    """Sender's port, (sending uplink, core's port to the receiving domain,) switch port to the receiver."""
    ds, dd = topo.domain_of(src), topo.domain_of(dst)
    p = plan.prefix
    out = plan.shapers[f"{p}h{src}:{plan.host_intf(src)}"]
    into = plan.shapers[f"{p}s{dd}:{p}p{dst}"]
    hops = [(out, out.band_to(plan.ip(dst)))]
    if ds != dd:
        for key in (f"{p}s{ds}:{p}u{ds}", f"{p}core:{p}d{dd}"):
            s = plan.shapers[key]
            hops.append((s, s.bands[0]))
    hops.append((into, into.band_to(plan.ip(src))))
    return hops
