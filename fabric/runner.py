"""One run, end to end: profile -> plan -> emulation -> ranks -> results (-> report, by the CLI)."""
from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from collectives.algorithms import AUTO
from fabric import cleanup, host, ranks, recorder, results, scale
from fabric import work as works
from fabric.dilation import Dilation
from fabric.emulation import Emulation
from fabric.events import Timeline
from fabric.plan import Plan, build, lossy_buffer
from fabric.profile import Profile, SlowLink, parse
from fabric.work import Work


class HostUnfit(RuntimeError):
    """This host cannot emulate the profile (exit code 3); the message names the fix."""


@dataclass(frozen=True)
class Sizing:
    """Bounds for one run, from the α-β prediction of every op."""
    margin_s: float       # lead time of each iteration's agreed start
    op_timeout_s: float   # gloo's per-op timeout
    run_timeout_s: float  # the whole rank phase


def new_run_id() -> str:
    busy = set(cleanup.leftovers())
    while True:
        rid = secrets.token_hex(2)
        if f"fab{rid}" not in busy:
            return rid


def delay_laws(profile: Profile, k: float) -> dict[int, list[tuple]]:
    """rank -> its lateness laws (collectives.delays), emulated seconds."""
    from fabric.profile import SlowRank
    dil = Dilation(k)
    laws: dict[int, list[tuple]] = {}
    for s in profile.stragglers:
        if isinstance(s, SlowRank):
            for r in s.ranks:
                laws.setdefault(r, []).append((s.distribution, dil.emulated(s.delay_s), dil.emulated(s.std_s), s.shape))
    return laws


def sizing(plan: Plan, work: list[Work]) -> Sizing:
    """Time limits from the α-β prediction of every op and workload iteration (x 5, and
    x 20 for a single gloo wait), plus the stragglers' delays (a single wait: at their cap).
    The start margin lets every rank's posted receives reach their senders before the start
    (the slowest path back, latency + 4 sigma, twice) on top of waking from the barrier."""
    from collectives.delays import CAP
    n = plan.ranks
    back = max((plan.path_latency(s, d) + 4 * math.sqrt(sum(b.jitter_s ** 2 for _, b in plan.path(s, d)))
                for s in range(n) for d in range(n) if s != d), default=0.0)
    margin = 0.005 + 2 * back     # doubled by a rank that was late
    late = sum(law[1] for laws in delay_laws(plan.profile, plan.scale).values() for law in laws)
    def bound(i: Work) -> float:     # iters: auto stops once past its budget, or at min_iters
        each = 5 * i.seconds + 5 * i.calls * late + 2 * margin + 0.05
        if i.until is None:
            return (i.warmup + i.iters) * each
        return min((i.warmup + i.iters) * each, (i.warmup + i.until.min_iters + 1) * each + i.until.budget_s)
    total = sum(map(bound, work))
    longest = max((i.seconds for i in work), default=0.0)
    return Sizing(margin, op_timeout_s=30 + 20 * longest + CAP * late, run_timeout_s=120 + total)


def check_host_tools(torch: bool = True) -> None:
    """Root, namespaces, veth, bridge, htb, Mininet, pyroute2, torch (unless not torch: a
    foreign program's fabric): or HostUnfit naming the fix."""
    missing = host.can_run(torch)
    if missing:
        raise HostUnfit("; ".join(f"{c.name}: {c.detail} -> {c.fix}" for c in missing))


def _tracker(progress, whats: list[str], work: list[Work]):
    """on_progress for ranks.run_passes: rank 0's (item, iterations done) as predicted seconds
    done; item p x len(work) + j is item j of pass p, whose phase label is whats[p]."""
    items = work * len(whats)
    before = [sum((i.warmup + i.iters) * i.seconds for i in items[:j]) for j in range(len(items))]
    total = sum((i.warmup + i.iters) * i.seconds for i in items)
    progress.phase(f"{whats[0]}starting {len(work)} ops and workloads", total=total or None)

    def on_progress(j: int, done: int) -> None:
        i, what = items[j], whats[j // len(work)]
        stage = "warmup" if done <= i.warmup else f"{done - i.warmup} of {'up to ' if i.until else ''}{i.iters}"
        progress.update(before[j] + done * i.seconds, f"{what}{j % len(work) + 1} of {len(work)}: {i.label} ({stage})")
    return on_progress


def check_host(profile: Profile, torch: bool = True) -> str:
    """'native' or 'none' (netem use); raises HostUnfit when this host cannot run the profile
    (torch: check torch and gloo too, for fabric's own ranks)."""
    check_host_tools(torch)
    if profile.impaired:
        if not host.netem_available():
            impaired = [l for l in profile.used_links() if profile.link(l).impaired]
            raise HostUnfit(
                f"{profile.source}: links {', '.join(impaired)} need netem (latency/jitter/loss) but this "
                f"kernel has no sch_netem; use --vm auto (a microVM with netem), a kernel with netem, or set their "
                f"latency, jitter and loss to 0 to measure bandwidth only")
        return "native"
    return "none"


def execute(profile: Profile, k: float, netem: str, log=print, keep: Path | None = None, progress=None,
            algorithm: str = AUTO, capture: Path | None = None) -> dict:
    """Build, run, tear down; return the results document.  Raises ranks.RankError on failure.
    A profile with stragglers also runs without them, first: the baseline of its slowdown.
    Late ranks alone leave the fabric as it is, so then both runs share one fabric and one gloo
    group (for the 8-rank demo in the microVM, a build of 29 s and a join of 10 s); a slow link is
    another fabric, built after the baseline's.  progress: a fabric.progress.Progress to show
    the phases on; algorithm: forced on every call it runs (collectives/algorithms), else each
    entry's own (auto: the model's fastest); capture: a folder to record every shaped link
    direction into (fabric.recorder; the last fabric's, with stragglers)."""
    if not profile.stragglers:
        return _execute(profile, k, netem, log, keep, progress, algorithm=algorithm, capture=capture)[0]
    label = "; ".join(s.label for s in profile.stragglers)
    if profile.late_ranks_only:
        log(f"fabric: a baseline run without the {len(profile.stragglers)} stragglers, then one with them ({label}), "
            f"on one fabric")
        baseline, doc = _execute(profile.without_stragglers(), k, netem, log, keep, progress, algorithm=algorithm,
                                 passes=[("baseline: ", profile.without_stragglers()), ("stragglers: ", profile)],
                                 capture=capture)
    else:
        log(f"fabric: baseline run without the {len(profile.stragglers)} stragglers")
        [baseline] = _execute(profile.without_stragglers(), k, netem, log, keep and keep / "baseline", progress,
                              algorithm=algorithm, passes=[("baseline: ", profile.without_stragglers())])
        log("fabric: run with the stragglers: " + label)
        [doc] = _execute(profile, k, netem, log, keep, progress, algorithm=algorithm, passes=[("stragglers: ", profile)],
                         capture=capture)
    doc["stragglers"] = {"entries": [s.label for s in profile.stragglers],
                         "baseline": {"results": baseline["results"], "workloads": baseline["workloads"]},
                         "slowdown": results.slowdown(baseline, doc)}
    return doc


def _execute_once(profile: Profile, k: float, netem: str, log, keep: Path | None, progress=None,
                  what: str = "", algorithm: str = AUTO) -> dict:
    return _execute(profile, k, netem, log, keep, progress, algorithm=algorithm, passes=[(what, profile)])[0]


def _execute(profile: Profile, k: float, netem: str, log, keep: Path | None, progress=None,
             algorithm: str = AUTO, passes: list[tuple[str, Profile]] | None = None,
             capture: Path | None = None) -> list[dict]:
    """Build `profile`'s fabric once and run its work once per pass: (progress label, the
    profile whose late ranks that pass has; the same fabric: they differ in SlowRank stragglers
    only); one results document per pass.  The kernel's counters and the host's costs are read
    once, over every pass."""
    passes = passes or [("", profile)]
    plan = build(profile, k, run_id=new_run_id())
    work = works.build(plan, algorithm)
    each = [sizing(replace(plan, profile=p), work) for _, p in passes]
    bounds = Sizing(each[0].margin_s, op_timeout_s=max(b.op_timeout_s for b in each),
                    run_timeout_s=sum(b.run_timeout_s for b in each) - 120 * (len(each) - 1))
    with sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="fabric-") as tmp:
        workdir = keep or Path(tmp)
        log(f"fabric: building {plan.size_text()}")
        if progress:
            progress.phase(f"{passes[0][0]}building the topology")
        began = time.monotonic()
        with Emulation(plan) as emu:
            built = time.monotonic()
            on_progress = _tracker(progress, [what for what, _ in passes], work) if progress else None
            ops = sum(1 for w in work if w.op)
            runs = f" ({len(passes)} runs)" if len(passes) > 1 else ""
            log(f"fabric: running {ops} op/size pairs and {len(work) - ops} workloads{runs} on {plan.ranks} "
                f"gloo ranks (time limit {bounds.run_timeout_s:.0f} s)")
            timeline = Timeline(emu, log) if profile.events else None
            with recording(emu, capture, log) as rec:
                by_pass, per_rank = ranks.run_passes(
                    emu, work, workdir, bounds.run_timeout_s, bounds.op_timeout_s, bounds.margin_s,
                    [delay_laws(p, k) for _, p in passes], seed=profile.seed, on_progress=on_progress,
                    timeline=timeline)
            ran = time.monotonic()
            counted, tcp = _counters(emu, log)
        torn_down = time.monotonic()
    captured = rec and recorder.figures(rec.recording, k)
    links = [{"name": l.name, "role": role, "rate_bps": l.rate_bps, "latency_s": l.latency_s,
              "jitter_s": l.jitter_s, "loss": l.loss, "emulated_rate_bps": plan.emulated(l).rate_bps,
              "emulated_latency_s": plan.emulated(l).latency_s,
              "endpoint": asdict(profile.endpoint_of(l.name)), "lossless": l.lossless,
              "buffer_bytes": lossy_buffer(l), "loss_configured": _loss_configured(profile, role, l),
              "drops": _drops(plan, counted, l.name)}
             # used_links: the ranks' own link class first, then the domains' uplink (two_tier)
             for role, l in zip(("ranks", "uplink"), (profile.link(n) for n in profile.used_links()))]
    for link in links:
        if results.lossless_dropped(link):
            log(f"fabric: WARNING: lossless link {link['name']} dropped {link['drops']['packets']:,} packets")
    cost = {**resources(per_rank, built - began, ran - built, torn_down - ran), "runs": len(passes)}
    docs = []
    for (_, p), (rank_results, rank_workloads) in zip(passes, by_pass):
        mine = replace(plan, profile=p)
        doc = results.document(mine, results.summarize(mine, work, rank_results), netem,
                               workloads=results.summarize_workloads(mine, work, rank_workloads))
        doc["links"] = links
        doc["tcp"] = tcp and {**tcp, "retransmitted_pairs": retransmitted_pairs(per_rank)}
        doc["resources"] = cost
        if captured:
            doc["capture"] = captured
        if timeline:
            doc["events"] = timeline.summary()
        docs.append(doc)
    return docs


@contextlib.contextmanager
def recording(emu, folder: Path | None, log=print):
    """A Recorder of every shaped link direction into folder while the block runs (None: no
    capture; yields None)."""
    if folder is None:
        yield None
        return
    from fabric.recorder import Recorder
    log(f"fabric: capturing {len(emu.plan.shapers)} shaped link directions into {folder} (headers only, "
        f"at most {recorder.BUDGET_PACKETS:,} packets)")
    with Recorder(emu, folder) as rec:
        yield rec


def retransmitted_pairs(per_rank: list[dict]) -> list[list[int]] | None:
    """[sender, receiver, segments resent] for every rank pair that resent any, most first
    (None: a rank could not read its sockets)."""
    if any(r.get("retransmitted_to") is None for r in per_rank):
        return None
    pairs = [[r["rank"], peer, n] for r in per_rank for peer, n in enumerate(r["retransmitted_to"]) if n]
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def resources(per_rank: list[dict], setup_s: float, ranks_s: float, teardown_s: float) -> dict:
    """What the run cost this host: wall seconds to build the fabric, run the ranks (their
    start, the gloo group's n^2 connections included) and tear it down; the slowest rank's join
    of the gloo group; each rank's own memory at its most (private pages, read after each op
    while its buffers are held; median and largest over the ranks) and the largest resident
    size of any (shared pages too)."""
    own = sorted(r["memory"].get("own", 0) for r in per_rank)
    return {"setup_s": setup_s, "ranks_s": ranks_s, "teardown_s": teardown_s,
            "join_s": max((r["join_s"] for r in per_rank), default=None),
            "rank_memory_bytes": {"own_p50": own[len(own) // 2] if own else None, "own_max": own[-1] if own else None,
                                  "peak_rss_max": max((r["memory"].get("peak_rss", 0) for r in per_rank), default=None),
                                  "ranks": len(own)}}


def _counters(emu, log) -> tuple[dict | None, dict | None]:
    """The kernel's counters after the run; a failure to read them is said, not fatal (the
    measurements stand without them)."""
    try:
        return emu.counters(), emu.tcp_counters()
    except Exception as exc:     # noqa: BLE001 - any netlink or /proc error
        log(f"fabric: could not read the kernel's drop and retransmission counters: {exc}")
        return None, None


def _loss_configured(profile: Profile, role: str, link) -> bool:
    """The profile asks for packet loss on this link class: its own, or a slow link's of its tier."""
    target = "rank" if role == "ranks" else "domain"
    return bool(link.loss or any(isinstance(s, SlowLink) and s.target == target and s.loss for s in profile.stragglers))


def _drops(plan, counted: dict | None, link_class: str) -> dict | None:
    """A link class's drops over its shaped directions during the run (None: not read)."""
    if counted is None:
        return None
    mine = [counted[key] for key, s in plan.shapers.items() if s.link_class == link_class]
    return {"packets": sum(c["drops"] for c in mine), "directions": len(mine),
            "directions_dropping": sum(1 for c in mine if c["drops"]),
            "requeues": sum(c["requeues"] for c in mine), "overlimits": sum(c["overlimits"] for c in mine),
            "sent_packets": sum(c["packets"] for c in mine)}


_MAIN_PID = os.getpid()


def _interrupt(signum, frame):
    # processes forked from this one (the ranks) inherit this handler and are ended with
    # SIGTERM: they must just exit, only the fabric process itself unwinds and cleans up.
    if os.getpid() != _MAIN_PID:
        os._exit(128 + signum)
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_unwinds():
    """While a fabric is up, SIGTERM unwinds as Ctrl-C does, so everything it made is removed."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def calibrate(log=print) -> scale.Calibration:
    """Measure this host's software overhead and capacity with a real run on an unshaped link."""
    n = scale.CALIBRATION_RANKS
    profile = parse({
        "name": "calibration", "description": f"{n} ranks on a link shaped far above what they move",
        "scale": 1, "links": {"unshaped": {"rate": "100Gbit/s"}},
        "topology": {"kind": "flat", "ranks": n, "link": "unshaped"},
        "workload": [{"op": "all_reduce", "bytes": "4KiB", "iters": 40, "warmup": 5, "algorithm": "ring"},
                     {"op": "all_to_all", "bytes": "16MiB", "iters": 5, "warmup": 1, "algorithm": "direct"}],
    }, "<calibration>")
    log(f"fabric: calibrating this host (once; cached): {n} ranks, unshaped link")
    doc = execute(profile, 1.0, "none", log=lambda *_: None)
    small, large = doc["results"]
    steps = 2 * (n - 1)          # a ring all-reduce's steps
    # what the ranks move together: each sends (n-1)/n of its buffer to n-1 peers at once, through
    # the same classes, bridge and filters as a run's many flows
    cal = scale.measured(overhead_s=small["time_us"]["p50"] * 1e-6 / steps,
                         capacity_bps=n * large["busbw_GBps"] * 8e9, add_Bps=scale.add_rate())
    scale.store(cal)
    log(f"fabric: host overhead {cal.overhead_s * 1e6:.0f} us per step, capacity "
        f"{cal.capacity_bps / 1e9:.2f} Gbit/s, additions {cal.add_Bps / 1e9:.2f} GB/s")
    return cal
