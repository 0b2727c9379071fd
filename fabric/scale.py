"""The time-dilation factor k: emulated rate = real rate / k, emulated latency = real latency x k.

`scale: auto` picks the smallest "nice" k (1, 2 or 5 x 10^n) such that
  * the rate of a rank's port, times the number of ranks that may send at once, stays within
    RATE_SHARE of the traffic this host was measured to carry (so the shaper, not the CPU,
    sets the rate; a faster uplink carries no more than the ports behind it send), and
  * the host's software overhead per collective step stays at most LATENCY_SHARE of the
    smallest emulated latency of a step (so the emulated latency, not gloo and Python, dominates
    small messages).  A step's receive is posted before the start (collectives.executor), so a
    step's latency is the one-way path between the closest pair of ranks, plus the endpoint's
    cost per step over that link;
  * what the host itself spends on one iteration of each op and workload entry, as its schedule
    runs it (a send and a receive per transfer, numpy's additions per reduced byte: host_seconds),
    stays at most HOST_SHARE of the iteration's emulated model time.  The per-step rule above
    sees one pair; this one sees every transfer a step puts on the host's few CPUs at once: an
    8-rank direct step is 56 transfers, a 4-rank ring step 4.
The host figures come from a calibration: a real 4-rank run over an unshaped link, measured
once and cached per kernel and CPU count (`fabric calibrate` re-measures).
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fabric.profile import Profile

# benchmarks/fidelity.py on a 2-vCPU host (capacity ~18 Gbit/s): ranks pushing up to ~0.45 of
# the capacity together kept bus efficiency >= 0.95 (8 ranks x 1 Gbit/s); ~0.9 of it dropped to 0.85.
RATE_SHARE = 0.5
LATENCY_SHARE = 0.10
# Part of the host's counted time lands on the measured time, the rest overlaps the emulated
# latency (microVM, nvlink4-h100, k = 50 000, ~1.3 ms per transfer: one-shot's 56 transfers were
# 24 % of its 5.9 us model and it measured 1.08-1.12x; two-shot's 112, 34 %, 1.15-1.19x).
HOST_SHARE = 0.25
CALIBRATION_RANKS = 4   # enough ranks to share the CPU the way real runs do; a ring step: 4 transfers
CALIBRATION_VERSION = 2  # cached figures of an older calibration lack some: measured again


@dataclass(frozen=True)
class Calibration:
    overhead_s: float        # software time per collective step: 4 KiB all-reduce p50 / its steps, 4 ranks, unshaped
    capacity_bps: float      # traffic 4 ranks move at once, unshaped (sum over the ranks' sends)
    method: str
    key: str = ""
    add_Bps: float = 1e9     # bytes of float32 one process adds per second (numpy, a += b)


DEFAULT = Calibration(overhead_s=300e-6, capacity_bps=4e9,
                      method="default figures (not measured on this host; run `fabric calibrate` as root)")


def host_key(node: str | None = None, release: str | None = None, cpus: int | None = None) -> str:
    """The cache key of a host's calibration: this host's, or (all three given) another's."""
    return (f"{node or platform.node()}|{release or platform.release()}|{cpus or os.cpu_count()}"
            f"|v{CALIBRATION_VERSION}")


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fabric" / "calibration.json"


def _entries() -> dict:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached(key: str | None = None) -> Calibration | None:
    """This host's calibration, or the one stored under `key` (the host and its microVM are
    different hosts: other kernel, other CPU speed)."""
    try:
        return Calibration(**_entries()[key or host_key()])
    except (KeyError, TypeError):
        return None


def store(cal: Calibration) -> None:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = _entries()
    entries[cal.key] = asdict(cal)
    path.write_text(json.dumps(entries, indent=1) + "\n")


def nice_ceil(x: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= x."""
    if x <= 1:
        return 1.0
    exp = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10 ** exp >= x * (1 - 1e-12):
            return float(m * 10 ** exp)
    return float(10 ** (exp + 1))


@dataclass(frozen=True)
class Choice:
    k: float
    reason: str


def step_latency(profile: Profile) -> float:
    """The smallest real one-way latency between two ranks, with the endpoint's cost per step
    (0 without either): a step's α."""
    from fabric.plan import build
    plan = build(profile, 1.0)
    n, topo = plan.ranks, profile.topology
    def step(s, d):
        link = topo.intra if topo.domain_of(s) == topo.domain_of(d) else topo.inter
        return plan.path_latency(s, d) + profile.endpoint_of(link).step_s
    return min((t for t in (step(s, d) for s in range(n) for d in range(n) if s != d) if t > 0), default=0.0)


def host_seconds(work, cal: Calibration, ranks: int) -> float:
    """Host time one iteration of `work` (fabric.work.Work) costs beside the wire: each transfer's
    send and receive, at the calibration's per-step cost shared by the transfers of its ring step
    (measured natively on 2 CPUs, 4 KiB, unshaped, 30 iterations: per transfer of a step 64, 55,
    48 us for 4, 8, 16-rank ring steps and 84-105, 61-74, 50-61 us for direct ones: one figure per
    transfer, 0.75-1.6x the 4-rank ring's), and each reduced byte at numpy's rate on
    min(CPUs, ranks) CPUs at once."""
    xfers = added = 0
    for part in work.parts:
        s = part.schedule
        if s is None:
            continue
        for x in s.xfers:
            xfers += not x.local
            added += x.count * s.item if x.reduce else 0
    cpus = max(1, min(os.cpu_count() or 1, ranks))
    return xfers * cal.overhead_s / CALIBRATION_RANKS + added / (cal.add_Bps * cpus)


def moved_bits(work) -> float:
    """Bits one iteration of `work` puts on the fabric: every transfer between two ranks."""
    return 8.0 * sum(sum(x.count for x in p.schedule.xfers if not x.local) * p.schedule.item
                     for p in work.parts if p.schedule is not None)


def host_bound(profile: Profile, cal: Calibration, algorithm: str = "auto") -> tuple[float, str]:
    """The k that keeps every op's and workload entry's host time within HOST_SHARE of its
    emulated model time, and the entry that sets it."""
    return _host_bounds(profile, cal, algorithm)[0]


def _host_bounds(profile: Profile, cal: Calibration, algorithm: str) -> tuple[tuple[float, str], tuple[float, str]]:
    """host_bound, and the same with the iteration's bytes moved at the calibrated capacity
    counted as host time (a bound on how much a burst the shapers would pass faster than the
    host moves it can stretch the iteration), from one build of the work (the α-β model of every
    candidate algorithm: seconds in the software-emulated microVM)."""
    from fabric import work as works
    from fabric.plan import build
    plan = build(profile, 1.0)
    bounds = [(0.0, ""), (0.0, "")]
    for w in works.build(plan, algorithm):
        if w.seconds > 0:
            busy = host_seconds(w, cal, plan.ranks)
            for i, t in enumerate((busy, busy + moved_bits(w) / cal.capacity_bps)):
                k = t / (HOST_SHARE * w.seconds)
                if k > bounds[i][0]:
                    bounds[i] = (k, f"{w.label} ({w.algorithm})")
    return bounds[0], bounds[1]


def choose(profile: Profile, cal: Calibration, algorithm: str = "auto") -> Choice:
    """The smallest nice k that meets the latency rule and the host-work rule, and the rate rule
    in one of its two forms, whichever gives the smaller k: every port at its full rate at once
    within RATE_SHARE of the host's capacity (then the shapers, never the host, pace the bytes),
    or the bytes each iteration actually moves counted as host work (moving them at the host's
    capacity fits HOST_SHARE of the model time, beside the transfers and additions).  The second
    lets a latency-bound workload, whose ports are idle most of an iteration, run at the k its
    latency needs: the isl-800g demo's 16 KiB all-reduces and 8-token MoE layers need k >= ~10 000
    for their bytes where every NVLink port at once would need 70 000 (microVM, 0.82 Gbit/s)."""
    if profile.scale is not None:
        return Choice(profile.scale, "fixed in the profile")
    port = profile.link(profile.topology.intra).rate_bps
    k_ports = port * profile.topology.ranks / (RATE_SHARE * cal.capacity_bps)
    alpha = step_latency(profile)
    k_lat = cal.overhead_s / (LATENCY_SHARE * alpha) if alpha else 0.0
    (k_host, heaviest), (k_bytes, heaviest_bytes) = _host_bounds(profile, cal, algorithm)
    by_ports = max(1.0, k_ports, k_lat, k_host)
    by_bytes = max(1.0, k_lat, k_bytes)
    k = nice_ceil(min(by_ports, by_bytes))
    if by_bytes < by_ports:
        why = (f"auto: rate needs k >= {k_bytes:.3g} ({heaviest_bytes}: its bytes at {cal.capacity_bps / 1e9:.3g} "
               f"Gbit/s host capacity, its transfers and additions within {HOST_SHARE:.0%} of its model time; "
               f"every port at full rate at once would need {k_ports:.3g})")
    else:
        why = (f"auto: rate needs k >= {k_ports:.3g} ({profile.topology.ranks} ranks x their port's rate within "
               f"{RATE_SHARE:.0%} of {cal.capacity_bps / 1e9:.3g} Gbit/s host capacity)")
    if alpha:
        why += (f", latency needs k >= {k_lat:.3g} ({cal.overhead_s * 1e6:.0f} us host overhead per step within "
                f"{LATENCY_SHARE:.0%} of the smallest step latency, {alpha * 1e6:.3g} us real)")
    if heaviest and by_bytes >= by_ports:
        why += (f", host work needs k >= {k_host:.3g} ({heaviest}: its transfers and additions within "
                f"{HOST_SHARE:.0%} of its model time)")
    return Choice(k, why + f"; host figures: {cal.method}")


def measured(overhead_s: float, capacity_bps: float, add_Bps: float) -> Calibration:
    return Calibration(overhead_s, capacity_bps,
                       f"measured {time.strftime('%Y-%m-%d %H:%M')} on this host", host_key(), add_Bps)


def add_rate() -> float:
    """Bytes of float32 this process adds per second, as a rank lands a reduced receive (best of 5)."""
    import numpy as np
    a, b = np.ones(1 << 22, np.float32), np.ones(1 << 22, np.float32)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a += b
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best
