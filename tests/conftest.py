import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, tc); CI runs these as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def one_vm(request, tmp_path_factory):
    """The microVM commands of every selected test module using this fixture (each module's
    vm_commands), run in one boot (one_boot.Booted)."""
    import one_boot
    from fabric import host, microvm
    if not host.netem_available() and microvm.missing():
        pytest.fail("no netem here and the microVM path is missing: " + "; ".join(microvm.missing()))
    modules = {item.module for item in request.session.items if "one_vm" in item.fixturenames}
    return one_boot.shared(list(modules), tmp_path_factory.mktemp("vm"))


@pytest.fixture
def write_profile(tmp_path):
    """Write a profile dict (or YAML text) to a file and return its path."""
    import yaml

    def write(data, name="p.yaml"):
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path
    return write


@pytest.fixture
def fake_microvm(monkeypatch):
    """A microVM path that records what it would run (argv, ranks) and exits 7."""
    from fabric import microvm, runner
    seen = {}
    monkeypatch.setattr(runner, "check_host_tools", lambda torch=True: None)
    monkeypatch.setattr(microvm, "missing", lambda: [])
    monkeypatch.setattr(microvm, "kernel", lambda: ("/boot/vmlinuz-x", "x"))
    monkeypatch.setattr(microvm, "host_info", lambda probe=True: microvm.Host(False, None, "t"))
    monkeypatch.setattr(microvm, "run", lambda argv, out, ranks, biggest, **kw: seen.update(argv=argv, ranks=ranks) or 7)
    return seen


def flat(ranks=4, rate="200Mbit/s", workload=None, **link):
    return {"name": "t", "scale": 1, "links": {"eth": {"rate": rate, **link}},
            "topology": {"kind": "flat", "ranks": ranks, "link": "eth"},
            "workload": workload or [{"op": "all_reduce", "bytes": "1MiB", "iters": 2, "warmup": 0}]}
