"""report.html: self-contained, every section there; rendered in headless Chromium with no
console errors (needs chromium and chromium-driver, which make test installs)."""
import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
from fabric import compare, html, results  # noqa: E402

STORED = Path(__file__).parent / "data" / "isl-800g"


@pytest.fixture
def run_dir(tmp_path):
    shutil.copytree(STORED, tmp_path / "run")
    html.for_folder(tmp_path / "run")
    return tmp_path / "run"


def test_the_page_is_one_file_with_every_section(run_dir):
    page = (run_dir / "report.html").read_text()
    assert [m for m in re.findall(r'<section id="(\w+)">', page)] == ["profile", "topology", "tables", "pictures"]
    assert page.count('src="data:image/png;base64,') == 3
    # nothing fetched: no URL other than the SVG namespace, no scripts
    assert re.findall(r'(?:src|href)="(?!data:)', page) == [] and "<script" not in page
    assert "TPOT" in page and "rank 5 late by fixed 10 us" in page and "isl: 800Gbit/s, 2.5us" in page


def test_topology_draws_every_rank_in_its_domain():
    doc = json.loads((STORED / "results.json").read_text())
    svg = html.topology_svg(doc)
    assert svg.count("<circle") == 8 and "domain 1" in svg and "uplink bridge" in svg
    assert "ranks: nvlink4: 3.6Tbit/s, 2us" in svg and "uplink: isl: 800Gbit/s, 2.5us" in svg
    flat = dict(doc, emulation=dict(doc["emulation"], topology="flat", domains=1))
    assert "uplink" not in html.topology_svg(flat) and html.topology_svg(flat).count("<circle") == 8


@pytest.mark.parametrize("topology, ranks, switches", [
    ({"kind": "rail", "nodes": 2, "gpus_per_node": 4, "intra": "nv", "rail": "ib", "spines": 2}, 8, 2 + 4 + 2),
    ({"kind": "torus", "dims": [4, 4], "intra": "nv", "link": "ib"}, 16, 16),
    ({"kind": "constellation", "satellites": 19, "spacing": "150m", "ranks_per_satellite": 1, "ranks_at": [0, 7],
      "intra": "nv", "isl": "ib", "range": "200m"}, 2, 19),
    ({"kind": "two_tier", "domains": 2, "ranks_per_domain": 4, "intra": "nv", "inter": "ib"}, 8, 3),
])
def test_topology_draws_what_the_topology_lays_out(topology, ranks, switches):
    """Any kind: its switches where its layout puts them, every rank beside its own, each link
    class in the legend with its real rate and latency."""
    from fabric.plan import build
    from fabric.profile import parse
    prof = parse({"name": "t", "scale": 1000, "links": {"nv": {"rate": "3.6Tbit/s", "latency": "2us"},
                                                        "ib": {"rate": "400Gbit/s", "latency": "1.5us"}},
                  "topology": topology}, "t.yaml")
    plan = build(prof, 1000.0)
    doc = results.document(plan, [], "none")
    doc["links"] = [{"name": n, "rate_bps": prof.link(n).rate_bps, "latency_s": prof.link(n).latency_s}
                    for n in prof.used_links()]
    svg = html.topology_svg(doc)
    assert svg.count("<circle") == ranks and svg.count("<rect") == switches
    assert svg.count("<line") == len(plan.links)
    assert "nv: 3.6Tbit/s, 2us" in svg and "ib: 400Gbit/s, 1.5us" in svg
    positions = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', svg)
    assert all(0 < float(x) < 640 and 0 < float(y) < 420 for x, y in positions)


def test_a_compare_page_has_each_fabric(tmp_path):
    doc = json.loads((STORED / "results.json").read_text())
    for name in ("1-a", "2-b"):
        results.write(tmp_path / name, doc)
    compare.write(tmp_path, compare.document([doc, doc], ["1-a", "2-b"], "w.yaml"))
    html.for_folder(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 2 and page.count('src="data:image/png') == 1 and "times worse" in page


def _chromium():
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs chromium and chromium-driver (make test installs them as root)")
def test_chromium_renders_it_without_console_errors(run_dir):
    pytest.importorskip("selenium")
    driver = _chromium()
    try:
        driver.get((run_dir / "report.html").as_uri())
        ids = driver.execute_script("return [...document.querySelectorAll('section')].map(s => s.id)")
        loaded = driver.execute_script("return [...document.images].map(i => i.complete && i.naturalWidth > 0)")
        svg = driver.execute_script("return document.querySelector('svg').getBoundingClientRect().height")
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        shot = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    assert ids == ["profile", "topology", "tables", "pictures"]
    assert loaded == [True] * 3 and svg > 100
    assert errors == []
    (run_dir / "screenshot.png").write_bytes(shot)
    from PIL import Image
    image = Image.open(run_dir / "screenshot.png").convert("L")
    inked = sum(image.histogram()[:200])                     # pixels darker than light grey
    assert image.size == (1200, 900) or image.size[0] >= 1000
    assert inked > 0.01 * image.size[0] * image.size[1]    # text and drawing, not a blank page
