"""fabric up / shell / down and the Python API behind them (fabric.api.Fabric)."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, flat
from fabric import cleanup, cli, host

FABRIC = [sys.executable, "-m", "fabric.cli"]
UP_WAIT_S = 90          # building 2 hosts takes a few seconds; bounded all the same


def _fabric(*args, timeout=60):
    return subprocess.run(FABRIC + list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _start_up(path):
    """A `fabric up` process and the run it built, once it says it is up."""
    proc = subprocess.Popen(FABRIC + ["up", str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines, deadline = [], time.monotonic() + UP_WAIT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"fabric up: (fab[0-9a-f]{4}) is up", line)
        if m:
            return proc, m.group(1), "".join(lines)
    proc.kill()
    proc.wait()
    pytest.fail("fabric up did not come up: " + "".join(lines))


def _nothing_left(run):
    assert run not in cleanup.leftovers(), cleanup.leftovers()
    assert not [n for n in cleanup.named() if n.startswith(run)]
    assert not (cleanup.STATE_DIR / f"{run}.json").exists()


def test_shell_names_what_is_up_when_the_node_is_unknown(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cleanup, "STATE_DIR", tmp_path)
    assert cli.main(["shell", "h9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "fabric: shell: no node 'h9' in a fabric that is up; none is up (start one: fabric up PROFILE)"
    (tmp_path / "fab1a2b.json").write_text(json.dumps({"profile": "p.yaml", "nodes": {"h0": {}, "s0": {}}}))
    assert cli.main(["shell", "h9"]) == 2
    assert "up: fab1a2b (p.yaml: h0, s0)" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0 and host.netem_available(), reason="this kernel has netem: up runs anything")
def test_up_says_it_is_native_only_where_netem_is_missing(write_profile, capsys):
    path = write_profile(flat(ranks=2, latency="10us"))
    assert cli.main(["up", str(path)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fabric up runs natively only" in err and "fabric exec" in err
    assert not cleanup.leftovers()


@pytest.mark.root
def test_up_shell_down_on_a_live_fabric(write_profile):
    """Up, in a host with its rank's environment, ping, the named namespace, then down: nothing left."""
    data = flat(ranks=2)
    del data["workload"]
    proc, run, said = _start_up(write_profile(data))
    try:
        assert "fabric shell h1" in said and f"ip netns exec {run}h0 bash" in said
        env = _fabric("shell", "h1", "--", "sh", "-c", "echo $RANK $WORLD_SIZE $MASTER_ADDR $GLOO_SOCKET_IFNAME")
        assert env.returncode == 0, env.stderr
        assert env.stdout.split() == ["1", "2", "198.18.0.1", f"{run}r1"]
        ping = _fabric("shell", "h1", "--", "ping", "-c", "2", "-W", "5", "198.18.0.1")
        assert ping.returncode == 0 and "2 received" in ping.stdout, ping.stdout + ping.stderr
        addr = subprocess.run(["ip", "netns", "exec", f"{run}h0", "ip", "-br", "addr"], capture_output=True, text=True)
        assert "198.18.0.1/16" in addr.stdout
        down = _fabric("down")
        assert down.returncode == 0 and f"fabric down: {run}" in down.stdout, down.stderr
        assert proc.wait(timeout=30) == 0
        assert f"fabric up: {run} removed" in proc.stdout.read()
        _nothing_left(run)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cleanup.remove(run)


@pytest.mark.root
def test_a_killed_up_is_removed_by_cleanup_names_and_all(write_profile):
    data = flat(ranks=2)
    del data["workload"]
    proc, run, _ = _start_up(write_profile(data))
    proc.kill()                  # no unwinding: its namespaces stay named under /run/netns
    proc.wait()
    try:
        assert [n for n in cleanup.named() if n.startswith(run)]
        done = _fabric("cleanup")
        assert done.returncode == 0 and run in done.stdout
        _nothing_left(run)
    finally:
        cleanup.remove(run)


@pytest.mark.root
def test_the_api_builds_reaches_and_removes_a_fabric():
    """fabric.api.Fabric: hosts by rank and name, commands in them, iperf3 within 5 % of the shaped rate."""
    from fabric.api import Fabric
    data = flat(ranks=2, rate="200Mbit/s")
    del data["workload"]
    fab = Fabric(data)
    with fab:
        run = fab.plan.prefix
        assert [h.name for h in fab.hosts] == ["h0", "h1"] and fab.host("h1") == fab.host(1) == fab.host(f"{run}h1")
        assert [n.name for n in fab.nodes] == ["h0", "h1", "s0"] and fab.host("s0").ip is None
        with pytest.raises(ValueError, match="its nodes: h0, h1, s0"):
            fab.host("h7")
        assert fab.cmd("h0", "sh", "-c", "echo $RANK").stdout.strip() == "0"
        server = fab.popen("h0", ["iperf3", "-s", "-1", "-B", fab.host(0).ip], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            client = fab.cmd("h1", "iperf3", "-c", fab.host(0).ip, "-t", "4", "-J", timeout=60)
        finally:
            server.wait(timeout=30)
        assert client.returncode == 0, client.stderr
        received = json.loads(client.stdout)["end"]["sum_received"]["bits_per_second"]
        # iperf3 counts TCP payload; the shaper counts whole frames (MTU 9000: 0.7 % headers)
        assert received == pytest.approx(200e6 * (9000 - 52) / 9014, rel=0.05)
        assert fab.up
    assert not fab.up
    _nothing_left(run)


@pytest.mark.root
def test_mininets_cleanup_leaves_a_running_fabric_alone():
    """`mn -c` kills every process whose command line holds `mininet:` (Mininet's clean.py,
    killprocs): fabric's node shells say `fabric:` instead, so a Mininet user's habit does not
    take a running fabric down, and `fabric cleanup` still finds them."""
    import subprocess

    from fabric import api, cleanup
    profile = {"name": "t", "scale": 1000, "links": {"l": {"rate": "1Gbit/s"}},
               "topology": {"kind": "flat", "ranks": 2, "link": "l"}}
    with api.Fabric(profile) as fab:
        assert fab.plan.prefix in cleanup.leftovers()
        subprocess.run(["pkill", "-9", "-f", "mininet:"], check=False)     # what mn -c does to node shells
        assert fab.emulation.alive()
        assert fab.cmd(0, "ping", "-c", "1", "-W", "2", fab.host(1).ip).returncode == 0
    assert not cleanup.leftovers()
