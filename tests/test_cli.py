"""The CLI without root: plan needs none; run and doctor say exactly what is missing."""
import os

import pytest

from conftest import flat
from fabric import cli, host
from fabric.profile import load as load_profile


def test_plan_prints_scale_topology_and_commands(write_profile, capsys):
    from test_profile import IB
    path = write_profile(dict(IB, scale=1000))
    assert cli.main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "# scale k = 1000 (fixed in the profile)" in out
    assert "emulated 3.6Gbit/s, latency 2ms" in out
    assert "fab0000h0 tc qdisc add dev fab0000r0 root handle 1: htb default 10" in out
    assert "netem needed" in out and "model" in out


def test_scale_flag_overrides(write_profile, capsys):
    assert cli.main(["plan", str(write_profile(flat())), "--scale", "50"]) == 0
    assert "scale k = 50 (fixed with --scale)" in capsys.readouterr().out


def test_plan_without_netem_uses_the_microvms_figures_and_says_so(write_profile, tmp_path, capsys, monkeypatch):
    """A run of a profile with latency on a kernel without netem goes to the microVM, so the
    plan's k is the one the guest's figures give, and the plan says whose figures they are."""
    from dataclasses import asdict
    from fabric import microvm, scale
    from test_profile import IB
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(host, "netem_available", lambda: False)
    monkeypatch.setattr(microvm, "kernel", lambda: ("/boot/vmlinuz-9.9.9-test", "9.9.9-test"))
    path = write_profile(IB)
    assert cli.main(["plan", str(path)]) == 0
    first = capsys.readouterr().out.splitlines()[1]
    assert "a run here goes to the microVM" in first and "measures its own figures on its first run" in first
    host_k = float(first.split()[4])
    key = scale.host_key(microvm.VM_NODE, "9.9.9-test", os.cpu_count())
    slow = scale.Calibration(overhead_s=4e-3, capacity_bps=0.8e9, method="measured 2026-12-06 23:35 on this host",
                             key=key, add_Bps=0.8e9)
    scale.store(slow)
    assert cli.main(["plan", str(path)]) == 0
    first = capsys.readouterr().out.splitlines()[1]
    assert "host figures: the microVM's (kernel 9.9.9-test), measured 2026-12-06 23:35 there" in first
    assert float(first.split()[4]) == scale.choose(load_profile(path), slow).k > host_k
    monkeypatch.setattr(host, "netem_available", lambda: True)     # netem here: the host's own figures
    assert cli.main(["plan", str(path)]) == 0
    assert "microVM" not in capsys.readouterr().out.splitlines()[1]
    assert asdict(scale.cached(key)) == asdict(slow)


def test_bad_scale_flag_is_exit_2(write_profile, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", str(write_profile(flat())), "--scale", "0.5"])
    assert info.value.code == 2 and "--scale" in capsys.readouterr().err


def test_not_root_run_and_doctor_say_what_is_missing(write_profile, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    host.kernel.cache_clear()
    try:
        assert cli.main(["run", str(write_profile(flat())), "--out", str(tmp_path / "o")]) == 3
        err = capsys.readouterr().err
        assert "root: running as uid 1000 -> run fabric as root" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "o").exists()
        assert cli.main(["doctor"]) == 3
        out = capsys.readouterr().out
        assert "NO  root" in out and "not probed (needs root)" in out
    finally:
        host.kernel.cache_clear()


def test_the_microvm_runs_the_same_command_line_with_its_out_and_no_vm(monkeypatch, tmp_path, fake_microvm):
    seen = fake_microvm
    typed = ["sweep", "profiles/isl-800g.yaml", "--op", "all_reduce", "-b", "4KiB", "-e", "64KiB", "-c", "0",
             "--json", "--vm", "always", "--out", "rel"]
    import shutil
    from conftest import ROOT
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    assert cli.main(typed) == 7
    assert seen["argv"][3:] == typed + ["--out", str(tmp_path / "rel"), "--vm", "never"]
    assert seen["ranks"] == 8
    args = cli.parser().parse_args(seen["argv"][3:])
    assert (args.out, args.vm, args.op, args.check, args.json) == (str(tmp_path / "rel"), "never", "all_reduce", 0, True)
