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

    def probe_paths(self) -> list[tuple[str, str, int, int]]:
        """(path type, link class, src rank, dst rank): the paths `fabric probe` measures."""
        raise NotImplementedError

    def route_lines(self, plan) -> list[str]:
        """`fabric plan`'s account of its routes, where there is more to say than the path
        types (one line each, without the leading '# ')."""
        return []
