"""What topologies of routers share (constellation, torus): each router a namespace with a bridge
for the ranks it carries, forwarding IPv4 over point-to-point links to its neighbours, every
router holding the next hop to every domain's /24; hop-by-hop paths, each link direction shaped
with its own rate and latency.

A kind built on it says how many routers there are (`routers`), which carry ranks (`ranked`:
domain d's ranks are on router ranked[d], the rest only forward), its links (`edges`, each with
its link class: `edge_link`) and the router chain from one router to another (`routes`).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from fabric.topology.base import Topology

RELAY_NETWORK = "198.19.0"      # a router without ranks still needs an address: its ARP requests need a source


@dataclass(frozen=True)
class Routed(Topology):
    ranked: tuple[int, ...] = ()          # domain d's ranks are on router ranked[d]
    SLOW_DOMAIN_LINKS = False             # a domain has no single uplink to slow (stragglers: rank:N)
    EDGE_ROLE = "trunk"                   # Link.role of a router-to-router link

    # ---- what a kind says ---------------------------------------------------------------
    @property
    def routers(self) -> int:
        raise NotImplementedError

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(a, b), a < b: the router-to-router links."""
        raise NotImplementedError

    def edge_link(self, profile, a: int, b: int):
        """The link class (real numbers) of the link a-b."""
        raise NotImplementedError

    @property
    def routes(self) -> dict[tuple[int, int], list[int]]:
        """(a, b) -> the routers after a on the way to b, for every pair of routers."""
        raise NotImplementedError

    # ---- the rest, from those -----------------------------------------------------------
    def router_of(self, rank: int) -> int:
        return self.ranked[self.domain_of(rank)]

    def used_links(self) -> list[str]:
        return [self.intra] + ([self.inter] if self.edges else [])

    def hops_between_ranks(self) -> int:
        return max((len(self.routes[(a, b)]) for a in self.ranked for b in self.ranked if a != b), default=0)

    @staticmethod
    def edge_intf(plan, a: int, b: int) -> str:
        return f"{plan.prefix}i{a}x{b}"

    def build(self, plan) -> None:
        from fabric.plan import NETWORK, Link, Node, _add_shaper, lossy_buffer
        from fabric.topology import two_tier
        p, profile = plan.prefix, plan.profile
        two_tier.add_domains(plan, self, routed=True, switch=lambda d: f"{p}s{self.ranked[d]}")
        plan.nodes.extend(Node(f"{p}s{s}", "switch", routed=True) for s in range(self.routers) if s not in self.ranked)
        buffer = lossy_buffer(profile.link(self.inter))
        pairs = [(self.ranked[x], self.ranked[y]) for x in range(self.domains) for y in range(self.domains) if x != y]
        for a, b in self.edges:
            plan.links.append(Link(f"{p}s{a}", self.edge_intf(plan, a, b), f"{p}s{b}", self.edge_intf(plan, b, a),
                                   self.inter, self.EDGE_ROLE))
            link = plan.emulated(self.edge_link(profile, a, b))
            for x, y in ((a, b), (b, a)):
                # connections through it: every rank pair whose route crosses x -> y (a lossless queue holds their windows)
                crossing = self.ranks_per_domain ** 2 * sum(_crosses([s] + self.routes[(s, t)], x, y) for s, t in pairs)
                _add_shaper(plan, f"{p}s{x}", self.edge_intf(plan, x, y), link, connections=max(1, crossing),
                            buffer_bytes=buffer)
        for s in range(self.routers):
            node = f"{p}s{s}"
            plan.addresses[node] = [(node, f"{NETWORK}.{self.ranked.index(s)}.254/24" if s in self.ranked else
                                     f"{RELAY_NETWORK}.{s + 1}/32")]
            plan.routes[node] = [(f"{NETWORK}.{d}.0/24", self.edge_intf(plan, s, self.routes[(s, t)][0]))
                                 for d, t in enumerate(self.ranked) if t != s]

    def path(self, plan, src: int, dst: int) -> list:
        a, b, p = self.router_of(src), self.router_of(dst), plan.prefix
        out = plan.shapers[f"{p}h{src}:{plan.host_intf(src)}"]
        hops = [(out, out.band_to(plan.ip(dst)))]
        here = a
        for nxt in (self.routes[(a, b)] if a != b else []):
            s = plan.shapers[f"{p}s{here}:{self.edge_intf(plan, here, nxt)}"]
            hops.append((s, s.bands[0]))
            here = nxt
        into = plan.shapers[f"{p}s{b}:{p}p{dst}"]
        return hops + [(into, into.band_to(plan.ip(src)))]

    def probe_paths(self) -> list[tuple[str, str, int, int]]:
        """Inside a router's domain, then the first pair of ranked routers of each hop count."""
        out = [(f"intra-{self.NODE}", self.intra, 0, 1)] if self.ranks_per_domain > 1 else []
        far = {}
        for x in range(self.domains):
            for y in range(self.domains):
                if x != y:
                    far.setdefault(len(self.routes[(self.ranked[x], self.ranked[y])]), (x, y))
        per = self.ranks_per_domain
        return out + [(f"{hops}-hop", self.inter, x * per, y * per) for hops, (x, y) in sorted(far.items())]

    NODE = "router"                        # what a router is called in probe paths and plan lines

    # ---- links that fail -----------------------------------------------------------------
    def link_names(self) -> list[str]:
        """rank:N, each router-to-router link (A-B, A < B) and each router (NODE:S, all its links)."""
        return (super().link_names() + [f"{a}-{b}" for a, b in self.edges] +
                [f"{self.NODE}:{s}" for s in range(self.routers)])

    def edges_named(self, name: str) -> list[tuple[int, int]]:
        if name.startswith(f"{self.NODE}:"):
            s = int(name.partition(":")[2])
            return [e for e in self.edges if s in e]
        if "-" in name:
            a, b = map(int, name.split("-"))
            return [(a, b)]
        return []

    def links_named(self, plan, name: str) -> list:
        if name.startswith("rank:"):
            return super().links_named(plan, name)
        intfs = {self.edge_intf(plan, a, b) for a, b in self.edges_named(name)}
        return [l for l in plan.links if l.a_intf in intfs]

    def detour(self, plan, down: frozenset[str]) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[int, int]]]:
        """Every route that crossed a link now down goes the shortest way round it (the links'
        latency, then hops); the others stay.  Lost: pairs with a rank port down, or routers
        with no chain of links left between them."""
        from fabric.plan import NETWORK
        cut = {e for name in down for e in self.edges_named(name)}
        routes = self.routes_avoiding(plan.profile, cut)
        ports = {int(name.partition(":")[2]) for name in down if name.startswith("rank:")}
        lost = [(s, d) for s in range(self.ranks) for d in range(self.ranks) if s != d and (
            s in ports or d in ports or
            self.router_of(s) != self.router_of(d) and routes.get((self.router_of(s), self.router_of(d))) is None)]
        table = {}
        for s in range(self.routers):
            node = f"{plan.prefix}s{s}"
            table[node] = [(f"{NETWORK}.{d}.0/24", self.edge_intf(plan, s, routes[(s, t)][0]))
                           for d, t in enumerate(self.ranked) if t != s and routes.get((s, t))]
        return table, lost

    def routes_avoiding(self, profile, cut: set[tuple[int, int]]) -> dict[tuple[int, int], list[int] | None]:
        """routes with the links in cut gone: a route that crossed one is the shortest chain of
        the rest (least latency, then fewest hops, then lower router numbers), None where there
        is none.  Each router then forwards along its own route, and a kept route is a shortest
        one too (taking links away only lengthens chains), so the next hops never loop; the
        routes returned are what those next hops do."""
        if not cut:
            return dict(self.routes)
        gone = cut | {(b, a) for a, b in cut}
        near: dict[int, list[tuple[int, tuple[float, int]]]] = {s: [] for s in range(self.routers)}
        for a, b in self.edges:
            if (a, b) not in gone:
                w = (self.edge_link(profile, a, b).latency_s, 1)
                near[a].append((b, w))
                near[b].append((a, w))
        nxt = {}
        for (a, b), path in self.routes.items():
            chain = [a] + path
            if not any((x, y) in gone for x, y in zip(chain, chain[1:])):
                nxt[(a, b)] = path[0]
        for a in range(self.routers):
            if any((a, b) not in nxt for b in range(self.routers) if b != a):
                for b, path in shortest(near, a).items():
                    nxt.setdefault((a, b), path[0] if path else None)
        out = {}
        for a, b in self.routes:
            here, path = a, []
            while here != b and nxt.get((here, b)) is not None and len(path) <= self.routers:
                here = nxt[(here, b)]
                path.append(here)
            out[(a, b)] = path if here == b else None
        return out

    def route_lines(self, plan) -> list[str]:
        """Which ranks sit where (when some routers carry none), each kind of link, and each
        route between routers with ranks, real figures."""
        from fabric.units import fmt_rate, fmt_time
        lines = [f"{self.NODE} {s}: ranks {d * self.ranks_per_domain}-{(d + 1) * self.ranks_per_domain - 1}"
                 for d, s in enumerate(self.ranked)] if self.routers > self.domains else []
        kinds: dict[tuple, list[str]] = {}       # links alike in what they say, together
        for a, b in self.edges:
            link = self.edge_link(plan.profile, a, b)
            kinds.setdefault((self.edge_words(a, b), fmt_rate(link.rate_bps), fmt_time(link.latency_s)),
                             []).append(f"{a}-{b}")
        for (words, rate, latency), pairs in kinds.items():
            shown = ", ".join(pairs[:12]) + (f", ... ({len(pairs)} in all)" if len(pairs) > 12 else "")
            lines.append(f"{self.EDGE_ROLE} {words}{rate}, {latency}: {shown}")
        for (a, b), path in sorted(self.routes.items()):
            if a not in self.ranked or b not in self.ranked:     # relays' routes: only as parts of these
                continue
            chain = [a] + path
            delay = sum(self.edge_link(plan.profile, x, y).latency_s for x, y in zip(chain, chain[1:]))
            lines.append(f"route {self.NODE} {a} -> {b}: {' > '.join(map(str, chain))} ({len(path)} hop"
                         f"{'s' if len(path) > 1 else ''}, {fmt_time(delay)})")
        return lines

    def edge_words(self, a: int, b: int) -> str:
        """What route_lines says of a link before its rate (a constellation: its length)."""
        return ""


def shortest(near: dict[int, list[tuple[int, tuple]]], a: int) -> dict[int, list[int]]:
    """Dijkstra from a over near (router -> (neighbour, weight tuple)): router -> the routers
    after a on its least-weight chain, ties broken by the chain's router numbers; a itself and
    the unreachable left out."""
    best = {a: ((0.0, 0), [])}
    heap = [((0.0, 0), [], a)]
    while heap:
        w, path, s = heapq.heappop(heap)
        if best[s] < (w, path):
            continue
        for t, (lat, hops) in near[s]:
            cand = ((round(w[0] + lat, 15), w[1] + hops), path + [t])
            if t not in best or cand < best[t]:
                best[t] = cand
                heapq.heappush(heap, (*cand, t))
    return {b: path for b, (_, path) in best.items() if b != a}


def _crosses(route: list[int], x: int, y: int) -> bool:
    return any(route[i] == x and route[i + 1] == y for i in range(len(route) - 1))


def ranked(c, value, routers: int, key: str, what: str) -> tuple[int, ...]:
    """A kind's list of the routers with ranks (default: all), checked."""
    if value is None:
        return tuple(range(routers))
    if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
        c.fail(key, f"expected a list of distinct {what} numbers")
    return tuple(c.integer(s, key, 0, routers - 1) for s in value)
