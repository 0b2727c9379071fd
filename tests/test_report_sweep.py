"""Re-rendering past runs, the size sweep's arguments and its α-β fit, without root."""
import json
import shutil
from pathlib import Path

import pytest

from conftest import flat
from fabric import cli, fit, report, sweep
from fabric.profile import ProfileError

STORED = Path(__file__).parent / "data" / "isl-800g"   # a microVM run of profiles/isl-800g.yaml


def test_fit_recovers_a_line_from_points_spanning_decades():
    sizes = [2 ** i for i in range(10, 29, 2)]
    a, b = fit.line(sizes, [30e-6 + s / 50e9 for s in sizes])
    assert a == pytest.approx(30e-6) and b == pytest.approx(1 / 50e9)
    with pytest.raises(ValueError, match="two different sizes"):
        fit.line([1024], [1.0])


def _row(nbytes, measured, model, link_GBps=0.002):
    return {"op": "all_reduce", "bytes": nbytes, "time_us": {"p50": measured}, "model_time_us": model,
            "link_GBps": link_GBps}


def test_alpha_beta_compares_the_measured_terms_with_the_models():
    # measured: latency term 10 % above the model's, bandwidth term 25 % slower (0.8 x the rate)
    rows = [_row(s, 1.1 * 100 + s / 1000 / 0.8, 100 + s / 1000) for s in (1024, 4096, 16384, 65536, 262144)]
    f = fit.alpha_beta(rows + [dict(_row(8, 5, 5), op="sendrecv")], k=10)["all_reduce"]
    assert f["alpha_us"] == pytest.approx(11) and f["profile_alpha_us"] == pytest.approx(10)
    assert f["alpha_diff"] == pytest.approx(0.1) and f["beta_diff"] == pytest.approx(-0.2)
    assert f["profile_beta_bps"] == pytest.approx(0.002 * 8e9 * 10) and f["beta_bps"] == pytest.approx(0.8 * 160e6)
    assert f["sizes"] == 5
    # latency 110 us, 1.25 ns per byte: the bandwidth term catches up at 88,000 B (the model's: 100,000 B)
    assert f["crossover_bytes"] == pytest.approx(88000) and f["profile_crossover_bytes"] == pytest.approx(100000)
    text = "\n".join(report.fit_lines({"fit": {"all_reduce": f}}))
    assert "latency term 11 us (the profile's links: 10 us, +10%)" in text and "-20%" in text
    assert "crossover (latency term = bandwidth term) at 85.9 KiB (the profile: 97.7 KiB)" in text


def test_sizes_follow_nccl_tests():
    assert sweep.sizes(1024, 8192, 2) == [1024, 2048, 4096, 8192]
    assert sweep.sizes(1000, 9000, 3) == [1000, 3000, 9000]
    assert sweep.sizes(64, 64, 2) == [64]
    for bad in ((0, 8, 2), (16, 8, 2), (8, 64, 1)):
        with pytest.raises(ValueError, match="-f > 1"):
            sweep.sizes(*bad)


def test_size_variant_keeps_the_fabric_and_replaces_the_workload():
    data = flat(ranks=4, workload=[{"tp_decode": {"model": "llama-3.1-8b", "batch": 1, "tp": 4}}])
    data["stragglers"] = [{"rank": 1, "delay": "1ms"}]
    p = sweep.size_variant(data, "p.yaml", "all_gather", [1024, 4096], iters=7, warmup=2, check=False)
    assert [(o.op, o.sizes, o.iters, o.warmup, o.check) for o in p.workload] == [("all_gather", (1024, 4096), 7, 2,
                                                                                  False)]
    assert not p.workloads and not p.stragglers and p.topology.ranks == 4


@pytest.mark.parametrize("argv,words", [
    (["--op", "all_reduce", "-b", "0"], "positive"),
    (["--op", "all_reduce", "-n", "x"], "whole number"),
    (["--op", "nope"], "invalid choice"),
    (["--op", "all_reduce", "--delay", "1us"], "not allowed with"),
])
def test_bad_sweep_arguments_are_one_line_and_exit_2(capsys, argv, words):
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(["sweep", "p.yaml"] + argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and words in err and err.count("\n") == 1


def test_sizes_that_cannot_be_swept_create_nothing(write_profile, tmp_path, capsys):
    code = cli.main(["sweep", str(write_profile(flat())), "--op", "all_reduce", "-b", "8KiB", "-e", "1KiB",
                     "--out", str(tmp_path / "o")])
    assert code == 2 and "expected 1 <= -b <= -e" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_report_re_renders_a_copied_run_byte_for_byte(tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(STORED, run)
    doc = json.loads((STORED / "results.json").read_text())
    assert cli.main(["report", str(run)]) == 0
    assert capsys.readouterr().out == report.table(doc) + "\n"
    assert sorted(p.name for p in run.glob("*.png")) == ["latency_cdf.png", "skew.png", "token_breakdown.png"]
    assert "TPOT" in report.table(doc) and "stragglers" in report.table(doc)
    first = {p.name: p.read_bytes() for p in run.glob("*.csv")}
    assert set(first) == {"results.csv", "workloads.csv"}
    assert cli.main(["report", str(run)]) == 0
    assert {p.name: p.read_bytes() for p in run.glob("*.csv")} == first
    assert first["workloads.csv"].decode().splitlines()[0].startswith("kind,label,ranks,iters,iteration_us.min")
    assert len(first["workloads.csv"].decode().splitlines()) == 1 + len(doc["workloads"])


@pytest.mark.parametrize("setup,words", [
    (lambda d: None, "expected a run folder"),
    (lambda d: d.mkdir(), "results.json"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text("{")), "results.json"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text('{"schema": 1}')), "schema: expected 2"),
])
def test_report_of_a_folder_that_is_not_a_run_is_exit_2(tmp_path, capsys, setup, words):
    setup(tmp_path / "r")
    assert cli.main(["report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


FOUR = ["profiles/nvlink4-h100.yaml", "profiles/ib-ndr400.yaml", "profiles/roce-400g.yaml", "profiles/isl-800g.yaml"]


def test_compare_gives_every_fabric_the_same_workload():
    from fabric import compare
    ps = compare.variants(FOUR, "profiles/workloads/inference-8ranks.yaml")
    assert [p.name for p in ps] == ["nvlink4-h100", "ib-ndr400", "roce-400g", "isl-800g"]
    assert len({(p.workload, tuple(e.label for e in p.workloads), p.stragglers, p.seed) for p in ps}) == 1
    assert ps[0].topology.kind == "flat" and ps[1].links != ps[2].links
    # without --workload, the first profile's: isl-800g's domain:N ranks do not exist on a flat fabric
    with pytest.raises(ProfileError, match=r"nvlink4-h100.yaml \(with the workload of profiles/isl-800g.yaml\): "
                                           r"workload\[4\].kv_transfer.decode"):
        compare.variants(["profiles/isl-800g.yaml", "profiles/nvlink4-h100.yaml"])
    with pytest.raises(ProfileError, match="description: expected only workload, stragglers, seed, gpu"):
        compare.variants(FOUR, "profiles/isl-800g.yaml")


def test_compare_table_puts_fabrics_in_columns_against_the_best():
    import copy
    from fabric import compare
    fast = json.loads((STORED / "results.json").read_text())
    slow = copy.deepcopy(fast)
    slow["profile"]["name"], slow["scale"] = "half-as-fast", fast["scale"] / 2     # every real time doubles
    for r in slow["results"]:
        r["projected"] = {key: v * (2 if key == "time_us" else 0.5) for key, v in r["projected"].items()}
    doc = compare.document([fast, slow], ["1-isl-800g", "2-half-as-fast"], "w.yaml")
    rows = {r["what"]: r for r in doc["rows"]}
    assert rows["all_reduce 16KiB time p99"]["values"][1] == pytest.approx(2 * rows["all_reduce 16KiB time p99"]
                                                                           ["values"][0])
    assert rows["all_reduce 16KiB busbw"]["lower_is_better"] is False
    assert "tp_decode llama-3.1-70b tp4 batch 1: TPOT p50" in rows
    assert "kv_transfer llama-3.1-70b 16 tokens 4->4 by whole: straggler slowdown p99" in rows
    text = compare.table(doc)
    line = next(x for x in text.splitlines() if x.strip().startswith("all_reduce 16KiB time p50"))
    assert line.split()[-4:] == ["75.96", "(1.00x)", "151.9", "(2.00x)"]
    line = next(x for x in text.splitlines() if x.strip().startswith("all_reduce 16KiB busbw"))
    assert line.split()[-3:] == ["(1.00x)", "0.1887", "(2.00x)"]
    assert text.splitlines()[1].split()[-2:] == ["isl-800g", "half-as-fast"]


def test_report_re_renders_a_compare(tmp_path, capsys):
    from fabric import compare
    fast = json.loads((STORED / "results.json").read_text())
    from fabric import results
    doc = compare.document([fast, fast], ["1-a", "2-b"], "w.yaml")
    compare.write(tmp_path, json.loads(json.dumps(doc)))
    for name in ("1-a", "2-b"):
        results.write(tmp_path / name, fast)
    assert cli.main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out == compare.table(doc) + "\n"
    assert (tmp_path / "compare.png").is_file()


def test_compare_needs_two_profiles(capsys):
    assert cli.main(["compare", "profiles/isl-800g.yaml"]) == 2
    assert "two or more profiles" in capsys.readouterr().err
