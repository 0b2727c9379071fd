"""netem leaves: delay, jitter and loss under an HTB class.

Jitter: without a table the kernel draws it uniformly from [delay - j, delay + j]; a uniform
draw of half-width j has standard deviation j/sqrt(3), so fabric passes j = sigma * sqrt(3).
With `distribution: normal | pareto | paretonormal` fabric sends iproute2's table (pyroute2
cannot: fabric's netem plugin below adds it) and scales sigma by the table's own spread.
Either way netem's draw has the profile's standard deviation (a FIFO line, below, narrows what
packets closer together than its spread see).

netem draws each packet's delay on its own, so under jitter a packet can overtake an earlier one
(61-73 % of probes arrived out of order in the microVM at 3-5 ms jitter), and TCP resends what
was only late.  Unless a link class says `reorder: true`, fabric also sets netem's `rate`
option, far above the link's rate: with a rate, netem schedules each packet no earlier than the
one queued before it (it takes the queue's last departure as the reference), so the line is a
FIFO; the rate adds a negligible transmission time (2 µs for 9000 B) and HTB still sets the pace.
"""
from __future__ import annotations

import math

UNIFORM_SIGMA = math.sqrt(3.0)   # half-width of a uniform draw with standard deviation 1


ORDER_RATE = 2**32 - 1   # bytes/s (netem's 32-bit rate field, ~34 Gbit/s): far above any emulated link
TABLE_DIRS = ("/usr/lib/x86_64-linux-gnu/tc", "/usr/lib/tc", "/usr/lib64/tc")   # iproute2's *.dist
TABLE_SCALE = 8192       # netem: delay = mu + sigma * table[i] / 8192
# standard deviation of each iproute2 table / 8192 (computed from the files; their means are
# within 0.04 of 0): fabric divides sigma by it so the one-way standard deviation is the profile's
TABLE_SIGMA = {"normal": 1.0001, "pareto": 0.8197, "paretonormal": 0.8339}


def params(band) -> dict:
    """pyroute2 netem keyword arguments for one band (delay/jitter in whole µs, loss in %)."""
    out = {"limit": band.limit}
    if band.delay_s or band.jitter_s:
        out["delay"] = round(band.delay_s * 1e6)
        if band.jitter_s:
            spread = UNIFORM_SIGMA if band.distribution == "uniform" else 1 / TABLE_SIGMA[band.distribution]
            out["jitter"] = max(1, round(band.jitter_s * spread * 1e6))
            if band.distribution != "uniform":
                out["distribution"] = band.distribution
            if band.keep_order:
                out["order_rate"] = ORDER_RATE
    if band.burst_loss:
        out["burst_loss"] = band.burst_loss
    elif band.loss:
        out["loss"] = band.loss * 100
    return out


def command(band) -> str:
    """The same leaf as tc syntax (what `fabric plan` prints)."""
    p = params(band)
    text = f"netem limit {p['limit']}"
    if "delay" in p:
        text += f" delay {p['delay']}us"
        if "jitter" in p:
            text += f" {p['jitter']}us"
        if "distribution" in p:
            text += f" distribution {p['distribution']}"
    if "loss" in p:
        text += f" loss {p['loss']:.6g}%"
    if "burst_loss" in p:       # netem's words: p, r, 1-h (loss in the bad state), 1-k (in the good)
        text += " loss gemodel " + " ".join(f"{x * 100:.6g}%" for x in p["burst_loss"])
    if "order_rate" in p:
        text += f" rate {p['order_rate'] * 8}bit"
    return text


def table(name: str) -> bytes:
    """iproute2's distribution table as netem takes it (native s16 values)."""
    import struct
    for d in TABLE_DIRS:
        try:
            text = open(f"{d}/{name}.dist").read()
        except OSError:
            continue
        values = [int(x) for line in text.splitlines() if not line.startswith("#") for x in line.split()]
        return struct.pack(f"{len(values)}h", *values)
    raise FileNotFoundError(f"iproute2's netem table {name}.dist is missing (apt-get install iproute2)")


def add(ipr, index: int, handle: int, parent: int, band, command: str = "add") -> None:
    """The band's netem leaf through netlink; command "replace" changes one in place (what the
    message leaves out, a distribution table or netem's rate, stays as it was)."""
    _register()
    kwargs = params(band)
    if "distribution" in kwargs:
        kwargs["distribution"] = table(kwargs["distribution"])
    ipr.tc(command, "netem", index=index, handle=handle, parent=parent, **kwargs)


def _register() -> None:
    """pyroute2's netem plugin, plus netem's rate as `order_rate` (a `rate` keyword would also be
    read as the tc message's own TCA_RATE attribute and fail to encode) and a delay distribution
    table as `distribution` (bytes; pyroute2 has no encoder for it)."""
    import types

    from pyroute2.netlink import nla
    from pyroute2.netlink.rtnl.tcmsg import plugins, sched_netem
    if getattr(plugins["netem"], "FABRIC", False):
        return

    def get_parameters(kwarg):
        rate = kwarg.pop("order_rate", None)
        dist = kwarg.pop("distribution", None)
        burst = kwarg.pop("burst_loss", None)
        opts = sched_netem.get_parameters(kwarg)
        if burst:
            # the kernel's h is the chance of no loss in the bad state (tc's "1-h" is its complement)
            p, r, bad, good = burst
            opts["attrs"].append(["TCA_NETEM_LOSS", {"attrs": [["NETEM_LOSS_GE", {
                "p": _u32(p), "r": _u32(r), "h": _u32(1 - bad), "k1": _u32(good)}]]}])
        if dist:
            opts["attrs"].append(["TCA_NETEM_DELAY_DIST", dist])
        if rate:
            opts["attrs"].append(["TCA_NETEM_RATE", {"rate": rate, "packet_overhead": 0, "cell_size": 0,
                                                     "cell_overhead": 0}])
        return opts

    plugin = types.ModuleType("fabric_netem")
    plugin.__dict__.update({k: v for k, v in vars(sched_netem).items() if not k.startswith("__")})
    class options(sched_netem.options):
        nla_map = tuple((name, {"TCA_NETEM_DELAY_DIST": "cdata", "TCA_NETEM_LOSS": "netem_loss"}.get(name, kind))
                        for name, kind in sched_netem.options.nla_map)

        class netem_loss(nla):
            """netem's loss model (nested): Gilbert-Elliott's four chances, each of 2^32 - 1."""
            nla_map = (("NETEM_LOSS_UNSPEC", "none"), ("NETEM_LOSS_GI", "none"), ("NETEM_LOSS_GE", "netem_gemodel"))

            class netem_gemodel(nla):
                fields = (("p", "I"), ("r", "I"), ("h", "I"), ("k1", "I"))

    plugin.get_parameters, plugin.options, plugin.FABRIC = get_parameters, options, True
    plugins["netem"] = plugin


def _u32(chance: float) -> int:
    """A chance as netem takes it: a fraction of 2^32 - 1."""
    return min(0xFFFFFFFF, max(0, round(chance * 0xFFFFFFFF)))
