"""The defects of a researcher's tour of the UI (issue 22), each checked in a real headless Chromium
against the real server on the sample run: Building Blocks and class graphs linked both ways, the
mass the graph uses shown on its slider, the model's own top class named, the detail panel
following the class, the URL as the page's state. One server and one browser for the module
(test_ui's fixtures)."""
from __future__ import annotations

import test_ui
from test_ui import api, checked_page, classes, page_graph, pick, wait_graph

browser, server = test_ui.browser, test_ui.server  # the module-scoped fixtures, one per module

IMAGE = "099_goose/imagenet_15_99_orig.jpg"


def blocks_loaded(page, layer: str, image: str) -> None:
    page.wait_for_selector(f'body[data-loaded="{layer}|{image}"]', timeout=120_000)


def raised_class(server: str) -> tuple[str, dict]:
    """A class whose PageRank mass the rule raises above the slider's value (the default)."""
    for c in classes(server):
        s = api(server, f"/api/graph?class={c['name']}")["summit"]["settings"]
        if s["mass"] > s["mass_start"] + 1e-9:
            return c["name"], s
    raise AssertionError("no class of the sample has a raised mass")


# -- 1: Building Blocks <-> class graphs ----------------------------------------------------------
def test_blocks_and_class_graphs_link_both_ways(browser, server: str) -> None:
    name = "099_goose"
    with checked_page(browser, server, f"class={name}") as page:
        wait_graph(page, name)
        href = page.get_attribute("#nav-blocks", "href")
        assert href.startswith("/blocks.html") and f"pick={name}" in href
        # detail panel: each dataset example opens that image in Building Blocks
        node = page_graph(page, server)["nodes"][0]
        page.click(f'#graph g.node[data-node="{node["id"]}"]')
        page.wait_for_selector(f'#channel-detail[data-node="{node["id"]}"] #detail-examples a.to-blocks')
        ex = api(server, f"/api/channel/{node['layer']}/{node['channel']}")["examples"][0]
        first = page.get_attribute("#detail-examples a.to-blocks", "href")
        assert first.startswith("/blocks.html?") and f"layer={node['layer']}" in first
        assert ex["image"].replace("/", "%2F") in first
        # the top bar's link: the picker starts at the current class
        page.click("#nav-blocks")
        page.wait_for_selector("body[data-ready]")
        page.wait_for_function(f"() => document.querySelector('#pick-class').value === '{name}'")
        page.wait_for_selector(f'#pick-image option[value="{IMAGE}"]', state="attached")
        # an image: "open class graph" and "Summit class graphs" land on the class graph
        page.select_option("#pick-image", IMAGE)
        blocks_loaded(page, "fire7", IMAGE)
        assert page.get_attribute("[data-testid=graph-link]", "href") == f"/#class={name}"
        assert page.get_attribute("#to-summit", "href") == f"/#class={name}"
        page.click("#to-summit")
        wait_graph(page, name)


# -- 2: the mass the graph uses, on the slider ----------------------------------------------------
def test_mass_slider_shows_the_mass_used(browser, server: str) -> None:
    name, s = raised_class(server)
    share = lambda v: f"{round(v * 100, 1):g} %"  # noqa: E731 - the page's format
    with checked_page(browser, server, f"class={name}") as page:
        wait_graph(page, name)
        out = page.inner_text("#mass-value")
        assert share(s["mass_start"]) in out and f"uses {share(s['mass'])}" in out
        assert float(page.get_attribute("#mass", "data-used")) == s["mass"]
        # the overridden range [value, used) is marked under the slider, from the thumb's place
        band = page.locator("#mass-override")
        assert band.is_visible()
        lo, hi = (float(page.get_attribute("#mass", k)) for k in ("min", "max"))
        box, track = band.bounding_box(), page.locator("#mass").bounding_box()
        want = (s["mass"] - s["mass_start"]) * 100 / (hi - lo) * track["width"]
        assert abs(box["width"] - want) <= 0.2 * want + 4


# -- 5: the model's own top class -----------------------------------------------------------------
def test_blocks_names_the_models_top_class(browser, server: str) -> None:
    with checked_page(browser, server) as page:
        page.goto(f"{server}/blocks.html?image={IMAGE}")
        blocks_loaded(page, "fire7", IMAGE)
        data = api(server, f"/api/explain?image={IMAGE}")
        top = next(c for c in data["classes"] if c["rank"] == 1)
        assert page.inner_text("[data-testid=top-class]").startswith(f"model's top class: {top['name']}")
        link = data["links"][0]
        assert "model_rank" in link
        text = page.inner_text("[data-testid=link]")
        assert f"model rank {link['model_rank']}" in text
        assert "best run class" in text or "true class" in text


# -- 8: the detail panel follows the class ----------------------------------------------------------
def test_detail_panel_follows_the_class(browser, server: str) -> None:
    names = [c["name"] for c in classes(server)]
    with checked_page(browser, server, f"class={names[0]}") as page:
        wait_graph(page, names[0])
        ga = page_graph(page, server)
        other = next(n for n in names[1:] if {m["id"] for m in api(server, f"/api/graph?class={n}")["nodes"]}
                     - {m["id"] for m in ga["nodes"]})
        gb = api(server, f"/api/graph?class={other}")
        shared = {m["id"] for m in gb["nodes"]} & {m["id"] for m in ga["nodes"]}
        only_a = next(m for m in ga["nodes"] if m["id"] not in shared)
        page.click(f'#graph g.node[data-node="{only_a["id"]}"]')
        page.wait_for_selector(f'#channel-detail[data-node="{only_a["id"]}"] h3')
        page.evaluate("() => { document.querySelector('#channel-detail').scrollTop = 400; }")
        pick(page, other)
        # a unit not in the new graph: the panel closes (no stale inputs or highlighted class)
        page.wait_for_function("() => !document.querySelector('#channel-detail h3')")
        assert "unit=" not in page.url
        if shared:
            uid = sorted(shared)[0]
            page.click(f'#graph g.node[data-node="{uid}"]')
            page.wait_for_selector(f'#channel-detail[data-node="{uid}"] h3')
            assert page.evaluate("() => document.querySelector('#channel-detail').scrollTop") == 0
            pick(page, names[0])
            page.wait_for_function(f"""() => document.querySelector('#channel-detail[data-node="{uid}"]')
                && document.querySelector('#channel-detail').dataset.cls === '{names[0]}'""")
            cur = page.eval_on_selector_all("#detail-top-classes li.current", "els => els.map(e => e.dataset.class)")
            assert other not in cur


# -- 4: the address is the page's state -----------------------------------------------------------
def test_url_state_follows_back_paste_and_keeps_zoom(browser, server: str) -> None:
    a, b, c = (x["name"] for x in classes(server)[:3])
    with checked_page(browser, server, f"class={a}") as page:
        wait_graph(page, a)
        n0 = page.evaluate("() => history.length")
        pick(page, b)
        assert page.evaluate("() => history.length") == n0 + 1  # one entry per class pick
        page.go_back()
        wait_graph(page, a)
        assert page.locator(f'#class-pinned li.selected[data-class="{a}"]').count() == 1
        # a link pasted into the open tab
        page.evaluate(f"() => {{ location.hash = 'class={c}&method=topn&top_n=4'; }}")
        wait_graph(page, c)
        assert page.input_value("#method") == "topn" and page.input_value("#top-n") == "4"
        assert "top_n=4" in page.graph_urls[-1]
        # zoom by hand: kept in the address, restored on reload
        box = page.locator("#graph svg").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -300)
        page.wait_for_function("() => location.hash.includes('zoom=')")
        k = page.get_attribute("#graph svg", "data-k")
        page.reload()
        page.wait_for_selector("body[data-ready]")
        wait_graph(page, c)
        assert page.get_attribute("#graph svg", "data-k") == k


# -- 3: edge width from 0, by the share of the class's images --------------------------------------
def test_edge_width_by_share_from_zero_same_scale_in_compare(browser, server: str) -> None:
    a, b = (x["name"] for x in classes(server)[:2])

    def widths(page) -> dict:
        return {(s, t): w for s, t, w in page.eval_on_selector_all("#graph svg path.edge", "els => els.map(e => ["
                "e.dataset.source, e.dataset.target, +e.getAttribute('stroke-width')])")}

    with checked_page(browser, server, f"class={a}&method=topn") as page:
        wait_graph(page, a)
        g = page_graph(page, server)
        w = widths(page)
        assert len(w) == len(g["links"]) > 0
        for e in g["links"]:
            assert abs(w[e["source"], e["target"]] - max(0.5, 8 * e["fraction"])) < 1e-6
        keys = page.eval_on_selector_all("#legend line.width-key", "els => els.map(e => +e.getAttribute('stroke-width'))")
        assert keys == [2, 4, 8] and "share of the class's images" in page.inner_text("#legend")
        page.check("#compare-toggle")
        page.select_option("#compare-select", b)
        wait_graph(page, a, b)
        g = page_graph(page, server)
        w = widths(page)
        for e in g["links"]:
            assert abs(w[e["source"], e["target"]] - max(0.5, 8 * max(e["fraction_a"], e["fraction_b"]))) < 1e-6


# -- 12: the two mean activations named apart -------------------------------------------------------
def test_two_mean_activations_are_named_apart(browser, server: str) -> None:
    name = "099_goose"
    with checked_page(browser, server, f"class={name}") as page:
        wait_graph(page, name)
        node = page_graph(page, server)["nodes"][0]
        loc = page.locator(f'#graph g.node[data-node="{node["id"]}"]')
        loc.hover()
        page.wait_for_selector(f'#popover[data-node="{node["id"]}"]')
        assert "mean activation on the class's images" in page.inner_text("#popover")
        loc.click()
        page.wait_for_selector(f'#channel-detail[data-node="{node["id"]}"] .stats-table')
        n = api(server, "/api/meta")["dataset"]["n_images"]
        assert f"mean activation on all {n} images" in page.inner_text("#channel-detail .stats-table")


# -- 16: smaller ones -----------------------------------------------------------------------------
def test_compare_names_classes_filter_keeps_units_legend_has_minimum(browser, server: str) -> None:
    a, b = classes(server)[:2]
    with checked_page(browser, server, f"class={a['name']}&compare={b['name']}") as page:
        wait_graph(page, a["name"], b["name"])
        g = page_graph(page, server)
        node = g["nodes"][0]
        title = page.text_content(f'#graph g.node[data-node="{node["id"]}"] title')
        assert f"{a['label']}: " in title and f"{b['label']}: " in title and "a: " not in title
        assert f"({a['label']})" in page.inner_text("#rule-settings")
        # the count filter at its end keeps the units of the largest count
        page.locator("#hide-le").fill(page.get_attribute("#hide-le", "max"))
        page.wait_for_function("() => location.hash.includes('hide_le=') || +document.querySelector('#hide-le').max === 0")
        assert page.locator("#graph svg g.node").count() > 0
        # the node-size legend starts at the smallest node (0 %)
        assert page.locator("#legend rect.size-key").first.get_attribute("width") == "14"
        assert "adjacent layers" in page.get_attribute("label.pagerank-only", "title")


# -- 10: Building Blocks shows that it is loading ----------------------------------------------------
def test_blocks_loading_state(browser, server: str) -> None:
    held: list = []
    with checked_page(browser, server) as page:
        page.route("**/api/explain?*", lambda r: held.append(r))
        page.goto(f"{server}/blocks.html?image={IMAGE}")
        page.wait_for_selector("#loading:not([hidden])")
        assert "loads the model" in page.inner_text("#loading")  # the first explanation
        while not held:
            page.wait_for_timeout(50)
        held.pop().continue_()
        blocks_loaded(page, "fire7", IMAGE)
        assert page.locator("#loading").is_hidden() and "stale" not in page.get_attribute("#content", "class")
        # another layer: the old panels are marked stale until the new ones arrive
        page.click("[data-testid=layer-tab] >> text=fire8")
        page.wait_for_selector("#loading:not([hidden])")
        assert "stale" in page.get_attribute("#content", "class")
        while not held:
            page.wait_for_timeout(50)
        held.pop().continue_()
        blocks_loaded(page, "fire8", IMAGE)
        assert page.locator("#loading").is_hidden()


def test_create_app_warm_loads_the_model_in_the_background(sample_run) -> None:
    import threading

    from summit.serve.app import create_app
    app = create_app(sample_run, warm=True)
    for t in threading.enumerate():
        if t.name == "summit-blocks-warm":
            t.join()
    assert app.test_client().get(f"/api/explain?image={IMAGE}").status_code == 200
