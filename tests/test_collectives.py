"""nccl-tests conventions, and every algorithm's schedule checked like nccl-tests -c, without a
network: symbolically (the schedule's meaning on numpy arrays) and through the executor's
programs (one thread per rank, in-memory mailboxes), for 2-64 ranks and sizes not divisible by n."""
import numpy as np
import pytest

from collectives import COLLECTIVES, OPS
from collectives.algorithms import ALGORITHMS, Net, runs
from collectives.all_to_all import split_matrix
from collectives.base import Call
from collectives.schedule import POST, SEND, START, WAIT, Part, program, run_reference
from memory_backend import run_parts


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


def call(op: str, n: int, count: int, root: int = 0, groups=None) -> Call:
    """count: elements per rank (per chunk for the whole-array ops)."""
    g = groups or (tuple(range(n)),)
    m = len(g[0])
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        mat = tuple(map(tuple, split_matrix(m, count * m, "uneven"))) if op == "all_to_all" else None
        return Call(op, g, count * m, "float32" if op == "reduce_scatter" else "int32", matrix=mat)
    return Call(op, g, count, "float32" if op == "all_reduce" else "int32", root=root)


CASES = [(alg, op) for alg in sorted(ALGORITHMS) if alg not in ("gloo", "hierarchical")
         for op in ALGORITHMS[alg].ops if op != "p2p"]


def _start(c: Call) -> dict:
    return {r: {k: v.copy() for k, v in OPS[c.op].initial(c, r).items()} for r in c.ranks}


def _symbolic_ok(alg: str, c: Call, net: Net) -> bool:
    bufs = run_reference(ALGORITHMS[alg].schedule(c, net), _start(c))
    return all(np.array_equal(bufs[r]["out"], OPS[c.op].expected(c, r)) for r in c.ranks)


def _executed_ok(alg: str, c: Call, net: Net) -> bool:
    s = ALGORITHMS[alg].schedule(c, net)
    part = Part("call", alg, c.ranks, call=c, schedule=s, programs={r: program(s, r) for r in c.ranks})
    return all(ok for per_rank in run_parts([part], list(c.ranks)).values() for _, ok in per_rank)


@pytest.mark.parametrize("alg,op", CASES)
@pytest.mark.parametrize("n", [2, 3, 5, 8, 16])
def test_every_algorithm_is_correct_symbolically_and_through_its_programs(alg, op, n):
    net = Net(chunk_bytes=64)          # several chunks per step: the pipelining is exercised
    for count in (1, 7, 1003):
        c = call(op, n, count, root=n // 2)
        assert _symbolic_ok(alg, c, net), (alg, op, n, count)
        assert _executed_ok(alg, c, net), (alg, op, n, count)


@pytest.mark.parametrize("alg,op", [("ring", "all_reduce"), ("direct", "all_to_all"), ("one_shot", "all_reduce"),
                                    ("tree", "all_reduce"), ("pairwise", "all_to_all")])
def test_64_ranks(alg, op):
    c = call(op, 64, 67)
    assert _symbolic_ok(alg, c, Net(chunk_bytes=128))
    assert _executed_ok(alg, c, Net())


@pytest.mark.parametrize("domains,per", [(2, 2), (2, 4), (4, 2), (3, 3)])
def test_hierarchical_reduces_inside_then_across_then_gathers(domains, per):
    net = Net(domain_of=lambda r: r // per, chunk_bytes=64)
    for count in (1, 9, 1001):
        c = call("all_reduce", domains * per, count)
        assert ALGORITHMS["hierarchical"].applies(c, net)
        assert _symbolic_ok("hierarchical", c, net) and _executed_ok("hierarchical", c, net)
    # one rank per domain, or a flat fabric: nothing to be hierarchical about
    assert not ALGORITHMS["hierarchical"].applies(call("all_reduce", 4, 8), Net(domain_of=lambda r: r))
    assert not ALGORITHMS["hierarchical"].applies(call("all_reduce", 4, 8), Net())


def test_groups_run_side_by_side_and_p2p_moves_each_flow():
    groups = ((0, 1, 2, 3), (4, 5, 6, 7))
    for alg in runs("all_reduce"):
        if alg in ("gloo", "hierarchical"):
            continue
        c = call("all_reduce", 8, 1001, groups=groups)
        assert _symbolic_ok(alg, c, Net(chunk_bytes=64)) and _executed_ok(alg, c, Net(chunk_bytes=64)), alg
    p2p = Call("p2p", (), dtype="uint8", flows=((0, 4, 100), (1, 4, 50), (0, 5, 7), (3, 2, 1)))
    assert _symbolic_ok("direct", p2p, Net()) and _executed_ok("direct", p2p, Net())


def _sent(alg: str, c: Call, rank: int) -> int:
    return ALGORITHMS[alg].schedule(c, Net()).bytes_sent(rank)


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_bytes_each_rank_sends(n):
    S = 4 * n * 1024                       # bytes per rank, a whole number of chunks
    ar = Call("all_reduce", (tuple(range(n)),), S // 4)
    assert _sent("ring", ar, 0) == 2 * (n - 1) * S // n       # bandwidth-optimal
    assert _sent("two_shot", ar, 0) == 2 * (n - 1) * S // n   # the same bytes in two steps
    assert _sent("one_shot", ar, 0) == (n - 1) * S            # all of it to everyone
    assert _sent("gloo", ar, 0) == 2 * (n - 1) * S // n
    a2a = Call("all_to_all", (tuple(range(n)),), S // 4, "int32")
    for alg in ("direct", "pairwise", "gloo"):
        assert _sent(alg, a2a, 0) == (n - 1) * S // n
    ag = Call("all_gather", (tuple(range(n)),), S // 4, "int32")
    assert _sent("ring", ag, 1) == _sent("direct", ag, 1) == (n - 1) * S // n
    sr = Call("sendrecv", (tuple(range(n)),), S // 4, "int32")
    assert _sent("direct", sr, n - 1) == S


def test_pipelining_cuts_a_step_into_chunks_only_when_it_pays():
    c = Call("all_reduce", (tuple(range(8)),), (16 << 20) // 4)
    whole = ALGORITHMS["ring"].schedule(c, Net())
    piped = ALGORITHMS["ring"].schedule(c, Net(chunk_bytes=900_000))      # NVLink 4: 2 us x 450 GB/s
    assert len(whole.xfers) == 8 * 14 and len(piped.xfers) == 8 * 14 * 2  # 2 MiB steps, 0.9 MB chunks
    assert Net(chunk_bytes=1000).pieces(10 ** 9) == 8                     # never more than MAX_CHUNKS


def test_a_rank_posts_every_receive_before_the_start_and_sends_when_its_data_arrived():
    c = Call("all_reduce", (tuple(range(4)),), 4096)
    s = ALGORITHMS["ring"].schedule(c, Net(chunk_bytes=1024))
    prog = program(s, 1)
    start = [op.kind for op in prog].index(START)
    assert {op.kind for op in prog[:start]} == {POST}
    assert len(prog[:start]) == sum(1 for x in s.xfers if x.dst == 1)
    # every send after the first step waits for the receive that brought its data
    for i, op in enumerate(prog):
        if op.kind == SEND and s.xfers[op.x].src == 1 and op.x not in {x for x in s.steps[0]}:
            x = s.xfers[op.x]
            feeds = [j for j in range(len(s.xfers)) if s.xfers[j].dst == 1 and s.xfers[j].dbuf == x.sbuf
                     and s.xfers[j].doff < x.soff + x.count and x.soff < s.xfers[j].doff + s.xfers[j].count]
            waited = {o.x for o in prog[:i] if o.kind == WAIT}
            assert waited & set(feeds), f"send {op.x} does not wait for its data"


@pytest.mark.parametrize("op", sorted(COLLECTIVES))
def test_the_check_catches_a_wrong_result(op):
    c = call(op, 4, 1024)
    coll = OPS[c.op]
    out = coll.expected(c, 1).copy()
    assert np.array_equal(out, coll.expected(c, 1))
    out[3] += 1
    assert not np.array_equal(out, coll.expected(c, 1))
    moved = np.roll(coll.expected(c, 1), 1)               # every element there, in the wrong place
    assert not np.array_equal(moved, coll.expected(c, 1))
