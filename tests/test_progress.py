"""Progress: log lines, the guest-to-host protocol, rank 0's progress file and the tracker
that turns iterations into predicted seconds, without root."""
import json

import pytest

from conftest import flat
from fabric import ranks, runner
from fabric.plan import build
from fabric.profile import parse
from fabric.progress import MARK, Progress


def test_quiet_says_nothing_and_forward_sends_lines_for_the_host(capsys):
    Progress(quiet=True).log("fabric: hello")
    assert capsys.readouterr().err == ""
    guest = Progress(forward=True)
    guest.log("fabric: building")
    guest.phase("warmup", total=10.0)
    guest.update(2.5, "op 1 of 2")
    guest.close()
    guest.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "fabric: building"
    assert [json.loads(x[len(MARK):]) for x in lines[1:]] == [{"phase": "warmup", "total": 10.0},
                                                              {"completed": 2.5, "description": "op 1 of 2"},
                                                              {"done": True}]


def test_the_host_takes_progress_lines_and_leaves_the_rest():
    seen = []

    class Host(Progress):
        def phase(self, description, total=None):
            seen.append(("phase", description, total))

        def update(self, completed, description=None):
            seen.append(("update", completed, description))
    host = Host()
    assert host.feed(MARK + '{"phase": "building", "total": null}')
    assert host.feed(MARK + '{"completed": 1.0, "description": "x"}')
    host.close = lambda: seen.append(("close",))
    assert host.feed(MARK + '{"done": true}')
    assert not host.feed("# fabric run: t") and not host.feed(MARK + "{broken")
    assert seen == [("phase", "building", None), ("update", 1.0, "x"), ("close",)]


def test_rank_progress_is_read_line_by_line(tmp_path):
    path, got = tmp_path / "progress", []
    assert ranks._read_progress(path, 0, lambda *a: got.append(a)) == 0          # not written yet
    path.write_text("0 1\n0 2\n1 1")                                              # the last line is half written
    seen = ranks._read_progress(path, 0, lambda *a: got.append(a))
    assert got == [(0, 1), (0, 2)] and seen == len("0 1\n0 2\n")
    with open(path, "a") as f:
        f.write("\n")
    ranks._read_progress(path, seen, lambda *a: got.append(a))
    assert got[-1] == (1, 1)


def test_the_tracker_moves_in_predicted_seconds():
    profile = parse(flat(ranks=4, rate="1Gbit/s", workload=[
        {"op": "all_reduce", "bytes": ["64KiB", "1MiB"], "iters": 3, "warmup": 1}]))
    plan = build(profile, 1)
    from fabric import work
    items = work.build(plan)
    assert [(i.label, i.warmup, i.warmup + i.iters) for i in items] == [
        ("all_reduce 65536 B", 1, 4), ("all_reduce 1048576 B", 1, 4)]
    small, big = items[0].seconds, items[1].seconds
    assert big > 10 * small > 0

    calls = []

    class Bar:
        def phase(self, description, total=None):
            calls.append(("phase", description, total))

        def update(self, completed, description=None):
            calls.append(("update", completed, description))
    # two runs on one fabric (a baseline, then the stragglers): rank 0 counts items on over both
    on_progress = runner._tracker(Bar(), ["baseline: ", "stragglers: "], items)
    on_progress(0, 1)
    on_progress(1, 3)
    on_progress(3, 4)
    assert calls[0] == ("phase", "baseline: starting 2 ops and workloads", pytest.approx(8 * small + 8 * big))
    assert calls[1] == ("update", pytest.approx(small), "baseline: 1 of 2: all_reduce 65536 B (warmup)")
    assert calls[2] == ("update", pytest.approx(4 * small + 3 * big), "baseline: 2 of 2: all_reduce 1048576 B (2 of 3)")
    assert calls[3] == ("update", pytest.approx(8 * small + 8 * big),
                        "stragglers: 2 of 2: all_reduce 1048576 B (3 of 3)")
