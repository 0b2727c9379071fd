"""Topology kinds, one file each, registered here: what a profile's `topology:` may say.

A new kind is a file beside these (a Topology subclass: its YAML keys, its ranks and domains,
its nodes, links, shapers and paths; fabric/topology/base.py says what each does) and one line
in KINDS.  Nothing else in fabric branches on the kind.
"""
from __future__ import annotations

from fabric.topology.base import Topology
from fabric.topology.constellation import Constellation
from fabric.topology.flat import Flat
from fabric.topology.rail import Rail
from fabric.topology.torus import Torus
from fabric.topology.two_tier import TwoTier

KINDS: dict[str, type[Topology]] = {"flat": Flat, "two_tier": TwoTier, "constellation": Constellation, "torus": Torus,
                                    "rail": Rail}

__all__ = ["KINDS", "Topology", "parse"]


def parse(c, value, links: dict, max_ranks: int) -> Topology:
    """A profile's `topology:` mapping as its kind's Topology; c (the profile's checker) fails
    naming the key."""
    if not isinstance(value, dict):
        c.fail("topology", f"expected a mapping with kind: {' or '.join(KINDS)}")
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        c.fail("topology.kind", f"expected {' or '.join(KINDS)}, got {kind!r}")
    return KINDS[kind].parse(c, value, links, max_ranks)
