"""Workload phases over real gloo between local processes (loopback, no namespaces, no root):
every kind's buffers arrive intact and every phase is timed."""
import json
import multiprocessing
import os
import time
from datetime import timedelta

import pytest

from fabric.models import PRESETS
from workloads import execute
from workloads.ep_moe import EpMoe, parse_routing
from workloads.kv_transfer import KvTransfer
from workloads.tp_decode import TpDecode

torch = pytest.importorskip("torch")
WORLD = 4


def _rank(rank: int, phases, store: str, out: str) -> None:
    import torch.distributed as dist
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=30))
    groups = execute.make_groups(dist, phases, WORLD)
    states = [execute.prepare(torch, rank, p) for p in phases]
    runs = []
    for _ in range(2):
        dist.barrier()
        runs.append(execute.run_iteration(torch, dist, phases, states, groups, k=1.0, start=time.monotonic()))
    dist.destroy_process_group()
    with open(out, "w") as f:
        json.dump(runs, f)


def _run(phases, tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_rank, args=(r, phases, str(tmp_path / "store"), str(tmp_path / f"r{r}.json")))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(WORLD)]


def test_every_workload_kind_moves_intact_bytes(tmp_path):
    dsv3, l8 = PRESETS["deepseek-v3"], PRESETS["llama-3.1-8b"]
    phases = (TpDecode(l8, batch=2, tp=2, layers=1, hbm_Bps=1e15).phases(WORLD)
              + EpMoe(dsv3, tokens=4, ep=WORLD, routing=parse_routing("zipf(1.2)", 256), seed=2).phases(WORLD)
              # rank 1 both prefills and decodes: its own share stays local
              + KvTransfer(l8, prompt_tokens=3, prefill=(0, 1), decode=(2, 3, 1)).phases(WORLD))
    runs = _run(phases, tmp_path)
    for rank, iterations in enumerate(runs):
        for ends, ok in iterations:
            assert ok, f"rank {rank}: a phase delivered wrong bytes"
            timed = [e for e in ends if e is not None]
            assert timed == sorted(timed) and timed[-1] > 0
    # rank 0 sends KV but receives none; every rank takes part in the TP and EP phases
    assert runs[0][0][0][-1] is not None and all(runs[r][0][0][0] is not None for r in range(WORLD))


def test_compute_waits_k_times_its_seconds(tmp_path):
    from workloads.base import Compute
    phases = [Compute("math", 0.02, tuple(range(WORLD)))]
    runs = _run(phases, tmp_path)
    assert all(0.02 <= it[0][0] < 0.2 for r in runs for it in r)
