"""Rank side: walk a workload's phases once per iteration over gloo and time each phase.

Every rank creates every process group, in the same order (torch.distributed requires it),
then per iteration: Compute waits its seconds x k (the emulated math), AllReduce runs in the
rank's group, AllToAll is one all_to_all_single of bytes (uint8, uneven splits), Transfer is
isend/irecv of the flows touching this rank (overlapped: the sends complete in the background
until a Drain; receives are always waited for, the receiver needs the data).  Each phase's
end time is recorded relative to the iteration's agreed start; buffers carry the sender's
rank so every phase is checked.
"""
from __future__ import annotations

import time

from workloads.base import COMMUNICATION, AllReduce, AllToAll, Compute, Drain, Group, Phase, Transfer


def groups_of(phases: list[Phase]) -> list[Group]:
    """Every group the phases use, in first-use order (the same on every rank)."""
    seen: list[Group] = []
    for p in phases:
        for g in (p.groups if isinstance(p, AllReduce) else (p.ranks,) if isinstance(p, AllToAll) else ()):
            if g not in seen:
                seen.append(g)
    return seen


def make_groups(dist, phases: list[Phase], world: int) -> dict:
    return {g: (dist.group.WORLD if len(g) == world else dist.new_group(list(g))) for g in groups_of(phases)}


def prepare(torch, rank: int, p: Phase) -> dict | None:
    """This rank's buffers for phase p, or None when the rank takes no part."""
    if isinstance(p, Compute):
        return {} if rank in p.ranks else None
    if isinstance(p, AllReduce):
        group = next((g for g in p.groups if rank in g), None)
        if group is None:
            return None
        count = max(1, p.nbytes // 4)
        return {"group": group, "buf": torch.empty(count, dtype=torch.float32), "expect": float(len(group))}
    if isinstance(p, AllToAll):
        if rank not in p.ranks:
            return None
        me = p.ranks.index(rank)
        send = list(p.matrix[me])
        recv = [row[me] for row in p.matrix]
        expect = torch.cat([torch.full((b,), s % 251, dtype=torch.uint8) for s, b in zip(p.ranks, recv)])
        return {"group": p.ranks, "in": torch.full((sum(send),), rank % 251, dtype=torch.uint8),
                "out": torch.empty(sum(recv), dtype=torch.uint8), "send": send, "recv": recv, "expect": expect}
    if isinstance(p, Drain):
        return {} if rank in p.ranks else None
    if isinstance(p, Transfer):
        # a rank's share for itself (prefill and decode on one rank) stays in its memory
        mine = [(i, s, d, b) for i, (s, d, b) in enumerate(p.flows) if rank in (s, d) and s != d]
        if not mine:
            return None
        return {"sends": [(d, i, torch.full((b,), rank % 251, dtype=torch.uint8)) for i, s, d, b in mine if s == rank],
                "recvs": [(s, i, torch.empty(b, dtype=torch.uint8)) for i, s, d, b in mine if d == rank]}
    raise TypeError(f"unknown phase {p!r}")


def run_phase(torch, dist, p: Phase, st: dict, groups: dict, k: float, pending: list) -> bool:
    """Run one phase; True when what arrived is what was sent.  Sends of an overlapped
    Transfer go on in the background (`pending`) until a Drain."""
    if isinstance(p, Compute):
        end = time.monotonic() + p.seconds * k
        while (left := end - time.monotonic()) > 0:
            time.sleep(left if left > 0.002 else 0)
        return True
    if isinstance(p, AllReduce):
        st["buf"].fill_(1.0)
        dist.all_reduce(st["buf"], group=groups[st["group"]])
        return bool((st["buf"] == st["expect"]).all())
    if isinstance(p, AllToAll):
        st["out"].zero_()
        dist.all_to_all_single(st["out"], st["in"], st["recv"], st["send"], group=groups[st["group"]])
        return bool(torch.equal(st["out"], st["expect"]))
    if isinstance(p, Drain):
        while pending:
            pending.pop().wait()
        return True
    works = [dist.isend(buf, dst, tag=i) for dst, i, buf in st["sends"]]
    if p.overlap:
        pending += works
        works = []
    for _, _, buf in st["recvs"]:
        buf.fill_(255)
    works += [dist.irecv(buf, src, tag=i) for src, i, buf in st["recvs"]]
    for w in works:
        w.wait()
    return all(bool((buf == src % 251).all()) for src, _, buf in st["recvs"])


def run_iteration(torch, dist, phases: list[Phase], states: list, groups: dict, k: float,
                  start: float, delays=None) -> tuple[list[float | None], bool]:
    """Phase end times (s after start; None where this rank takes no part) and correctness.
    `delays` (collectives.delays) makes this rank late to each communication phase."""
    ends, ok, pending = [], True, []
    for p, st in zip(phases, states):
        if st is None:
            ends.append(None)
            continue
        if delays and isinstance(p, COMMUNICATION):
            delays.wait()
        ok &= run_phase(torch, dist, p, st, groups, k, pending)
        ends.append(time.monotonic() - start)
    for w in pending:   # a workload without a Drain: nothing may outlive the iteration
        w.wait()
    return ends, ok
