"""flat: n ranks, each on its own port of one switch (Mininet's SingleSwitchTopo).

    topology: {kind: flat, ranks: 8, link: nvlink4}

A path crosses two shaped hops, the sender's port and the switch's port towards the receiver;
the link class's latency, jitter and loss are all on the sender's (fabric.plan explains why).
"""
from __future__ import annotations

from dataclasses import dataclass

from fabric.topology import two_tier
from fabric.topology.base import Topology

KEYS = {"kind", "ranks", "link"}


@dataclass(frozen=True)
class Flat(Topology):
    RANKS_KEY = "ranks"

    @classmethod
    def parse(cls, c, value: dict, links: dict, max_ranks: int) -> Flat:
        c.mapping(value, "topology", KEYS, required=KEYS)
        ranks = c.integer(value["ranks"], "topology.ranks", 1, max_ranks)
        return cls("flat", 1, ranks, c.link_name(value["link"], "topology.link", links))

    def build(self, plan) -> None:
        two_tier.add_domains(plan, self)

    def path(self, plan, src: int, dst: int) -> list:
        return two_tier.path(plan, self, src, dst)

    def layout(self, plan) -> dict[str, tuple[float, float]]:
        return {f"{plan.prefix}s0": (0.5, 0.3)}

    def probe_paths(self) -> list[tuple[str, str, int, int]]:
        return [("flat", self.intra, 0, 1)]
