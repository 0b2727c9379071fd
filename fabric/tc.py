"""Shaping as data: the tc operations of one shaped interface, in the order they are applied.

One list serves both sides: `text(op)` renders it as the tc command line `fabric plan` prints,
and fabric.emulation sends the same operation through pyroute2.  Rates are bits per second,
sizes bytes, handles tc's 32-bit major:minor numbers (0x10000 is 1:, 0x10010 is 1:10).
"""
from __future__ import annotations

from dataclasses import dataclass

from fabric import netem


@dataclass(frozen=True)
class Root:
    """The HTB qdisc at the interface's root; unclassified packets go to `default`."""
    default: int                 # minor of the default class


@dataclass(frozen=True)
class Class:
    """An HTB class: `rate` guaranteed, up to `ceil` borrowed from its parent."""
    minor: int
    parent: int                  # parent handle (0x10000 for the root qdisc)
    rate_bps: float
    ceil_bps: float
    burst: int
    quantum: int


@dataclass(frozen=True)
class Leaf:
    """The qdisc under a class: netem (`band` has delay, jitter or loss) or a pfifo of `band.limit`."""
    minor: int
    band: object                 # fabric.plan.Band


@dataclass(frozen=True)
class Filter:
    """u32: IPv4 packets to (or from) `cidr` go to class `minor`."""
    field: str                   # "dst" | "src"
    cidr: str
    minor: int


Op = Root | Class | Leaf | Filter


def handle(minor: int) -> int:
    """1:minor as tc's 32-bit handle."""
    return 0x10000 | minor


# What an operation does to what is there: "add" builds (the plan); a run's events change a
# class in place ("change"), swap a leaf for another ("replace"), or take a leaf away ("delete",
# which leaves HTB's own default queue under the class until the next replace)
VERBS = ("add", "change", "replace", "delete")


def text(op: Op, dev: str, verb: str = "add") -> str:
    """The tc command line for one operation."""
    if isinstance(op, Root):
        return f"tc qdisc {verb} dev {dev} root handle 1: htb default {op.default:x}"
    if isinstance(op, Class):
        parent = "1:" if op.parent == 0x10000 else f"1:{op.parent & 0xFFFF:x}"
        return (f"tc class {verb} dev {dev} parent {parent} classid 1:{op.minor:x} htb rate {_rate(op.rate_bps)} "
                f"ceil {_rate(op.ceil_bps)} burst {op.burst}b cburst {op.burst}b quantum {op.quantum}")
    if isinstance(op, Leaf):
        if verb == "delete":
            return f"tc qdisc delete dev {dev} parent 1:{op.minor:x} handle {op.minor:x}:"
        what = netem.command(op.band) if op.band.netem else f"pfifo limit {op.band.limit}"
        return f"tc qdisc {verb} dev {dev} parent 1:{op.minor:x} handle {op.minor:x}: {what}"
    return (f"tc filter {verb} dev {dev} parent 1: protocol ip prio 1 u32 match ip {op.field} {op.cidr} "
            f"flowid 1:{op.minor:x}")


def bytes_per_s(bps: float) -> int:
    """A rate as the kernel holds it (HTB's rates are whole bytes per second): the one rounding
    both the printed command and the netlink call make."""
    return max(1, round(bps / 8))


def _rate(bps: float) -> str:
    """tc's spelling of exactly that rate: kbit where it is a whole number of them, else bit."""
    bits = bytes_per_s(bps) * 8
    return f"{bits // 1000}kbit" if bits % 1000 == 0 else f"{bits}bit"
