"""fabric compare: the same workload on several fabrics, one table with the fabrics as
columns, real-fabric figures first, each beside the best fabric's (the seeds' NVLink vs
InfiniBand vs RoCE vs ISL table, measured).

The workload, stragglers, seed and gpu come from one place (--workload FILE, else the first
profile) and replace each profile's own, so every fabric runs the same traffic with the same
random draws; each profile keeps its links, topology and scale.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from fabric.profile import Profile, ProfileError, parse, read
from fabric.stats import fmt
from fabric.units import fmt_size

SHARED = ("workload", "stragglers", "seed", "gpu")
SCHEMA = 1


def variants(paths: list[str], workload_file: str | None = None) -> list[Profile]:
    """Each profile with the shared workload; ProfileError names the file and key at fault."""
    source = workload_file or paths[0]
    shared = read(source)
    if not isinstance(shared, dict) or "workload" not in shared:
        raise ProfileError(source, "workload", "expected a mapping with a workload: list")
    if workload_file:
        extra = sorted(set(shared) - set(SHARED))
        if extra:
            raise ProfileError(source, extra[0], f"expected only {', '.join(SHARED)} in a --workload file")
    out = []
    for path in paths:
        data = read(path)
        if isinstance(data, dict):
            data = copy.deepcopy(data)
            for key in SHARED:
                data.pop(key, None)
                if key in shared:
                    data[key] = copy.deepcopy(shared[key])
        out.append(parse(data, path if path == source else f"{path} (with the workload of {source})"))
    return out


def document(docs: list[dict], dirs: list[str], workload_from: str) -> dict:
    """compare.json: the fabrics, where each one's results.json is, and the table's rows."""
    return {"schema": SCHEMA, "workload_from": workload_from,
            "fabrics": [{"name": d["profile"]["name"], "source": d["profile"]["source"], "scale": d["scale"],
                         "ranks": d["emulation"]["ranks"], "netem": d["emulation"]["netem"], "results": r}
                        for d, r in zip(docs, dirs)],
            "rows": rows(docs)}


def rows(docs: list[dict]) -> list[dict]:
    """One row per figure: what, unit, whether lower is better, and each fabric's value
    (None where a fabric lacks it).  Ops and workloads are matched by their place in the
    shared workload."""
    from workloads import KINDS
    out = []

    def add(what, unit, lower, values, samples=None):
        row = {"what": what, "unit": unit, "lower_is_better": lower, "values": values}
        if samples:         # where a value is None because its samples cannot carry it
            row["samples"] = samples
        out.append(row)

    first = docs[0]
    for i, r in enumerate(first["results"]):
        at = [d["results"][i] if i < len(d["results"]) else None for d in docs]
        name = f"{r['op']} {fmt_size(r['bytes'])}"
        add(f"{name} time p50", "us", True, [a and a["projected"]["time_us"] for a in at])
        add(f"{name} time p99", "us", True, [a and a["time_us"]["p99"] and a["time_us"]["p99"] / d["scale"]
                                             for a, d in zip(at, docs)], [a and a["iters"] for a in at])
        add(f"{name} busbw", "GB/s", False, [a and a["projected"]["busbw_GBps"] for a in at])
    for i, w in enumerate(first["workloads"]):
        at = [d["workloads"][i] if i < len(d["workloads"]) else None for d in docs]
        for j, (what, _, unit) in enumerate(KINDS[w["kind"]].headline(w["figures"])):
            add(f"{w['label']}: {what}", unit, True,
                [a and KINDS[a["kind"]].headline(a["figures"])[j][1] for a in at], [a and a["iters"] for a in at])
    if first.get("stragglers"):
        for i, s in enumerate(first["stragglers"]["slowdown"]):
            at = [d["stragglers"]["slowdown"][i] if d.get("stragglers") else None for d in docs]
            add(f"{s['name']}: straggler slowdown p50", "x", True, [a and a["ratio"]["p50"] for a in at])
            add(f"{s['name']}: straggler slowdown p99", "x", True, [a and a["ratio"]["p99"] for a in at],
                [a and a.get("samples", {}).get("straggler") for a in at])
    return out


def table(doc: dict) -> str:
    """Fabrics as columns; each cell the value and how many times worse it is than the best."""
    fabrics = doc["fabrics"]
    head = [[f["name"] for f in fabrics], [f"{f['ranks']}, {f['scale']:g}" for f in fabrics]]
    body = [[_cell(v, r, n) for v, n in zip(r["values"], r.get("samples") or [None] * len(r["values"]))]
            for r in doc["rows"]]
    widths = [max(len(line[c]) for line in head + body) + 2 for c in range(len(fabrics))]
    labels = ["", "ranks, scale k"] + [f"{r['what']} ({r['unit']})" for r in doc["rows"]]
    label = max(map(len, labels))
    lines = [f"# fabric compare: {len(fabrics)} fabrics, the workload of {doc['workload_from']}; real-fabric "
             "figures (emulated / k); (x) = times worse than the best fabric"]
    for i, (name, cells) in enumerate(zip(labels, head + body)):
        text = f"{name:<{label}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths))
        lines.append(("# " if i < 2 else "  ") + text)
    return "\n".join(lines)


def _cell(v, row, n=None) -> str:
    if v is None:
        return fmt(None, n) if n else "-"
    text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 100 else f"{v:.4g}"
    present = [x for x in row["values"] if x is not None]
    best = (min if row["lower_is_better"] else max)(present)
    if not best or not v:
        return text
    return f"{text} ({(v / best if row['lower_is_better'] else best / v):.2f}x)"


def write(out: Path, doc: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(doc, indent=1) + "\n")


def read_doc(run_dir: Path) -> dict:
    from fabric.results import read_json
    return read_json(run_dir / "compare.json", lambda d: d.get("schema") == SCHEMA and "rows" in d,
                     f"expected a compare.json written by fabric compare (schema {SCHEMA})")
