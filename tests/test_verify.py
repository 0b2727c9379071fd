"""fabric verify: the commands `fabric plan` prints build what the emulation builds.

The root tests build every shipped profile's fabric here.  This kernel has no netem, so here
each profile's links lose their latency and jitter (netem's leaves become pfifos, all else is
the profile's: topology, rates, queues, filters, routes); test_microvm verifies shipped
profiles with their netem leaves in the microVM.
"""
import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, flat
from fabric import cleanup, cli, tc, verify
from fabric.plan import build
from fabric.profile import parse

SHIPPED = sorted((ROOT / "profiles").glob("*.yaml"))
IMPAIRMENTS = ("latency", "jitter", "loss", "distribution", "burst_loss", "reorder")


def test_the_printed_lines_become_one_script_per_node_with_the_veths_first():
    plan = build(parse(flat(ranks=2, latency="1ms")), 1.0, run_id="abcd")
    veths, scripts = verify.node_scripts(plan)
    assert set(veths) == {"fababcdh0", "fababcdh1"}          # each host makes its veth to the switch
    assert veths["fababcdh0"] == ["ip link add name fababcdr0 mtu 9000 type veth peer name fababcdp0 mtu 9000 "
                                  "netns fababcds0"]
    assert set(scripts) == {"fababcdh0", "fababcdh1", "fababcds0"}
    host = scripts["fababcdh0"].text()
    assert host.startswith("set -e\n") and "\nip link set lo up\n" in host and "\nip route replace" in host
    # every tc line of the node in one tc -batch, in the printed order, without the word tc
    tc_lines = [line.split(" ", 2)[2] for line in plan.commands() if line.startswith("fababcdh0 tc ")]
    batch = host.split("tc -batch - <<'FABRIC_TC'\n", 1)[1].split("\nFABRIC_TC", 1)[0].splitlines()
    assert batch == tc_lines and batch[0].startswith("qdisc add dev fababcdr0 root handle 1: htb")
    assert not any("sysctl -w net.core.netdev_max_backlog" in s.text() for s in scripts.values())   # the host's


def test_a_failed_script_names_the_printed_line_it_stopped_at():
    script = verify.NodeScript("n", ["ip link set lo up", "tc qdisc add a", "tc class add b", "tc filter add c",
                                     "ip route replace x"])
    text = script.text()
    assert text.count("tc -batch") == 1 and "class add b\nfilter add c" in text
    stderr = f"{verify.MARK}0\n{verify.MARK}1\nWhat is \"b\"?\nCommand failed -:2\n"
    assert script.failed_line(stderr) == "tc class add b"
    assert script.failed_line(f"{verify.MARK}0\n{verify.MARK}1\n{verify.MARK}4\nRTNETLINK answers: x\n") == \
        "ip route replace x"
    assert script.failed_line("") == ""


def test_a_rate_is_printed_as_exactly_what_the_kernel_holds():
    """HTB keeps whole bytes per second; the printed rate says the same number (a 4444.448 kbit/s
    class was printed 4444kbit, 555,500 B/s, while netlink set 555,556)."""
    assert tc.bytes_per_s(4_444_448) == 555_556
    op = tc.Class(0x10, 0x10000, 4_444_448, 40e6, 1600, 1600)
    assert "rate 4444448bit ceil 40000kbit" in tc.text(op, "x")
    assert "rate 1bit" not in tc.text(tc.Class(0x10, 0x10000, 2, 2, 1600, 1600), "x")   # never below 1 B/s


def test_differences_are_counted_both_ways():
    a = {"n": {"links": ["x", "y"], "routes": ["r"]}}
    b = {"n": {"links": ["x", "z"], "routes": ["r"]}, "m": {"links": ["w"]}}
    found = verify.compare(a, b)
    assert [(d.node, d.what, d.built, d.printed) for d in found] == [("m", "links", (), ("w",)),
                                                                     ("n", "links", ("y",), ("z",))]
    assert "1 in the build only, 1 from the printed only" in found[1].text()


def _plain(path: Path, tmp: Path) -> Path:
    """The profile with its links' latency, jitter and loss taken out (no netem here)."""
    data = yaml.safe_load(path.read_text())
    for link in data["links"].values():
        for key in IMPAIRMENTS:
            link.pop(key, None)
    data.pop("events", None)
    out = tmp / path.name
    out.write_text(yaml.safe_dump(data))
    return out


def _no_leftovers():
    assert not cleanup.named() and not cleanup.leftovers(), "verify left namespaces or processes"


@pytest.mark.root
def test_every_shipped_profiles_build_is_its_printed_commands(tmp_path, capsys):
    """~80 s here: the 64- and 72-rank plans are 13,000 and 17,000 printed lines each.  At one
    k for all (auto's choice costs 9 s of α-β model for each of those two, and k scales numbers,
    not the plan's shape).  The constellation's ISLs have the latency of their length (netem),
    so it is verified in the microVM only."""
    plains = [_plain(p, tmp_path) for p in SHIPPED if parse(yaml.safe_load(p.read_text())).impaired
              and "constellation" not in p.name]
    assert len(plains) == len(SHIPPED) - 1
    code = cli.main(["verify", *map(str, plains), "--scale", "10000", "--vm", "never", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    found = json.loads((tmp_path / "out" / "verify.json").read_text())["profiles"]
    assert [Path(f["profile"]).name for f in found] == [p.name for p in plains]
    for f in found:
        assert f["differences"] == [], f
        assert f["counts"]["classes"] >= f["counts"]["filters"] > 0 and f["counts"]["routes"] > 0
    assert out.count("the build is what its") == len(plains)
    _no_leftovers()


@pytest.mark.root
def test_a_printed_command_that_says_something_else_is_found(write_profile, tmp_path, capsys, monkeypatch):
    """The check can fail: with the rate printed in rounded kbit again (the old text), the
    classes' rates and buffers differ, and verify says where, exit 1."""
    monkeypatch.setattr(tc, "_rate", lambda bps: f"{max(1, round(bps / 1000))}kbit")
    path = write_profile(flat(ranks=2, rate="4444448bit/s"))
    assert cli.main(["verify", str(path), "--vm", "never", "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert "differences between the build and the" in out and "classes: " in out
    assert "'rate': 555556" in out and "'rate': 555500" in out
    diffs = json.loads((tmp_path / "o" / "verify.json").read_text())["profiles"][0]["differences"]
    assert diffs and all(" classes: " in d for d in diffs), diffs
    _no_leftovers()


@pytest.mark.root
def test_a_printed_command_the_kernel_refuses_is_one_line(write_profile, tmp_path, capsys, monkeypatch):
    real = tc.text
    monkeypatch.setattr(tc, "text", lambda op, dev, verb="add": real(op, dev, verb).replace(" quantum ", " quantun "))
    assert cli.main(["verify", str(write_profile(flat(ranks=2))), "--vm", "never",
                     "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "building 2 hosts" in err[0]          # the progress line, then the failure
    assert err[1].startswith("fabric: verify failed: fab") and "the printed command 'tc class add dev " in err[1]
    assert "quantun" in err[1] and "failed: " in err[1]
    _no_leftovers()
    assert not os.path.exists(tmp_path / "o" / "verify.json")
