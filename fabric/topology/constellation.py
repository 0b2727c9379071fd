"""constellation: satellites flying in formation, each a router with its ranks on its own
switch, talking to the satellites within `range` over free-space optical inter-satellite links
(ISLs); traffic between satellites that are not neighbours is forwarded satellite by satellite.

    topology:
      kind: constellation
      satellites: 7            # a hexagonal layout: the centre first, then rings outward
      spacing: 150m            # ... its neighbours this far apart
      # positions: [[0, 0], [150, 0], [75, 129.9]]   # or where each is, in metres (x, y[, z])
      ranks_per_satellite: 2
      # ranks_at: [0, 3, 14]   # the satellites with ranks (default: all); the others only relay
      intra: nvlink4           # a rank's link to its satellite's switch
      isl: isl                 # the ISLs' link class: its rate, and its latency at the endpoints
      range: 200m              # satellites closer than this get an ISL
      # isl_rates: {100m: 1.6Tbit/s, 200m: 800Gbit/s}   # an ISL up to 100 m long runs at 1.6 Tbit/s, ...

Each ISL's latency is the isl class's own (the transceivers') plus its propagation over the
satellites' actual distance at c (vacuum), each on its own hop; a received optical power falling
as 1/d^2 lets a shorter link carry more channels, which `isl_rates` gives as a table.  A route
is the lowest-latency chain of ISLs (fewest hops, then the lower satellite numbers, on a tie),
each satellite holding the next hop to every other's ranks.  A path inside a satellite has the
intra class's latency, jitter and loss on the sender's port, as on a flat fabric; a path between
satellites has the ISLs' and none of the intra class's.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from functools import cached_property

from fabric.topology.routed import Routed, ranked
from fabric.units import parse_length, parse_rate

C_M_PER_S = 299_792_458.0          # light in vacuum (the ISLs are free-space optical)
KEYS = {"kind", "satellites", "spacing", "positions", "ranks_per_satellite", "ranks_at", "intra", "isl", "range",
        "isl_rates"}
MAX_SATELLITES = 250               # 198.18.<satellite>.<rank>: one /24 per satellite
AXIAL = ((1, 0), (0, 1), (-1, 1), (-1, 0), (0, -1), (1, -1))     # a hexagon's six neighbours


def hexagonal(count: int, spacing: float) -> list[tuple[float, float, float]]:
    """count positions on a hexagonal lattice of the given spacing: the centre, then each ring
    outward, each ring walked from its easternmost satellite anticlockwise."""
    cells = [(0, 0)]
    ring = 0
    while len(cells) < count:
        ring += 1
        q, r = ring, 0                                  # the east corner of this ring
        for dq, dr in AXIAL[2:] + AXIAL[:2]:            # walk its six sides
            for _ in range(ring):
                cells.append((q, r))
                q, r = q + dq, r + dr
    return [(spacing * (q + r / 2), spacing * r * math.sqrt(3) / 2, 0.0) for q, r in cells[:count]]


@dataclass(frozen=True)
class Constellation(Routed):
    positions: tuple[tuple[float, float, float], ...] = ()
    range_m: float = 0.0
    isl_rates: tuple[tuple[float, float], ...] = ()      # (longest ISL it applies to, m; rate, bit/s), ascending
    RANKS_KEY = "ranks_per_satellite"
    EDGE_ROLE = "isl"
    NODE = "satellite"

    @classmethod
    def parse(cls, c, value: dict, links: dict, max_ranks: int) -> Constellation:
        c.mapping(value, "topology", KEYS, required={"kind", "ranks_per_satellite", "intra", "isl", "range"})
        if ("satellites" in value) == ("positions" in value):
            c.fail("topology", "expected either satellites (with spacing: a hexagonal formation) or positions")
        if "satellites" in value:
            count = c.integer(value["satellites"], "topology.satellites", 1, MAX_SATELLITES)
            if "spacing" not in value:
                c.fail("topology.spacing", "missing required key (the distance between neighbours, e.g. 150m)")
            spacing = c.unit(parse_length, value["spacing"], "topology.spacing")
            positions = hexagonal(count, spacing)
        else:
            if "spacing" in value:
                c.fail("topology.spacing", "only with satellites: (positions give the distances)")
            positions = _positions(c, value["positions"])
        per = c.integer(value["ranks_per_satellite"], "topology.ranks_per_satellite", 1, max_ranks)
        on = ranked(c, value.get("ranks_at"), len(positions), "topology.ranks_at", "satellite (the centre is 0)")
        if per * len(on) > max_ranks:
            c.fail("topology", f"expected at most {max_ranks} ranks in all, got {len(on)} satellites x {per}"
                               + ("" if "ranks_at" in value else " (ranks_at: puts ranks on some satellites only)"))
        topo = cls("constellation", len(on), per, c.link_name(value["intra"], "topology.intra", links),
                   c.link_name(value["isl"], "topology.isl", links), ranked=on, positions=tuple(positions),
                   range_m=c.unit(parse_length, value["range"], "topology.range"),
                   isl_rates=_rates(c, value.get("isl_rates")))
        for a, b, d in topo.isls:
            if topo.isl_rates and d > topo.isl_rates[-1][0]:
                c.fail("topology.isl_rates", f"no rate for the {d:.1f} m ISL between satellites {a} and {b} "
                                             f"(the table ends at {topo.isl_rates[-1][0]:g} m)")
        cut = [s for s in range(topo.satellites) if s not in topo.hops_from(0)]
        if cut:
            c.fail("topology.range", f"satellites {', '.join(map(str, cut[:8]))} have no chain of ISLs shorter than "
                                     f"{topo.range_m:g} m to satellite 0; expected a connected formation")
        return topo

    def describe(self) -> str:
        relays = self.satellites - self.domains
        return (f"{self.satellites} satellites, {self.domains} of them with {self.ranks_per_domain} ranks"
                if relays else f"{self.satellites} satellites of {self.ranks_per_domain} ranks") + (
            f", {len(self.isls)} ISLs within {self.range_m:g} m, up to {self.hops_between_ranks()} hops between ranks")

    @property
    def satellites(self) -> int:
        return len(self.positions)


    # ---- geometry and routes ----------------------------------------------------------
    @cached_property
    def isls(self) -> list[tuple[int, int, float]]:
        """(a, b, length m), a < b, for every pair closer than range."""
        return [(a, b, d) for a in range(self.satellites) for b in range(a + 1, self.satellites)
                if (d := math.dist(self.positions[a], self.positions[b])) < self.range_m]

    def isl_link(self, profile, a: int, b: int):
        """The ISL a-b as a link class: the isl class with its rate for the length (isl_rates)
        and its latency plus the propagation over the length."""
        length = math.dist(self.positions[a], self.positions[b])
        base = profile.link(self.inter)
        rate = next((r for upto, r in self.isl_rates if length <= upto), base.rate_bps)
        return replace(base, rate_bps=rate, latency_s=base.latency_s + length / C_M_PER_S)

    def hops_from(self, a: int) -> dict[int, list[int]]:
        """satellite -> the satellites a packet from a crosses to it (a excluded, it included)."""
        return {b: path for (s, b), path in self.routes.items() if s == a} | {a: []}

    @cached_property
    def routes(self) -> dict[tuple[int, int], list[int]]:
        """(a, b) -> the satellites after a on the route to b: lowest propagation delay, then
        fewest hops, then lower satellite numbers (Dijkstra, the ties compared as tuples)."""
        near: dict[int, list[tuple[int, float]]] = {s: [] for s in range(self.satellites)}
        for a, b, d in self.isls:
            near[a].append((b, d))
            near[b].append((a, d))
        out = {}
        for a in range(self.satellites):
            best = {a: (0.0, 0, [])}
            heap = [(0.0, 0, [], a)]
            while heap:
                d, hops, path, s = heapq.heappop(heap)
                if best.get(s, (math.inf,))[:3] < (d, hops, path):
                    continue
                for t, length in near[s]:
                    cand = (round(d + length, 9), hops + 1, path + [t])
                    if t not in best or cand < best[t]:
                        best[t] = cand
                        heapq.heappush(heap, (*cand, t))
            out.update({(a, b): p for b, (_, _, p) in best.items() if b != a})
        return out

    # ---- what Routed builds from ---------------------------------------------------------
    @property
    def routers(self) -> int:
        return self.satellites

    @property
    def edges(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b, _ in self.isls]

    def edge_link(self, profile, a: int, b: int):
        return self.isl_link(profile, a, b)

    def layout(self, plan) -> dict[str, tuple[float, float]]:
        """The formation seen from above (x, y), scaled into the picture."""
        xs, ys = [q[0] for q in self.positions], [q[1] for q in self.positions]
        span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
        return {f"{plan.prefix}s{s}": (0.1 + 0.8 * (x - min(xs)) / span, 0.1 + 0.8 * (max(ys) - y) / span)
                for s, (x, y, _) in enumerate(self.positions)}

    def edge_words(self, a: int, b: int) -> str:
        return f"{math.dist(self.positions[a], self.positions[b]):.1f} m, "


def _positions(c, value) -> list[tuple[float, float, float]]:
    if not isinstance(value, list) or not value:
        c.fail("topology.positions", "expected a list of [x, y] or [x, y, z] positions in metres")
    out = []
    for i, pos in enumerate(value):
        key = f"topology.positions[{i}]"
        if not isinstance(pos, list) or len(pos) not in (2, 3):
            c.fail(key, f"expected [x, y] or [x, y, z] in metres, got {pos!r}")
        xyz = [c.number(v, key, -1e9, 1e9, "a number of metres") if not isinstance(v, str) else
               c.unit(parse_length, v, key) for v in pos]
        out.append(tuple(xyz + [0.0] * (3 - len(xyz))))
    if len(out) > MAX_SATELLITES:
        c.fail("topology.positions", f"expected at most {MAX_SATELLITES} satellites, got {len(out)}")
    if len(set(out)) < len(out):
        c.fail("topology.positions", "expected every satellite at its own position (two share one)")
    return out


def _rates(c, value) -> tuple[tuple[float, float], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not value:
        c.fail("topology.isl_rates", "expected a mapping of ISL length to rate, e.g. {100m: 1.6Tbit/s, 200m: 800Gbit/s}")
    return tuple(sorted((c.unit(parse_length, k, f"topology.isl_rates.{k}"),
                         c.unit(parse_rate, v, f"topology.isl_rates.{k}")) for k, v in value.items()))
