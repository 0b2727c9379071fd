"""The Vagrant demo's provisioning, in its check mode on this Debian host: every step that does
not need the VM runs for real, twice (idempotent), and ends with the smoke test."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_vagrantfile_offers_both_providers_and_provisions_with_the_script():
    text = (ROOT / "vagrant" / "Vagrantfile").read_text()
    assert 'provider "virtualbox"' in text and 'provider "libvirt"' in text
    assert 'path: "provision.sh", args: ["/vagrant"]' in text
    assert "vagrant ssh -c 'cd /vagrant && make demo'" in (ROOT / "README.md").read_text()


@pytest.mark.root
def test_provisioning_in_check_mode_is_idempotent_and_ends_with_the_smoke_test():
    runs = [subprocess.run(["bash", str(ROOT / "vagrant" / "provision.sh"), "--check", str(ROOT)],
                           capture_output=True, text=True, timeout=900) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert run.stdout.rstrip().endswith("provision: ok")
        assert run.stdout.count("provision: skipped (VM only)") == 3
    assert "provision: installed" not in runs[1].stdout      # the second run finds everything there
