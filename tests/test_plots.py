"""Pictures from stored results, without root: each plot function draws what its data says."""
import copy
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
from fabric import compare, plots  # noqa: E402

STORED = json.loads((Path(__file__).parent / "data" / "isl-800g" / "results.json").read_text())


def _sweep_doc():
    """The stored run with its 16 KiB all-reduce repeated at 4 and 16 times the size."""
    doc = copy.deepcopy(STORED)
    base = doc["results"][0]
    for factor in (4, 16):
        r = copy.deepcopy(base)
        r["bytes"] *= factor
        r["projected"]["busbw_GBps"] *= factor / 2
        r["model_time_us"] *= 2
        doc["results"].append(r)
    return doc


def test_busbw_plot_draws_measured_model_and_link_per_op():
    fig = plots.busbw_vs_size([_sweep_doc()])
    ax = fig.axes[0]
    measured, model = ax.lines[0], ax.lines[1]
    assert list(measured.get_xdata()) == [16384, 65536, 262144]
    assert measured.get_ydata()[2] == pytest.approx(8 * STORED["results"][0]["projected"]["busbw_GBps"])
    # the model's busbw: size / model time on the real fabric x the all-reduce bus factor 2(n-1)/n
    r, k = STORED["results"][0], STORED["scale"]
    assert model.get_ydata()[0] == pytest.approx(r["bytes"] / (r["model_time_us"] / k * 1e-6) / 1e9 * 14 / 8)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert plots.busbw_vs_size([STORED]) is None          # one size: nothing to draw against size


def test_latency_cdf_overlays_the_baseline_and_marks_p50_but_no_p99_of_3_iterations():
    fig = plots.latency_cdf(STORED)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["all_reduce 16384 B", "all_reduce 16384 B baseline"]
    times = sorted(max(r[i] for r in STORED["results"][0]["rank_time_us"]) / STORED["scale"] for i in range(3))
    assert list(fig.axes[0].lines[0].get_xdata()) == pytest.approx(times)
    marks = [line.get_marker() for line in fig.axes[0].lines if len(line.get_xdata()) == 1]
    assert marks == ["o", "o"]                          # a p50 per run; p99 needs 100 iterations


def test_skew_strip_has_a_panel_per_op_and_workload_with_a_row_per_rank():
    fig = plots.skew_strip(STORED)
    panels = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert len(panels) == len(STORED["results"]) + len(STORED["workloads"])
    grid = panels[0].images[0].get_array()
    assert grid.shape == (8, 3) and grid.min() == 0.0     # each iteration's fastest rank is 0 behind


def test_token_breakdown_splits_compute_from_communication():
    fig = plots.token_breakdown(STORED)
    ax = fig.axes[0]
    tp = STORED["workloads"][0]["figures"]
    widths = [p.get_width() for p in ax.patches]
    assert widths[0] == pytest.approx(tp["compute_us_per_token"])
    assert widths[1] == pytest.approx(tp["tpot_us"]["p50"] - tp["compute_us_per_token"])
    assert [t.get_text() for t in ax.get_yticklabels()] == [w["label"] for w in STORED["workloads"]]


def test_compare_bars_scale_each_group_to_its_best_fabric():
    slow = copy.deepcopy(STORED)
    slow["profile"]["name"] = "slow"
    for w in slow["workloads"]:
        if w["kind"] == "tp_decode":
            w["figures"]["tpot_us"]["p50"] *= 3
    fig = plots.compare_bars(compare.document([STORED, slow], ["1-a", "2-b"], "w.yaml"))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    row = labels.index("tp_decode llama-3.1-70b tp4 batch 1: TPOT p50")
    bars = ax.containers
    assert bars[0][row].get_width() == pytest.approx(1.0) and bars[1][row].get_width() == pytest.approx(3.0)


def test_run_figures_are_saved_small(tmp_path):
    paths = plots.save(plots.run_figures(STORED), tmp_path)
    assert sorted(p.name for p in paths) == ["latency_cdf.png", "skew.png", "token_breakdown.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 150_000 for p in paths)
