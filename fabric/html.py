"""report.html: one self-contained file (pictures inlined as data: URIs, no scripts, no
fetches) with the profile, the topology drawn, the tables and the pictures.  Pure: documents
and PNG bytes in, text out.
"""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from fabric.units import fmt_rate, fmt_time

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dt { font-weight: 600; } dd { margin: 0; }
pre { font-size: 11px; background: #f6f6f6; padding: 1em; overflow-x: auto; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figcaption { font-size: .85em; color: #555; }
svg text { font-family: system-ui, sans-serif; }
"""

CAPTIONS = {
    "busbw": "Bus bandwidth against message size (real fabric): measured, the α-β model, the bottleneck link.",
    "latency_cdf": "Iteration time CDF per op (slowest rank; baseline dashed when there are stragglers).",
    "skew": "Per-rank skew: how far behind the fastest rank each rank finished, per iteration.",
    "token_breakdown": "Where a token's time goes: compute and each kind of communication.",
    "link_utilisation": "Each shaped link direction's utilisation of its rate over time, from the packet capture "
                        "(--capture): an all-to-all's incast on an uplink, a ring's steps.",
    "compare": "Each figure of the compare table, as times worse than the best fabric.",
}


def _page(title: str, sections: list[tuple[str, str, str]]) -> str:
    body = "\n".join(f'<section id="{sid}">\n<h2>{escape(heading)}</h2>\n{content}\n</section>'
                     for sid, heading, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f'<style>{STYLE}</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n')


def _pictures(pngs: dict[str, bytes]) -> str:
    return "\n".join(f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
                     f'{base64.b64encode(data).decode()}"><figcaption>{escape(CAPTIONS.get(name, name))}'
                     f'</figcaption></figure>' for name, data in pngs.items()) or "<p>No pictures for this run.</p>"


PALETTE = ("#36c", "#c33", "#393", "#c80", "#839", "#088")    # one colour per link class, in the legend's order


def topology_svg(doc: dict) -> str:
    """The fabric as its topology lays it out (results.json's emulation.graph): switches and
    routers as squares, ranks as numbered circles beside the switch of their first port, every
    link coloured by its class, each class's real rate and latency in the legend.  A results.json
    from before the graph was kept gets the domains picture (_domains_svg)."""
    emu, links = doc["emulation"], doc.get("links", [])
    g = emu.get("graph")
    if not g:
        return _domains_svg(doc)
    width, height, pad = 640, 420, 30
    sw = g["switches"]
    at = [(pad + s["x"] * (width - 2 * pad), pad + s["y"] * (height - 2 * pad - 30)) for s in sw]
    at += [None] * g["ranks"]
    home: dict[int, list[int]] = {}          # switch -> its ranks (the switch of each rank's first link)
    placed = set()
    for a, b, _, _ in g["links"]:
        for host, other in ((a, b), (b, a)):
            if host >= len(sw) and other < len(sw) and host not in placed:
                placed.add(host)
                home.setdefault(other, []).append(host)
    size = 7 if len(sw) > 30 else 11
    for s, hosts in home.items():
        x, y = at[s]
        step = min(2.3 * size, (width - 2 * pad) / min(12, len(sw)) / len(hosts))
        for j, h in enumerate(hosts):
            at[h] = (x + (j - (len(hosts) - 1) / 2) * step, y + 4 * size)
    classes = list(dict.fromkeys([l["name"] for l in links] + [c for _, _, c, _ in g["links"]]))
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="topology: {escape(emu.get("shape", ""))}">']
    for a, b, c, _ in g["links"]:
        if at[a] and at[b]:
            parts.append(f'<line x1="{at[a][0]:.1f}" y1="{at[a][1]:.1f}" x2="{at[b][0]:.1f}" y2="{at[b][1]:.1f}" '
                         f'stroke="{colour[c]}" stroke-width="1.5" opacity="0.8"/>')
    for i, s in enumerate(sw):
        x, y = at[i]
        label = s["name"].lstrip("s") if s["name"][1:].isdigit() else s["name"]
        parts.append(f'<rect x="{x - size:.1f}" y="{y - size:.1f}" width="{2 * size}" height="{2 * size}" rx="2" '
                     f'fill="#ddd" stroke="#666"/><text x="{x:.1f}" y="{y + size / 3:.1f}" text-anchor="middle" '
                     f'font-size="{max(6, size - 3)}">{escape(label[:6])}</text>')
    for r in range(g["ranks"]):
        if at[len(sw) + r]:
            x, y = at[len(sw) + r]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{size * 0.8:.1f}" fill="#fff" stroke="#333"/>'
                         f'<text x="{x:.1f}" y="{y + size / 3:.1f}" text-anchor="middle" '
                         f'font-size="{max(6, size - 3)}">{r}</text>')
    label = {l["name"]: f"{l['name']}: {fmt_rate(l['rate_bps'])}, {fmt_time(l['latency_s'])}" for l in links}
    for i, c in enumerate(classes):
        parts.append(f'<text x="{pad + i * 200}" y="{height - 10}" font-size="11" fill="{colour[c]}">'
                     f'{escape(label.get(c, c))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _domains_svg(doc: dict) -> str:
    """Ranks as circles, grouped in their domains (boxes) under a bridge, domains joined by
    the uplink; each link class labelled with its real rate and latency."""
    emu, links = doc["emulation"], doc.get("links", [])
    n, domains = emu["ranks"], emu["domains"] if emu["topology"] == "two_tier" else 1
    per = n // domains
    # results.json lists the ranks' link class first, then the uplink ("role" since it was added)
    label = {link.get("role", ("ranks", "uplink")[min(i, 1)]): f"{link['name']}: {fmt_rate(link['rate_bps'])}, "
                                                               f"{fmt_time(link['latency_s'])}"
             for i, link in enumerate(links)}
    box_w, gap = max(90, 46 * per), 40
    width = domains * box_w + (domains - 1) * gap + 40
    height = 230 if domains > 1 else 170
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="topology: {n} ranks in {domains} domain(s)">']
    top = 60 if domains > 1 else 10
    if domains > 1:
        parts.append(f'<rect x="{width / 2 - 40}" y="5" width="80" height="24" rx="4" fill="#ddd"/>'
                     f'<text x="{width / 2}" y="21" text-anchor="middle" font-size="11">uplink bridge</text>')
    for d in range(domains):
        x0 = 20 + d * (box_w + gap)
        cx = x0 + box_w / 2
        if domains > 1:
            parts.append(f'<line x1="{width / 2}" y1="29" x2="{cx}" y2="{top}" stroke="#c33" stroke-width="2"/>')
        parts.append(f'<rect x="{x0}" y="{top}" width="{box_w}" height="120" rx="8" fill="#f3f6fb" stroke="#89a"/>'
                     f'<text x="{x0 + 6}" y="{top + 14}" font-size="11">domain {d}</text>'
                     f'<rect x="{cx - 30}" y="{top + 22}" width="60" height="18" rx="3" fill="#ddd"/>'
                     f'<text x="{cx}" y="{top + 35}" text-anchor="middle" font-size="10">bridge</text>')
        for i in range(per):
            rank = d * per + i
            rx = x0 + (i + 0.5) * box_w / per
            parts.append(f'<line x1="{cx}" y1="{top + 40}" x2="{rx}" y2="{top + 88}" stroke="#36c"/>'
                         f'<circle cx="{rx}" cy="{top + 100}" r="13" fill="#fff" stroke="#36c"/>'
                         f'<text x="{rx}" y="{top + 104}" text-anchor="middle" font-size="11">{rank}</text>')
    legend_y = height - 12
    parts.append(f'<text x="20" y="{legend_y}" font-size="11" fill="#36c">ranks: {escape(label.get("ranks", ""))}'
                 f'</text>')
    if domains > 1:
        parts.append(f'<text x="{width / 2 + 10}" y="{legend_y}" font-size="11" fill="#c33">uplink: '
                     f'{escape(label.get("uplink", ""))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def run_page(doc: dict, table: str, pngs: dict[str, bytes]) -> str:
    prof, emu = doc["profile"], doc["emulation"]
    facts = [("profile", f"{prof['name']} ({prof['source']})"), ("description", prof.get("description") or ""),
             ("ranks", f"{emu['ranks']}, {emu['topology']}" + (f", {emu['domains']} domains"
                                                               if emu["topology"] == "two_tier" else "")),
             ("scale k", f"{doc['scale']:g}" + (f" ({doc['scale_reason']})" if doc.get("scale_reason") else "")),
             ("netem", str(emu["netem"]))]
    facts += [(f"link {l['name']}", f"real {fmt_rate(l['rate_bps'])}, {fmt_time(l['latency_s'])} one way, jitter "
                                    f"{fmt_time(l['jitter_s'])}, loss {l['loss']:.3%}") for l in doc.get("links", [])]
    if doc.get("stragglers"):
        facts.append(("stragglers", "; ".join(doc["stragglers"]["entries"])))
    dl = "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts) + "</dl>"
    return _page(f"fabric run: {prof['name']}", [
        ("profile", "Profile", dl), ("topology", "Topology", topology_svg(doc)),
        ("tables", "Tables", f"<pre>{escape(table)}</pre>"), ("pictures", "Pictures", _pictures(pngs))])


def compare_page(doc: dict, table: str, docs: list[dict], pngs: dict[str, bytes]) -> str:
    fabrics = "".join(f"<h3>{escape(d['profile']['name'])}</h3>{topology_svg(d)}" for d in docs)
    facts = "<dl>" + "".join(f"<dt>{escape(f['name'])}</dt><dd>{escape(f['source'])}, k = {f['scale']:g}, "
                             f"results in {escape(f['results'])}/</dd>" for f in doc["fabrics"]) + "</dl>"
    return _page(f"fabric compare: {', '.join(f['name'] for f in doc['fabrics'])}", [
        ("profile", "Fabrics", facts), ("topology", "Topologies", fabrics),
        ("tables", "Table", f"<pre>{escape(table)}</pre>"), ("pictures", "Pictures", _pictures(pngs))])


def for_folder(folder: Path) -> list[Path]:
    """The pictures (PNG) and report.html of the run or compare in `folder`, from its JSON."""
    from fabric import compare, plots, report, results
    if (folder / "capture.json").is_file() and not (folder / "results.json").is_file():     # fabric exec --capture
        fig = plots.link_utilisation({"capture": json.loads((folder / "capture.json").read_text())})
        return plots.save({"link_utilisation": fig} if fig else {}, folder)
    if (folder / "compare.json").is_file():
        doc = compare.read_doc(folder)
        docs = [results.read(folder / f["results"]) for f in doc["fabrics"]]
        paths = plots.save(plots.compare_figures(doc, docs), folder)
        page = compare_page(doc, compare.table(doc), docs, {p.stem: p.read_bytes() for p in paths})
    else:
        doc = results.read(folder)
        paths = plots.save(plots.run_figures(doc), folder)
        page = run_page(doc, report.table(doc), {p.stem: p.read_bytes() for p in paths})
    (folder / "report.html").write_text(page)
    return paths + [folder / "report.html"]
