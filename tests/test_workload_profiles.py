"""Workload and straggler entries of a profile: what they parse into, every bad one a
one-line error naming the key; slow links in the plan; the per-rank delay laws."""
import statistics

import pytest

from collectives.delays import CAP, Delays
from conftest import flat
from fabric.plan import build
from fabric.profile import ProfileError, SlowLink, SlowRank, parse
from test_profile import IB
from workloads import EpMoe, KvTransfer, Pipeline, TpDecode

RATE_ONLY = dict(IB, links={"nvlink4": {"rate": "450GB/s"}, "ndr": {"rate": "400Gbit/s"}})


def _with(workload=None, stragglers=None, base=RATE_ONLY, **top):
    data = dict(base, **top)
    if workload is not None:
        data["workload"] = workload
    if stragglers is not None:
        data["stragglers"] = stragglers
    return parse(data, "w.yaml")


def test_workload_entries_sit_beside_plain_collectives():
    p = _with([{"op": "all_reduce", "bytes": "16KiB"},
               {"tp_decode": {"model": "llama-3.1-70b", "batch": 1, "tp": 4, "steps": 3}},
               {"tp_decode": {"model": "llama-3.1-70b", "batch": 1, "tp": 4, "placement": "spread"}},
               {"ep_moe": {"model": "deepseek-v3", "tokens": 8, "ep": 8, "routing": "hot(4, 0.5)"}},
               {"kv_transfer": {"model": "llama-3.1-70b", "prompt_tokens": 32, "prefill": "domain:0",
                                "decode": [4, 5]}},
               {"pp": {"model": "llama-3.1-8b", "batch": 8, "seq": 128, "stages": 4, "microbatches": 8}}],
              gpu={"hbm": "8TB/s", "flops": "2.25PFLOPS"})
    assert [o.op for o in p.workload] == ["all_reduce"]
    tp, spread, ep, kv, pp = (e.workload for e in p.workloads)
    assert isinstance(tp, TpDecode) and tp.hbm_Bps == 8e12 and p.workloads[0].iters == 3
    assert tp.phases(8)[1].groups == ((0, 1, 2, 3), (4, 5, 6, 7))          # inside a domain first
    assert spread.phases(8)[1].groups == ((0, 4, 1, 5), (2, 6, 3, 7))      # across both domains
    assert isinstance(ep, EpMoe) and str(ep.routing) == "hot(4, 0.5)"
    assert isinstance(kv, KvTransfer) and kv.prefill == (0, 1, 2, 3) and kv.decode == (4, 5)
    assert isinstance(pp, Pipeline) and p.gpu.flops == 2.25e15
    # the stage's weights (32 layers / 4) read once at 8 TB/s: memory-bound at 16 tokens per microbatch
    assert pp.stage_time == pytest.approx(8 * 218_103_808 * 2 / 8e12)


def test_a_custom_model_is_given_by_the_same_fields():
    m = {"name": "tiny", "hidden": 1024, "layers": 4, "heads": 8, "head_dim": 128, "kv_heads": 2, "ffn": 4096,
         "vocab": 1000}
    p = _with([{"dp": {"model": m, "batch": 1}}])
    w = p.workloads[0].workload
    assert w.model.name == "tiny" and w.model.kv_bytes_per_token() == 4 * 2 * 2 * 128 * 2


@pytest.mark.parametrize("entry,key,words", [
    ({"tp_decoder": {"model": "llama-3.1-8b"}}, "workload[0].tp_decoder", "unknown workload"),
    ({"tp_decode": {"model": "llama-3.1-8b", "batch": 1}}, "workload[0].tp_decode.tp", "missing required key"),
    ({"tp_decode": {"model": "llama-9", "batch": 1, "tp": 2}}, "workload[0].tp_decode.model", "unknown model"),
    ({"tp_decode": {"model": "llama-3.1-8b", "batch": 1, "tp": 16}}, "workload[0].tp_decode.tp", "between 1 and 8"),
    ({"tp_decode": {"model": "deepseek-v3", "batch": 1, "tp": 8}}, "workload[0].tp_decode.layer_time", "give"),
    ({"tp_decode": {"model": "llama-3.1-8b", "batch": 1, "tp": 2, "dtype": "int3"}}, "workload[0].tp_decode.dtype",
     "expected one of"),
    ({"ep_moe": {"model": "llama-3.1-8b", "tokens": 4, "ep": 4}}, "workload[0].ep_moe.model", "no experts"),
    ({"ep_moe": {"model": "deepseek-v3", "tokens": 4, "ep": 4, "routing": "zipf(-1)"}},
     "workload[0].ep_moe.routing", "expected uniform"),
    ({"pp": {"model": "llama-3.1-8b", "batch": 6, "seq": 8, "stages": 2, "microbatches": 4}},
     "workload[0].pp.microbatches", "divisor"),
    ({"pp": {"model": "llama-3.1-8b", "batch": 4, "seq": 8, "stages": 2, "microbatches": 4, "math": "add"}},
     "workload[0].pp.math", "microbatches: 1"),
    ({"kv_transfer": {"model": "llama-3.1-8b", "prompt_tokens": 8, "prefill": [0, 9], "decode": [1]}},
     "workload[0].kv_transfer.prefill", "between 0 and 7"),
    ({"kv_transfer": {"model": "llama-3.1-8b", "prompt_tokens": 8, "prefill": "domain:2", "decode": [1]}},
     "workload[0].kv_transfer.prefill", "domain below 2"),
    ({"dp": {"model": {"hidden": 8, "layers": 1, "heads": 1, "head_dim": 8, "vocab": 8, "ffn": 8}, "batch": 1}},
     "workload[0].dp.model", "kv_heads"),
])
def test_bad_workload_entries_name_the_key(entry, key, words):
    with pytest.raises(ProfileError) as info:
        _with([entry])
    msg = str(info.value)
    assert msg.startswith(f"w.yaml: {key}: ") and words in msg and "\n" not in msg, msg


def test_stragglers_parse_into_late_ranks_and_slow_links():
    p = _with(stragglers=[{"rank": 3, "delay": "50us"},
                          {"rank": "all", "delay": "2us", "distribution": "exponential"},
                          {"rank": 1, "delay": "5us", "distribution": "pareto", "shape": 1.5},
                          {"link": "domain:1", "rate_factor": 0.2, "extra_latency": "1us"}])
    late, noise, tail, link = p.stragglers
    assert late.ranks == (3,) and late.delay_s == pytest.approx(50e-6) and late.distribution == "fixed"
    assert noise.ranks == tuple(range(8)) and tail.shape == 1.5 and isinstance(late, SlowRank)
    assert isinstance(link, SlowLink) and (link.target, link.index, link.rate_factor) == ("domain", 1, 0.2)
    assert p.impaired and not p.without_stragglers().impaired


@pytest.mark.parametrize("entry,key,words", [
    ({"rank": 8, "delay": "1us"}, "stragglers[0].rank", "between 0 and 7"),
    ({"rank": 1, "delay": "1us", "distribution": "gamma"}, "stragglers[0].distribution", "expected one of"),
    ({"rank": 1, "delay": "1us", "distribution": "pareto"}, "stragglers[0].shape", "needs a shape > 1"),
    ({"rank": 1, "delay": "1us", "distribution": "normal"}, "stragglers[0].std", "std goes with"),
    ({"rank": 1, "delay": 0}, "stragglers[0].delay", "> 0"),
    ({"link": "switch:1", "rate_factor": 0.5}, "stragglers[0].link", "expected rank:N"),
    ({"link": "rank:1", "rate_factor": 5}, "stragglers[0].rate_factor", "(0, 1]"),
])
def test_bad_stragglers_name_the_key(entry, key, words):
    with pytest.raises(ProfileError) as info:
        _with(stragglers=[entry])
    msg = str(info.value)
    assert msg.startswith(f"w.yaml: {key}: ") and words in msg, msg


def test_a_slow_rank_link_is_slower_both_ways_and_adds_its_latency_once_per_path():
    p = _with(stragglers=[{"link": "rank:1", "rate_factor": 0.2, "extra_latency": "3us"}], base=IB)
    plan, base = build(p, 1000.0), build(p.without_stragglers(), 1000.0)
    out, into = plan.shapers["fab0000h1:fab0000r1"], plan.shapers["fab0000s0:fab0000p1"]
    assert out.rate_bps == into.rate_bps == pytest.approx(0.2 * base.shapers["fab0000h1:fab0000r1"].rate_bps)
    for src, dst in ((1, 2), (2, 1), (1, 5), (5, 1)):
        assert plan.path_latency(src, dst) == pytest.approx(base.path_latency(src, dst) + 3e-3)
    assert plan.path_latency(0, 2) == base.path_latency(0, 2)


def test_a_slow_domain_uplink():
    p = _with(stragglers=[{"link": "domain:1", "rate_factor": 0.5}])
    plan = build(p, 1.0)
    assert plan.shapers["fab0000s1:fab0000u1"].rate_bps == plan.shapers["fab0000core:fab0000d1"].rate_bps == 200e9
    assert plan.shapers["fab0000s0:fab0000u0"].rate_bps == 400e9


@pytest.mark.parametrize("law,mean", [(("fixed", 2.0, 0, 0), 2.0), (("normal", 2.0, 0.5, 0), 2.0),
                                      (("exponential", 2.0, 0, 0), 2.0), (("pareto", 2.0, 0, 3.0), 2.0)])
def test_delay_laws_have_the_profiles_mean(law, mean):
    d = Delays([law], seed=1)
    draws = [d.draw() for _ in range(20000)]
    assert statistics.mean(draws) == pytest.approx(mean, rel=0.05) and min(draws) >= 0
    assert max(draws) <= CAP * mean


def test_delays_are_seeded_per_rank():
    assert [Delays([("exponential", 1, 0, 0)], 7).draw() for _ in range(3)] == \
        [Delays([("exponential", 1, 0, 0)], 7).draw() for _ in range(3)]


def test_flat_profiles_have_no_domain_links_to_slow():
    with pytest.raises(ProfileError, match="expected rank:N"):
        parse(dict(flat(), stragglers=[{"link": "domain:0", "rate_factor": 0.5}]), "w.yaml")


def test_sweep_variants_replace_the_delay_or_the_rank_count():
    from fabric.sweep import variants
    data = dict(flat(ranks=4), stragglers=[{"rank": 1, "delay": "1us"}])
    points = variants(data, "s.yaml", "delay", ["5us", "20us"])
    assert [p.stragglers[0].delay_s for _, p in points] == [pytest.approx(5e-6), pytest.approx(20e-6)]
    assert [p.topology.ranks for _, p in variants(data, "s.yaml", "ranks", [2, 8])] == [2, 8]
    assert [p.topology.ranks for _, p in variants(RATE_ONLY, "s.yaml", "ranks", [2])] == [4]   # per domain
    with pytest.raises(ProfileError, match=r"s.yaml \(ranks = 1\): workload\[0\].op: all_reduce needs"):
        variants(data, "s.yaml", "ranks", [1])
    with pytest.raises(ProfileError, match="needs a {rank, delay} straggler"):
        variants(flat(), "s.yaml", "delay", ["5us"])
