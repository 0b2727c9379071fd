"""Workload byte counts against hand-computed values from docs/sources.md."""
import random

import pytest

from fabric.dilation import Dilation
from fabric.models import PRESETS, combine_bytes, dispatch_bytes, tp_allreduce_bytes
from workloads.base import AllReduce, Compute, Transfer, consecutive_groups
from workloads.ep_moe import EpMoe, parse_routing, pick
from workloads.kv_transfer import KvTransfer, reshard
from workloads.pp import Pipeline, bubble_fraction
from workloads.tp_decode import TpDecode

L70, L405, L8, DSV3 = (PRESETS[n] for n in ("llama-3.1-70b", "llama-3.1-405b", "llama-3.1-8b", "deepseek-v3"))


@pytest.mark.parametrize("model, count, nbytes", [(L70, 160, 16 * 1024), (L405, 252, 32 * 1024), (L8, 64, 8 * 1024)])
def test_tp_decode_all_reduces_per_token_at_batch_1(model, count, nbytes):
    w = TpDecode(model, batch=1, tp=8)
    assert w.allreduces_per_token == count and w.allreduce_bytes == nbytes


def test_tp_decode_phases_and_roofline():
    w = TpDecode(L70, batch=1, tp=8, layers=2)
    phases = w.phases(world=8)
    assert [type(p) for p in phases] == [Compute, AllReduce] * 4
    assert phases[1].groups == ((0, 1, 2, 3, 4, 5, 6, 7),)
    # Llama-70B layer: attention 8192 x 8192 x 2 + 8192 x 1024 x 2, MLP 3 x 8192 x 28672 parameters
    attn, mlp = w.compute_s()
    assert attn == pytest.approx((2 * 8192 * 8192 + 2 * 8192 * 1024) * 2 / 8 / 3.35e12)
    assert mlp == pytest.approx(3 * 8192 * 28672 * 2 / 8 / 3.35e12)
    assert 80 * (attn + mlp) == pytest.approx(5.11e-3, rel=0.01)   # ~68.4 B layer weights / 8 / 3.35 TB/s
    # 70.55 B parameters with the untied embedding and head, as published
    assert 80 * L70.layer_weights() + 2 * 128256 * 8192 == pytest.approx(70.55e9, rel=0.001)


def test_tp_groups_fill_a_domain_first():
    assert consecutive_groups(8, 4) == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert consecutive_groups(6, 4) == ((0, 1, 2, 3),)


def test_deepseek_v3_dispatch_and_combine_bytes_per_token():
    assert dispatch_bytes(DSV3) == 7408 and combine_bytes(DSV3) == 14336
    assert 8 * dispatch_bytes(DSV3) == 59264 and 8 * combine_bytes(DSV3) == 114688
    assert DSV3.moe_layers == 58


def test_ep_moe_matrices_carry_every_pick_once():
    w = EpMoe(DSV3, tokens=64, ep=8, seed=1)
    dispatch, combine = w.matrices()
    assert sum(map(sum, dispatch)) == 8 * 64 * 8 * 7408        # ranks x tokens x top-8 x bytes
    assert sum(map(sum, combine)) == 8 * 64 * 8 * 14336
    assert all(sum(row) == 64 * 8 * 7408 for row in dispatch)   # each rank sends its own tokens' picks
    # combine returns each pick the way it came: combine[d][s] / 14336 == dispatch[s][d] / 7408
    assert all(combine[d][s] * 7408 == dispatch[s][d] * 14336 for s in range(8) for d in range(8))


def test_routing_laws_order_the_imbalance():
    uniform = EpMoe(DSV3, tokens=128, ep=8, seed=3).imbalance()
    zipf = EpMoe(DSV3, tokens=128, ep=8, routing=parse_routing("zipf(1.2)", 256), seed=3).imbalance()
    hot = EpMoe(DSV3, tokens=128, ep=8, routing=parse_routing("hot(2, 0.5)", 256), seed=3).imbalance()
    assert uniform < 1.1 < zipf and uniform < hot
    assert EpMoe(DSV3, tokens=16, ep=8, seed=5).matrices() == EpMoe(DSV3, tokens=16, ep=8, seed=5).matrices()


def test_pick_draws_distinct_experts_in_proportion():
    rng = random.Random(0)
    w = [8.0] + [1.0] * 15
    counts = [0] * 16
    for _ in range(4000):
        chosen = pick(w, 2, rng)
        assert len(set(chosen)) == 2
        for e in chosen:
            counts[e] += 1
    assert counts[0] > 3 * max(counts[1:])


@pytest.mark.parametrize("text, error", [("zipf(0)", "> 0"), ("hot(300, 0.5)", "0 < n < 256"),
                                         ("hot(2, 1.5)", "0 < share < 1"), ("gauss", "uniform, zipf")])
def test_bad_routing_says_what_was_expected(text, error):
    with pytest.raises(ValueError, match=error):
        parse_routing(text, 256)


@pytest.mark.parametrize("model, per_token", [(L70, 327680), (L405, 516096), (L8, 131072), (DSV3, 70272)])
def test_kv_cache_bytes_per_token(model, per_token):
    assert model.kv_bytes_per_token("bf16") == per_token
    assert KvTransfer(model, 1000, (0,), (1,)).total_bytes == 1000 * per_token


def test_llama70b_fp8_kv_is_160_kib_per_token():
    assert L70.kv_bytes_per_token("fp8") == 160 * 1024


def test_kv_reshard_pairs_equal_shares_and_splits_unequal_ones():
    assert reshard(800, (0, 1), (2, 3)) == ((0, 2, 400), (1, 3, 400))
    flows = reshard(900, (0, 1), (4, 5, 6))
    assert sum(b for *_, b in flows) == 900
    assert set(flows) == {(0, 4, 300), (0, 5, 150), (1, 5, 150), (1, 6, 300)}
    layered = [p for p in KvTransfer(L70, 128, (0,), (4,), chunk="layer").phases(8) if isinstance(p, Transfer)]
    assert len(layered) == 80 and sum(f[2] for p in layered for f in p.flows) == 128 * 327680
    assert all(p.overlap for p in layered)


def test_pp_handoff_and_bubble():
    w = Pipeline(L70, batch=8, seq=1024, stages=4, microbatches=8)
    assert w.handoff_bytes == 1 * 1024 * 8192 * 2
    assert w.ideal_bubble == pytest.approx(3 / 11)
    assert bubble_fraction(4, 1) == pytest.approx(0.75)   # sources.md: PP=4 single request idles 75 %


def test_pp_math_add_runs_the_handoffs_alone_and_adds_every_stage():
    """One decode token through 8 stages: 7 hand-offs measured, 8 stages of math added."""
    from workloads.base import Timings
    w = Pipeline(L70, batch=1, seq=1, stages=8, microbatches=1, stage_time=5e-3, math="add")
    phases = w.phases(8)
    assert [type(p) for p in phases] == [Transfer] * 7 + [type(phases[-1])] and not any(
        isinstance(p, Compute) for p in phases)
    # the model walks them one after another, each hand-off one way (its receive was posted)
    from conftest import flat
    from fabric import work
    from fabric.plan import build
    from fabric.profile import parse
    data = flat(ranks=8, rate="1Tbit/s", latency="2us", workload=[
        {"pp": {"model": "llama-3.1-70b", "batch": 1, "seq": 1, "stages": 8, "microbatches": 1,
                "stage_time": "5ms", "math": "add"}}])
    [item] = work.build(build(parse(data, "pp.yaml"), 1.0))
    handoff = w.handoff_bytes * 8 / 1e12
    assert item.seconds == pytest.approx(7 * (2e-6 + handoff), rel=0.01)   # the bottleneck hop sets the rate
    f = w.figures(Timings(dilation=Dilation(10.0), iteration=[70e-6] * 3, phases={}))   # 7 us real of hand-offs
    assert f["iteration_us"]["p50"] == pytest.approx(8 * 5e3 + 7)
    assert f["handoff_us"] == pytest.approx(1.0) and f["comm_share"] == pytest.approx(7 / 40007)
    assert f["bubble"] == pytest.approx(1 - 5e3 / 40007)


def test_dp_math_add_has_no_phases_and_reports_the_math():
    from workloads.base import Timings
    from workloads.dp import Dp
    w = Dp(L70, batch=1, layers=1, layer_time=1e-3, math="add")
    assert w.phases(8) == []
    f = w.figures(Timings(dilation=Dilation(100.0), iteration=[0.0, 0.0], phases={}))
    assert f["tpot_us"]["p50"] == pytest.approx(80 * 1e3)


def test_tp_allreduce_scales_with_batch_and_dtype():
    assert tp_allreduce_bytes(L70, 32, "bf16") == 32 * 16384
    assert tp_allreduce_bytes(L70, 1, "fp32") == 32768
