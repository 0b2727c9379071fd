"""netem leaves: delay, jitter and loss under an HTB class.

pyroute2 encodes netem's classic options (delay and jitter in µs, loss, limit) but not a
delay-distribution table, and without a table the kernel draws jitter uniformly from
[delay - j, delay + j].  A uniform draw of half-width j has standard deviation j/sqrt(3), so
fabric passes j = sigma * sqrt(3): the one-way standard deviation is the profile's.
(Choosing normal/pareto tables is the microVM issue's work; this kernel has no sch_netem to
test them on.)
"""
from __future__ import annotations

import math

UNIFORM_SIGMA = math.sqrt(3.0)   # half-width of a uniform draw with standard deviation 1


def params(delay_s: float, jitter_s: float, loss: float, limit: int) -> dict:
    """pyroute2 netem keyword arguments for one band (delay/jitter in whole µs, loss in %)."""
    out = {"limit": limit}
    if delay_s or jitter_s:
        out["delay"] = round(delay_s * 1e6)
        if jitter_s:
            out["jitter"] = max(1, round(jitter_s * UNIFORM_SIGMA * 1e6))
    if loss:
        out["loss"] = loss * 100
    return out


def command(delay_s: float, jitter_s: float, loss: float, limit: int) -> str:
    """The same leaf as tc syntax (what `fabric plan` prints)."""
    p = params(delay_s, jitter_s, loss, limit)
    text = f"netem limit {limit}"
    if "delay" in p:
        text += f" delay {p['delay']}us"
        if "jitter" in p:
            text += f" {p['jitter']}us"
    if "loss" in p:
        text += f" loss {p['loss']:.6g}%"
    return text


def add(ipr, index: int, handle: int, parent: int, band) -> None:
    ipr.tc("add", "netem", index=index, handle=handle, parent=parent,
           **params(band.delay_s, band.jitter_s, band.loss, band.limit))
