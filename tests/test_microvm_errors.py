"""The microVM path unavailable or failing: one line, exit 3, nothing left behind.
No QEMU boots here (its pieces are replaced), so these run wherever the root tests run."""
import subprocess

import pytest

from fabric import microvm

pytestmark = pytest.mark.root


@pytest.fixture
def unavailable(monkeypatch):
    """Run the CLI in-process with the microVM path's pieces replaced."""
    from fabric import cli

    def run(write_profile, tmp_path, capsys):
        path = write_profile({"name": "t", "description": "d", "scale": 1,
                              "links": {"l": {"rate": "10Mbit/s", "latency": "1ms"}},
                              "topology": {"kind": "flat", "ranks": 2, "link": "l"},
                              "workload": [{"op": "all_reduce", "bytes": 4}]})
        code = cli.main(["run", str(path), "--out", str(tmp_path / "out"), "--vm", "always"])
        err = capsys.readouterr().err.strip().splitlines()
        return code, err
    return run


@pytest.mark.parametrize("lacking,says", [("kernel", "a kernel package with sch_netem"), ("qemu", "QEMU")])
def test_vm_always_without_kernel_or_qemu_is_exit_3(lacking, says, unavailable, monkeypatch, write_profile,
                                                     tmp_path, capsys):
    if lacking == "kernel":
        monkeypatch.setattr(microvm, "kernel", lambda: None)
    else:
        real_which = microvm.shutil.which
        monkeypatch.setattr(microvm.shutil, "which", lambda name: None if "qemu" in name else real_which(name))
    code, err = unavailable(write_profile, tmp_path, capsys)
    assert code == 3 and len(err) == 1
    assert "--vm always, and the microVM path needs:" in err[0] and says in err[0]
    assert not (tmp_path / "out").exists()


def test_vm_boot_timeout_is_exit_3_and_kills_the_vm(unavailable, monkeypatch, write_profile, tmp_path, capsys):
    """A VM that never comes up (a stand-in that never prints the ready line) is killed."""
    monkeypatch.setattr(microvm, "BOOT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(microvm, "host_info", lambda probe=True: microvm.Host(False, None, "t"))
    monkeypatch.setattr(microvm, "command", lambda *a, **k: ["sh", "-c", "exec sleep 31.4159"])
    code, err = unavailable(write_profile, tmp_path, capsys)
    assert code == 3 and err[-1] == "fabric: the microVM did not boot within 1.0 s"
    assert subprocess.run(["pgrep", "-f", "sleep 31.4159"], capture_output=True).returncode == 1
