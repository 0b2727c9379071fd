"""The executor over real gloo between local processes (loopback, no namespaces, no root):
every algorithm of every op, sizes not divisible by n, and every workload kind's phases, each
checked like nccl-tests -c; torch's own calls (the gloo baseline) as well."""
import json
import multiprocessing
import os
import time
from datetime import timedelta

import pytest

from collectives.algorithms import ALGORITHMS, Net
from collectives.all_to_all import split_matrix
from collectives.base import Call
from collectives.schedule import Part, program
from conftest import flat

torch = pytest.importorskip("torch")
WORLD = 4


def _rank(rank: int, items, store: str, out: str) -> None:
    import torch.distributed as dist
    from collectives.executor import RankRun, TorchBackend
    from collectives.rank import native_groups
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=30))
    backend = TorchBackend(torch, dist, native_groups(dist, [type("W", (), {"parts": p}) for _, p in items], WORLD))
    results = []
    for name, parts in items:
        run = RankRun(backend, rank, parts, k=1.0)
        for _ in range(2):
            run.reset()
            recvs = run.post()
            dist.barrier()
            ends, ok = run.run(recvs, time.monotonic())
            results.append([name, ends, ok])
    dist.destroy_process_group()
    with open(out, "w") as f:
        json.dump(results, f)


def _run(items, tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_rank, args=(r, items, str(tmp_path / "store"), str(tmp_path / f"r{r}.json")))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(WORLD)]


def _part(alg, call, net):
    s = ALGORITHMS[alg].schedule(call, net)
    return Part("call", alg, call.ranks, call=call, schedule=s, programs={r: program(s, r) for r in call.ranks},
                algorithm=alg)


def test_every_algorithm_of_every_op_over_gloo(tmp_path):
    g, items = (tuple(range(WORLD)),), []
    net = Net(domain_of=lambda r: r // 2, chunk_bytes=256)       # 2 domains of 2: hierarchical applies
    for count in (5, 1003):
        calls = [Call("all_reduce", g, count), Call("reduce_scatter", g, count * WORLD),
                 Call("all_gather", g, count * WORLD, "int32"), Call("broadcast", g, count, "int32", root=2),
                 Call("sendrecv", g, count, "int32"),
                 Call("all_to_all", g, count * WORLD, "int32",
                      matrix=tuple(map(tuple, split_matrix(WORLD, count * WORLD, "uneven")))),
                 Call("p2p", (), dtype="uint8", flows=((0, 3, count), (1, 3, 7), (2, 0, count)))]
        for c in calls:
            for alg, a in ALGORITHMS.items():
                if a.applies(c, net):
                    items.append((f"{alg} {c.op} {count}", [_part(alg, c, net)]))
    assert len(items) >= 2 * 20
    runs = _run(items, tmp_path)
    for rank, results in enumerate(runs):
        bad = [name for name, _, ok in results if not ok]
        assert not bad, f"rank {rank}: wrong results from {bad}"


def test_every_workload_kind_moves_intact_bytes(tmp_path):
    from fabric import work
    from fabric.plan import build
    from fabric.profile import parse
    data = flat(ranks=WORLD, rate="1Gbit/s", workload=[
        {"tp_decode": {"model": "llama-3.1-8b", "batch": 2, "tp": 2, "layers": 1, "layer_time": "1us"}},
        {"ep_moe": {"model": "deepseek-v3", "tokens": 4, "ep": WORLD, "routing": "zipf(1.2)", "seed": 2}},
        # rank 1 both prefills and decodes: its own share stays local
        {"kv_transfer": {"model": "llama-3.1-8b", "prompt_tokens": 3, "prefill": [0, 1], "decode": [2, 3, 1]}},
        {"kv_transfer": {"model": "llama-3.1-8b", "prompt_tokens": 2, "prefill": [0], "decode": [3],
                         "chunk": "layer", "prefill_time": "10us"}},
        {"pp": {"model": "llama-3.1-8b", "batch": 2, "seq": 4, "stages": 4, "microbatches": 2, "stage_time": "1us"}},
        {"tp_decode": {"model": "llama-3.1-8b", "batch": 2, "tp": 4, "layers": 1, "layer_time": "1us",
                       "algorithm": "gloo"}}])
    items = [(w.label, w.parts) for w in work.build(build(parse(data, "w.yaml"), 1.0))]
    runs = _run(items, tmp_path)
    for rank, results in enumerate(runs):
        for name, ends, ok in results:
            assert ok, f"rank {rank}: {name} delivered wrong bytes"
            timed = [e for e in ends if e is not None]
            assert timed == sorted(timed) and (not timed or timed[-1] > 0)
    # rank 0 sends KV but receives none of the whole-cache hand-off; every rank takes part in TP and EP
    kv = [ends for name, ends, _ in runs[0] if name.startswith("kv_transfer") and "by whole" in name][0]
    assert kv == [pytest.approx(kv[0])] and all(runs[r][0][1][0] is not None for r in range(WORLD))


def test_compute_waits_k_times_its_seconds(tmp_path):
    parts = [Part("compute", "math", tuple(range(WORLD)), seconds=0.02)]
    runs = _run([("math", parts)], tmp_path)
    assert all(0.02 <= ends[0] < 0.2 for r in runs for _, ends, _ in r)
