"""nccl-tests conventions and gloo schedules, without root (torch only where buffers are built)."""
from types import SimpleNamespace

import pytest

from collectives import COLLECTIVES
from collectives.all_to_all import split_matrix

SPEC = SimpleNamespace(splits="even", root=0)


@pytest.mark.parametrize("op,factor", [
    ("all_reduce", lambda n: 2 * (n - 1) / n), ("all_gather", lambda n: (n - 1) / n),
    ("reduce_scatter", lambda n: (n - 1) / n), ("all_to_all", lambda n: (n - 1) / n),
    ("broadcast", lambda n: 1.0), ("sendrecv", lambda n: 1.0),
])
@pytest.mark.parametrize("n", [2, 3, 4, 8, 16])
def test_bus_factors_are_nccl_tests(op, factor, n):
    assert COLLECTIVES[op].bus_factor(n) == pytest.approx(factor(n))


def test_size_rule_aligns_chunked_ops_to_whole_chunks():
    assert COLLECTIVES["all_reduce"].size(1000, 3) == 1000
    assert COLLECTIVES["all_gather"].size(1000, 3) == 996          # 3 chunks of 83 floats
    assert COLLECTIVES["all_to_all"].size(4, 8) == 32              # at least one element per chunk
    assert COLLECTIVES["sendrecv"].size(6, 4) == 4


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_bytes_each_rank_sends(n):
    S = 4 * n * 1024
    def sent(op, rank):
        return sum(b for step in COLLECTIVES[op].schedule(n, S, SPEC) for src, _, b in step if src == rank)
    assert sent("all_reduce", 0) == 2 * (n - 1) * S // n
    assert sent("all_gather", 1) == (n - 1) * S // n
    assert sent("reduce_scatter", 1) == 2 * (n - 1) * S // n     # gloo: a full all-reduce
    assert sent("all_to_all", 0) == (n - 1) * S // n
    assert sent("sendrecv", n - 1) == S


@pytest.mark.parametrize("n,root", [(2, 0), (5, 2), (8, 0)])
def test_broadcast_root_sends_to_every_rank_once(n, root):
    steps = COLLECTIVES["broadcast"].schedule(n, 100, SimpleNamespace(root=root))
    assert len(steps) == 1
    assert sorted(d for _, d, _ in steps[0]) == sorted(set(range(n)) - {root})
    assert all(s == root for s, _, _ in steps[0])


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_uneven_splits(n):
    count = 1000 * n
    m = split_matrix(n, count, "uneven")
    assert all(sum(row) == count for row in m)
    received = [sum(m[s][d] for s in range(n)) for d in range(n)]
    assert len(set(received)) > 1                      # receive totals differ, as in MoE dispatch
    assert len({m[s][d] for s in range(n) for d in range(n)}) > 1


@pytest.mark.parametrize("op", sorted(COLLECTIVES))
def test_check_catches_a_wrong_result(op):
    torch = pytest.importorskip("torch")
    coll = COLLECTIVES[op]
    spec = SimpleNamespace(splits="uneven" if op == "all_to_all" else "even", root=0)
    state = coll.prepare(torch, 1, 4, coll.size(4096, 4), spec)
    state["out"].copy_(state["expect"])
    assert coll.check(torch, state)
    state["out"][3] += 1
    assert not coll.check(torch, state)
