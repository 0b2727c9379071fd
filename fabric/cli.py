"""fabric doctor | plan | run | exec | up | shell | down | probe | sweep | compare | report | calibrate | cleanup.

Exit codes: 0 ok; 1 the run failed (a rank died, timed out, or a result was wrong);
2 bad input (the message names file, key and what was expected; nothing was created);
3 this host cannot emulate what was asked (the message names the fix); 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from collectives import COLLECTIVES
from fabric import cleanup, host, scale
from fabric.progress import Progress
from fabric.profile import ProfileError, load

EXIT_FAILED, EXIT_INPUT, EXIT_HOST, EXIT_INTERRUPTED = 1, 2, 3, 130
FOREIGN = ("exec", "up", "verify", "probe")   # commands without fabric's ranks (no torch needed)


class _Exit(Exception):
    """The command is over with this exit code (the reason said already): main returns it."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code
VM_RUN_LIMIT_S = 3600   # the run inside bounds itself; this only guards against a hung VM
CAPTURE_DIR = "capture"  # --capture's pcaps, in the run's --out folder
DOWN_WAIT_S = 30        # fabric down waits this long for fabric up to remove its fabric itself


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help says each option's default, as nccl-tests' does; not for flags and options without one."""

    def _get_help_string(self, action):
        if action.default in (None, False) or isinstance(action, argparse._HelpAction):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Defaults)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, exit 2, like every other bad input
        self.exit(EXIT_INPUT, f"fabric: {message} (see fabric --help)\n")


def _err(msg: str) -> None:
    print(f"fabric: {msg}", file=sys.stderr)


def _scale_arg(value: str) -> float:
    try:
        k = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale: expected a number >= 1, got {value!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"--scale: expected a number >= 1, got {value!r}")
    return k


def _seconds_arg(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        t = 0.0
    if not 0 < t < float("inf"):      # also false for nan
        raise argparse.ArgumentTypeError(f"--timeout: expected a number of seconds > 0, got {value!r}")
    return t


def _size_arg(value: str) -> int:
    from fabric.units import parse_nccl_size
    try:
        return parse_nccl_size(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def version() -> str:
    """The installed package's version (pyproject.toml), or the source tree's when not installed."""
    from importlib import metadata
    try:
        return metadata.version("fabric-emulator")
    except metadata.PackageNotFoundError:
        import tomllib
        return tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["version"]


def _whole_arg(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}")
    return int(value)


def _count_arg(value: str) -> int:
    if not value.isdigit() or not 10 <= int(value) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"--count: expected a whole number of probes in [10, 1000000], got {value!r}")
    return int(value)


def _choose(profile, args, calibrate_if_missing: bool):
    if args.scale is not None:
        return scale.Choice(args.scale, "fixed with --scale")
    if profile.scale is not None:
        return scale.choose(profile, scale.DEFAULT)
    cal = scale.cached()
    if cal is None and calibrate_if_missing:
        from fabric.runner import calibrate
        cal = calibrate(log=args.ui.log)
    return scale.choose(profile, cal or scale.DEFAULT, _algorithm(args, profile))


def _plan_choice(profile, args):
    """k as a run of this profile here would choose it: a profile with latency, jitter or loss on
    a kernel without sch_netem runs in the microVM, whose slower CPU has its own figures."""
    from fabric import microvm
    if args.scale is not None or profile.scale is not None or not profile.impaired \
            or host.netem_available() or microvm.inside():
        return _choose(profile, args, calibrate_if_missing=False)
    where = "a run here goes to the microVM (no sch_netem in this kernel)"
    cal = microvm.calibration()
    if cal is None:
        choice = _choose(profile, args, calibrate_if_missing=False)
        return scale.Choice(choice.k, f"{choice.reason}; {where}, which measures its own figures on its first "
                                      f"run: its k comes out 10-20x larger (software-emulated CPU)")
    cal = replace(cal, method=f"the microVM's (kernel {microvm.kernel()[1]}), {cal.method.removesuffix(' on this host')}"
                              f" there; {where}")
    return scale.choose(profile, cal, _algorithm(args, profile))


def cmd_doctor(args) -> int:
    checks = host.checks()
    for c in checks:
        line = f"{'ok ' if c.ok else 'NO '} {c.name:<11} {c.detail}"
        print(line + (f"\n    fix: {c.fix}" if not c.ok and c.fix else ""))
    cal = scale.cached()
    print(f"    calibration: {cal.method}: overhead {cal.overhead_s * 1e6:.0f} us, capacity "
          f"{cal.capacity_bps / 1e9:.2f} Gbit/s" if cal else "    calibration: none cached (the first run measures it)")
    netem = next((c.ok for c in checks if c.name == "netem"), False)
    runnable = all(c.ok for c in checks if c.name != "netem")
    if not runnable:
        print("fabric can't run here; fix the NO lines above")
        return EXIT_HOST
    if netem:
        print("fabric can run any profile here (netem in this kernel)")
        return 0
    from fabric import microvm
    lacking = microvm.missing()
    if lacking:
        print(f"NO  microvm     needs {'; '.join(lacking)}\n    fix: make setup (installs them)")
        print("fabric can run profiles without latency/jitter/loss here (no sch_netem, no microVM path)")
        return 0
    info = microvm.host_info(probe=os.geteuid() == 0)
    how = ("KVM not probed yet (needs root)" if info is None else
           ("KVM" if info.kvm else "software emulation (KVM unavailable or hanging)") +
           (f", last boot {info.boot_s:.1f} s" if info.boot_s else ", not booted yet"))
    print(f"ok  microvm     kernel {microvm.kernel()[1]} with netem; {how}")
    print("fabric can run any profile here: profiles with latency/jitter/loss run inside the microVM")
    return 0


def cmd_plan(args) -> int:
    from fabric import work as works
    from fabric.plan import build, flow_control
    from fabric.runner import sizing
    profile = load(args.profile)
    choice = _plan_choice(profile, args)
    plan = build(profile, choice.k)
    topo = profile.topology
    print(f"# profile {profile.name} ({profile.source}): {profile.description}")
    print(f"# scale k = {choice.k:g} ({choice.reason})")
    for name in profile.used_links():
        real, emu = profile.link(name), plan.emulated(profile.link(name))
        from fabric.units import fmt_rate, fmt_time
        print(f"# link {name}: real {fmt_rate(real.rate_bps)}, latency {fmt_time(real.latency_s)}, jitter "
              f"{fmt_time(real.jitter_s)}, loss {real.loss:.4%} -> emulated {fmt_rate(emu.rate_bps)}, "
              f"latency {fmt_time(emu.latency_s)}, jitter {fmt_time(emu.jitter_s)}; {flow_control(real)}")
    print(f"# topology {topo.kind}: {topo.describe()}; {len(plan.hosts)} hosts, {len(plan.switches)} bridges, {len(plan.links)} links, "
          f"{len(plan.shapers)} shaped directions; netem {'needed' if plan.needs_netem else 'not needed'}")
    for line in topo.route_lines(plan):
        print(f"# {line}")
    work = works.build(plan, _algorithm(args, profile))
    real = plan.dilation.real
    for i in work:
        t = i.seconds
        u = i.until
        times = (f"auto ({u.min_iters}-{u.max_iters}, until the p50's 95% interval is within {u.width:.0%} or "
                 f"{u.budget_s:g} s)" if u else i.iters)
        print(f"# workload {i.label} x {times} (+{i.warmup} warmup): " +
              (f"model {t * 1e6:.1f} us emulated, {real(t) * 1e6:.3f} us real" if i.op else
               f"model {t:.3g} s emulated per iteration, {real(t) * 1e6:.4g} us real") + f"; {i.algorithm}")
        for c in i.choices:
            cands = ", ".join(f"{n} {real(v) * 1e6:.4g}" for n, v in sorted(c.times.items(), key=lambda kv: kv[1]))
            how = "forced" if c.forced else "auto: the model's fastest" + (
                f", tied with {', '.join(c.tied)}: registered first" if c.tied else "")
            print(f"#   {c.label}: {c.algorithm} ({how}); candidates, real us: {cands}")
    for s in profile.stragglers:
        print(f"# straggler: {s.label} (the run also runs a baseline without stragglers)")
    from fabric import events
    names = topo.link_names()
    print(f"# links an event may name ({len(names)}): {', '.join(names[:24])}{', ...' if len(names) > 24 else ''}")
    for line in events.lines(plan):
        print(line)
    bounds = sizing(plan, work)
    print(f"# bounds: gloo op timeout {bounds.op_timeout_s:.0f} s, run time limit {bounds.run_timeout_s:.0f} s")
    print("# commands, Mininet-CLI style: each line runs in the named node's network namespace")
    print("\n".join(plan.commands()))
    return 0


def _start(args, calibrate: bool, profile=None):
    """What run, probe and sweep share before building anything: (profile, out, netem, vm
    extras, k choice); _Exit when there is nothing more to do here (the microVM ran it, or this
    host cannot).  profile: a variant of args.profile (sweep over sizes)."""
    from fabric import microvm
    profile, out = profile or load(args.profile), _out_dir(args)
    if args.cmd in ("run", "sweep") and not (profile.workload or profile.workloads):
        raise ProfileError(profile.source, "workload", f"missing: {args.cmd} needs at least one op or workload "
                                                       f"entry (exec and probe need none)")
    if profile.topology.ranks < 2 and args.cmd == "probe":
        raise ProfileError(profile.source, "topology", "at least 2 ranks to probe a path")
    vm = microvm.inside()
    if _needs_vm(profile, args):
        raise _Exit(_run_in_microvm(profile, args, out))
    netem, choice = _host_ready(profile, args, calibrate)
    args.ui.log(f"fabric: scale k = {choice.k:g} ({choice.reason})")
    extra = dict(kernel=vm["kernel"], kvm=vm["kvm"]) if vm else {}
    return profile, out, "microvm" if vm else netem, extra, choice


def _host_ready(profile, args, calibrate: bool):
    """(netem kind, k choice) for running `profile` here; _Exit when this host cannot (said why)."""
    from fabric.runner import HostUnfit, check_host
    try:
        return (check_host(profile, torch=args.cmd not in FOREIGN),
                _choose(profile, args, calibrate_if_missing=calibrate))
    except HostUnfit as exc:
        _err(str(exc))
        raise _Exit(EXIT_HOST) from None


def cmd_run(args) -> int:
    return _run(args)


def _run(args, profile=None, fitted: bool = False) -> int:
    """Run a profile (or its variant) and write and print its results; fitted: add the α-β fit."""
    from fabric import fit
    from fabric.ranks import RankError
    from fabric.runner import execute
    profile, out, netem, extra, choice = _start(args, calibrate=True, profile=profile)
    algorithm = _algorithm(args, profile)
    capture = out / CAPTURE_DIR if getattr(args, "capture", False) else None
    doc, code = _attempt(args.cmd, RankError, lambda: execute(profile, choice.k, netem, log=args.ui.log, progress=args.ui,
                                                              algorithm=algorithm, capture=capture))
    if code:
        return code
    doc["scale_reason"] = choice.reason
    doc["emulation"].update(extra)
    if fitted:
        doc["fit"] = fit.alpha_beta(doc["results"], choice.k)
    return _write_run(args, out, doc)


def cmd_exec(args) -> int:
    """Build the fabric, run args.command once per rank with torchrun's environment (fabric.launch),
    tear it down; the exit code is the first failing rank's."""
    from fabric import api, launch
    from fabric.runner import recording
    if not args.command:
        raise ProfileError(args.profile, "exec", "expected -- CMD [ARGS...] after the options (the program every "
                                                 "rank runs)")
    profile, out, netem, extra, choice = _start(args, calibrate=True)
    fab = api.Fabric(profile, scale=choice)
    plan = fab.plan
    try:
        args.ui.log(f"fabric: building {plan.size_text()}")
        with fab:
            args.ui.log(f"fabric: running {' '.join(args.command)} on {plan.ranks} ranks (k = {plan.scale:g}: the network "
                 f"is {plan.scale:g} times slower than the profile's, compute is not; time limit {args.timeout:g} s)")
            for h in fab.hosts:
                args.ui.log(f"fabric:   rank {h.rank}: {h.name} {h.ip} on {h.intf}")
            with recording(fab.emulation, out / CAPTURE_DIR if args.capture else None, args.ui.log) as rec:
                outcome = fab.exec(args.command, out, args.timeout, echo=lambda line: print(line, flush=True),
                                   log=args.ui.log)
    except api.EmulationError as exc:
        _err(f"cannot build the emulation: {exc}")
        return EXIT_HOST
    except launch.LaunchError as exc:
        _err(f"exec failed: {exc}")
        return EXIT_FAILED
    doc = {"profile": profile.name, "source": str(profile.source), "command": args.command, "scale": plan.scale,
           "netem": netem, "mtu": plan.mtu, **extra, "wall_s": round(outcome.wall_s, 3), "timed_out": outcome.timed_out,
           "first_failed": outcome.first_failed,
           "ranks": [{"rank": r, "host": h.name, "address": plan.ip(r), "interface": plan.host_intf(r),
                      "exit_code": outcome.codes.get(r), "log": f"rank{r}.log"} for r, h in enumerate(plan.hosts)]}
    if outcome.events:
        doc["events"] = outcome.events
    (out / "exec.json").write_text(json.dumps(doc, indent=1) + "\n")
    if rec:
        from fabric import capture, recorder
        captured = recorder.figures(rec.recording, plan.scale)
        (out / "capture.json").write_text(json.dumps(captured, indent=1) + "\n")
        print(capture.table(captured), flush=True)
        args.ui.log(f"fabric: wrote {out / 'capture.json'} and the pcaps in {out / CAPTURE_DIR}")
        _pictures(args, out)
    line = f"exec: {launch.summary(plan, outcome, args.command)}; logs in {out}"
    if outcome.code:
        _err(line)
    else:
        args.ui.log(f"fabric: {line}")
    return outcome.code


def cmd_up(args) -> int:
    """Build the fabric and keep it until Ctrl-C, SIGTERM or `fabric down`, as Mininet's CLI
    keeps its network: each node's name, address and how to enter it printed first."""
    import time
    from fabric import api, cleanup
    profile = load(args.profile)
    if profile.impaired and not host.netem_available():
        impaired = ", ".join(l for l in profile.used_links() if profile.link(l).impaired)
        _err(f"{profile.source}: links {impaired} need netem (latency/jitter/loss) and this kernel has no sch_netem; "
             f"fabric up runs natively only (an interactive fabric inside the microVM would outlive no shell of "
             f"yours): use a kernel with netem, or set their latency, jitter and loss to 0; `fabric exec` runs a "
             f"program on this profile through the microVM")
        return EXIT_HOST
    fab = api.Fabric(profile, scale=_host_ready(profile, args, calibrate=False)[1], named=True)
    plan = fab.plan
    args.ui.log(f"fabric: scale k = {plan.scale:g} ({fab.choice.reason})")
    args.ui.log(f"fabric: building {plan.size_text()}")
    try:
        with fab:
            state = cleanup.STATE_DIR / f"{plan.prefix}.json"
            cleanup.STATE_DIR.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps(up_state(fab, os.getpid()), indent=1) + "\n")
            print(up_table(fab), flush=True)
            print(f"fabric up: {plan.prefix} is up until Ctrl-C or `fabric down` (try: fabric shell h1 -- ping -c 3 "
                  f"{fab.host(0).ip})", flush=True)
            while fab.up:
                time.sleep(0.5)
            _err(f"up: {plan.prefix}'s nodes were killed from outside (fabric cleanup?); removing the rest")
            return EXIT_FAILED
    except api.EmulationError as exc:
        _err(f"cannot build the emulation: {exc}")
        return EXIT_HOST
    except KeyboardInterrupt:
        print(f"fabric up: {plan.prefix} removed", flush=True)
        return 0


def cmd_verify(args) -> int:
    """Build each profile's fabric, run the commands `fabric plan` prints in a second set of
    namespaces, and compare what the kernel holds in both (fabric.verify); verify.json in --out."""
    from fabric import api, verify
    from fabric.plan import build
    from fabric.runner import new_run_id
    profiles = [load(p) for p in args.profiles]
    out = _out_dir(args)
    if _needs_vm(next((p for p in profiles if p.impaired), profiles[0]), args):
        return _run_in_microvm(profiles, args, out)
    found, failed = [], False
    for profile in profiles:
        fab = api.Fabric(profile, scale=_host_ready(profile, args, calibrate=False)[1])
        replica = build(profile, fab.plan.scale, run_id=new_run_id())
        args.ui.log(f"fabric: {profile.source}: building {fab.plan.size_text()} (k = {fab.plan.scale:g}), then running "
             f"its printed commands in namespaces of their own ({replica.prefix})")
        def check():
            with fab:
                return verify.verify(fab.emulation, replica)
        verdict, code = _attempt("verify", verify.VerifyError, check)
        if code:
            return code
        counts = ", ".join(f"{n} {what}" for what, n in verdict.counts.items())
        if verdict.differences:
            failed = True
            print(f"fabric verify: {profile.source}: {len(verdict.differences)} differences between the build and "
                  f"the {verdict.commands} commands fabric plan prints:")
            for d in verdict.differences[:20]:
                print(f"  {d.text()}")
        else:
            print(f"fabric verify: {profile.source}: the build is what its {verdict.commands} printed commands "
                  f"make, on {verdict.nodes} nodes: {counts}", flush=True)
        found.append({"profile": str(profile.source), "scale": fab.plan.scale, "nodes": verdict.nodes,
                      "commands": verdict.commands, "counts": verdict.counts,
                      "differences": [d.text() for d in verdict.differences]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "verify.json").write_text(json.dumps({"profiles": found}, indent=1) + "\n")
    return EXIT_FAILED if failed else 0


def up_state(fab, pid: int) -> dict:
    """What `fabric shell` and `fabric down` need of a fabric that is up (STATE_DIR/<run>.json)."""
    return {"run": fab.plan.prefix, "pid": pid, "profile": str(fab.profile.source), "scale": fab.plan.scale,
            "nodes": {h.name: {"node": h.node, "kind": h.kind, "rank": h.rank, "ip": h.ip, "intf": h.intf,
                               "env": fab.environment(h.rank) if h.rank is not None else {}}
                      for h in fab.nodes}}


def up_table(fab) -> str:
    """The nodes of a fabric that is up and how to enter each."""
    rows = [f"{'node':<6} {'rank':>4}  {'address':<15} {'interface':<11} enter with"]
    for h in fab.nodes:
        rows.append(f"{h.name:<6} {'' if h.rank is None else h.rank:>4}  {h.ip or '':<15} {h.intf or '':<11} "
                    f"fabric shell {h.name}   (or: ip netns exec {h.node} bash)")
    return "\n".join(rows)


def _ups() -> dict[str, dict]:
    """{run: state} of every fabric that is up (fabric up's state files)."""
    from fabric import cleanup
    out = {}
    for path in sorted(cleanup.STATE_DIR.glob("fab*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def cmd_shell(args) -> int:
    """A shell (or args.command) in a node of a fabric that is up, with its rank's environment."""
    ups = _ups()
    name = args.node
    found = [(run, st) for run, st in ups.items() if name in st["nodes"] or
             (name.startswith(run) and name[len(run):] in st["nodes"])]
    if not found:
        running = ", ".join(f"{run} ({st['profile']}: {', '.join(st['nodes'])})" for run, st in ups.items())
        _err(f"shell: no node {name!r} in a fabric that is up" + (f"; up: {running}" if running else
                                                                  "; none is up (start one: fabric up PROFILE)"))
        return EXIT_INPUT
    if len(found) > 1:
        _err(f"shell: {name!r} is in {len(found)} fabrics that are up ({', '.join(r for r, _ in found)}); "
             f"name it with its run, e.g. {found[0][0]}{name}")
        return EXIT_INPUT
    run, st = found[0]
    node = st["nodes"][name[len(run):] if name.startswith(run) else name]
    argv = args.command or ["bash", "--norc", "-i"]
    env = {**os.environ, **node["env"], "PS1": f"[fabric {node['node'][len(run):]}] \\w# ",
           "FABRIC_NODE": node["node"]}
    # ip netns exec also gives the command this namespace's /sys (ip, ethtool and tc read it)
    try:
        os.execvpe("ip", ["ip", "netns", "exec", node["node"], *argv], env)
    except OSError as exc:
        _err(f"shell: cannot run ip netns exec: {exc.strerror or exc}")
        return EXIT_HOST


def cmd_down(args) -> int:
    """Stop fabrics that are up (all, or args.run): SIGTERM to their `fabric up`, which removes
    what it built; what a dead one left, fabric cleanup's removal takes."""
    import signal
    import time
    from fabric import cleanup
    if os.geteuid() != 0:
        _err("down needs root (it stops fabric up and removes what it built)")
        return EXIT_HOST
    ups = {run: st for run, st in _ups().items() if args.run in (None, run)}
    if args.run and not ups:
        _err(f"down: no fabric {args.run} is up" + (f" (up: {', '.join(_ups())})" if _ups() else ""))
        return EXIT_INPUT
    for run, st in ups.items():
        try:
            os.kill(st["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + DOWN_WAIT_S
        while time.monotonic() < deadline and run in cleanup.leftovers(run):
            time.sleep(0.1)
        procs, links = cleanup.remove(run)     # what is left: a dead up's nodes, or one that did not stop
        print(f"fabric down: {run} ({st['profile']}) removed" +
              (f"; killed {procs} processes it left" if procs else ""), flush=True)
    if not ups:
        print("fabric down: no fabric is up", flush=True)
    return 0


def cmd_compare(args) -> int:
    """The same workload on each profile's fabric, one after the other, and one table."""
    from fabric import compare, results
    from fabric.ranks import RankError
    from fabric.runner import execute
    if len(args.profiles) < 2:
        _err("compare: expected two or more profiles")
        return EXIT_INPUT
    profiles = compare.variants(args.profiles, args.workload)   # all checked before anything is built
    out = _out_dir(args)
    if _needs_vm(next((p for p in profiles if p.impaired), profiles[0]), args):
        return _run_in_microvm(profiles, args, out)
    from fabric import microvm
    vm = microvm.inside()
    docs, dirs = [], []
    for i, profile in enumerate(profiles):
        netem, choice = _host_ready(profile, args, calibrate=True)
        args.ui.log(f"fabric compare: {profile.name} ({i + 1} of {len(profiles)}), scale k = {choice.k:g} ({choice.reason})")
        algorithm = _algorithm(args, profile)
        doc, code = _attempt("compare", RankError, lambda: execute(profile, choice.k, netem, log=args.ui.log, progress=args.ui,
                                                                   algorithm=algorithm))
        if code:
            return code
        doc["scale_reason"] = choice.reason
        doc["emulation"].update(dict(kernel=vm["kernel"], kvm=vm["kvm"]) if vm else {})
        dirs.append(f"{i + 1}-{profile.name}")
        results.write(out / dirs[-1], doc)
        docs.append(doc)
    doc = compare.document(docs, dirs, args.workload or args.profiles[0])
    compare.write(out, doc)
    args.ui.close()
    print(json.dumps(doc) if args.json else compare.table(doc))
    args.ui.log(f"fabric: wrote {out / 'compare.json'} and each fabric's results in {out}/<n>-<name>/")
    _pictures(args, out)
    return EXIT_FAILED if any(r["correct"] is False for d in docs for r in d["results"]) else 0


def _write_run(args, out: Path, doc: dict) -> int:
    from fabric import report, results
    results.write(out, doc)
    args.ui.close()
    print(json.dumps(doc) if args.json else report.table(doc))
    args.ui.log(f"fabric: wrote {out / 'results.json'} and the CSV files beside it")
    _pictures(args, out)
    if any(r["correct"] is False for r in doc["results"]):
        _err("some results were WRONG (see the check column)")
        return EXIT_FAILED
    return 0


def cmd_sweep(args) -> int:
    from fabric import sweep
    from fabric.profile import read
    from fabric.ranks import RankError
    data = read(args.profile)
    if args.op:
        return _sweep_sizes(args, data)
    over, values = ("delay", args.delay) if args.delay else ("ranks", args.ranks)
    sweep.variants(data, args.profile, over, values)   # every point checked before anything is built
    _, out, netem, extra, choice = _start(args, calibrate=True)
    doc, code = _attempt("sweep", RankError,
                         lambda: sweep.run(data, args.profile, over, values, choice.k, netem, log=args.ui.log, progress=args.ui,
                                           algorithm=_algorithm(args, load(args.profile))))
    if code:
        return code
    doc.update(scale=choice.k, scale_reason=choice.reason, emulation=extra)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(doc, indent=1) + "\n")
    args.ui.close()
    print(json.dumps(doc) if args.json else sweep.table(doc))
    args.ui.log(f"fabric: wrote {out / 'sweep.json'}")
    return 0


def _pictures(args, folder: Path) -> None:
    """The PNGs and report.html beside the JSON.  Drawn on the host: inside the microVM the command that
    started it draws them once the VM is done (no font cache to build in a slow guest)."""
    from fabric import html, microvm
    if microvm.inside():
        return
    paths = html.for_folder(folder)
    if paths:
        args.ui.log(f"fabric: drew {', '.join(p.name for p in paths)} in {folder}")


def cmd_report(args) -> int:
    """Print a past run's tables again from the JSON it wrote, and write its CSV files,
    nccl-tests.json, pictures and report.html there anew."""
    from fabric import compare, report, results, sweep
    run_dir = Path(args.run_dir)
    try:
        if (run_dir / "compare.json").is_file():
            print(compare.table(compare.read_doc(run_dir)))
            _pictures(args, run_dir)
            return 0
        if (run_dir / "sweep.json").is_file() and not (run_dir / "results.json").is_file():
            print(sweep.table(sweep.read(run_dir)))
            return 0
        doc = results.read(run_dir)
    except ValueError as exc:
        _err(f"{exc}" if run_dir.is_dir() else
             f"{run_dir}: expected a run folder (with results.json, sweep.json or compare.json)")
        return EXIT_INPUT
    results.write(run_dir, doc)          # the CSV files and nccl-tests.json, as this fabric writes them
    print(report.table(doc))
    _pictures(args, run_dir)
    return 0


def _attempt(what: str, failure: type, fn):
    """fn()'s value and 0; or, when the emulation cannot be built or `failure` is raised, None
    and the exit code, the reason said in one line."""
    from fabric.emulation import EmulationError
    try:
        return fn(), 0
    except EmulationError as exc:
        _err(f"cannot build the emulation: {exc}")
        return None, EXIT_HOST
    except failure as exc:
        _err(f"{what} failed: {exc}")
        return None, EXIT_FAILED


def _sweep_sizes(args, data) -> int:
    """nccl-tests over the profile's fabric: one op from -b to -e, and the α-β fit."""
    from fabric import sweep
    try:
        nbytes = sweep.sizes(args.minbytes, args.maxbytes, args.stepfactor)
    except ValueError as exc:
        _err(f"sweep: {exc}")
        return EXIT_INPUT
    profile = sweep.size_variant(data, args.profile, args.op, nbytes, args.iters, args.warmup_iters, args.check > 0)
    return _run(args, profile, fitted=True)


def _list_arg(kind):
    def parse(value: str) -> list:
        items = [v.strip() for v in value.split(",") if v.strip()]
        if kind is int and not all(v.isdigit() and int(v) >= 1 for v in items) or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {value!r}")
        return [kind(v) for v in items]
    return parse


def _out_dir(args) -> Path:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ProfileError(str(out), "--out", "expected a directory (it is a file)")
    return out


def _needs_vm(profile, args) -> bool:
    """True when this command should re-run inside the microVM; says so when already inside."""
    from fabric import microvm
    vm = microvm.inside()
    if vm:
        print(f"{microvm.READY} (kernel {vm['kernel']}, {'KVM' if vm['kvm'] else 'software emulation'})",
              file=sys.stderr, flush=True)
        return False
    return args.vm == "always" or (args.vm == "auto" and profile.impaired and not host.netem_available())


def cmd_probe(args) -> int:
    from fabric import api, probe, results
    profile, out, netem, extra, choice = _start(args, calibrate=False)
    fab = api.Fabric(profile, scale=choice)
    def run_probe():
        with fab:
            return probe.probe(fab.emulation, args.count, log=args.ui.log)
    paths, code = _attempt("probe", RuntimeError, run_probe)
    if code:
        return code
    doc = results.document(fab.plan, [], netem, extra=extra)
    del doc["results"]
    doc["paths"] = paths
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(probe.table(doc))
    args.ui.log(f"fabric: wrote {out / 'probe.json'}")
    return 0


def _run_in_microvm(profiles, args, out: Path) -> int:
    """Run this same command inside fabric's microVM (fabric.microvm) and return its exit code.
    profiles: what the command will run (several for compare), to size the VM."""
    from fabric import microvm
    from fabric.runner import HostUnfit, check_host_tools
    profiles = profiles if isinstance(profiles, list) else [profiles]
    impaired = next((p for p in profiles if p.impaired), profiles[0])
    why = ("--vm always" if args.vm == "always" else
           f"{impaired.source} needs netem (latency/jitter/loss) and this kernel has no sch_netem")
    try:
        check_host_tools(torch=args.cmd not in FOREIGN)
    except HostUnfit as exc:
        _err(str(exc))
        return EXIT_HOST
    lacking = microvm.missing()
    if lacking:
        _err(f"{why}, and the microVM path needs: {'; '.join(lacking)} (make demo installs them)")
        return EXIT_HOST
    # the same command line (paths as typed: the guest runs in this same directory), its
    # results in this --out, and no microVM inside the microVM (later options win)
    inner = [sys.executable, "-m", "fabric.cli", *args.argv, "--out", str(out.resolve()), "--vm", "never"]
    if getattr(args, "command", None):
        inner += ["--", *args.command]
    try:
        info = microvm.host_info()
        release = microvm.kernel()[1]
        args.ui.log(f"fabric: {why}: running inside a microVM (kernel {release}, "
             f"{'KVM' if info.kvm else 'software emulation: KVM unavailable or hanging'})")
        args.ui.phase("booting the microVM")
        from fabric import work as works
        from fabric.plan import build
        biggest = max(works.buffer_bytes(works.build(build(p, 1.0), _algorithm(args, p))) for p in profiles)
        ranks = max(p.topology.ranks for p in profiles)
        if getattr(args, "ranks", None):   # a sweep over rank counts: room for its largest point
            ranks = max(ranks, max(args.ranks) * profiles[0].topology.domains)
        code = microvm.run(inner, out, ranks, biggest, timeout_s=VM_RUN_LIMIT_S, on_line=args.ui.feed)
        args.ui.close()
    except microvm.MicroVMError as exc:
        _err(str(exc))
        return EXIT_HOST
    if code == 0 and (args.cmd in ("run", "compare", "sweep") and not getattr(args, "delay", None)
                      and not getattr(args, "ranks", None) or getattr(args, "capture", False)):
        _pictures(args, out)    # from the JSON the guest wrote
    return code


def cmd_calibrate(args) -> int:
    from fabric.runner import HostUnfit, calibrate
    missing = host.can_run()
    if missing:
        _err("; ".join(f"{c.name}: {c.detail} -> {c.fix}" for c in missing))
        return EXIT_HOST
    del HostUnfit
    calibrate(log=args.ui.log)
    return 0


def cmd_cleanup(args) -> int:
    if os.geteuid() != 0:
        _err("cleanup needs root (it kills fabric's processes and deletes its links)")
        return EXIT_HOST
    found = cleanup.leftovers()
    procs, links = cleanup.remove()
    runs = ", ".join(sorted(found)) or "none"
    print(f"fabric cleanup: runs {runs}; killed {procs} processes, deleted {links} links")
    return 0


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fabric", description="Network-fabric emulator with real collective traffic.")
    p.add_argument("--version", action="version", version=f"fabric {version()}")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    sub.add_parser("doctor", help="what this host can emulate").set_defaults(fn=cmd_doctor)
    for name, fn, text in (("plan", cmd_plan, "topology, scale and the exact commands (no root)"),
                           ("run", cmd_run, "build the fabric, run the workload, report"),
                           ("probe", cmd_probe, "build the fabric, measure delay, jitter, loss and rate with packets"),
                           ("sweep", cmd_sweep, "one op over message sizes (with an α-β fit), or the profile at several "
                                                "straggler delays or rank counts")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("profile")
        sp.add_argument("--scale", type=_scale_arg, help="time dilation k (overrides the profile)")
        if name != "probe":
            _algorithm_arg(sp)
        sp.set_defaults(fn=fn)
        if name == "sweep":
            group = sp.add_mutually_exclusive_group(required=True)
            group.add_argument("--delay", type=_list_arg(str), help="straggler delays, e.g. 1us,5us,20us")
            group.add_argument("--ranks", type=_list_arg(int), help="rank counts, e.g. 2,4,8")
            group.add_argument("--op", choices=sorted(COLLECTIVES),
                               help="one op over message sizes, nccl-tests style, with an α-β fit")
            sp.add_argument("-b", "--minbytes", type=_size_arg, default=1024,
                            help="smallest size in bytes, or as nccl-tests reads it: 64K, 128M, 1G (powers of 1024)")
            sp.add_argument("-e", "--maxbytes", type=_size_arg, default=1 << 20, help="largest size, as -b")
            sp.add_argument("-f", "--stepfactor", type=float, default=2.0, help="size factor")
            sp.add_argument("-n", "--iters", type=_whole_arg, default=20, help="iterations per size")
            sp.add_argument("-w", "--warmup_iters", type=_whole_arg, default=1, help="warmup iterations")
            sp.add_argument("-c", "--check", type=_whole_arg, default=1, help="0: do not verify results")
        if name in ("run", "sweep"):
            _quiet_json(sp)
        if name == "run":
            _capture_arg(sp)
        if name in ("run", "probe", "sweep"):
            sp.add_argument("--out", default="runs/latest", help="folder for the results files")
            sp.add_argument("--vm", choices=("auto", "always", "never"), default="auto",
                            help="run inside a microVM with netem: auto = when the profile needs netem "
                                 "and this kernel lacks it")
        if name == "probe":
            sp.add_argument("--count", type=_count_arg, default=4000, help="UDP probes per path")
    xp = sub.add_parser("exec", help="build the fabric and run a program once per rank (torchrun's environment): "
                                     "fabric exec PROFILE -- CMD [ARGS...]")
    xp.add_argument("profile")
    xp.add_argument("--scale", type=_scale_arg, help="time dilation k (overrides the profile)")
    xp.add_argument("--out", default="runs/exec", help="folder for each rank's log and exec.json")
    xp.add_argument("--timeout", type=_seconds_arg, default=600.0,
                    help="seconds the ranks may run before fabric stops them")
    xp.add_argument("--vm", choices=("auto", "always", "never"), default="auto",
                    help="run inside a microVM with netem: auto = when the profile needs netem and this kernel "
                         "lacks it")
    _capture_arg(xp)
    xp.set_defaults(fn=cmd_exec)
    up = sub.add_parser("up", help="build the fabric and keep it up until Ctrl-C or fabric down (natively); "
                                   "enter its hosts with fabric shell")
    up.add_argument("profile")
    up.add_argument("--scale", type=_scale_arg, help="time dilation k (overrides the profile)")
    up.set_defaults(fn=cmd_up)
    vp = sub.add_parser("verify", help="build each profile's fabric and check that the commands fabric plan "
                                       "prints make the same links, addresses, routes, qdiscs, classes and filters")
    vp.add_argument("profiles", nargs="+")
    vp.add_argument("--scale", type=_scale_arg, help="time dilation k (overrides the profiles')")
    vp.add_argument("--out", default="runs/verify", help="folder for verify.json")
    vp.add_argument("--vm", choices=("auto", "always", "never"), default="auto",
                    help="run inside a microVM with netem (auto: when a profile needs netem and this kernel lacks it)")
    vp.set_defaults(fn=cmd_verify)
    sh = sub.add_parser("shell", help="a shell, or -- CMD [ARGS...], in a node of a fabric that is up, with its "
                                      "rank's environment (as fabric exec gives it)")
    sh.add_argument("node", help="h0.. for the ranks, s0.. and core for the bridges (fabric up lists them)")
    sh.set_defaults(fn=cmd_shell)
    dn = sub.add_parser("down", help="stop fabrics that are up (fabric up) and remove what they built")
    dn.add_argument("run", nargs="?", help="one of them (fab1a2b); default: all")
    dn.set_defaults(fn=cmd_down)
    cp = sub.add_parser("compare", help="the same workload on several fabrics, one table")
    cp.add_argument("profiles", nargs="+", help="two or more profiles")
    cp.add_argument("--workload", help="a YAML file with workload (and stragglers, seed, gpu) for every fabric; "
                                       "default: the first profile's")
    cp.add_argument("--scale", type=_scale_arg, help="time dilation k for every fabric (default: each its own)")
    _algorithm_arg(cp)
    cp.add_argument("--out", default="runs/compare", help="folder for compare.json and each fabric's results")
    cp.add_argument("--vm", choices=("auto", "always", "never"), default="auto",
                    help="run inside a microVM with netem (auto: when a profile needs netem and this kernel lacks it)")
    _quiet_json(cp)
    cp.set_defaults(fn=cmd_compare)
    rp = sub.add_parser("report", help="print a past run's tables again from its folder (no re-run), and write "
                                       "its CSV files, nccl-tests.json, pictures and report.html there anew")
    rp.add_argument("run_dir", help="a folder fabric run or sweep wrote (--out)")
    rp.set_defaults(fn=cmd_report)
    sub.add_parser("calibrate", help="measure this host's overhead and capacity (cached)").set_defaults(
        fn=cmd_calibrate)
    sub.add_parser("cleanup", help="remove what crashed fabric runs left").set_defaults(fn=cmd_cleanup)
    return p


def _algorithm_arg(sp) -> None:
    from collectives.algorithms import ALGORITHMS, AUTO
    sp.add_argument("--algorithm", choices=[AUTO, *ALGORITHMS], default=AUTO,
                    help="collective algorithm for every call it runs (auto: the α-β model's fastest per call, as "
                         "NCCL's tuner picks; gloo: torch's own call, the baseline)")


def _algorithm(args, profile) -> str:
    """--algorithm, checked against the profile: it must run at least one of its collectives."""
    from collectives.algorithms import ALGORITHMS, AUTO
    name = getattr(args, "algorithm", AUTO)
    if name == AUTO:
        return name
    from workloads.base import ops_of
    ops = {o.op for o in profile.workload} | {op for e in profile.workloads for op in ops_of(
        e.workload.phases(profile.topology.ranks))}
    if ops and not ops & set(ALGORITHMS[name].ops):
        raise ProfileError(profile.source, "--algorithm",
                           f"{name} runs {', '.join(ALGORITHMS[name].ops)}, none of this profile's "
                           f"{', '.join(sorted(ops))}")
    return name


def _capture_arg(sp) -> None:
    sp.add_argument("--capture", action="store_true",
                    help=f"record every shaped link direction into pcaps (--out/{CAPTURE_DIR}/, headers only, bounded) "
                         f"and report per-link bytes, utilisation over time, per-packet link delay and TCP resends")


def _quiet_json(sp) -> None:
    sp.add_argument("--quiet", action="store_true", help="no progress and no log lines (errors still)")
    sp.add_argument("--json", action="store_true",
                    help="print the results document (JSON) on stdout instead of the table, for scripts")


def _split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """fabric's own arguments, and the program after `--` (exec)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    from fabric import microvm
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, command = _split_command(argv)
    args = parser().parse_args(ours)
    args.argv, args.command = ours, command   # ours: what the microVM runs again, before the command
    args.ui = Progress(quiet=getattr(args, "quiet", False), forward=microvm.inside() is not None)
    args.json = getattr(args, "json", False)
    try:
        return args.fn(args)
    except _Exit as exc:
        return exc.code
    except ProfileError as exc:
        _err(str(exc))
        return EXIT_INPUT
    except KeyboardInterrupt:
        _err("interrupted; everything the run made was removed")
        return EXIT_INTERRUPTED
    except BrokenPipeError:   # `fabric plan ... | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        args.ui.close()


if __name__ == "__main__":
    sys.exit(main())
