"""torus: a TPU-pod-style torus of nodes, each joined to its neighbours in every dimension with
wrap-around links, routed dimension by dimension.

    topology: {kind: torus, dims: [4, 4], ranks_per_node: 1, intra: chip, link: ici}

Each node is a router with its ranks on its own switch (`intra`: a rank's link to its node);
`link` is the class of every torus link, each on its own hop.  A route corrects the first
dimension, then the next, each the shorter way round (forward on a tie), as a torus's
dimension-ordered routing does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from fabric.topology.routed import Routed

KEYS = {"kind", "dims", "ranks_per_node", "intra", "link"}


@dataclass(frozen=True)
class Torus(Routed):
    dims: tuple[int, ...] = ()
    RANKS_KEY = "ranks_per_node"
    EDGE_ROLE = "torus"
    NODE = "node"

    @classmethod
    def parse(cls, c, value: dict, links: dict, max_ranks: int) -> Torus:
        c.mapping(value, "topology", KEYS, required={"kind", "dims", "intra", "link"})
        dims = value["dims"]
        if not isinstance(dims, list) or not 1 <= len(dims) <= 3:
            c.fail("topology.dims", f"expected 1 to 3 dimensions, e.g. [4, 4] or [2, 2, 2], got {dims!r}")
        dims = tuple(c.integer(d, "topology.dims", 1, max_ranks) for d in dims)
        per = c.integer(value.get("ranks_per_node", 1), "topology.ranks_per_node", 1, max_ranks)
        nodes = math.prod(dims)
        if nodes < 2 or nodes * per > max_ranks:
            c.fail("topology", f"expected 2 to {max_ranks} ranks in all, got {' x '.join(map(str, dims))} nodes x {per}")
        return cls("torus", nodes, per, c.link_name(value["intra"], "topology.intra", links),
                   c.link_name(value["link"], "topology.link", links), ranked=tuple(range(nodes)), dims=dims)

    def describe(self) -> str:
        return (f"{' x '.join(map(str, self.dims))} nodes of {self.ranks_per_domain} rank"
                f"{'s' if self.ranks_per_domain > 1 else ''}, {len(self.edges)} links, up to "
                f"{self.hops_between_ranks()} hops")

    @property
    def routers(self) -> int:
        return self.domains

    def coords(self, node: int) -> tuple[int, ...]:
        out = []
        for d in reversed(self.dims):
            out.append(node % d)
            node //= d
        return tuple(reversed(out))

    def index(self, coords) -> int:
        i = 0
        for c, d in zip(coords, self.dims):
            i = i * d + c
        return i

    def layout(self, plan) -> dict[str, tuple[float, float]]:
        """A grid: the first dimension down, the second across, a third as offset copies."""
        dims = list(self.dims) + [1] * (3 - len(self.dims))
        out = {}
        for s in range(self.routers):
            c = list(self.coords(s)) + [0] * (3 - len(self.dims))
            if len(self.dims) == 1:
                c = [0, c[0], 0]
                dims = [1, self.dims[0], 1]
            out[f"{plan.prefix}s{s}"] = (0.1 + 0.8 * (c[1] + 0.3 * c[2]) / max(1, dims[1] - 1 + 0.3 * (dims[2] - 1)),
                                         0.1 + 0.8 * (c[0] + 0.3 * c[2]) / max(1, dims[0] - 1 + 0.3 * (dims[2] - 1)))
        return out

    @cached_property
    def edges(self) -> list[tuple[int, int]]:
        out = set()
        for a in range(self.routers):
            for axis, size in enumerate(self.dims):
                if size > 1:
                    c = list(self.coords(a))
                    c[axis] = (c[axis] + 1) % size
                    b = self.index(c)
                    out.add((min(a, b), max(a, b)))
        return sorted(out)

    def edge_link(self, profile, a: int, b: int):
        return profile.link(self.inter)

    @cached_property
    def routes(self) -> dict[tuple[int, int], list[int]]:
        out = {}
        for a in range(self.routers):
            for b in range(self.routers):
                if a == b:
                    continue
                here, goal, path = list(self.coords(a)), self.coords(b), []
                for axis, size in enumerate(self.dims):
                    ahead = (goal[axis] - here[axis]) % size
                    step = 1 if ahead <= size - ahead else -1
                    while here[axis] != goal[axis]:
                        here[axis] = (here[axis] + step) % size
                        path.append(self.index(here))
                out[(a, b)] = path
        return out
