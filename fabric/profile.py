"""Profiles: the YAML a user writes, checked and turned into plain data.

Everything here is pure: no root, no kernel.  A bad profile raises ProfileError whose
message is one line: file, key path, what was expected.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from collectives import COLLECTIVES
from fabric import events as fabric_events
from fabric import topology as topologies
from fabric.models import DTYPE_BYTES, PRESETS, Model
from fabric.stats import Until
from fabric.topology import Topology
from fabric.units import UnitError, parse_flops, parse_fraction, parse_rate, parse_size, parse_time


class ProfileError(ValueError):
    """Bad input; str() is the one line the CLI prints."""

    def __init__(self, source: str, key: str, expected: str):
        self.source, self.key, self.expected = source, key, expected
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {expected}")


@dataclass(frozen=True)
class Endpoint:
    """What the software stack pays beside the wire (real seconds): per collective call (a
    kernel launch, NCCL's base latency) and per step of its schedule (a rank noticing a chunk
    arrived and sending the next).  The ranks wait it out x k; the α-β model includes it."""
    op_s: float | None = 0.0     # None (a link class's): the profile's
    step_s: float | None = 0.0


@dataclass(frozen=True)
class LinkClass:
    """One class of link, in real-fabric numbers (SI units)."""
    name: str
    rate_bps: float          # per direction
    latency_s: float = 0.0   # one-way, rank to rank across this tier
    jitter_s: float = 0.0    # standard deviation of the one-way latency
    loss: float = 0.0        # fraction of packets lost one way, rank to rank
    reorder: bool = False    # True: under jitter a packet may overtake an earlier one (netem's own draw);
                             # False: a FIFO line, as a single-path link and every reliable transport deliver
    distribution: str = "uniform"   # of the jitter (DISTRIBUTIONS); the std dev is jitter_s either way
    offloads: bool = False   # True: keep TSO/GSO/GRO on, as a stock host does (loss and shaping then act on bursts)
    endpoint: Endpoint | None = None   # per op and per step over this class (None: the profile's)
    lossless: bool = True    # True: link-level flow control (NVLink and InfiniBand credits, RoCE's PFC): a switch
                             # queue never drops, it holds what the senders send; False: drop-tail (Ethernet)
    buffer_bytes: int | None = None   # lossy only: a switch port's queue beyond the wire (None: one
                                      # bandwidth-delay product, rate x 2 x latency; plan.lossy_buffer)

    @property
    def impaired(self) -> bool:
        """True when this class needs netem (delay, jitter or loss)."""
        return self.latency_s > 0 or self.jitter_s > 0 or self.loss > 0


@dataclass(frozen=True)
class OpSpec:
    """One workload entry: a collective over one or more message sizes."""
    op: str
    sizes: tuple[int, ...]
    iters: int = 20
    warmup: int = 5
    splits: str = "even"     # all_to_all only: even | uneven
    root: int = 0            # broadcast only
    check: bool = True       # verify each result (nccl-tests -c); off saves the host's CPU on big sweeps
    algorithm: str = "auto"  # collectives/algorithms: auto (the model's fastest) or one that runs the op
    until: Until | None = None   # iters: auto (fabric.stats.Until); iters is then its max_iters


@dataclass(frozen=True)
class Gpu:
    """The accelerator the workloads' math is emulated for (roofline waits)."""
    hbm_Bps: float = 3.35e12     # H100 SXM HBM3, B/s (the default)
    flops: float = 989e12        # H100 SXM dense BF16, FLOP/s (NVIDIA H100 datasheet; docs/sources.md)


@dataclass(frozen=True)
class SlowRank:
    """Ranks that arrive late at every collective call: a delay drawn per call (real time)."""
    ranks: tuple[int, ...]
    delay_s: float               # the mean delay
    distribution: str = "fixed"  # fixed | normal | exponential | pareto
    std_s: float = 0.0           # normal
    shape: float = 0.0           # pareto (> 1, so the mean exists)

    @property
    def label(self) -> str:
        who = "every rank" if len(self.ranks) > 1 else f"rank {self.ranks[0]}"
        extra = {"normal": f", std {self.std_s * 1e6:g} us", "pareto": f", shape {self.shape:g}"}.get(self.distribution, "")
        return f"{who} late by {self.distribution} {self.delay_s * 1e6:g} us{extra}"


@dataclass(frozen=True)
class SlowLink:
    """One rank's port or one domain's uplink made worse than its link class, both directions."""
    target: str                  # "rank" | "domain"
    index: int
    rate_factor: float = 1.0
    extra_latency_s: float = 0.0
    extra_jitter_s: float = 0.0
    loss: float = 0.0

    @property
    def impaired(self) -> bool:
        return self.extra_latency_s > 0 or self.extra_jitter_s > 0 or self.loss > 0

    @property
    def label(self) -> str:
        parts = [f"rate x {self.rate_factor:g}"] if self.rate_factor != 1 else []
        parts += [f"+{self.extra_latency_s * 1e6:g} us"] if self.extra_latency_s else []
        parts += [f"+{self.extra_jitter_s * 1e6:g} us jitter"] if self.extra_jitter_s else []
        parts += [f"{self.loss:.3%} loss"] if self.loss else []
        return f"{self.target} {self.index} link: {', '.join(parts) or 'unchanged'}"


Straggler = SlowRank | SlowLink


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    links: dict[str, LinkClass]
    topology: Topology
    workload: tuple[OpSpec, ...]             # plain collectives
    description: str = ""
    scale: float | None = None   # None = auto
    workloads: tuple = ()                    # inference workloads (workloads.base.Entry)
    gpu: Gpu = Gpu()
    stragglers: tuple[Straggler, ...] = ()
    seed: int = 0                            # of the stragglers' random delays
    endpoint: Endpoint = Endpoint()          # the stack's cost per op and per step (link classes may differ)
    events: tuple = ()                       # links that change and fail during a run (fabric.events.Event)

    def without_stragglers(self) -> "Profile":
        return replace(self, stragglers=())

    @property
    def late_ranks_only(self) -> bool:
        """Every straggler is a late rank (none a slow link): the fabric is the baseline's."""
        return all(isinstance(s, SlowRank) for s in self.stragglers)

    def slow_link(self, target: str, index: int) -> SlowLink | None:
        return next((s for s in self.stragglers if isinstance(s, SlowLink) and (s.target, s.index) == (target, index)),
                    None)

    def link(self, name: str) -> LinkClass:
        return self.links[name]

    def endpoint_of(self, link: str) -> Endpoint:
        """The endpoint costs over a link class: each key its own where it gives it, else the profile's."""
        own = self.links[link].endpoint
        if own is None:
            return self.endpoint
        return Endpoint(self.endpoint.op_s if own.op_s is None else own.op_s,
                        self.endpoint.step_s if own.step_s is None else own.step_s)

    @property
    def impaired(self) -> bool:
        return any(self.links[n].impaired for n in self.used_links()) or \
            any(isinstance(s, SlowLink) and s.impaired for s in self.stragglers) or \
            any(e.needs_netem for e in self.events)

    def used_links(self) -> list[str]:
        return self.topology.used_links()


# ---------------------------------------------------------------------------------------
# Loading and checking

_TOP_KEYS = {"name", "description", "scale", "links", "topology", "workload", "gpu", "stragglers", "seed",
             "endpoint", "events"}
_LINK_KEYS = {"rate", "latency", "jitter", "loss", "reorder", "distribution", "offloads", "endpoint", "lossless",
              "buffer"}
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")   # of the jitter, as netem names them
_OP_KEYS = {"op", "bytes", "iters", "warmup", "splits", "root", "check", "algorithm", "budget"}
MAX_RANKS = 72  # one process per rank on one host: a whole NVL72 domain (benchmarks/scale.py measures what it costs)


def load(path: str | Path) -> Profile:
    """Read and check a profile file."""
    return parse(read(path), str(path))


def read(path: str | Path):
    """A profile file's YAML, not yet checked (sweeps vary it before parse)."""
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
    return data


def parse(data, source: str = "<profile>") -> Profile:
    """Check a profile already read from YAML (a dict) and build a Profile."""
    c = _Checker(source)
    # workload may be absent: `fabric exec` runs the user's program instead (run and sweep need one)
    c.mapping(data, "", _TOP_KEYS, required={"name", "links", "topology"})
    name = c.string(data["name"], "name")
    description = c.string(data.get("description", ""), "description") if "description" in data else ""
    scale = _parse_scale(c, data.get("scale", "auto"))
    links = _parse_links(c, data["links"])
    topology = c.topology = topologies.parse(c, data["topology"], links, MAX_RANKS)
    gpu = _parse_gpu(c, data.get("gpu", {}))
    ops, entries = _parse_workload(c, data["workload"], topology, gpu) if "workload" in data else ((), ())
    stragglers = _parse_stragglers(c, data.get("stragglers", []), topology)
    events = fabric_events.parse(c, data["events"], topology, links) if "events" in data else ()
    if events and stragglers:
        c.fail("events", "events and stragglers in one profile: a run with stragglers also runs a baseline "
                         "without them, and the events would fall on both; give them in two profiles")
    return Profile(name=name, source=source, links=links, topology=topology,
                   workload=ops, description=description, scale=scale, workloads=entries, gpu=gpu,
                   stragglers=stragglers, seed=c.integer(data.get("seed", 0), "seed", 0),
                   endpoint=_parse_endpoint(c, data.get("endpoint", {}), "endpoint"), events=events)


class _Checker:
    def __init__(self, source: str):
        self.source = source
        self.topology: Topology | None = None   # known once parsed; ranks() checks against it

    def link_name(self, value, key: str, links: dict) -> str:
        """value, a link class the profile defines; else the one-line error naming key."""
        if not isinstance(value, str) or value not in links:
            self.fail(key, f"unknown link class {value!r}; expected one of {', '.join(sorted(links))}")
        return value

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

    def time(self, value, key: str) -> float:
        return self.unit(parse_time, value, key)

    def choice(self, value, key: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            self.fail(key, f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    def dtype(self, value, key: str) -> str:
        return self.choice(value, key, tuple(DTYPE_BYTES))

    def number(self, value, key: str, lo: float, hi: float, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            self.fail(key, f"expected {what}, got {value!r}")
        return float(value)

    def model(self, value, key: str) -> Model:
        """A preset's name, or a custom model given by the same fields (fabric.models.Model)."""
        if isinstance(value, str):
            if value not in PRESETS:
                self.fail(key, f"unknown model {value!r}; expected one of {', '.join(sorted(PRESETS))} "
                               f"or a mapping of model fields")
            return PRESETS[value]
        fields = [f for f in Model.__dataclass_fields__ if f != "name"]
        self.mapping(value, key, set(fields) | {"name"}, required={"hidden", "layers", "heads", "head_dim", "vocab"})
        ints = {f: self.integer(value.get(f, 0), f"{key}.{f}", 1 if f in ("hidden", "layers", "heads", "head_dim",
                                                                          "vocab") else 0, 1 << 24) for f in fields}
        m = Model(name=self.string(value.get("name", "custom"), f"{key}.name"), **ints)
        if not (m.kv_heads or m.kv_lora_rank):
            self.fail(key, "expected kv_heads (GQA) or kv_lora_rank (MLA) > 0")
        if m.experts and not 1 <= m.top_k <= m.experts:
            self.fail(f"{key}.top_k", f"expected 1..{m.experts} experts per token, got {m.top_k}")
        if not m.moe and not m.mla and not m.ffn:
            self.fail(f"{key}.ffn", "expected the FFN width of a dense model (> 0)")
        return m

    def ranks(self, value, key: str) -> tuple[int, ...]:
        """A list of distinct ranks, or 'domain:N' (every rank of domain N)."""
        topo = self.topology
        if isinstance(value, str) and value.startswith("domain:") and value[7:].isdigit():
            d = int(value[7:])
            if d >= topo.domains:
                self.fail(key, f"expected a domain below {topo.domains}, got {value!r}")
            return tuple(range(d * topo.ranks_per_domain, (d + 1) * topo.ranks_per_domain))
        if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
            self.fail(key, "expected a list of distinct ranks or 'domain:N'")
        return tuple(self.integer(r, key, 0, topo.ranks - 1) for r in value)


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
            reorder=_flag(c, spec.get("reorder", False), f"{key}.reorder"),
            distribution=c.choice(spec.get("distribution", "uniform"), f"{key}.distribution", DISTRIBUTIONS),
            offloads=_flag(c, spec.get("offloads", False), f"{key}.offloads"),
            endpoint=_parse_endpoint(c, spec["endpoint"], f"{key}.endpoint", None) if "endpoint" in spec else None,
            lossless=_flag(c, spec.get("lossless", True), f"{key}.lossless"),
            buffer_bytes=_parse_buffer(c, spec, key),
        )
    return links


def _parse_buffer(c: _Checker, spec: dict, key: str) -> int | None:
    """A lossy link class's switch buffer per port (bytes > 0); a lossless one has none to give."""
    if "buffer" not in spec:
        return None
    if spec.get("lossless", True) is True:
        c.fail(f"{key}.buffer", "a buffer is for a lossy link class; expected lossless: false beside it")
    return c.unit(parse_size, spec["buffer"], f"{key}.buffer")


def _parse_endpoint(c: _Checker, value, key: str, default=0.0) -> Endpoint:
    """{op, step}: a key not given is `default` (a link class's: None, the profile's applies)."""
    c.mapping(value, key, {"op", "step"})
    return Endpoint(*(c.time(value[k], f"{key}.{k}") if k in value else default for k in ("op", "step")))


def _algorithm(c: _Checker, value, key: str, ops: set[str], world: bool = False) -> str:
    """auto, or an algorithm that runs every one of `ops` (world: on every rank of the topology,
    which hierarchical needs spread over two or more domains of two or more ranks)."""
    from collectives.algorithms import ALGORITHMS, AUTO, runs
    if value == AUTO:
        return value
    if not isinstance(value, str) or value not in ALGORITHMS:
        c.fail(key, f"unknown algorithm {value!r}; expected auto or one of {', '.join(sorted(ALGORITHMS))}")
    missing = sorted(op for op in ops if op not in ALGORITHMS[value].ops)
    if missing:
        c.fail(key, f"{value} does not run {', '.join(missing)}; algorithms that do: "
                    f"{', '.join(runs(missing[0]))} (or auto)")
    topo = c.topology
    if world and value == "hierarchical" and (topo.domains < 2 or topo.ranks_per_domain < 2 or not topo.inter):
        c.fail(key, "hierarchical needs two or more domains of two or more ranks (kind: two_tier); "
                    "this topology has one tier")
    return value


def _flag(c: _Checker, value, key: str) -> bool:
    if not isinstance(value, bool):
        c.fail(key, f"expected true or false, got {value!r}")
    return value


def _parse_gpu(c: _Checker, value) -> Gpu:
    c.mapping(value, "gpu", {"hbm", "flops"})
    hbm = c.unit(parse_rate, value["hbm"], "gpu.hbm") / 8 if "hbm" in value else Gpu.hbm_Bps
    return Gpu(hbm, c.unit(parse_flops, value["flops"], "gpu.flops") if "flops" in value else Gpu.flops)


def _parse_workload(c: _Checker, value, topology: Topology, gpu: Gpu) -> tuple[tuple[OpSpec, ...], tuple]:
    """Plain collectives ({op: ...}) and inference workloads ({tp_decode: {...}}, ...)."""
    from workloads import KINDS
    from workloads.base import Context, Entry
    if not isinstance(value, list) or not value:
        c.fail("workload", f"expected a list of {{op, bytes, iters, warmup}} or {{{' | '.join(KINDS)}: ...}} entries")
    ops, entries = [], []
    ctx = Context(topology.ranks, topology.domains, topology.ranks_per_domain, gpu.hbm_Bps, gpu.flops)
    for i, entry in enumerate(value):
        key = f"workload[{i}]"
        if isinstance(entry, dict) and len(entry) == 1 and next(iter(entry)) in KINDS:
            kind, spec = next(iter(entry.items()))
            cls = KINDS[kind]
            c.mapping(spec, f"{key}.{kind}", cls.keys | {"algorithm", "budget"}, required=cls.required)
            w = cls.parse(c, {k: v for k, v in spec.items() if k not in ("algorithm", "budget")}, f"{key}.{kind}", ctx)
            from workloads.base import ops_of
            algorithm = _algorithm(c, spec.get("algorithm", "auto"), f"{key}.{kind}.algorithm",
                                   ops_of(w.phases(topology.ranks)))
            iters, until = _iterations(c, spec, "steps", 4, f"{key}.{kind}", 10000)
            entries.append(Entry(w.label, w, iters=iters,
                                 warmup=c.integer(spec.get("warmup", 1), f"{key}.{kind}.warmup", 0, 10000),
                                 config={kind: spec}, algorithm=algorithm, until=until))
            continue
        if isinstance(entry, dict) and "op" not in entry and len(entry) == 1:
            c.fail(f"{key}.{next(iter(entry))}", f"unknown workload; expected op: or one of {', '.join(KINDS)}")
        ops.append(_parse_op(c, entry, key, topology))
    return tuple(ops), tuple(entries)


def _parse_op(c: _Checker, entry, key: str, topology: Topology) -> OpSpec:
    c.mapping(entry, key, _OP_KEYS, required={"op", "bytes"})
    op = entry["op"]
    if not isinstance(op, str) or op not in COLLECTIVES:
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
    check = entry.get("check", True)
    if not isinstance(check, bool):
        c.fail(f"{key}.check", f"expected true or false, got {check!r}")
    iters, until = _iterations(c, entry, "iters", OpSpec.iters, key, 100000)
    return OpSpec(
        op=op, sizes=sizes, iters=iters, until=until,
        warmup=c.integer(entry.get("warmup", OpSpec.warmup), f"{key}.warmup", 0, 100000),
        splits=splits, root=root, check=check,
        algorithm=_algorithm(c, entry.get("algorithm", "auto"), f"{key}.algorithm", {op}, world=True),
    )


def _iterations(c: _Checker, entry: dict, name: str, default: int, key: str, hi: int) -> tuple[int, Until | None]:
    """`iters` (`steps` for a workload): a whole number, or auto with an optional `budget:` of
    wall time for the measured iterations (fabric.stats.Until)."""
    value = entry.get(name, default)
    if value == "auto":
        budget = c.time(entry.get("budget", f"{Until.budget_s:g}s"), f"{key}.budget")
        if budget <= 0:
            c.fail(f"{key}.budget", f"expected a wall time > 0, got {entry['budget']!r}")
        return Until.max_iters, Until(budget_s=budget)
    if "budget" in entry:
        c.fail(f"{key}.budget", f"applies to {name}: auto only")
    if isinstance(value, str):
        c.fail(f"{key}.{name}", f"expected a whole number between 1 and {hi} or auto, got {value!r}")
    return c.integer(value, f"{key}.{name}", 1, hi), None


_RANK_KEYS = {"rank", "delay", "distribution", "std", "shape"}
_LINK_STRAGGLER_KEYS = {"link", "rate_factor", "extra_latency", "extra_jitter", "loss"}
DELAY_DISTRIBUTIONS = ("fixed", "normal", "exponential", "pareto")


def _parse_stragglers(c: _Checker, value, topology: Topology) -> tuple[Straggler, ...]:
    if not isinstance(value, list):
        c.fail("stragglers", "expected a list of {rank, delay, ...} or {link, rate_factor, ...} entries")
    out: list[Straggler] = []
    for i, spec in enumerate(value):
        key = f"stragglers[{i}]"
        if isinstance(spec, dict) and "link" in spec:
            c.mapping(spec, key, _LINK_STRAGGLER_KEYS, required={"link"})
            target, _, index = str(spec["link"]).partition(":")
            uplinks = topology.inter and topology.SLOW_DOMAIN_LINKS
            limit = {"rank": topology.ranks, "domain": topology.domains if uplinks else 0}.get(target, 0)
            if not index.isdigit() or int(index) >= limit:
                c.fail(f"{key}.link", f"expected rank:N (N < {topology.ranks})" +
                       (f" or domain:N (N < {topology.domains}, a domain's uplink)" if uplinks else "") +
                       f", got {spec['link']!r}")
            link = SlowLink(target, int(index),
                            rate_factor=c.number(spec.get("rate_factor", 1), f"{key}.rate_factor", 1e-3, 1,
                                                 "a factor in (0, 1] on the link's rate"),
                            extra_latency_s=c.time(spec.get("extra_latency", 0), f"{key}.extra_latency"),
                            extra_jitter_s=c.time(spec.get("extra_jitter", 0), f"{key}.extra_jitter"),
                            loss=c.unit(parse_fraction, spec.get("loss", 0), f"{key}.loss"))
            if any(isinstance(o, SlowLink) and (o.target, o.index) == (link.target, link.index) for o in out):
                c.fail(f"{key}.link", f"{spec['link']} is already slowed by an earlier entry")
            out.append(link)
            continue
        c.mapping(spec, key, _RANK_KEYS, required={"rank", "delay"})
        ranks = tuple(range(topology.ranks)) if spec["rank"] == "all" else \
            (c.integer(spec["rank"], f"{key}.rank", 0, topology.ranks - 1),)
        dist = c.choice(spec.get("distribution", "fixed"), f"{key}.distribution", DELAY_DISTRIBUTIONS)
        delay = c.time(spec["delay"], f"{key}.delay")
        if delay <= 0:
            c.fail(f"{key}.delay", "expected a delay > 0")
        std = c.time(spec.get("std", 0), f"{key}.std")
        if ("std" in spec) != (dist == "normal"):
            c.fail(f"{key}.std", "std goes with distribution: normal (and it needs one)")
        if ("shape" in spec) != (dist == "pareto"):
            c.fail(f"{key}.shape", "shape goes with distribution: pareto (and it needs a shape > 1)")
        shape = c.number(spec["shape"], f"{key}.shape", 1.01, 100, "a pareto shape > 1 (so the mean delay exists)") \
            if dist == "pareto" else 0.0
        out.append(SlowRank(ranks, delay, dist, std, shape))
    return tuple(out)
