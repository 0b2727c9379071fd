"""The progress line on a real terminal, --quiet and --json, on a real emulated fabric here
(root, k = 1, rate only)."""
import json
import os
import pty
import select
import subprocess
import time

import pytest
import yaml

from conftest import ROOT, flat
from test_emulation import FABRIC, fabric, nothing_left

pytestmark = pytest.mark.root


def _profile(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(flat(ranks=2, rate="100Mbit/s", workload=[
        {"op": "all_reduce", "bytes": "1MiB", "iters": 6, "warmup": 1}])))
    return str(tmp_path / "p.yaml")


def test_json_prints_the_results_document_and_quiet_says_nothing(tmp_path):
    proc = fabric("run", _profile(tmp_path), "--out", str(tmp_path / "o"), "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads((tmp_path / "o" / "results.json").read_text())
    assert proc.stderr == ""
    nothing_left()


def test_a_terminal_sees_the_phase_and_an_eta(tmp_path):
    main, child = pty.openpty()
    proc = subprocess.Popen(FABRIC + ["run", _profile(tmp_path), "--out", str(tmp_path / "o")], cwd=ROOT,
                            stdin=child, stdout=subprocess.DEVNULL, stderr=child, close_fds=True)
    os.close(child)
    seen, deadline = b"", time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([main], [], [], 0.2)[0]:
            try:
                data = os.read(main, 65536)
            except OSError:      # the terminal closed: fabric is done
                break
            if not data:
                break
            seen += data
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(main)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    assert "building the topology" in text and "1 of 1: all_reduce 1048576 B" in text and "ETA" in text
    assert "fabric: wrote" in text          # the log lines still come, above the live line
    nothing_left()
