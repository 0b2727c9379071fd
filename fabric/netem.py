"""netem leaves: delay, jitter and loss under an HTB class.

pyroute2 encodes netem's classic options (delay and jitter in µs, loss, limit) but not a
delay-distribution table, and without a table the kernel draws jitter uniformly from
[delay - j, delay + j].  A uniform draw of half-width j has standard deviation j/sqrt(3), so
fabric passes j = sigma * sqrt(3): the one-way standard deviation is the profile's.

netem draws each packet's delay on its own, so under jitter a packet can overtake an earlier one
(61-73 % of probes arrived out of order in the microVM at 3-5 ms jitter).  With `reorder: false`
fabric also sets netem's `rate` option, far above the link's rate: with a rate, netem schedules
each packet no earlier than the one queued before it (it takes the queue's last departure as the
reference), so the line is a FIFO; the rate adds a negligible transmission time (2 µs for 9000 B)
and HTB still sets the pace.
"""
from __future__ import annotations

import math

UNIFORM_SIGMA = math.sqrt(3.0)   # half-width of a uniform draw with standard deviation 1


ORDER_RATE = 2**32 - 1   # bytes/s (netem's 32-bit rate field, ~34 Gbit/s): far above any emulated link


def params(delay_s: float, jitter_s: float, loss: float, limit: int, keep_order: bool = False) -> dict:
    """pyroute2 netem keyword arguments for one band (delay/jitter in whole µs, loss in %)."""
    out = {"limit": limit}
    if keep_order and jitter_s:
        out["order_rate"] = ORDER_RATE
    if delay_s or jitter_s:
        out["delay"] = round(delay_s * 1e6)
        if jitter_s:
            out["jitter"] = max(1, round(jitter_s * UNIFORM_SIGMA * 1e6))
    if loss:
        out["loss"] = loss * 100
    return out


def command(delay_s: float, jitter_s: float, loss: float, limit: int, keep_order: bool = False) -> str:
    """The same leaf as tc syntax (what `fabric plan` prints)."""
    p = params(delay_s, jitter_s, loss, limit, keep_order)
    text = f"netem limit {limit}"
    if "delay" in p:
        text += f" delay {p['delay']}us"
        if "jitter" in p:
            text += f" {p['jitter']}us"
    if "loss" in p:
        text += f" loss {p['loss']:.6g}%"
    if "order_rate" in p:
        text += f" rate {p['order_rate'] * 8}bit"
    return text


def add(ipr, index: int, handle: int, parent: int, band) -> None:
    _register()
    ipr.tc("add", "netem", index=index, handle=handle, parent=parent,
           **params(band.delay_s, band.jitter_s, band.loss, band.limit, band.keep_order))


def _register() -> None:
    """pyroute2's netem plugin, taking netem's rate as `order_rate`: a `rate` keyword would also
    be read as the tc message's own TCA_RATE attribute and fail to encode."""
    import types

    from pyroute2.netlink.rtnl.tcmsg import plugins, sched_netem
    if getattr(plugins["netem"], "FABRIC", False):
        return

    def get_parameters(kwarg):
        rate = kwarg.pop("order_rate", None)
        opts = sched_netem.get_parameters(kwarg)
        if rate:
            opts["attrs"].append(["TCA_NETEM_RATE", {"rate": rate, "packet_overhead": 0, "cell_size": 0,
                                                     "cell_overhead": 0}])
        return opts

    plugin = types.ModuleType("fabric_netem")
    plugin.__dict__.update({k: v for k, v in vars(sched_netem).items() if not k.startswith("__")})
    plugin.get_parameters, plugin.FABRIC = get_parameters, True
    plugins["netem"] = plugin
