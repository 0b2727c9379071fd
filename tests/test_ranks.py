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


def test_a_ranks_memory_counts_its_private_pages_as_its_own(tmp_path):
    from collectives.rank import memory_bytes
    smaps = tmp_path / "smaps_rollup"
    smaps.write_text("55ce87a7d000-7ffc286fb000 ---p 00000000 00:00 0    [rollup]\n"
                     "Rss:                1732 kB\nShared_Clean:       1552 kB\nPrivate_Clean:        72 kB\n"
                     "Private_Dirty:       108 kB\n")
    m = memory_bytes(str(smaps))
    assert m["own"] == 180 * 1024 and m["rss"] == 1732 * 1024 and m["peak_rss"] > 0
    assert memory_bytes(str(tmp_path / "absent")) == {}


def test_a_failed_ranks_line_is_its_error_not_torchs_warnings_after_it(tmp_path):
    """torch's c10d writes warnings after a failure ("[W1207 ... socket.cpp:...] [c10d] ..."):
    the one-line message quotes the error, the log keeps both."""
    from fabric.ranks import _tail
    log = tmp_path / "rank1.log"
    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                   "RuntimeError: Connection closed by peer [198.18.0.1]:29500\n"
                   "[W1207 13:45:01.123456789 4242 socket.cpp:752] [c10d] The client socket has failed to connect.\n")
    assert _tail(log) == "RuntimeError: Connection closed by peer [198.18.0.1]:29500"
    log.write_text("[W1207 13:45:01.123456789 4242 socket.cpp:752] [c10d] only a warning\n")
    assert _tail(log).startswith("[W1207")
