"""A size sweep on a real emulated fabric here (root, k = 1, rate only), and `fabric report`
on a copy of its folder printing the same table byte for byte."""
import json
import shutil

import pytest
import yaml

from conftest import flat
from test_emulation import fabric, nothing_left

pytestmark = pytest.mark.root


def test_a_size_sweep_fits_the_link_rate_and_report_reproduces_it(tmp_path):
    # 4 ranks: with 2, rank+1 = rank-1 and gloo carries both directions on one pair at half the rate
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(flat(ranks=4, rate="200Mbit/s")))
    proc = fabric("sweep", str(tmp_path / "p.yaml"), "--op", "sendrecv", "-b", "16KiB", "-e", "4MiB", "-f", "4",
                  "-n", "6", "-w", "1", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["bytes"] for r in doc["results"]] == [16384, 65536, 262144, 1048576, 4194304]
    assert all(r["correct"] for r in doc["results"])
    f = doc["fit"]["sendrecv"]
    # the bandwidth term is the shaped rate's (a bits/bytes or k slip would be off by 8x or k);
    # TCP/IP headers lower it, htb's burst and ms of host noise in the small sizes move it both ways
    assert 0.7 * 200e6 <= f["beta_bps"] <= 1.3 * 200e6 and f["profile_beta_bps"] == pytest.approx(200e6)
    assert "# α-β fit of sendrecv over 5 sizes" in proc.stdout
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    again = fabric("report", str(tmp_path / "copy"))
    assert again.returncode == 0 and again.stdout == proc.stdout
    assert (tmp_path / "copy" / "results.csv").read_bytes() == (tmp_path / "run" / "results.csv").read_bytes()
    nothing_left()


def test_unchecked_sweeps_say_so(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(flat(ranks=2, rate="1Gbit/s")))
    proc = fabric("sweep", str(tmp_path / "p.yaml"), "--op", "all_reduce", "-b", "1KiB", "-e", "4KiB", "-n", "2",
                  "-c", "0", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 not checked (check: false)" in proc.stdout
    assert [r["correct"] for r in json.loads((tmp_path / "run" / "results.json").read_text())["results"]] == [None] * 3
