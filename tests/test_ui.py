"""The web UI in a real headless Chromium (Playwright) against the real server on a sample run."""
from __future__ import annotations

import io
import json
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit
from urllib.request import urlopen

import numpy as np
import pytest
from PIL import Image
from werkzeug.serving import make_server

from summit.server import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1500, "height": 950}


@pytest.fixture(scope="module")
def server(sample_run: Path) -> Iterator[str]:
    """The real app on an ephemeral loopback port, in a background thread."""
    srv = make_server("127.0.0.1", 0, create_app(sample_run), threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    t.join()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium to run the UI tests)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server: str) -> Iterator:
    """A fresh page on the app; fails the test on JS errors or any request off the loopback server."""
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    host = urlsplit(server).netloc

    def route(r) -> None:
        u = urlsplit(r.request.url)
        if u.scheme in ("data", "blob") or u.netloc == host:
            r.continue_()
        else:
            foreign.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.extend([f"console: {m.text}"] if m.type == "error" else []))
    pg.goto(server + "/")
    pg.wait_for_selector("body[data-ready]")
    yield pg
    ctx.close()
    assert not errors, errors
    assert not foreign, f"requests off the local server: {foreign}"


def api(server: str, path: str) -> dict:
    with urlopen(server + path) as r:
        return json.load(r)


def wait_graph(page, cls: str, compare: str | None = None) -> None:
    sel = f'#graph svg[data-class="{cls}"]' + (f'[data-compare="{compare}"]' if compare else "")
    page.wait_for_selector(f"{sel} g.node")
    page.wait_for_function("() => !document.querySelector('#graph').classList.contains('busy')")


def test_pick_class_graph_and_channel_detail(page, server: str, artifacts: Path) -> None:
    classes = api(server, "/api/classes")["classes"]
    name = next(c["name"] for c in classes if "dalmatian" in c["name"])
    page.fill("#class-search", "dalmat")
    assert page.locator("#class-list li[data-class]").count() == 1
    page.click(f'#class-list li[data-class="{name}"]')
    wait_graph(page, name)
    g = api(server, f"/api/graph?class={name}&top_n=10&edges_per_node=3")
    assert page.locator("#graph svg g.node").count() == len(g["nodes"]) > 0
    assert page.locator("#graph svg path.edge").count() == len(g["links"]) > 0
    assert page.locator(f'#class-list li.selected[data-class="{name}"]').count() == 1
    assert page.locator(f'#embedding circle.selected[data-class="{name}"]').count() == 1

    # rows from input (bottom) to output (top)
    y = {n["layer"]: page.locator(f'#graph g.node[data-node="{n["id"]}"]').bounding_box()["y"]
         for n in g["nodes"]}
    layers = [l["name"] for l in api(server, "/api/meta")["layers"] if l["name"] in y]
    assert [y[l] for l in layers] == sorted((y[l] for l in layers), reverse=True)

    # hover: the node's paths stay, the rest fades
    node = max(g["nodes"], key=lambda n: (n["layer_index"] == 3, n["count"]))
    loc = page.locator(f'#graph g.node[data-node="{node["id"]}"]')
    loc.hover()
    assert page.locator("#graph g.node.faded").count() > 0
    assert page.locator("#graph path.edge.active").count() > 0
    assert "faded" not in (loc.get_attribute("class") or "")
    page.wait_for_load_state("networkidle")  # thumbnails loaded before the shot
    page.screenshot(path=str(artifacts / "ui_graph_hover.png"))

    loc.click()
    page.wait_for_selector(f'#channel-detail[data-node="{node["id"]}"] h3')
    page.wait_for_function(
        "() => [...document.querySelectorAll('#channel-detail .example img.patch')].every(i => i.complete && i.naturalWidth > 0)"
        " && document.querySelectorAll('#channel-detail .example img.patch').length > 0")
    src = page.locator("#channel-detail .example img.patch").first.get_attribute("src")
    assert src == f"/api/examples/{node['layer']}/{node['channel']}.jpg"
    d = api(server, f"/api/channel/{node['layer']}/{node['channel']}")
    assert page.locator("#channel-detail .example").count() == len(d["examples"])
    assert page.locator("#detail-top-classes li").count() == len(d["top_classes"])
    assert name in page.locator("#detail-top-classes").inner_text()
    page.mouse.move(5, 5)
    page.wait_for_load_state("networkidle")  # thumbnails loaded before the shot
    page.screenshot(path=str(artifacts / "ui_graph_detail.png"))

    # the sliders refetch
    page.locator("#top-n").fill("3")
    page.locator("#edges-per-node").fill("1")
    page.wait_for_function("() => location.hash.includes('top_n=3') && location.hash.includes('edges_per_node=1')")
    g3 = api(server, f"/api/graph?class={name}&top_n=3&edges_per_node=1")
    page.wait_for_function(f"() => document.querySelectorAll('#graph svg g.node').length === {len(g3['nodes'])}"
                           f" && document.querySelectorAll('#graph svg path.edge').length === {len(g3['links'])}")
    assert "top_n=3" in page.url and "edges_per_node=1" in page.url
    # Summit's PageRank rule is the default; the top N rule and ubiquitous units are one click away
    assert page.locator("#graph-method").input_value() == "pagerank"
    page.select_option("#graph-method", "topn")
    page.locator("#show-ubiquitous").check()
    gt = api(server, f"/api/graph?class={name}&method=topn&ubiquitous=show&top_n=3&edges_per_node=1")
    assert gt["summit"]["settings"]["method"] == "topn" and gt["summit"]["settings"]["excluded"] == []
    page.wait_for_function(f"() => document.querySelectorAll('#graph svg g.node').length === {len(gt['nodes'])}"
                           f" && location.hash.includes('method=topn') && location.hash.includes('ubiquitous=show')")


def test_unit_browser(page, server: str, artifacts: Path) -> None:
    page.click("#tab-units")
    page.select_option("#layer-select", "fire7")
    page.wait_for_selector('#unit-grid[data-layer="fire7"] .unit')
    layer = api(server, "/api/layer/fire7")
    assert page.locator("#unit-grid .unit").count() == layer["channels"] == 384
    best = max(layer["units"], key=lambda u: u["count"])
    first = page.locator("#unit-grid .unit").first
    assert first.get_attribute("data-node") == f"fire7:{best['channel']}"  # sorted by count
    page.wait_for_function("() => { const i = document.querySelector('#unit-grid .unit img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    page.check("#unit-active")
    assert page.locator("#unit-grid .unit").count() == sum(u["count"] > 0 for u in layer["units"])
    first.click()
    page.wait_for_selector(f'#channel-detail[data-node="fire7:{best["channel"]}"] .example img.patch')
    assert page.locator(f'#unit-grid .unit.selected[data-node="fire7:{best["channel"]}"]').count() == 1
    page.wait_for_load_state("networkidle")  # thumbnails loaded before the shot
    page.screenshot(path=str(artifacts / "ui_unit_browser.png"))


def test_compare_mode(page, server: str, artifacts: Path) -> None:
    classes = [c["name"] for c in api(server, "/api/classes")["classes"]]
    a, b = classes[1], classes[4]
    page.click(f'#class-list li[data-class="{a}"]')
    wait_graph(page, a)
    page.check("#compare-toggle")
    page.select_option("#compare-select", b)
    wait_graph(page, a, b)
    g = api(server, f"/api/compare?a={a}&b={b}&top_n=10&edges_per_node=3")
    assert page.locator("#graph svg g.node").count() == len(g["nodes"])
    for m in ("a", "b", "both"):
        want = sum(n["membership"] == m for n in g["nodes"])
        assert page.locator(f'#graph svg g.node[data-membership="{m}"]').count() == want
    assert a in page.locator("#legend").inner_text() and b in page.locator("#legend").inner_text()
    assert page.locator(f'#class-list li.compared[data-class="{b}"]').count() == 1
    page.mouse.move(5, 5)
    page.wait_for_load_state("networkidle")  # thumbnails loaded before the shot
    page.screenshot(path=str(artifacts / "ui_compare.png"))


def test_downloads(page, server: str, artifacts: Path) -> None:
    name = api(server, "/api/classes")["classes"][0]["name"]
    page.click(f'#class-list li[data-class="{name}"]')
    wait_graph(page, name)
    n_nodes = page.locator("#graph svg g.node").count()

    with page.expect_download() as dl:
        page.click("#download-json")
    data = json.loads(Path(dl.value.path()).read_text())
    assert dl.value.suggested_filename == f"summit-{name}.json"
    assert len(data["nodes"]) == n_nodes > 0 and data["summit"]["class"]["name"] == name

    with page.expect_download() as dl:
        page.click("#download-svg")
    svg = Path(dl.value.path()).read_bytes()
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    nodes = [e for e in root.iter(f"{ns}g") if "node" in (e.get("class") or "").split()]
    assert len(nodes) == n_nodes
    hrefs = [e.get("href", "") for e in root.iter(f"{ns}image")]
    assert hrefs and all(h.startswith("data:image/") for h in hrefs)  # self-contained
    (artifacts / "ui_download.svg").write_bytes(svg)

    with page.expect_download() as dl:
        page.click("#download-png")
    png = Path(dl.value.path()).read_bytes()
    im = Image.open(io.BytesIO(png))
    w = float(root.get("width", "0"))
    assert im.format == "PNG" and im.size[0] == round(2 * w)
    pixels = np.asarray(im.convert("RGB").resize((64, 64))).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 50  # thumbnails drawn, not a blank canvas
    (artifacts / "ui_download.png").write_bytes(png)
