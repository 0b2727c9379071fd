"""From rank times to nccl-tests metrics, the projection and the files."""
import csv
import json
import pytest

from conftest import flat
from fabric import report
from fabric.plan import build
from fabric.profile import parse
from fabric.ranks import RankResult
from fabric.results import document, summarize, write
from fabric.stats import percentile


def test_percentile_matches_linear_interpolation():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(xs, 0) == 1 and percentile(xs, 50) == 3 and percentile(xs, 100) == 5
    assert percentile(xs, 95) == pytest.approx(4.8)
    assert percentile(list(range(101)), 99) == pytest.approx(99)


def _doc(k=10.0, correct=True):
    from fabric import work
    plan = build(parse(flat(ranks=2, rate="1Gbit/s"), "f.yaml"), k)
    S = 2**20
    rr = [RankResult(0, "all_reduce", S, [0.010, 0.020, 0.030], True, 0),
          RankResult(1, "all_reduce", S, [0.012, 0.018, 0.040], correct, 1)]
    res = summarize(plan, work.build(plan), rr)
    return document(plan, res, "none")


def test_iteration_time_is_the_slowest_rank_and_metrics_follow():
    doc = _doc()
    r = doc["results"][0]
    assert r["time_us"]["min"] == pytest.approx(12000) and r["time_us"]["max"] == pytest.approx(40000)
    assert r["time_us"]["p50"] == pytest.approx(20000)           # slowest ranks: 12, 20, 40 ms
    algbw = 2**20 / 0.020 / 1e9
    assert r["algbw_GBps"] == pytest.approx(algbw) and r["busbw_GBps"] == pytest.approx(algbw * 1.0)
    assert r["projected"]["time_us"] == pytest.approx(2000) and r["projected"]["busbw_GBps"] == pytest.approx(algbw * 10)
    assert r["link_GBps"] == pytest.approx(1e9 / 10 / 8 / 1e9)
    assert r["bus_efficiency"] == pytest.approx(r["busbw_GBps"] / r["link_GBps"])
    assert r["measured_over_model"] == pytest.approx(0.020 / (r["model_time_us"] * 1e-6))
    assert r["late_starts"] == 1 and r["correct"] and len(r["rank_time_us"]) == 2
    assert r["algorithm"] in ("one_shot", "two_shot", "ring", "tree")     # auto's choice, named
    assert doc["schema"] == 2 and doc["scale"] == 10.0 and doc["emulation"]["netem"] == "none"


def test_a_wrong_rank_makes_the_result_wrong():
    doc = _doc(correct=False)
    assert not doc["results"][0]["correct"]
    assert "WRONG" in report.table(doc)


def test_json_and_csv(tmp_path):
    doc = _doc()
    write(tmp_path, doc)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(doc))
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert rows[0]["op"] == "all_reduce" and float(rows[0]["time_us.p50"]) == pytest.approx(20000)
    assert rows[0]["algorithm"] == doc["results"][0]["algorithm"]


def test_table_reads_like_nccl_tests():
    text = report.table(_doc())
    for word in ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "algo", "busEff",
                 "model", "emu:time", "scale k = 10", "# Avg bus bandwidth    : "):
        assert word in text


def _workload_doc(delay=0.0):
    """Two ranks, one tp_decode layer at k = 10: phases attention, all-reduce, mlp, all-reduce."""
    from fabric.ranks import RankWorkload
    from fabric.results import summarize_workloads
    data = flat(ranks=2, rate="1Gbit/s", workload=[
        {"tp_decode": {"model": "llama-3.1-8b", "batch": 1, "tp": 2, "layers": 1, "layer_time": "4ms"}}])
    data["scale"] = 10
    plan = build(parse(data, "w.yaml"), 10.0)
    ends = [[0.02, 0.03 + delay, 0.05 + delay, 0.06 + 2 * delay]] * 3        # emulated s after the start
    runs = [RankWorkload(0, 0, [list(e) for e in ends], True, 0),
            RankWorkload(1, 0, [[x - 0.001 for x in e] for e in ends], True, 0)]
    from fabric import work
    doc = document(plan, [], "none", workloads=summarize_workloads(plan, work.build(plan), runs))
    return doc


def test_workload_figures_come_from_the_slowest_rank_and_project_by_k():
    w = _workload_doc()["workloads"][0]
    assert w["iteration_us"]["p50"] == pytest.approx(60000) and w["projected_iteration_us"]["p50"] == pytest.approx(6000)
    f = w["figures"]
    assert f["tpot_us"]["p50"] == pytest.approx(6000 * 32)                 # 1 of 32 layers emulated
    assert f["comm_share"] == pytest.approx((10 + 10) / 60)                # all-reduces 30-20 and 60-50 ms
    assert w["phases_us"]["attention"] == pytest.approx(2000) and w["skew_us"] == [pytest.approx(100), 0]
    assert w["last_counts"] == [3, 0] and w["model_iteration_us"] > 0
    assert set(w["algorithms"]) == {"attention all-reduce", "mlp all-reduce"}
    assert "TPOT" in report.table(_workload_doc())


def test_slowdown_compares_the_straggler_run_with_its_baseline():
    from fabric.results import slowdown
    base, slow = _workload_doc(), _workload_doc(delay=0.005)
    row = slowdown(base, slow)[0]
    assert row["added_us"]["p50"] == pytest.approx(1000) and row["ratio"]["p50"] == pytest.approx(70 / 60)
    slow["stragglers"] = {"entries": ["rank 1 late by fixed 500 us"], "slowdown": [row]}
    text = report.table(slow)
    assert "x p50" in text and "# times include the stragglers (rank 1 late by fixed 500 us)" in text
    assert "times include the stragglers" not in report.table(base)
    # 3 iterations: no p95, p99 or interval to show, and the table says why
    assert row["samples"] == {"baseline": 3, "straggler": 3} and row["ratio_ci"] == {"p50": None}
    assert row["ratio"]["p99"] is None and row["added_us"]["p95"] is None and row["straggler_us"]["p99"] is None
    line = [x for x in text.splitlines() if x.endswith(row["name"])][-1]            # the stragglers table's
    assert line.count("n/a (n=3)") == 4 and "mean of 3" in text


def _ops_doc(iters, k=10.0):
    """Two ranks, one all-reduce of `iters` iterations, rank 1 0.5 ms slower than rank 0."""
    from fabric import work
    plan = build(parse(flat(ranks=2, rate="1Gbit/s"), "f.yaml"), k)
    times = [0.010 + 0.001 * (i % 10) for i in range(iters)]
    rr = [RankResult(0, "all_reduce", 2**20, times, True, 0),
          RankResult(1, "all_reduce", 2**20, [t + 0.0005 for t in times], True, 0)]
    return document(plan, summarize(plan, work.build(plan), rr), "none")


def test_p99_is_printed_only_from_100_iterations_and_slowdowns_carry_an_interval():
    from fabric.results import slowdown
    few, many = _ops_doc(12), _ops_doc(100)
    assert few["results"][0]["time_us"]["p99"] is None and few["results"][0]["time_us"]["n"] == 12
    assert many["results"][0]["time_us"]["p99"] == pytest.approx(19500)      # rank 1: 10.5-19.5 ms, 10 each
    row = next(x for x in report.table(few).splitlines() if x.strip().startswith("1048576"))
    assert "n/a (n=12)" in row and row.split()[10] == "12"
    row = next(x for x in report.table(many).splitlines() if x.strip().startswith("1048576"))
    assert "n/a" not in row and row.split()[10] == "100"
    lo, hi = slowdown(few, many)[0]["ratio_ci"]["p50"]     # the same distribution: the interval holds 1
    assert lo <= 1 <= hi


def _link(lossless=True, dropped=0, loss=0.0, **extra):
    return {"name": "eth", "role": "ranks", "rate_bps": 1e11, "latency_s": 7.5e-6, "jitter_s": 0, "loss": loss,
            "emulated_rate_bps": 1e8, "emulated_latency_s": 7.5e-3, "endpoint": {"op_s": 0, "step_s": 0},
            "lossless": lossless, "buffer_bytes": None if lossless else 187_500, "loss_configured": bool(loss),
            "drops": {"packets": dropped, "directions": 16, "directions_dropping": min(dropped, 3), "requeues": 0,
                      "sent_packets": 10_000}, **extra}


@pytest.mark.parametrize("link,warned", [
    (_link(dropped=5), True),                       # a lossless link should never drop: say so
    (_link(dropped=0), False),
    (_link(lossless=False, dropped=5), False),      # Ethernet under incast: expected
    (_link(dropped=5, loss=0.001), False),          # the profile asked for loss
])
def test_a_lossless_link_that_dropped_is_a_warning_in_the_table(link, warned):
    doc = {**_doc(), "links": [link]}
    line = next(l for l in report.header(doc) if l.startswith("#   link eth"))
    assert ("WARNING: a lossless link dropped" in line) == warned
    assert ("lossy, switch buffer 187,500 B" in line) == (not link["lossless"])
    assert ("DROPPED 5 of 10,000 packets on 3 of 16 directions" in line) == bool(link["drops"]["packets"])
