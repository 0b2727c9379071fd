"""Profiles: the YAML a user writes, checked and turned into plain data.

Everything here is pure: no root, no kernel.  A bad profile raises ProfileError whose
message is one line: file, key path, what was expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from collectives import COLLECTIVES
from fabric.units import UnitError, parse_fraction, parse_rate, parse_size, parse_time


class ProfileError(ValueError):
    """Bad input; str() is the one line the CLI prints."""

    def __init__(self, source: str, key: str, expected: str):
        self.source, self.key, self.expected = source, key, expected
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {expected}")


@dataclass(frozen=True)
class LinkClass:
    """One class of link, in real-fabric numbers (SI units)."""
    name: str
    rate_bps: float          # per direction
    latency_s: float = 0.0   # one-way, rank to rank across this tier
    jitter_s: float = 0.0    # standard deviation of the one-way latency
    loss: float = 0.0        # fraction of packets lost one way, rank to rank
    reorder: bool = True     # False: jitter never lets a packet overtake an earlier one (a FIFO line)
    distribution: str = "uniform"   # of the jitter (DISTRIBUTIONS); the std dev is jitter_s either way
    offloads: bool = False   # True: keep TSO/GSO/GRO on, as a stock host does (loss and shaping then act on bursts)

    @property
    def impaired(self) -> bool:
        """True when this class needs netem (delay, jitter or loss)."""
        return self.latency_s > 0 or self.jitter_s > 0 or self.loss > 0


@dataclass(frozen=True)
class Topology:
    kind: str                # "flat" | "two_tier"
    domains: int             # 1 for flat
    ranks_per_domain: int
    intra: str               # link class of each rank's port
    inter: str | None = None  # link class of each domain's shared uplink (two_tier, domains > 1)

    @property
    def ranks(self) -> int:
        return self.domains * self.ranks_per_domain

    def domain_of(self, rank: int) -> int:
        return rank // self.ranks_per_domain


@dataclass(frozen=True)
class OpSpec:
    """One workload entry: a collective over one or more message sizes."""
    op: str
    sizes: tuple[int, ...]
    iters: int = 20
    warmup: int = 5
    splits: str = "even"     # all_to_all only: even | uneven
    root: int = 0            # broadcast only


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    links: dict[str, LinkClass]
    topology: Topology
    workload: tuple[OpSpec, ...]
    description: str = ""
    scale: float | None = None   # None = auto

    def link(self, name: str) -> LinkClass:
        return self.links[name]

    @property
    def impaired(self) -> bool:
        return any(self.links[n].impaired for n in self.used_links())

    def used_links(self) -> list[str]:
        names = [self.topology.intra]
        if self.topology.inter and self.topology.domains > 1:
            names.append(self.topology.inter)
        return names


# ---------------------------------------------------------------------------------------
# Loading and checking

_TOP_KEYS = {"name", "description", "scale", "links", "topology", "workload"}
_LINK_KEYS = {"rate", "latency", "jitter", "loss", "reorder", "distribution", "offloads"}
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")   # of the jitter, as netem names them
_FLAT_KEYS = {"kind", "ranks", "link"}
_TWO_TIER_KEYS = {"kind", "domains", "ranks_per_domain", "intra", "inter"}
_OP_KEYS = {"op", "bytes", "iters", "warmup", "splits", "root"}
MAX_RANKS = 64  # one process per rank on one host; beyond this the host, not the fabric, is measured


def load(path: str | Path) -> Profile:
    """Read and check a profile file."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ProfileError(source, "", "no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ProfileError(source, "", f"cannot read the file ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed"
        raise ProfileError(source, where, f"malformed YAML ({problem})") from None
    return parse(data, source)


def parse(data, source: str = "<profile>") -> Profile:
    """Check a profile already read from YAML (a dict) and build a Profile."""
    c = _Checker(source)
    c.mapping(data, "", _TOP_KEYS, required={"name", "links", "topology", "workload"})
    name = c.string(data["name"], "name")
    description = c.string(data.get("description", ""), "description") if "description" in data else ""
    scale = _parse_scale(c, data.get("scale", "auto"))
    links = _parse_links(c, data["links"])
    topology = _parse_topology(c, data["topology"], links)
    workload = _parse_workload(c, data["workload"], topology)
    return Profile(name=name, source=source, links=links, topology=topology,
                   workload=workload, description=description, scale=scale)


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, expected: str):
        raise ProfileError(self.source, key, expected)

    def mapping(self, value, key: str, allowed: set[str], required: set[str] = frozenset()):
        if not isinstance(value, dict):
            self.fail(key or "(top level)", "expected a mapping of keys")
        for k in value:
            if k not in allowed:
                self.fail(_join(key, str(k)), f"unknown key; expected one of {', '.join(sorted(allowed))}")
        for k in sorted(required):
            if k not in value:
                self.fail(_join(key, k), "missing required key")

    def string(self, value, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "expected a non-empty string")
        return value

    def integer(self, value, key: str, lo: int, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            self.fail(key, f"expected a whole number {bound}, got {value!r}")
        return value

    def unit(self, parser, value, key: str):
        try:
            return parser(value)
        except UnitError as exc:
            self.fail(key, str(exc))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _parse_scale(c: _Checker, value) -> float | None:
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        c.fail("scale", f"expected 'auto' or a number >= 1 (time dilation k), got {value!r}")
    return float(value)


def _parse_links(c: _Checker, value) -> dict[str, LinkClass]:
    if not isinstance(value, dict) or not value:
        c.fail("links", "expected a mapping of link class names to {rate, latency, jitter, loss}")
    links = {}
    for name, spec in value.items():
        key = f"links.{name}"
        c.mapping(spec, key, _LINK_KEYS, required={"rate"})
        links[str(name)] = LinkClass(
            name=str(name),
            rate_bps=c.unit(parse_rate, spec["rate"], f"{key}.rate"),
            latency_s=c.unit(parse_time, spec.get("latency", 0), f"{key}.latency"),
            jitter_s=c.unit(parse_time, spec.get("jitter", 0), f"{key}.jitter"),
            loss=c.unit(parse_fraction, spec.get("loss", 0), f"{key}.loss"),
            reorder=_flag(c, spec.get("reorder", True), f"{key}.reorder"),
            distribution=_choice(c, spec.get("distribution", "uniform"), f"{key}.distribution", DISTRIBUTIONS),
            offloads=_flag(c, spec.get("offloads", False), f"{key}.offloads"),
        )
    return links


def _flag(c: _Checker, value, key: str) -> bool:
    if not isinstance(value, bool):
        c.fail(key, f"expected true or false, got {value!r}")
    return value


def _choice(c: _Checker, value, key: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        c.fail(key, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _link_name(c: _Checker, value, key: str, links: dict) -> str:
    if not isinstance(value, str) or value not in links:
        c.fail(key, f"unknown link class {value!r}; expected one of {', '.join(sorted(links))}")
    return value


def _parse_topology(c: _Checker, value, links: dict) -> Topology:
    if not isinstance(value, dict):
        c.fail("topology", "expected a mapping with kind: flat or kind: two_tier")
    kind = value.get("kind")
    if kind == "flat":
        c.mapping(value, "topology", _FLAT_KEYS, required={"kind", "ranks", "link"})
        ranks = c.integer(value["ranks"], "topology.ranks", 1, MAX_RANKS)
        return Topology("flat", 1, ranks, _link_name(c, value["link"], "topology.link", links))
    if kind == "two_tier":
        c.mapping(value, "topology", _TWO_TIER_KEYS, required={"kind", "domains", "ranks_per_domain", "intra"})
        domains = c.integer(value["domains"], "topology.domains", 1, 250)
        per = c.integer(value["ranks_per_domain"], "topology.ranks_per_domain", 1, 250)
        if domains * per > MAX_RANKS:
            c.fail("topology", f"expected at most {MAX_RANKS} ranks in all, got {domains} x {per}")
        intra = _link_name(c, value["intra"], "topology.intra", links)
        inter = None
        if domains > 1:
            if "inter" not in value:
                c.fail("topology.inter", "missing required key (the uplink class between domains)")
            inter = _link_name(c, value["inter"], "topology.inter", links)
        elif "inter" in value:
            inter = _link_name(c, value["inter"], "topology.inter", links)
        return Topology("two_tier", domains, per, intra, inter)
    c.fail("topology.kind", f"expected flat or two_tier, got {kind!r}")


def _parse_workload(c: _Checker, value, topology: Topology) -> tuple[OpSpec, ...]:
    if not isinstance(value, list) or not value:
        c.fail("workload", "expected a list of {op, bytes, iters, warmup} entries")
    ops = []
    for i, entry in enumerate(value):
        key = f"workload[{i}]"
        c.mapping(entry, key, _OP_KEYS, required={"op", "bytes"})
        op = entry["op"]
        if op not in COLLECTIVES:
            c.fail(f"{key}.op", f"unknown op {op!r}; expected one of {', '.join(sorted(COLLECTIVES))}")
        coll = COLLECTIVES[op]
        if topology.ranks < coll.min_ranks:
            c.fail(f"{key}.op", f"{op} needs at least {coll.min_ranks} ranks, the topology has {topology.ranks}")
        raw = entry["bytes"] if isinstance(entry["bytes"], list) else [entry["bytes"]]
        if not raw:
            c.fail(f"{key}.bytes", "expected a size or a non-empty list of sizes")
        sizes = tuple(c.unit(parse_size, b, f"{key}.bytes") for b in raw)
        splits = entry.get("splits", "even")
        if splits not in ("even", "uneven") or (splits == "uneven" and op != "all_to_all"):
            c.fail(f"{key}.splits", "expected even or uneven (uneven only for all_to_all)")
        root = c.integer(entry.get("root", 0), f"{key}.root", 0, topology.ranks - 1)
        if "root" in entry and op != "broadcast":
            c.fail(f"{key}.root", "root applies to broadcast only")
        ops.append(OpSpec(
            op=op, sizes=sizes,
            iters=c.integer(entry.get("iters", OpSpec.iters), f"{key}.iters", 1, 100000),
            warmup=c.integer(entry.get("warmup", OpSpec.warmup), f"{key}.warmup", 0, 100000),
            splits=splits, root=root,
        ))
    return tuple(ops)
