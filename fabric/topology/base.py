"""What every topology kind is: its ranks grouped in domains (the ranks behind one first switch:
a node's GPUs, a satellite, a rack), the link classes it uses, and its part of a plan.

A kind is a frozen dataclass of these fields plus what it adds, registered in
fabric/topology/__init__.py.  It parses its own YAML keys (`parse`, with the profile's checker,
so errors name the key path), builds the plan's nodes, links and shapers (`build`), says which
shaped hops a packet from one rank to another crosses (`path`) and which path types
`fabric probe` measures (`probe_paths`).  The plan, the α-β model, the probe, the report and
the CLI ask it instead of branching on the kind.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    kind: str                 # the name it is registered under
    domains: int              # groups of ranks behind one first switch (1: all behind one)
    ranks_per_domain: int
    intra: str                # link class of each rank's port
    inter: str | None = None  # link class between domains (None: there is none)

    # the YAML key a sweep over rank counts sets (fabric sweep --ranks)
    RANKS_KEY = "ranks"
    # a straggler `link: domain:N` slows domain N's link towards the others (its build honours it)
    SLOW_DOMAIN_LINKS = True

    @property
    def ranks(self) -> int:
        return self.domains * self.ranks_per_domain

    def domain_of(self, rank: int) -> int:
        return rank // self.ranks_per_domain

    def used_links(self) -> list[str]:
        """The link classes its links use, the ranks' own first."""
        return [self.intra] + ([self.inter] if self.inter and self.domains > 1 else [])

    def describe(self) -> str:
        """Its shape in a few words, after the kind ("8 ranks", "2 domains of 4")."""
        return f"{self.ranks} ranks"

    # ---- its part of a plan (fabric.plan calls these) ---------------------------------
    def build(self, plan) -> None:
        """Add its nodes, links and shapers to plan (a fabric.plan.Plan with nothing yet)."""
        raise NotImplementedError

    def path(self, plan, src: int, dst: int) -> list:
        """The (Shaper, Band) hops a packet from rank src to rank dst crosses, in order."""
        raise NotImplementedError

    def host_routes(self, plan, rank: int) -> list:
        """rank's routes (fabric.plan.RouteSetup): the whole fabric on its one port."""
        return [plan.route(rank)]

    def probe_paths(self) -> list[tuple[str, str, int, int]]:
        """(path type, link class, src rank, dst rank): the paths `fabric probe` measures."""
        raise NotImplementedError

    # ---- links that fail (fabric.events) ------------------------------------------------
    def link_names(self) -> list[str]:
        """What an event's `link:` may name: every rank's port (rank:N) and each kind's own."""
        return [f"rank:{r}" for r in range(self.ranks)]

    def links_named(self, plan, name: str) -> list:
        """The plan's Links (veth pairs) behind one of link_names()."""
        kind, _, n = name.partition(":")
        if kind == "rank":
            return [l for l in plan.links if (l.a_node, l.a_intf) == (f"{plan.prefix}h{n}", plan.host_intf(int(n)))]
        raise KeyError(name)

    def detour(self, plan, down: frozenset[str]) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[int, int]]]:
        """With the named links down: every routed node's routes (as Plan.routes) and the rank
        pairs left without a path.  Here nothing routes around anything: a pair whose path
        crosses a link that is down has none."""
        cut = {end for name in down for link in self.links_named(plan, name) for end in link.ends}
        lost = [(s, d) for s in range(self.ranks) for d in range(self.ranks)
                if s != d and any(h.key in cut for h, _ in plan.path(s, d))]
        return dict(plan.routes), lost

    def layout(self, plan) -> dict[str, tuple[float, float]]:
        """Where the report draws each switch or router (x, y in [0, 1]); ranks go round theirs.
        Here: on a circle (a kind with a natural picture says so)."""
        import math
        switches = [n.name for n in plan.switches]
        return {name: (0.5 + 0.4 * math.cos(2 * math.pi * i / len(switches)),
                       0.5 + 0.4 * math.sin(2 * math.pi * i / len(switches))) for i, name in enumerate(switches)}

    def route_lines(self, plan) -> list[str]:
        """`fabric plan`'s account of its routes, where there is more to say than the path
        types (one line each, without the leading '# ')."""
        return []
