#!/usr/bin/env bash
# Installs what fabric needs and is missing: Debian packages (as root), the .venv, the project.
# Idempotent and quick when everything is there already.  --test: also what only the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

# tcpdump: --capture's pcaps; ping and iperf3: what users run on a fabric first (fabric up, fabric exec)
APT_PACKAGES=(mininet iproute2 ethtool tcpdump iputils-ping iperf3)
PYTHON=${PYTHON:-python3}

# Install the Debian packages named that are missing (as root); $1 says what they are for.
ensure_apt() {
  local why=$1 pkg missing=()
  shift
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]} ($why)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_apt "fabric" "${APT_PACKAGES[@]}"
# make test: a browser to render report.html in (tests/test_html.py), as root only
if [[ ${1:-} == --test && $(id -u) -eq 0 ]]; then
  ensure_apt "the report.html test" chromium chromium-driver
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.fabric-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing fabric and its Python packages into .venv"
  log=.venv/pip-install.log
  # torch's CPU build from PyTorch's index where it answers (PyPI's is the CUDA build)
  mapfile -t torch_args < <(.venv/bin/python scripts/torch_pip_args.py)
  if ! { .venv/bin/pip install --disable-pip-version-check "${torch_args[@]}" numpy &&
         .venv/bin/pip install --disable-pip-version-check -e ".[test]"; } >"$log" 2>&1; then
    tail -20 "$log" >&2
    echo "setup: pip install failed (full log: $log)" >&2
    exit 1
  fi
  .venv/bin/python scripts/torch_pip_args.py check || true
  touch "$stamp"
fi

# Mininet comes from Debian (it needs its mnexec helper); expose just its package to the venv.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [[ ! -e $site/mininet ]]; then
  src=$(/usr/bin/python3 -c 'import mininet, os; print(os.path.dirname(mininet.__file__))')
  ln -s "$src" "$site/mininet"
fi

# The microVM path (fabric run --vm auto): only where this kernel has no sch_netem.
if [[ $(id -u) -eq 0 ]] && ! .venv/bin/python -c 'import sys; from fabric import host; sys.exit(0 if host.netem_available() else 1)'; then
  ensure_apt "this kernel has no sch_netem: the microVM path" qemu-system-x86 busybox-static linux-image-amd64
  if [[ ! -x .venv/bin/vng ]]; then
    echo "setup: installing virtme-ng into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e ".[microvm]" >.venv/pip-vm.log 2>&1 ||
      { tail -20 .venv/pip-vm.log >&2; echo "setup: pip install virtme-ng failed" >&2; exit 1; }
  fi
fi
