"""More of the researcher's tour of the UI (issue 22, items 6, 7, 9, 11, 13, 14, 16 and Summit's
interactions), each checked in a real headless Chromium against the real server on the sample run:
room for the graph, a popover beside the path it shows, the keyboard, unit tiles, the class list
and the embedding, large graphs. One server and one browser for the module (test_ui's fixtures)."""
from __future__ import annotations

from pathlib import Path

import test_ui
from test_ui import api, checked_page, classes, page_graph, pick, shot, wait_graph
from test_ui_tour import IMAGE, blocks_loaded

browser, server = test_ui.browser, test_ui.server  # the module-scoped fixtures, one per module

GOOSE = "099_goose"


def box(page, sel: str) -> dict:
    return page.locator(sel).first.bounding_box()


def overlaps(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def open_detail(page) -> None:
    page.locator("#graph g.node").first.click()
    page.wait_for_selector("body.detail-open #channel-detail h3")
    page.wait_for_function("() => { const s = document.querySelector('#graph svg'), b = document.querySelector('#graph');"
                           " return s && +s.getAttribute('width') === b.clientWidth; }")


def focused(page) -> str:
    return page.evaluate("() => { const a = document.activeElement; return a.dataset.node || a.dataset.class || a.id || a.tagName; }")


# -- 6: room for the graph --------------------------------------------------------------------------
def test_graph_gets_the_room(browser, server: str, artifacts: Path) -> None:
    with checked_page(browser, server, f"class={GOOSE}") as page:
        page.set_viewport_size({"width": 1440, "height": 900})
        wait_graph(page, GOOSE)
        open_detail(page)
        g = box(page, "#graph")
        assert g["y"] <= 250 and g["height"] >= 640, g  # was y 349, 551 px high
        # the rule bar and the title row: no more than three toolbar rows together
        assert box(page, "#graph-view .toolbar")["height"] <= 40
        # the legend's text at its size (10 px), not shrunk with the graph's zoom
        size = page.evaluate("() => { const t = document.querySelector('#legend svg text');"
                             " return t.getBoundingClientRect().height; }")
        assert size >= 10
        assert page.evaluate("() => [...document.querySelectorAll('#legend svg')].every(s =>"
                             " Math.abs(+s.getAttribute('width') - s.viewBox.baseVal.width) < 0.5)")
        shot(page, artifacts, "ui2_room_1440.png")
        page.set_viewport_size({"width": 1024, "height": 700})
        page.wait_for_function("() => +document.querySelector('#graph svg').getAttribute('width') === document.querySelector('#graph').clientWidth")
        g = box(page, "#graph")
        assert g["width"] >= 480 and g["height"] >= 400, g  # was 384 x 250
        assert page.locator("#legend").is_hidden()  # narrow: the legend is one click away
        page.click("#legend-toggle")
        assert page.locator("#legend").is_visible() and page.get_attribute("#legend-toggle", "aria-pressed") == "true"
        page.click("#legend-toggle")
        shot(page, artifacts, "ui2_room_1024.png")
        # Building Blocks at 1024 px: nothing wider than the window, the Position panel inside it
        page.goto(f"{server}/blocks.html?image={IMAGE}")
        blocks_loaded(page, "fire7", IMAGE)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1024
        d, dic = box(page, "#detail"), box(page, "[data-testid=dict]")
        assert d["x"] >= dic["x"] + dic["width"] and d["x"] + d["width"] <= 1024  # beside the dictionary
        assert abs(d["y"] - box(page, "section.panel >> nth=1")["y"]) < 1 and d["width"] >= 280
        shot(page, artifacts, "ui2_blocks_1024.png")


# -- 7: the popover beside the path, not over it ------------------------------------------------------
def test_popover_keeps_the_path_in_view(browser, server: str, artifacts: Path) -> None:
    with checked_page(browser, server, f"class={GOOSE}") as page:
        wait_graph(page, GOOSE)
        ids = {n["id"] for n in page_graph(page, server)["nodes"]}
        for nid in [n for n in ("fire8:288", "fire7:195", "fire5:191") if n in ids]:
            loc = page.locator(f'#graph g.node[data-node="{nid}"]')
            loc.hover()
            page.wait_for_selector(f'#popover:not([hidden])[data-node="{nid}"]')
            p, b = box(page, "#popover"), loc.bounding_box()
            assert p["x"] >= b["x"] + b["width"] or p["x"] + p["width"] <= b["x"]  # beside the node
            path = page.eval_on_selector_all("#graph g.node:not(.faded)", "els => els.map(e => "
                                             "{ const r = e.getBoundingClientRect(); return [e.dataset.node, r.x, r.y, r.width, r.height]; })")
            covered = [n for n, x, y, w, h in path if overlaps(p, {"x": x, "y": y, "width": w, "height": h})]
            assert not covered, (nid, covered)  # 288's popover covered fire9:258 and fire7 nodes of its path
            g = box(page, "#graph")
            assert g["y"] - 1 <= p["y"] and p["y"] + p["height"] <= g["y"] + g["height"] + 1
            if nid == "fire8:288":
                shot(page, artifacts, "ui2_popover_path.png")
            page.mouse.move(5, 5)


# -- 9: the keyboard --------------------------------------------------------------------------------
def test_keyboard_keeps_focus_and_reaches_everything(browser, server: str, artifacts: Path) -> None:
    with checked_page(browser, server, f"class={GOOSE}") as page:
        wait_graph(page, GOOSE)
        # the class list is one tab stop (arrow keys move along it); Enter keeps the focus on the class
        assert page.locator("#class-pinned li[tabindex='0'], #class-list li[tabindex='0']").count() == 1
        page.focus("#class-pinned li")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        target = focused(page)
        page.keyboard.press("Enter")
        wait_graph(page, target)
        page.wait_for_load_state("networkidle")  # the similarity order redraws the list once more
        assert page.evaluate("() => document.activeElement.closest('#class-pinned') !== null") and focused(page) == target
        # the first graph node: a fixed number of Tab presses from the search box, whatever the classes
        page.focus("#class-search")
        for presses in range(1, 40):
            page.keyboard.press("Tab")
            if page.evaluate("() => !!document.activeElement.closest('#graph g.node')"):
                break
        assert presses <= 25, presses
        assert page.locator("#graph g.node[tabindex='0']").count() == 1
        # arrow keys walk the graph: down goes towards the input, sideways along the row
        start = focused(page)
        page.keyboard.press("ArrowDown")
        below = focused(page)
        layers = [layer["name"] for layer in api(server, "/api/meta")["layers"]]
        assert layers.index(below.split(":")[0]) < layers.index(start.split(":")[0])
        page.wait_for_selector(f'#popover:not([hidden])[data-node="{below}"]')
        page.keyboard.press("ArrowRight")
        side = focused(page)
        assert side.split(":")[0] == below.split(":")[0]
        page.keyboard.press("Enter")
        page.wait_for_selector(f'#channel-detail[data-node="{side}"] h3')
        # the skip link: the page's first Tab stop, straight to the graph
        page.reload()
        page.wait_for_selector("body[data-ready]")
        wait_graph(page, target)
        page.keyboard.press("Tab")
        assert focused(page) == "skip-graph"
        page.keyboard.press("Enter")
        assert page.evaluate("() => !!document.activeElement.closest('#graph g.node')")
        # Building Blocks: classes, dictionary cells, channels and groups take the focus and act
        page.goto(f"{server}/blocks.html?image={IMAGE}")
        blocks_loaded(page, "fire7", IMAGE)
        page.focus("[data-testid=class-row] >> nth=1")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid=class-row].selected >> nth=0")
        assert "selected" in page.get_attribute("[data-testid=class-row] >> nth=1", "class")
        assert page.locator("#dict .cell[tabindex='0']").count() == 1  # one tab stop for the grid
        page.focus("#dict .cell[tabindex='0']")
        page.wait_for_selector("[data-testid=cell-title]")
        assert page.inner_text("[data-testid=cell-title]").startswith("cell (0, 0)")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowDown")
        assert page.inner_text("[data-testid=cell-title]").startswith("cell (1, 1)")
        assert page.evaluate("() => document.activeElement.dataset.cell") == page.get_attribute("#dict .cell.hover", "data-cell")
        page.keyboard.press("Tab")  # into the panel: the cell's strongest channels
        page.focus("[data-testid=cell-channels] .chan >> nth=0")
        ch = page.get_attribute("[data-testid=cell-channels] .chan >> nth=0", "data-channel")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid=node-list]")
        assert f"fire7:{ch}" in page.text_content("[data-testid=node-list]")
        page.focus("[data-testid=group] >> nth=2")
        page.wait_for_function("() => document.querySelector('#view-canvas').dataset.group === '2'")
        page.focus("[data-testid=node-chip] >> nth=0")
        page.keyboard.press(" ")
        page.wait_for_selector("[data-testid=node-list] [data-testid=explore-image]")
        shot(page, artifacts, "ui2_blocks_keyboard.png")


# -- 13: unit tiles -----------------------------------------------------------------------------------
def test_unit_tiles_show_the_class_and_the_selection(browser, server: str, artifacts: Path) -> None:
    with checked_page(browser, server, "tab=units&layer=fire7") as page:
        page.wait_for_selector('#unit-grid[data-layer="fire7"] .unit')
        layer = api(server, "/api/layer/fire7")
        best = max(layer["units"], key=lambda u: u["count"])
        first = page.locator("#unit-grid .unit").first
        top = first.locator(".top")
        assert best["top_classes"][0]["name"] in top.inner_text()
        assert top.evaluate("e => e.scrollWidth <= e.clientWidth && getComputedStyle(e).textOverflow !== 'ellipsis'")
        first.click()
        page.wait_for_selector(f'#channel-detail[data-node="fire7:{best["channel"]}"] h3')
        other = page.locator("#unit-grid .unit").nth(3)
        other.hover()
        style = "e => { const s = getComputedStyle(e); return [s.borderColor, s.boxShadow, s.backgroundColor]; }"
        hovered, selected = other.evaluate(style), first.evaluate(style)
        assert hovered[0] != selected[0] and hovered[1] != selected[1] and hovered[2] != selected[2]
        shot(page, artifacts, "ui2_unit_tiles.png")


# -- 14: the class list and the embedding ------------------------------------------------------------
def test_class_list_scrolls_to_top_sorts_both_ways_marks_embedding(browser, server: str, artifacts: Path) -> None:
    with checked_page(browser, server, f"class={GOOSE}") as page:
        page.set_viewport_size({"width": 1440, "height": 700})
        wait_graph(page, GOOSE)
        page.wait_for_selector("#embedding circle")
        # the classes whose rows are in view are outlined in the embedding (Summit)
        def visible_rows() -> set[str]:
            return set(page.evaluate("""() => { const l = document.querySelector('#class-list').getBoundingClientRect();
                return [...document.querySelectorAll('#class-list li[data-class]')].filter(li => {
                  const r = li.getBoundingClientRect(); return r.bottom > l.top + 2 && r.top < l.bottom - 2; })
                  .map(li => li.dataset.class); }"""))

        def outlined() -> set[str]:
            return set(page.eval_on_selector_all("#embedding circle.in-list", "els => els.map(e => e.dataset.class)"))

        rows = visible_rows()
        assert rows and outlined() == rows and len(rows) < len(classes(server)) - 1
        page.evaluate("() => { const l = document.querySelector('#class-list'); l.scrollTop = l.scrollHeight; }")
        page.wait_for_function("() => document.querySelector('#class-list').scrollTop > 0")
        page.wait_for_function("""() => { const l = document.querySelector('#class-list').getBoundingClientRect();
            const rows = [...document.querySelectorAll('#class-list li[data-class]')].filter(li => {
              const r = li.getBoundingClientRect(); return r.bottom > l.top + 2 && r.top < l.bottom - 2; })
              .map(li => li.dataset.class).sort().join();
            return rows === [...document.querySelectorAll('#embedding circle.in-list')].map(e => e.dataset.class).sort().join(); }""")
        assert outlined() == visible_rows() != rows
        # hovering a row marks and names its class in the embedding
        row = page.locator("#class-list li[data-class]").last
        name = row.get_attribute("data-class")
        row.hover()
        assert page.eval_on_selector_all("#embedding circle.hovered", "els => els.map(e => e.dataset.class)") == [name]
        label = next(c["label"] for c in classes(server) if c["name"] == name)
        assert page.locator(f'#embedding text.hovered[data-class="{name}"]').text_content() == label
        shot(page, artifacts, "ui2_class_hover.png")
        # a pick scrolls the list back to its top (the classes most like the new one)
        row.click()
        wait_graph(page, name)
        assert page.evaluate("() => document.querySelector('#class-list').scrollTop") == 0
        # accuracy both ways
        page.select_option("#class-sort", "accuracy-asc")
        acc = {c["name"]: c["accuracy"] for c in classes(server)}
        order = page.eval_on_selector_all("#class-list li[data-class]", "els => els.map(e => e.dataset.class)")
        assert [acc[n] for n in order] == sorted(acc[n] for n in order) and acc[order[0]] < acc[order[-1]]
        assert "csort=accuracy-asc" in page.url
        page.select_option("#class-sort", "accuracy")
        order = page.eval_on_selector_all("#class-list li[data-class]", "els => els.map(e => e.dataset.class)")
        assert [acc[n] for n in order] == sorted((acc[n] for n in order), reverse=True)
        # the embedding's points move to the other layer's layout (animated), labels come back after
        page.select_option("#sim-layer", "fire5")
        page.wait_for_selector('#embedding svg[data-layer="fire5"]:not([data-moving])')
        assert page.get_attribute("#embedding svg", "data-moves") == "1"  # moved there, not redrawn
        emb = api(server, "/api/embedding?layer=fire5")
        xs = page.eval_on_selector_all("#embedding circle", "els => els.map(e => [e.dataset.class, +e.getAttribute('cx')])")
        ref = {p["name"]: p["x"] for p in emb["points"]}
        assert [n for n, _ in sorted(xs, key=lambda t: t[1])] == sorted(ref, key=ref.get)
        assert page.locator(f'#embedding text[data-class="{name}"]').count() == 1
        pick(page, GOOSE)


# -- 11: large graphs: an overview, an edge filter, lighter edges, no 3 px labels ----------------------
def test_large_graph_overview_and_edge_filter(browser, server: str, artifacts: Path) -> None:
    with checked_page(browser, server, f"class={GOOSE}&mass=0.5") as page:
        wait_graph(page, GOOSE)
        g = page_graph(page, server)
        assert len(g["nodes"]) > 120 and len(g["links"]) > 400  # Summit's rule at 50 % of the mass
        svg = "#graph svg"
        k = float(page.get_attribute(svg, "data-k"))
        assert k < 0.6 and "tiny" in page.get_attribute(svg, "class")  # unit numbers at 3 px are not drawn
        assert page.locator("#graph g.node text").first.is_hidden()
        assert float(page.get_attribute("#graph path.edge >> nth=0", "stroke-opacity")) < 0.5
        assert page.get_attribute("#graph g.overview", "display") == "none"  # the whole graph is in view
        # the edge filter (in the browser, kept in the address): edges of at least v % of the images
        n_urls = len(page.graph_urls)
        for v in (75, 100):
            page.locator("#edge-min").fill(str(v))
            want = [e for e in g["links"] if e["fraction"] >= v / 100 - 1e-9]
            page.wait_for_function(f"() => document.querySelectorAll('#graph path.edge').length === {len(want)}")
            assert page.locator("#graph g.node").count() == len(g["nodes"])  # the units stay
            assert f"edge_min={v}" in page.url and f"({len(want)} edges shown)" in page.inner_text("#graph-title")
        assert len(page.graph_urls) == n_urls  # no refetch
        page.locator("#edge-min").fill("0")
        page.wait_for_function(f"() => document.querySelectorAll('#graph path.edge').length === {len(g['links'])}")
        # at 1:1 the overview shows where the view is; a click there moves the view to it
        page.click("#zoom-reset")
        assert "tiny" not in (page.get_attribute(svg, "class") or "")
        assert page.locator("#graph g.node text").first.is_visible()
        ov = page.locator("#graph g.overview")
        page.wait_for_function("() => document.querySelector('#graph g.overview').getAttribute('display') !== 'none'")
        before = [int(v) for v in ov.get_attribute("data-view").split(",")]
        assert before[:2] == [0, 0]
        shot(page, artifacts, "ui2_overview.png")
        frame = page.locator("#graph g.overview rect.ov-frame").bounding_box()
        page.mouse.click(frame["x"] + frame["width"] * 0.75, frame["y"] + frame["height"] * 0.5)
        after = [int(v) for v in ov.get_attribute("data-view").split(",")]
        centre = ((after[0] + after[2]) / 2, (after[1] + after[3]) / 2)
        width, height = page.evaluate("() => { const r = document.querySelector('#graph .content .rows rect');"
                                      " return [+r.getAttribute('width'), 8 * +r.getAttribute('height')]; }")
        assert abs(centre[0] - 0.75 * width) < 0.05 * width and abs(centre[1] - 0.5 * height) < 0.1 * height
        page.wait_for_function("() => location.hash.includes('zoom=')")  # kept in the address
        shot(page, artifacts, "ui2_overview_moved.png")
        # the figure draws what the page shows: the edge filter holds there too
        page.locator("#edge-min").fill("100")
        want = sum(e["fraction"] >= 1 - 1e-9 for e in g["links"])
        page.wait_for_function(f"() => document.querySelectorAll('#graph path.edge').length === {want}")
        text = page.evaluate("() => window.summit.figure({ format: 'svg' })")
        assert text.count('class="edge"') == want


# -- 16 (rest) and Summit's edge hover --------------------------------------------------------------
def test_labels_inside_named_compare_patches_and_edge_hover(browser, server: str, artifacts: Path) -> None:
    a, b = classes(server)[:2]
    with checked_page(browser, server, f"class={GOOSE}") as page:
        wait_graph(page, GOOSE)
        page.wait_for_selector("#embedding circle.selected")
        # zoomed in far from the selected class: its label stays inside the drawing, a triangle points to it
        sel = box(page, "#embedding circle.selected")
        far = max(page.eval_on_selector_all("#embedding circle", "els => els.map(e => { const r = e.getBoundingClientRect();"
                                            " return [r.x + r.width / 2, r.y + r.height / 2]; })"),
                  key=lambda p: (p[0] - sel["x"]) ** 2 + (p[1] - sel["y"]) ** 2)
        page.mouse.move(*far)
        for _ in range(6):
            page.mouse.wheel(0, -300)
        page.wait_for_function("() => +document.querySelector('#embedding svg').dataset.k >= 4")
        frame = box(page, "#embedding svg")
        for t in page.locator("#embedding text").all():
            r = t.bounding_box()
            assert frame["x"] - 0.5 <= r["x"] and r["x"] + r["width"] <= frame["x"] + frame["width"] + 0.5, t.text_content()
            assert frame["y"] - 0.5 <= r["y"] and r["y"] + r["height"] <= frame["y"] + frame["height"] + 0.5, t.text_content()
        assert page.locator(f'#embedding text.marked[data-class="{GOOSE}"]').count() == 1
        assert page.locator(f'#embedding path.off-view[data-class="{GOOSE}"]').count() == 1
        shot(page, artifacts, "ui2_embedding_label_inside.png")
        # Summit's edge hover: both units stay, the popover shows both units' examples
        e = page_graph(page, server)["links"][0]
        hit = page.locator(f'#graph path.edge-hit[data-source="{e["source"]}"][data-target="{e["target"]}"]')
        mid = hit.evaluate("p => { const q = p.getPointAtLength(p.getTotalLength() / 2), m = p.getScreenCTM();"
                           " return [m.a * q.x + m.c * q.y + m.e, m.b * q.x + m.d * q.y + m.f]; }")
        page.mouse.move(*mid)
        page.wait_for_selector(f'#popover:not([hidden])[data-node="{e["source"]}>{e["target"]}"]')
        assert sorted(page.eval_on_selector_all("#graph g.node:not(.faded)", "els => els.map(e => e.dataset.node)")) \
            == sorted([e["source"], e["target"]])
        assert page.locator("#graph path.edge.active").count() == 1
        k = api(server, "/api/meta")["examples_k"]
        for nid in (e["source"], e["target"]):
            assert page.locator(f'#popover .pop-examples[data-node="{nid}"] img.patch').count() == k
        assert f"influence count {e['count']}" in page.inner_text("#popover")
        shot(page, artifacts, "ui2_edge_hover.png")
        page.mouse.move(5, 5)
        page.wait_for_selector("#popover[hidden]", state="attached")
        assert page.locator("#graph g.node.faded").count() == 0
        # a comparison's figure caption names both classes, not "a" and "b"
        page.evaluate(f"() => {{ location.hash = 'class={a['name']}&compare={b['name']}'; }}")
        wait_graph(page, a["name"], b["name"])
        svg = page.evaluate("() => window.summit.figure({ format: 'svg' })")
        assert "a = " not in svg and "b = " not in svg
        assert f"{a['label']}: " in svg and f"compared with {b['label']}: " in svg
        # Building Blocks: a unit's images where it fired most, each with its patch
        page.goto(f"{server}/blocks.html?image={IMAGE}")
        blocks_loaded(page, "fire7", IMAGE)
        page.click("[data-testid=node-chip] >> nth=0")
        page.wait_for_selector("[data-testid=node-list] [data-testid=explore-image]")
        rows = page.locator("[data-testid=node-list] [data-testid=explore-image]")
        assert rows.count() > 0 and page.locator("[data-testid=node-list] [data-testid=example-patch]").count() == rows.count()
        ch = page.get_attribute("[data-testid=node-chip] >> nth=0", "data-channel")
        style = page.get_attribute("[data-testid=example-patch] >> nth=1", "style")
        assert f"/api/examples/fire7/{ch}.jpg" in style and "background-position" in style
        page.locator("[data-testid=node-list] [data-testid=example-patch] >> nth=0").scroll_into_view_if_needed()
        shot(page, artifacts, "ui2_blocks_node_patches.png")
