"""Pictures of results: pure functions from result documents (results.json, compare.json) to
matplotlib Figures, drawn on the real fabric's scale (emulated / k).  Nothing here runs
anything or touches the kernel; `save` writes the PNGs beside results.json.
"""
from __future__ import annotations

import math
from pathlib import Path

from collectives import COLLECTIVES
from fabric.dilation import Dilation


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")          # files only: no display on a server or in the microVM
    import matplotlib.pyplot as plt
    return plt


def _figure(w=6.4, h=4.0):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(w, h), dpi=100)
    return fig, ax


def busbw_vs_size(docs: list[dict]):
    """busbw (real GB/s) against message size per fabric and op, log-log, with the bottleneck
    link's rate and the α-β model's busbw drawn in; None when no op has two sizes."""
    fig, ax = _figure()
    drawn = False
    for doc in docs:
        dil, n = Dilation.of(doc), doc["emulation"]["ranks"]
        for op in dict.fromkeys(r["op"] for r in doc["results"]):
            rows = [r for r in doc["results"] if r["op"] == op]
            if len(rows) < 2:
                continue
            sizes = [r["bytes"] for r in rows]
            name = f"{doc['profile']['name']} {op}" if len(docs) > 1 else op
            line, = ax.plot(sizes, [r["projected"]["busbw_GBps"] for r in rows], "o-", label=f"{name} measured")
            factor = COLLECTIVES[op].bus_factor(n)
            ax.plot(sizes, [r["bytes"] / (dil.real(r["model_time_us"]) * 1e-6) / 1e9 * factor for r in rows], "--",
                    color=line.get_color(), label=f"{name} α-β model")
            # the bottleneck at the largest size (small sizes may be bound elsewhere)
            link = dil.real_rate(rows[-1]["link_GBps"])
            ax.axhline(link, color=line.get_color(), linestyle=":", linewidth=1, label=f"{name} link {link:.3g} GB/s")
            drawn = True
    if not drawn:
        _pyplot().close(fig)
        return None
    ax.set(xscale="log", yscale="log", xlabel="message size (B)", ylabel="busbw, real (GB/s)",
           title="Bus bandwidth against message size")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def latency_cdf(doc: dict):
    """Per op/size, the CDF of the iteration time (slowest rank, real µs) with p50 and, where
    the iterations carry it (fabric.stats), p99 marked; with stragglers, the baseline overlaid.
    None when there are no ops."""
    from fabric.results import slowest
    from fabric.stats import needed, tail
    if not doc["results"]:
        return None
    base = {(r["op"], r["bytes"]): r for r in (doc.get("stragglers") or {}).get("baseline", {}).get("results", [])}
    fig, ax = _figure()
    dil = Dilation.of(doc)
    for r in doc["results"]:
        runs = [("", r)] + ([(" baseline", base[(r["op"], r["bytes"])])] if (r["op"], r["bytes"]) in base else [])
        for suffix, rec in runs:
            times = sorted(dil.real(t) for t in slowest(rec["rank_time_us"]))
            frac = [(i + 1) / len(times) for i in range(len(times))]
            line, = ax.step(times, frac, where="post", linestyle="--" if suffix else "-",
                            label=f"{r['op']} {r['bytes']} B{suffix}")
            for q, mark in ((50, "o"), (99, "^")):
                if tail(times, q) is not None:
                    ax.plot([tail(times, q)], [q / 100], mark, color=line.get_color())
    ax.set(xlabel="iteration time, slowest rank, real (µs)", ylabel="fraction of iterations",
           title=f"Latency CDF (o = p50, ^ = p99 from {needed(99)} iterations)", ylim=(0, 1.05))
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def skew_strip(doc: dict):
    """Heat strip, ranks x iterations, of each rank's time minus the fastest rank's (real µs),
    one panel per op/size and workload: who was late, and when.  None when nothing ran."""
    records = [(f"{r['op']} {r['bytes']} B", r["rank_time_us"]) for r in doc["results"]]
    records += [(w["label"], w["rank_time_us"]) for w in doc.get("workloads", [])]
    if not records:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(records), 1, figsize=(6.4, 0.4 + 1.1 * len(records)), dpi=100, squeeze=False)
    dil = Dilation.of(doc)
    for ax, (name, per_rank) in zip(axes[:, 0], records):
        iters = len(per_rank[0])
        grid = []
        for rank in per_rank:
            row = []
            for i in range(iters):
                present = [r[i] for r in per_rank if r[i] is not None]
                row.append(dil.real(rank[i] - min(present)) if rank[i] is not None else math.nan)
            grid.append(row)
        image = ax.imshow(grid, aspect="auto", cmap="magma_r", interpolation="nearest")
        ax.set_title(name, fontsize=8, loc="left")
        ax.set_ylabel("rank", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.colorbar(image, ax=ax, pad=0.01).ax.tick_params(labelsize=6)
    axes[-1, 0].set_xlabel("iteration (colour: µs behind the fastest rank, real)", fontsize=7)
    fig.tight_layout()
    return fig


def token_breakdown(doc: dict):
    """Per-token (or per-request) time split into compute and each communication kind, one bar
    per tp_decode / ep_moe / kv_transfer / dp workload, real µs.  None without those kinds."""
    bars = []
    for w in doc.get("workloads", []):
        f = w["figures"]
        if w["kind"] in ("tp_decode", "dp"):
            compute = f["compute_us_per_token"]
            bars.append((w["label"], {"compute": compute, "all-reduce": max(0.0, f["tpot_us"]["p50"] - compute)}))
        elif w["kind"] == "ep_moe":
            layers = f["moe_layers"]
            bars.append((w["label"], {"dispatch": f["dispatch_us"]["p50"] * layers,
                                      "combine": f["combine_us"]["p50"] * layers}))
        elif w["kind"] == "kv_transfer":
            bars.append((w["label"], {"KV transfer (added TTFT)": f["ttft_added_us"]["p50"]}))
    if not bars:
        return None
    fig, ax = _figure(6.4, 0.8 + 0.5 * len(bars))
    colours = {}
    for y, (_, parts) in enumerate(bars):
        left = 0.0
        for part, value in parts.items():
            colour = colours.setdefault(part, f"C{len(colours)}")
            ax.barh(y, value, left=left, color=colour, label=part if part not in ax.get_legend_handles_labels()[1]
                    else None)
            left += value
    ax.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="real µs per token, or added to the first token", title="Where a token's time goes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def compare_bars(doc: dict):
    """compare.json: grouped bars, one group per row of the compare table (TPOT, TTFT, time,
    busbw ...), one bar per fabric, each group scaled to its best fabric (1 = best)."""
    rows = [r for r in doc["rows"] if any(v for v in r["values"] if v is not None)]
    if not rows:
        return None
    fabrics = [f["name"] for f in doc["fabrics"]]
    fig, ax = _figure(6.4, 0.8 + 0.32 * len(rows) * max(1, len(fabrics) / 2))
    height = 0.8 / len(fabrics)
    for j, name in enumerate(fabrics):
        ratios = []
        for r in rows:
            present = [v for v in r["values"] if v]
            v = r["values"][j]
            best = (min if r["lower_is_better"] else max)(present)
            ratios.append((v / best if r["lower_is_better"] else best / v) if v else 0.0)
        ax.barh([i + j * height for i in range(len(rows))], ratios, height=height, label=name)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))], [r["what"] for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set(xlabel="times worse than the best fabric (1 = best)", title="Fabrics compared")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


LINK_ROWS = 64       # directions drawn in link_utilisation, the busiest by bytes


def link_utilisation(doc: dict):
    """The packet capture's utilisation timelines (results.json "capture", fabric.capture) as a
    heat map: a row per shaped link direction that sent anything, time on the real fabric,
    colour the share of the shaped rate used.  None without a capture or traffic."""
    from fabric.capture import short_key
    cap = doc.get("capture")
    busy = [d for d in (cap or {}).get("directions", []) if d["packets"]]
    if not busy or not cap.get("bin_s"):
        return None
    shown = [busy[i] for i in sorted(sorted(range(len(busy)), key=lambda i: -busy[i]["bytes"])[:LINK_ROWS])]
    span = cap["bin_s"] * cap["bins"] / cap["k"]
    unit, factor = ("µs", 1e6) if span < 1e-3 else ("ms", 1e3) if span < 1 else ("s", 1.0)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 1.2 + 0.2 * len(shown)), dpi=100)
    image = ax.imshow([d["utilisation"] for d in shown], aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest", extent=(0, span * factor, len(shown) - 0.5, -0.5))
    ax.set_yticks(range(len(shown)), [f"{short_key(d['key'])} {d['link_class']}" for d in shown], fontsize=6)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(f"time on the real fabric ({unit}, emulated / k)", fontsize=8)
    left_out = f", the {len(shown)} busiest of {len(busy)}" if len(shown) < len(busy) else ""
    ax.set_title(f"Link utilisation per shaped direction (packet capture{left_out})", fontsize=9)
    fig.colorbar(image, ax=ax, pad=0.01).set_label("utilisation of the shaped rate", fontsize=7)
    fig.tight_layout()
    return fig


def run_figures(doc: dict) -> dict:
    """name -> Figure for one run's results.json (only the pictures it has data for)."""
    figs = {"busbw": busbw_vs_size([doc]), "latency_cdf": latency_cdf(doc), "skew": skew_strip(doc),
            "token_breakdown": token_breakdown(doc), "link_utilisation": link_utilisation(doc)}
    return {name: fig for name, fig in figs.items() if fig is not None}


def compare_figures(doc: dict, docs: list[dict]) -> dict:
    """name -> Figure for a compare.json and its fabrics' results.json documents."""
    figs = {"compare": compare_bars(doc), "busbw": busbw_vs_size(docs)}
    return {name: fig for name, fig in figs.items() if fig is not None}


def save(figures: dict, out: Path) -> list[Path]:
    """Write each figure as out/<name>.png (small: 100 dpi) and close it."""
    plt = _pyplot()
    paths = []
    for name, fig in figures.items():
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths
