"""nccl-tests' conventions on fabric's output: its footers on the table, its JSON layout beside
results.json (checked field by field as nccl-tests' tools/analyze_perf_json.py reads them, on a
stored run), its size suffixes on sweep's -b/-e."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from fabric import nccl_json, report, results
from fabric.units import UnitError, parse_nccl_size

STORED = json.loads((Path(__file__).parent / "data" / "isl-800g" / "results.json").read_text())


def test_a_script_that_greps_nccl_tests_footers_reads_fabrics_table():
    text = report.table(STORED)
    [avg] = re.findall(r"^# Avg bus bandwidth\s+: ([0-9.e+-]+)", text, re.M)
    busbw = [r["projected"]["busbw_GBps"] for r in STORED["results"]]
    assert float(avg) == pytest.approx(sum(busbw) / len(busbw), rel=1e-5)
    assert re.search(r"^# Out of bounds values : 0 OK$", text, re.M)
    wrong = dict(STORED, results=[dict(STORED["results"][0], correct=False)] + STORED["results"][1:])
    assert "# Out of bounds values : 1 FAILED" in report.table(wrong)


def test_the_first_columns_are_nccl_tests_in_real_fabric_numbers():
    header = next(l for l in report.table(STORED).splitlines() if l.startswith("#") and "redop" in l)
    assert header.split()[1:10] == ["size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong"]
    r = STORED["results"][0]
    row = next(l for l in report.table(STORED).splitlines() if l.split()[:1] == [str(r["bytes"])])
    cells = row.split()
    assert cells[3:5] == ["sum", "-1"] and cells[8] == "0"
    assert float(cells[5]) == pytest.approx(r["projected"]["time_us"], rel=1e-3)
    assert float(cells[7]) == pytest.approx(r["projected"]["busbw_GBps"], rel=1e-3)


def test_the_json_has_what_nccl_tests_tools_read():
    doc = nccl_json.document(STORED, ["fabric", "run", "profiles/isl-800g.yaml"])
    doc = json.loads(json.dumps(doc))                  # what a reader gets from the file
    assert doc["version"] == 3 and doc["config"]["iterations"] >= 1 and doc["config"]["aggregated_iterations"] == 1
    assert len(doc["config"]["devices"]) == STORED["emulation"]["ranks"]
    assert all("hostname" in d for d in doc["config"]["devices"])
    assert doc["out_of_bounds"] == {"count": 0, "okay": "true"}
    assert doc["average_bus_bandwidth"]["bandwidth"] == pytest.approx(
        sum(r["projected"]["busbw_GBps"] for r in STORED["results"]) / len(STORED["results"]))
    assert len(doc["results"]) == len(STORED["results"])
    k = STORED["scale"]
    for mine, r in zip(doc["results"], STORED["results"]):
        assert (mine["size"], mine["count"], mine["type"]) == (r["bytes"], r["count"], r["type"])
        assert mine["out_of_place"]["bus_bw"] == pytest.approx(r["projected"]["busbw_GBps"])
        assert mine["out_of_place"]["nwrong"] == 0.0 and mine["in_place"] is None
        per = mine["out_of_place_per_iter"]
        for key in ("min_us", "max_us", "avg_us", "p50_us", "p95_us", "p99_us", "stdev_us", "cv_pct"):
            assert isinstance(per[key], float), key
        assert per["min_us"] <= per["avg_us"] <= per["max_us"] and per["p99_us"] == per["max_us"]  # < 100 iterations
        rows = per["per_process_max_times_us"]
        assert len(rows) == STORED["emulation"]["ranks"] and len(per["times_us"]) == r["iters"]
        # the analyzer's consistency check: times_us is the maximum over the process rows
        assert per["times_us"] == [max(row[i] for row in rows) for i in range(len(per["times_us"]))]
        assert per["times_us"][0] == pytest.approx(max(t[0] for t in r["rank_time_us"]) / k)


def test_every_run_writes_it_beside_results_json(tmp_path):
    results.write(tmp_path, STORED)
    assert json.loads((tmp_path / "nccl-tests.json").read_text())["results"][0]["size"] == STORED["results"][0]["bytes"]


@pytest.mark.parametrize("text, size", [("8", 8), ("64K", 65536), ("64k", 65536), ("128M", 128 << 20),
                                        ("1G", 1 << 30), ("32MiB", 32 << 20), ("1048576", 1 << 20)])
def test_sizes_as_nccl_tests_reads_them(text, size):
    assert parse_nccl_size(text) == size


def test_an_si_size_is_refused_as_ambiguous_with_one_line():
    with pytest.raises(UnitError, match="ambiguous: nccl-tests reads it as 128M"):
        parse_nccl_size("128MB")
    done = subprocess.run([sys.executable, "-m", "fabric.cli", "sweep", "profiles/isl-800g.yaml", "--op", "all_reduce",
                           "-e", "128MB"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "ambiguous" in done.stderr


def test_version_and_defaults_in_help():
    done = subprocess.run([sys.executable, "-m", "fabric.cli", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and re.fullmatch(r"fabric \d+\.\d+\.\d+\n", done.stdout)
    text = " ".join(subprocess.run([sys.executable, "-m", "fabric.cli", "sweep", "--help"], cwd=ROOT,
                                   capture_output=True, text=True).stdout.split())
    assert "iterations per size (default: 20)" in text and "(default: runs/latest)" in text
    assert "--quiet no progress and no log lines (errors still) (default" not in text      # flags: no default said
