"""Events: links that fail and come back, change rate or latency, or start losing packets in
bursts, while a run goes on (a profile's `events:`).

    events:
      - {at: 40us, link: 0-1, state: down}          # an ISL between satellites 0 and 1 fails
      - {at: 90us, link: 0-1, state: up}
      - {at: 40us, link: satellite:3, state: down}  # every ISL of satellite 3
      - {at: 60us, link: 1-2, latency: 2.6us}       # formation drift: the link's new one-way latency
      - {at: 60us, class: isl, rate: 400Gbit/s}     # every link of a class
      - {at: 0us, class: isl, burst_loss: {p: 1%, r: 30%}}   # Gilbert-Elliott bursts (netem's gemodel)

`at` is real-fabric time after the ranks start (their first warm-up included), k times longer
when emulated.  A link is named as the topology names it (`fabric plan` lists the names:
rank:N for a rank's port, and each kind's own, e.g. A-B between two routers).  A link going
down is taken down at both ends; the topology routes around it where it can (its `detour`: the
shortest way round, only the routes that crossed it moved) and where a rank pair is left
without any path the run stops at once with one line naming the link and the moment.  `rate`
and `latency` are the link's new ones (real numbers; the latency where the link carries one);
`loss` a new random loss and `burst_loss` netem's Gilbert-Elliott model: p, the chance per
packet of going from the good state to the bad, r back, bad the loss in the bad state (default
100 %), good in the good (default 0).  The mean burst is 1/r packets, the mean loss
p / (p + r) x bad + r / (p + r) x good.

A Step is one event as kernel operations, worked out in advance from the plan (pure): the
emulation applies them at their moment, and `fabric plan` prints the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from fabric import tc
from fabric.dilation import Dilation
from fabric.units import fmt_rate, fmt_time, parse_fraction, parse_rate

KEYS = {"at", "link", "class", "state", "rate", "latency", "loss", "burst_loss"}
BURST_KEYS = {"p", "r", "bad", "good"}
CHANGES = ("rate", "latency", "loss", "burst_loss")


@dataclass(frozen=True)
class Event:
    at_s: float                         # real seconds after the ranks start
    link: str | None = None             # a topology's link name (Topology.link_names)
    link_class: str | None = None       # ... or every link of this class
    state: str | None = None            # "down" | "up"
    rate_bps: float | None = None
    latency_s: float | None = None
    loss: float | None = None
    burst_loss: tuple[float, float, float, float] | None = None   # p, r, bad, good

    @property
    def needs_netem(self) -> bool:
        return self.latency_s is not None or bool(self.loss) or self.burst_loss is not None

    def text(self) -> str:
        """'link 0-1 down', 'class isl: rate 400Gbit/s', ..."""
        what = f"link {self.link}" if self.link else f"class {self.link_class}"
        if self.state:
            return f"{what} {self.state}"
        parts = []
        if self.rate_bps is not None:
            parts.append(f"rate {fmt_rate(self.rate_bps)}")
        if self.latency_s is not None:
            parts.append(f"latency {fmt_time(self.latency_s)}")
        if self.loss is not None:
            parts.append(f"loss {self.loss * 100:.4g}%")
        if self.burst_loss:
            p, r, bad, good = self.burst_loss
            parts.append(f"burst loss p {p * 100:.4g}% r {r * 100:.4g}% bad {bad * 100:.4g}% good {good * 100:.4g}%")
        return f"{what}: {', '.join(parts)}"


def parse(c, value, topology, links: dict) -> tuple[Event, ...]:
    """A profile's `events:` list, checked (c: the profile's checker, so errors name the key)."""
    if not isinstance(value, list):
        c.fail("events", "expected a list of {at, link or class, state or rate/latency/loss/burst_loss}")
    names = set(topology.link_names())
    out, down = [], set()
    for i, spec in enumerate(value):
        key = f"events[{i}]"
        c.mapping(spec, key, KEYS, required={"at"})
        at = c.time(spec["at"], f"{key}.at")
        if ("link" in spec) == ("class" in spec):
            c.fail(key, "expected either link: (one link, e.g. " + _examples(topology) + ") or class: (every link "
                        "of a link class)")
        link = cls = None
        if "link" in spec:
            link = str(spec["link"])
            if link not in names:
                c.fail(f"{key}.link", f"no link {link!r} in this {topology.kind} topology; expected e.g. "
                                      f"{_examples(topology)} (fabric plan lists them)")
        else:
            cls = c.link_name(spec["class"], f"{key}.class", links)
        changes = [k for k in CHANGES if k in spec]
        if ("state" in spec) == bool(changes):
            c.fail(key, "expected either state: down|up or a change (rate, latency, loss, burst_loss)")
        event = Event(at, link, cls)
        if "state" in spec:
            if link is None:
                c.fail(f"{key}.state", "a state goes with link: (one link or a router)")
            state = c.choice(spec["state"], f"{key}.state", ("down", "up"))
            if state == "up" and link not in down:
                c.fail(f"{key}.state", f"link {link} goes up, but no earlier event takes it down")
            (down.add if state == "down" else down.discard)(link)
            event = replace(event, state=state)
        if "rate" in spec:
            event = replace(event, rate_bps=c.unit(parse_rate, spec["rate"], f"{key}.rate"))
        if "latency" in spec:
            event = replace(event, latency_s=c.time(spec["latency"], f"{key}.latency"))
        if "loss" in spec:
            event = replace(event, loss=c.unit(parse_fraction, spec["loss"], f"{key}.loss"))
        if "burst_loss" in spec:
            event = replace(event, burst_loss=_burst(c, spec["burst_loss"], f"{key}.burst_loss"))
            if "loss" in spec:
                c.fail(f"{key}.loss", "either loss (random) or burst_loss, not both")
        out.append(event)
    if any(b.at_s < a.at_s for a, b in zip(out, out[1:])):
        c.fail("events", "expected the events in the order of their `at`")
    return tuple(out)


def _burst(c, value, key: str) -> tuple[float, float, float, float]:
    c.mapping(value, key, BURST_KEYS, required={"p", "r"})
    p, r = (c.unit(parse_fraction, value[k], f"{key}.{k}") for k in ("p", "r"))
    if r <= 0:
        c.fail(f"{key}.r", "expected a chance > 0 of leaving the bad state (or its bursts never end)")
    return p, r, c.unit(parse_fraction, value.get("bad", 1), f"{key}.bad"), \
        c.unit(parse_fraction, value.get("good", 0), f"{key}.good")


def _examples(topology) -> str:
    names = topology.link_names()
    return ", ".join(dict.fromkeys([names[0]] + [n for n in names if not n.startswith("rank:")][:2]))


# ---------------------------------------------------------------------------------------
# Steps: each event as kernel operations

@dataclass(frozen=True)
class LinkState:
    node: str
    intf: str
    up: bool

    def text(self) -> str:
        return f"{self.node} ip link set {self.intf} {'up' if self.up else 'down'}"


@dataclass(frozen=True)
class Route:
    node: str
    dst: str
    dev: str

    def text(self) -> str:
        return f"{self.node} ip route replace {self.dst} dev {self.dev} scope link"


@dataclass(frozen=True)
class Shaping:
    """One tc operation on one interface, with what it does to what is there (tc.VERBS)."""
    node: str
    intf: str
    op: tc.Op
    verb: str

    def text(self) -> str:
        return f"{self.node} {tc.text(self.op, self.intf, self.verb)}"


@dataclass
class Step:
    index: int
    event: Event
    emulated_at_s: float
    ops: list = field(default_factory=list)       # LinkState, Route, Shaping, in order
    moved: int = 0                                # routes that change
    lost: list[tuple[int, int]] = field(default_factory=list)   # rank pairs left without a path

    def lost_text(self) -> str:
        """'12 rank pairs without a path (0->4, 0->5, 0->6, ...)' for the one-line error."""
        shown = ", ".join(f"{s}->{d}" for s, d in self.lost[:6]) + (", ..." if len(self.lost) > 6 else "")
        return f"{len(self.lost)} rank pair{'s' if len(self.lost) > 1 else ''} without a path ({shown})"

    def headline(self) -> str:
        real = fmt_time(self.event.at_s) if self.event.at_s else "0"
        return f"event {self.index} at {real} real ({self.emulated_at_s:.3g} s emulated): {self.event.text()}"


def steps(plan) -> list[Step]:
    """Every event of the plan's profile as a Step, in order, each from the fabric as the ones
    before it left it.  A step whose `lost` is not empty is where a run stops."""
    from fabric.plan import frame, shaping
    topo, dil = plan.profile.topology, plan.dilation
    shapers = dict(plan.shapers)
    class_rate = {name: link.rate_bps for name, link in plan.profile.links.items()}
    installed = {node: dict(routes) for node, routes in plan.routes.items()}    # node -> {dst: dev}
    down: set[str] = set()
    out = []
    for i, event in enumerate(plan.profile.events):
        step = Step(i, event, dil.emulated(event.at_s))
        links = topo.links_named(plan, event.link) if event.link else \
            [l for l in plan.links if l.link_class == event.link_class]
        if event.state:
            step.ops += [LinkState(node, intf, event.state == "up") for l in links
                         for node, intf in ((l.a_node, l.a_intf), (l.b_node, l.b_intf))]
            (down.add if event.state == "down" else down.discard)(event.link)
            dead = {(node, intf) for name in down for l in topo.links_named(plan, name)
                    for node, intf in ((l.a_node, l.a_intf), (l.b_node, l.b_intf))}
            # the kernel drops an interface's routes when it goes down, and takes none through a
            # down one: forget the first, leave the second for when it comes back up
            for node, now in installed.items():
                for dst in [d for d, dev in now.items() if (node, dev) in dead]:
                    del now[dst]
            table, step.lost = topo.detour(plan, frozenset(down))
            for node, routes in table.items():
                now = installed.setdefault(node, {})
                for dst, dev in routes:
                    if now.get(dst) != dev and (node, dev) not in dead:
                        step.moved += 1
                        step.ops.append(Route(node, dst, dev))
                        now[dst] = dev
        else:
            f = frame(plan.mtu)
            for key in dict.fromkeys(end for l in links for end in l.ends):
                if key not in shapers:
                    continue
                old = shapers[key]
                # a class's new rate scales each of its links (an uplink of several NICs' rate keeps
                # its ratio); a link's is its own
                factor = 1.0 if event.rate_bps is None else (
                    event.rate_bps / class_rate[event.link_class] if event.link_class else
                    dil.emulated_rate(event.rate_bps) / old.rate_bps)
                new = _changed(old, event, dil, factor)
                if event.rate_bps is not None:
                    burst, quantum = shaping(new.rate_bps, f)
                    new = replace(new, burst=burst, quantum=quantum)
                    step.ops.append(Shaping(old.node, old.intf, tc.Class(1, 0x10000, new.rate_bps, new.rate_bps,
                                                                         new.burst, new.quantum), "change"))
                    step.ops += [Shaping(old.node, old.intf, tc.Class(b.minor, tc.handle(1), b.rate_bps, new.rate_bps,
                                                                      new.burst, new.quantum), "change")
                                 for b in new.bands]
                for a, b in zip(old.bands, new.bands):
                    if (a.delay_s, a.loss, a.burst_loss) != (b.delay_s, b.loss, b.burst_loss):
                        if a.netem == b.netem:
                            step.ops.append(Shaping(old.node, old.intf, tc.Leaf(b.minor, b), "replace"))
                        else:       # a pfifo for a netem, or back: a qdisc of another kind in its place
                            step.ops += [Shaping(old.node, old.intf, tc.Leaf(a.minor, a), "delete"),
                                         Shaping(old.node, old.intf, tc.Leaf(b.minor, b), "replace")]
                shapers[key] = new
            if event.link_class and event.rate_bps is not None:
                class_rate[event.link_class] = event.rate_bps
        out.append(step)
    return out


def _changed(shaper, event: Event, dil: Dilation, factor: float):
    """The shaper with the event's change: its rate x factor (each class's guarantee in
    proportion); the latency on the classes that carry one; a loss on every class (each way a
    packet crosses the link loses it once)."""
    bands = []
    for b in shaper.bands:
        b = replace(b, rate_bps=b.rate_bps * factor)
        if event.latency_s is not None and b.delay_s > 0:
            b = replace(b, delay_s=dil.emulated(event.latency_s))
        if event.loss is not None:
            b = replace(b, loss=event.loss, burst_loss=None)
        if event.burst_loss is not None:
            b = replace(b, loss=0.0, burst_loss=event.burst_loss)
        bands.append(b)
    return replace(shaper, rate_bps=shaper.rate_bps * factor, bands=tuple(bands))


def lines(plan) -> list[str]:
    """`fabric plan`'s account of the events: each one's moment, what it does, and its commands."""
    out = []
    for step in steps(plan):
        tail = f"; {step.moved} route{'s' if step.moved != 1 else ''} move" if step.moved else ""
        if step.lost:
            tail += f"; no detour: {step.lost_text()} (a run stops here)"
        out.append(f"# {step.headline()}{tail}")
        out += [f"#   {op.text()}" for op in step.ops]
    return out


# ---------------------------------------------------------------------------------------
# A run's events, applied

class EventError(RuntimeError):
    """An event left ranks without a path; the message names the event, its moment and who."""


class Timeline:
    """The events of one run on its emulation: begin() when the ranks are released, then tick()
    often (fabric.ranks does, between its polls): each step is applied once its moment has
    come.  done: what happened and when, for results.json."""

    def __init__(self, emu, log=print):
        self.emu, self.log = emu, log
        self.pending = steps(emu.plan)
        self.start: float | None = None
        self.done: list[dict] = []

    def begin(self) -> None:
        import time
        self.start = time.monotonic()

    def due(self) -> float | None:
        """The monotonic time of the next step (None: none left, or not begun)."""
        if self.start is None or not self.pending:
            return None
        return self.start + self.pending[0].emulated_at_s

    def tick(self) -> None:
        import time
        while (due := self.due()) is not None and time.monotonic() >= due:
            step = self.pending.pop(0)
            began = time.monotonic()
            try:
                self.emu.apply(step.ops)
            except RuntimeError as exc:        # the kernel refused one (EmulationError): said as the event's
                raise EventError(f"{step.headline()}: {exc}") from None
            applied, took = began - self.start, time.monotonic() - began
            self.done.append({"index": step.index, "what": step.event.text(), "at_s": step.event.at_s,
                              "emulated_at_s": step.emulated_at_s, "applied_s": applied, "took_s": took,
                              "routes_moved": step.moved, "operations": len(step.ops),
                              "lost": [list(p) for p in step.lost]})
            self.log(f"fabric: {step.headline()}: applied at +{applied:.3f} s in {took * 1e3:.0f} ms"
                     + (f", {step.moved} routes moved" if step.moved else ""))
            if step.lost:
                raise EventError(f"{step.headline()} (applied at +{applied:.2f} s): no detour, "
                                 f"{step.lost_text()}; the run stopped there")

    def summary(self) -> list[dict]:
        """Every event: those applied, and those the run ended before."""
        return self.done + [{"index": s.index, "what": s.event.text(), "at_s": s.event.at_s,
                             "emulated_at_s": s.emulated_at_s, "applied_s": None} for s in self.pending]
