"""The CLI without root: plan needs none; run and doctor say exactly what is missing."""
import os

import pytest

from conftest import flat
from fabric import cli, host


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
