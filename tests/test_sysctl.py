"""Kernel-wide settings: raised for a run, put back by the last run out (no root: a fake /proc/sys)."""
import pytest

from fabric import sysctl


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    (proc / "net" / "core").mkdir(parents=True)
    (proc / "net" / "core" / "netdev_max_backlog").write_text("5000\n")
    monkeypatch.setattr(sysctl, "PROC", proc)
    monkeypatch.setattr(sysctl, "STATE", tmp_path / "state")
    return lambda: sysctl.value(sysctl.BACKLOG)


def test_a_run_raises_a_setting_and_puts_it_back(kernel):
    sysctl.hold(sysctl.BACKLOG, "fab0001", 100_000)
    assert kernel() == 100_000 and sysctl.held(sysctl.BACKLOG) == {"fab0001": 100_000}
    assert sysctl.release(sysctl.BACKLOG, "fab0001")
    assert kernel() == 5000 and sysctl.held(sysctl.BACKLOG) == {}
    assert not sysctl.release(sysctl.BACKLOG, "fab0001")       # twice is harmless
    assert kernel() == 5000


def test_runs_at_once_share_the_original_and_the_last_one_out_restores_it(kernel):
    sysctl.hold(sysctl.BACKLOG, "fab0001", 100_000)
    sysctl.hold(sysctl.BACKLOG, "fab0002", 20_000)
    sysctl.release(sysctl.BACKLOG, "fab0001")
    assert kernel() == 20_000                                  # fab0002 still needs more than 5000
    sysctl.release(sysctl.BACKLOG, "fab0002")
    assert kernel() == 5000


def test_a_higher_value_is_left_alone(kernel):
    sysctl.PROC.joinpath("net/core/netdev_max_backlog").write_text("300000\n")
    sysctl.hold(sysctl.BACKLOG, "fab0001", 100_000)
    assert kernel() == 300_000
    sysctl.release(sysctl.BACKLOG, "fab0001")
    assert kernel() == 300_000


def test_cleanup_releases_what_crashed_runs_held(kernel):
    sysctl.hold(sysctl.BACKLOG, "fab0001", 100_000)
    sysctl.hold(sysctl.BACKLOG, "fab0002", 100_000)
    assert sysctl.release(sysctl.BACKLOG, None)
    assert kernel() == 5000 and sysctl.held(sysctl.BACKLOG) == {}
