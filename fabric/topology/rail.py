"""rail: a rail-optimised GPU cluster.  The GPUs of a node talk over NVLink (`intra`, the node's
switch); each GPU also has its own NIC (`rail`), and GPU i of every node sits on rail switch i;
the rail switches are joined by spines, `oversubscription` to 1.

    topology: {kind: rail, nodes: 2, gpus_per_node: 4, intra: nvlink4, rail: ndr400,
               spines: 1, oversubscription: 2}

Every rank's host has two ports: its NVLink port, which holds its address and carries traffic
to the GPUs of its own node, and its NIC, which carries everything else (the host's routes: its
node's /24 on the NVLink port, the whole fabric on the NIC).  A path between nodes on one rail
crosses the sender's NIC, with the rail class's latency, jitter and loss, and the rail switch's
port towards the receiver; a path to another rail also crosses the sending rail switch's uplink
to a spine and that spine's downlink to the receiving rail's switch, which add the rail class's
latency once more (two more links and a switch tier; no more jitter or loss).  Each rail
switch's uplinks carry nodes x the rail rate / oversubscription, spread over the spines; a
destination on rail j is reached through spine j mod spines (a fixed ECMP choice).  Rail
switches and spines route IPv4 (one route per rank); the node switch only bridges.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from fabric.topology.base import Topology

KEYS = {"kind", "nodes", "gpus_per_node", "intra", "rail", "spines", "oversubscription"}
MAX_RAILS = 16
MAX_SPINES = 8
SWITCH_NETWORK = "198.19"     # a rail switch's and a spine's own address (its ARP requests need a source)


@dataclass(frozen=True)
class Rail(Topology):
    spines: int = 1
    oversubscription: float = 1.0
    RANKS_KEY = "gpus_per_node"
    SLOW_DOMAIN_LINKS = False      # a node has no single uplink: a straggler's rank:N slows both its ports

    @classmethod
    def parse(cls, c, value: dict, links: dict, max_ranks: int) -> Rail:
        c.mapping(value, "topology", KEYS, required={"kind", "nodes", "gpus_per_node", "intra", "rail"})
        nodes = c.integer(value["nodes"], "topology.nodes", 2, max_ranks)
        gpus = c.integer(value["gpus_per_node"], "topology.gpus_per_node", 1, MAX_RAILS)
        if nodes * gpus > max_ranks:
            c.fail("topology", f"expected at most {max_ranks} ranks in all, got {nodes} nodes x {gpus} GPUs")
        spines = c.integer(value.get("spines", 1), "topology.spines", 1, MAX_SPINES)
        ratio = c.number(value.get("oversubscription", 1), "topology.oversubscription", 1, 1000,
                         "a ratio of at least 1 (1: non-blocking)")
        return cls("rail", nodes, gpus, c.link_name(value["intra"], "topology.intra", links),
                   c.link_name(value["rail"], "topology.rail", links), spines=spines, oversubscription=float(ratio))

    def describe(self) -> str:
        return (f"{self.domains} nodes x {self.ranks_per_domain} GPUs on {self.ranks_per_domain} rails, "
                f"{self.spines} spine{'s' if self.spines > 1 else ''}, {self.oversubscription:g}:1")

    # ---- names and numbers -------------------------------------------------------------
    def rail_of(self, rank: int) -> int:
        return rank % self.ranks_per_domain

    def spine_of(self, rail: int) -> int:
        """The spine a packet to a GPU on `rail` crosses."""
        return rail % self.spines

    def uplink(self, profile):
        """One rail switch's link to one spine: the rail class at its share of the rail's
        uplink capacity (nodes x the rail rate / oversubscription over the spines), with the
        rail class's latency (added on the way up) and no jitter or loss."""
        rail = profile.link(self.inter)
        return replace(rail, rate_bps=self.domains * rail.rate_bps / (self.oversubscription * self.spines),
                       jitter_s=0.0, loss=0.0)

    @staticmethod
    def names(plan) -> dict:
        p = plan.prefix
        return {"rail": lambda i: f"{p}rail{i}", "spine": lambda s: f"{p}spine{s}",
                "nic": lambda r: f"{p}e{r}", "rail_port": lambda r: f"{p}f{r}",
                "up": lambda i, s: f"{p}u{i}x{s}", "down": lambda s, i: f"{p}d{s}x{i}"}

    # ---- its part of a plan ------------------------------------------------------------
    def build(self, plan) -> None:
        from fabric.plan import Link, Node, _add_shaper, _slowed, add_rank_port, lossy_buffer
        from fabric.topology import two_tier
        two_tier.add_domains(plan, self, local_only=True)      # each node's switch, its GPUs' NVLink ports
        n, profile = self.names(plan), plan.profile
        rail = profile.link(self.inter)
        buffer = lossy_buffer(rail)
        for i in range(self.ranks_per_domain):
            plan.nodes.append(Node(n["rail"](i), "switch", routed=True))
        for s in range(self.spines):
            plan.nodes.append(Node(n["spine"](s), "switch", routed=True))
        for r in range(self.ranks):
            host, i = f"{plan.prefix}h{r}", self.rail_of(r)
            plan.links.append(Link(host, n["nic"](r), n["rail"](i), n["rail_port"](r), self.inter, "port"))
            out, into, _ = _slowed(plan, rail, profile.slow_link("rank", r))
            remote = [d for d in range(self.ranks) if self.domain_of(d) != self.domain_of(r)]
            add_rank_port(plan, r, n["nic"](r), out, dict.fromkeys(remote, out if out.impaired else None))
            _add_shaper(plan, n["rail"](i), n["rail_port"](r), into, impaired=into.impaired,
                        connections=len(remote), buffer_bytes=buffer)
        up, down = plan.emulated(self.uplink(profile)), plan.emulated(replace(self.uplink(profile), latency_s=0.0))
        for i in range(self.ranks_per_domain):
            for s in range(self.spines):
                plan.links.append(Link(n["rail"](i), n["up"](i, s), n["spine"](s), n["down"](s, i), self.inter,
                                       "uplink"))
                # connections through it, one way: between two nodes' GPUs on two rails whose route crosses it
                pairs = self.domains * (self.domains - 1)
                rails = sum(1 for j in range(self.ranks_per_domain) if j != i and self.spine_of(j) == s)
                _add_shaper(plan, n["rail"](i), n["up"](i, s), up, connections=max(1, pairs * rails),
                            buffer_bytes=buffer)
                rails = self.ranks_per_domain - 1 if self.spine_of(i) == s else 0
                _add_shaper(plan, n["spine"](s), n["down"](s, i), down, impaired=False,
                            connections=max(1, pairs * rails), buffer_bytes=buffer)
        for i in range(self.ranks_per_domain):
            node = n["rail"](i)
            plan.addresses[node] = [(node, f"{SWITCH_NETWORK}.1.{i + 1}/32")]
            plan.routes[node] = [(f"{plan.ip(r)}/32", node if self.rail_of(r) == i else
                                  n["up"](i, self.spine_of(self.rail_of(r)))) for r in range(self.ranks)]
        for s in range(self.spines):
            node = n["spine"](s)
            plan.addresses[node] = [(node, f"{SWITCH_NETWORK}.2.{s + 1}/32")]
            plan.routes[node] = [(f"{plan.ip(r)}/32", n["down"](s, self.rail_of(r))) for r in range(self.ranks)]

    # ---- links that fail -----------------------------------------------------------------
    def link_names(self) -> list[str]:
        """rank:N (a GPU's NVLink port), nic:N (its NIC), uplink:I-S (rail switch I to spine S)
        and spine:S (all of S's uplinks)."""
        return (super().link_names() + [f"nic:{r}" for r in range(self.ranks)] +
                [f"uplink:{i}-{s}" for i in range(self.ranks_per_domain) for s in range(self.spines)] +
                [f"spine:{s}" for s in range(self.spines)])

    def uplinks_named(self, name: str) -> list[tuple[int, int]]:
        kind, _, n = name.partition(":")
        if kind == "uplink":
            i, s = map(int, n.split("-"))
            return [(i, s)]
        if kind == "spine":
            return [(i, int(n)) for i in range(self.ranks_per_domain)]
        return []

    def links_named(self, plan, name: str) -> list:
        n = self.names(plan)
        if name.startswith("nic:"):
            return [l for l in plan.links if l.a_intf == n["nic"](int(name.partition(":")[2]))]
        if name.startswith("rank:"):
            return super().links_named(plan, name)
        intfs = {n["up"](i, s) for i, s in self.uplinks_named(name)}
        return [l for l in plan.links if l.a_intf in intfs]

    def spine_between(self, i: int, j: int, cut: set[tuple[int, int]]) -> int | None:
        """The spine a packet from rail i to rail j crosses with the uplinks in cut down: its
        own (spine_of(j)) while both its links are up, else the first spine with both up."""
        ok = [s for s in range(self.spines) if (i, s) not in cut and (j, s) not in cut]
        return self.spine_of(j) if self.spine_of(j) in ok else (ok[0] if ok else None)

    def detour(self, plan, down: frozenset[str]) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[int, int]]]:
        """A rail's traffic to another rail moves to a spine whose links are both up; a GPU
        whose NVLink port is down loses its node, one whose NIC is down every other node."""
        cut = {u for name in down for u in self.uplinks_named(name)}
        ports = {int(name.partition(":")[2]) for name in down if name.startswith("rank:")}
        nics = {int(name.partition(":")[2]) for name in down if name.startswith("nic:")}
        n, table, lost = self.names(plan), dict(plan.routes), []
        for s in range(self.ranks):
            for d in range(self.ranks):
                if s == d:
                    continue
                if self.domain_of(s) == self.domain_of(d):
                    if s in ports or d in ports:
                        lost.append((s, d))
                elif s in nics or d in nics or (self.rail_of(s) != self.rail_of(d) and
                                                self.spine_between(self.rail_of(s), self.rail_of(d), cut) is None):
                    lost.append((s, d))
        for i in range(self.ranks_per_domain):
            routes = []
            for r in range(self.ranks):
                j = self.rail_of(r)
                s = self.spine_between(i, j, cut) if j != i else None
                if j == i or s is not None:
                    routes.append((f"{plan.ip(r)}/32", n["rail"](i) if j == i else n["up"](i, s)))
            table[n["rail"](i)] = routes
        return table, lost

    def layout(self, plan) -> dict[str, tuple[float, float]]:
        """Spines on top, the rail switches below them, each node's switch at the bottom."""
        n, g = self.names(plan), self.ranks_per_domain
        row = lambda i, count: 0.1 + 0.8 * (i + 0.5) / count        # noqa: E731
        return ({n["spine"](s): (row(s, self.spines), 0.08) for s in range(self.spines)} |
                {n["rail"](i): (row(i, g), 0.35) for i in range(g)} |
                {f"{plan.prefix}s{d}": (row(d, self.domains), 0.92) for d in range(self.domains)})

    def host_routes(self, plan, rank: int) -> list:
        from fabric.plan import NETWORK
        # the NIC's route first: it replaces the one the NVLink port's address brought
        return [plan.route(rank, dev=self.names(plan)["nic"](rank)),
                plan.route(rank, dst=f"{NETWORK}.{self.domain_of(rank)}.0/24")]

    def path(self, plan, src: int, dst: int) -> list:
        if self.domain_of(src) == self.domain_of(dst):
            from fabric.topology import two_tier
            return two_tier.path(plan, self, src, dst)
        n, i, j = self.names(plan), self.rail_of(src), self.rail_of(dst)
        nic = plan.shapers[f"{plan.prefix}h{src}:{n['nic'](src)}"]
        hops = [(nic, nic.band_to(plan.ip(dst)))]
        if i != j:
            s = self.spine_of(j)
            for key in (f"{n['rail'](i)}:{n['up'](i, s)}", f"{n['spine'](s)}:{n['down'](s, j)}"):
                hops.append((plan.shapers[key], plan.shapers[key].bands[0]))
        into = plan.shapers[f"{n['rail'](j)}:{n['rail_port'](dst)}"]
        return hops + [(into, into.bands[0])]

    def probe_paths(self) -> list[tuple[str, str, int, int]]:
        g = self.ranks_per_domain
        out = [("intra-node", self.intra, 0, 1)] if g > 1 else []
        out.append(("same-rail", self.inter, 0, g))
        if g > 1:
            out.append(("cross-rail", self.inter, 0, g + 1))
        return out

    def route_lines(self, plan) -> list[str]:
        from fabric.units import fmt_rate, fmt_time
        up = self.uplink(plan.profile)
        return [f"rail i: GPU i of every node (rank r on rail r mod {self.ranks_per_domain}), NIC "
                f"{fmt_rate(plan.profile.link(self.inter).rate_bps)}",
                f"uplink rail i -> spine: {fmt_rate(up.rate_bps)} each ({self.domains} x rail / "
                f"{self.oversubscription:g} / {self.spines} spine{'s' if self.spines > 1 else ''}), "
                f"+{fmt_time(up.latency_s)} through a spine",
                f"route to a GPU on rail j from another rail: rail switch > spine j mod {self.spines} > rail switch j"]
