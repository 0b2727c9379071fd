"""Which failed rank a run blames, with plain child processes (no root, no torch)."""
import os
import signal
import time

import pytest

from fabric import ranks


def _child(then):
    pid = os.fork()
    if pid == 0:
        try:
            then()
        finally:
            os._exit(1)
    return pid


def test_a_rank_killed_by_a_signal_is_blamed_over_the_peers_it_broke(tmp_path):
    (tmp_path / "rank0.log").write_text("RuntimeError: Connection reset by peer\n")
    broken = _child(lambda: time.sleep(0.1))           # peer fails first, as gloo's reader does
    killed = _child(lambda: time.sleep(30))
    time.sleep(0.2)
    os.kill(killed, signal.SIGKILL)                    # ...but the cause dies a moment later
    with pytest.raises(ranks.RankError) as err:
        ranks._wait({broken: 0, killed: 1}, tmp_path, timeout_s=10)
    assert str(err.value).startswith("rank 1 exited with code -9")
    assert "rank 0 failed too" in str(err.value)


def test_without_a_signal_the_first_rank_to_fail_is_blamed(tmp_path):
    (tmp_path / "rank1.log").write_text("ValueError: wrong result\n")
    first = _child(lambda: time.sleep(0.05))
    second = _child(lambda: time.sleep(0.4))
    with pytest.raises(ranks.RankError) as err:
        ranks._wait({second: 0, first: 1}, tmp_path, timeout_s=10)
    assert str(err.value) == "rank 1 exited with code 1: ValueError: wrong result (then rank 0 failed too)"


def test_ranks_past_the_time_limit_are_named(tmp_path):
    slow = _child(lambda: time.sleep(30))
    try:
        with pytest.raises(ranks.RankError, match=r"ranks \[0\] still running after 0 s"):
            ranks._wait({slow: 0}, tmp_path, timeout_s=0.2)
    finally:
        os.kill(slow, signal.SIGKILL)
        os.waitpid(slow, 0)
