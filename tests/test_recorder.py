"""--capture on a live fabric (natively, bandwidth only): taps before the qdiscs, tcpdumps, figures."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, flat
from fabric import cleanup, recorder

pytestmark = pytest.mark.root
FABRIC = [sys.executable, "-m", "fabric.cli"]


def _tcpdumps() -> list[str]:
    out = subprocess.run(["pgrep", "-a", "tcpdump"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "fab" in line]


def test_run_capture_counts_every_byte_the_qdiscs_count(write_profile, tmp_path):
    """A two-domain all-to-all and ring all-reduce: each direction's pcap holds what its root
    qdisc sent, nearly every packet on a rank's port is matched with its queued
    copy (TCP's GSO packets counted as their segments), the uplinks are the busiest, and the
    picture is drawn; no tcpdump outlives the run."""
    data = {"name": "cap", "scale": 1, "links": {"l": {"rate": "200Mbit/s"}, "up": {"rate": "100Mbit/s"}},
            "topology": {"kind": "two_tier", "domains": 2, "ranks_per_domain": 2, "intra": "l", "inter": "up"},
            "workload": [{"op": "all_to_all", "bytes": "2MiB", "iters": 2, "warmup": 1},
                         {"op": "all_reduce", "bytes": "2MiB", "iters": 2, "warmup": 1, "algorithm": "ring"}]}
    out = tmp_path / "run"
    done = subprocess.run(FABRIC + ["run", str(write_profile(data)), "--capture", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "# packet capture: 12 shaped link directions" in done.stdout
    doc = json.loads((out / "results.json").read_text())["capture"]
    assert [d["key"].split(":")[0][7:] for d in doc["directions"]][:2] == ["h0", "s0"]
    for d in doc["directions"]:
        # to the packet but for the odd late ACK or FIN of a closing socket between the qdiscs'
        # counters being read and the tcpdumps stopping
        assert abs(d["packets"] - d["qdisc_packets"]) <= 2 and d["qdisc_bytes"] > 1_000_000, d["key"]
        assert d["bytes"] == pytest.approx(d["qdisc_bytes"], rel=1e-3), d["key"]
        assert (out / "capture" / d["files"]["sent"]).stat().st_size > 0 and not d["truncated"]
        assert d["lost"] == 0 and d["unmatched_sent"] == 0 and d["delay_s"]["min"] >= 0, d["key"]
        assert d["delay_s"]["n"] >= 0.99 * d["packets"], d["key"]
    uplink = {True: [], False: []}           # s0:u0 and core:d0 against the ranks' ports
    for d in doc["directions"]:
        uplink[d["key"].split(":")[1][7] in "ud"].append(d["mean_utilisation"])
    # the uplinks carry half the all-to-all at half the rate (measured: 0.84 against 0.38)
    assert len(uplink[True]) == 4 and min(uplink[True]) > 1.5 * max(uplink[False])
    assert (out / "link_utilisation.png").stat().st_size > 10_000
    assert 'alt="link_utilisation"' in (out / "report.html").read_text()
    assert not _tcpdumps() and not cleanup.leftovers()


def test_exec_capture_writes_its_figures_beside_exec_json(write_profile, tmp_path):
    data = flat(ranks=2, rate="200Mbit/s")
    del data["workload"]
    out = tmp_path / "exec"
    program = ('if [ "$RANK" = 0 ]; then iperf3 -s -1 -B "$MASTER_ADDR"; exit; fi; '
               'for i in $(seq 40); do iperf3 -c "$MASTER_ADDR" -t 1 && break; sleep 0.2; done')
    done = subprocess.run(FABRIC + ["exec", str(write_profile(data)), "--capture", "--out", str(out), "--",
                                    "sh", "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((out / "capture.json").read_text())
    sender = next(d for d in doc["directions"] if d["key"].endswith("r1"))
    assert sender["bytes"] == pytest.approx(sender["qdisc_bytes"], rel=1e-3) and sender["qdisc_bytes"] > 10_000_000
    assert sender["peak_utilisation"] > 0.9
    assert doc["flows"][0]["src"].startswith("198.18.0.2:") and doc["flows"][0]["dst"] == "198.18.0.1:5201"
    assert (out / "link_utilisation.png").is_file() and "packet capture" in done.stdout
    assert not _tcpdumps() and not cleanup.leftovers()


def test_a_capture_budget_is_shared_by_every_file():
    class Emu:
        plan = type("P", (), {"shapers": dict.fromkeys(range(12))})()
    assert recorder.Recorder(Emu(), "/nonexistent-folder-never-made", budget=1_200_000).limit == 50_000
    assert recorder.Recorder(Emu(), "/nonexistent-folder-never-made", budget=10).limit == 1000
