#!/usr/bin/env bash
# Provisions a Debian or Ubuntu machine for fabric: system packages, the project's .venv, a
# smoke test.  Idempotent: a second run installs nothing and passes the smoke test again.
#
#   provision.sh REPO            # inside the Vagrant VM (as root): everything
#   provision.sh --check REPO    # on any Debian/Ubuntu host (CI): every step that does not
#                                # need the VM itself (the VM-only steps say they were skipped)
set -euo pipefail

check=0
if [[ ${1:-} == --check ]]; then check=1; shift; fi
repo=$(cd "${1:?usage: provision.sh [--check] REPO}" && pwd)
[[ $(id -u) -eq 0 ]] || { echo "provision: run as root" >&2; exit 1; }

step() { echo "provision: $*"; }
vm_only() { if ((check)); then step "skipped (VM only): $*"; return 1; fi; step "$*"; }

step "system packages"
export DEBIAN_FRONTEND=noninteractive
packages=(make git python3 python3-venv iproute2 ethtool mininet)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  step "installed ${missing[*]}"
fi

if vm_only "netem in this kernel (Ubuntu ships sch_netem in linux-modules-extra)"; then
  if ! modprobe -q sch_netem 2>/dev/null; then
    apt-get install -y -qq "linux-modules-extra-$(uname -r)" >/dev/null
    modprobe sch_netem
  fi
fi

if vm_only "bridges without netfilter (Mininet's Linux bridges, persistent)"; then
  modprobe br_netfilter 2>/dev/null || true
  printf 'net.bridge.bridge-nf-call-iptables = 0\nnet.bridge.bridge-nf-call-ip6tables = 0\nnet.bridge.bridge-nf-call-arptables = 0\n' \
    > /etc/sysctl.d/90-fabric.conf
  sysctl -q -p /etc/sysctl.d/90-fabric.conf || true
fi

if vm_only "torch's CPU build (PyPI's Linux wheel pulls GBs of CUDA packages)"; then
  # torch==2.13.0 then resolves to 2.13.0+cpu, a higher version than PyPI's
  export PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
fi

step "the project's .venv (make setup)"
make -s -C "$repo" setup

step "smoke test: fabric doctor, plan and a 2-rank run without netem"
cd "$repo"
.venv/bin/fabric doctor
.venv/bin/fabric plan profiles/isl-800g.yaml >/dev/null
smoke=$(mktemp -d)
trap 'rm -rf "$smoke"' EXIT
cat > "$smoke/smoke.yaml" <<'YAML'
name: smoke
description: provisioning smoke test, two ranks on a 100 Mbit/s link
scale: 1
links: {eth: {rate: 100Mbit/s}}
topology: {kind: flat, ranks: 2, link: eth}
workload:
  - {op: all_reduce, bytes: 64KiB, iters: 3, warmup: 1}
YAML
.venv/bin/fabric run "$smoke/smoke.yaml" --out "$smoke/out" --quiet >/dev/null
grep -q '"correct": true' "$smoke/out/results.json"
step "ok"
