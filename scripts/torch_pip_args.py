"""Which torch scripts/setup.sh installs: the CPU build, chosen here rather than left to pip.

PyPI's torch for Linux x86_64 is the CUDA build: it pulls nvidia-* wheels of several GB that a
host without a GPU never uses.  PyTorch's own index serves the CPU build as torch==VERSION+cpu,
so where that index answers, setup asks it for exactly that.  Where it does not (a network that
reaches only a mirror of the package registries, as CI machines may), the indexes pip is
configured with decide, and setup says afterwards which build it got (`check`).

    python scripts/torch_pip_args.py          # the pip arguments, one per line
    python scripts/torch_pip_args.py check    # after the install: exit 1 and say so if CUDA's
"""
from __future__ import annotations

import sys
import urllib.request

VERSION = "2.13.0"                                   # pyproject.toml's `ranks` extra names the same
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 10


def pip_args(cpu_index_reachable: bool) -> list[str]:
    """pip install's arguments for torch: the CPU build from PyTorch's index where it answers,
    else the configured indexes' torch of the same version."""
    if cpu_index_reachable:
        return ["--extra-index-url", CPU_INDEX, f"torch=={VERSION}+cpu"]
    return [f"torch=={VERSION}"]


def reachable(url: str = f"{CPU_INDEX}/torch/", timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return reply.status == 200
    except (OSError, ValueError):
        return False


def build_words(cuda: str | None) -> tuple[bool, str]:
    """(fine, what to say) for an installed torch whose torch.version.cuda is `cuda`."""
    if cuda is None:
        return True, "torch: the CPU build"
    return False, (f"torch: the CUDA {cuda} build was installed (several GB fabric does not use); for the CPU "
                   f"build: .venv/bin/pip install --index-url {CPU_INDEX} torch=={VERSION}+cpu")


def main(argv: list[str]) -> int:
    if argv[1:] == ["check"]:
        import torch
        fine, words = build_words(torch.version.cuda)
        print(f"setup: {words}", file=sys.stdout if fine else sys.stderr)
        return 0 if fine else 1
    print("\n".join(pip_args(reachable())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
