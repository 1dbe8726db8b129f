"""The Building Blocks page for misclassified images, in a real headless Chromium against the real
server (test_blocks_ui's fixtures): the Misclassified panel's links (the URL-hash contract with the
class-graph page) and its channel table, nothing of it for a correct image, and the picker's
"mistakes only" filter. Screenshot: artifacts/blocks_mistake.png."""
from __future__ import annotations

import json
from pathlib import Path

import test_blocks_ui
from test_blocks_ui import loaded

from summit.graph.build import class_graph
from summit.run.store import Run

base_url, page = test_blocks_ui.base_url, test_blocks_ui.page  # the module-scoped server, a page per test

EAGLE = "022_bald_eagle/imagenet_17_22_crop_tl.jpg"  # taken for kite, not a class of the run
SPOONBILL = "129_spoonbill/imagenet_14_129_crop_tl.jpg"  # taken for quail; goose is the best run class
GOOSE = "099_goose/imagenet_15_99_orig.jpg"  # classified correctly


def wrong_images(run: Run) -> list[str]:
    return [r["path"] for r in run.predictions().to_pylist() if not r["correct"]]


def hrefs(page) -> dict[str, str]:
    return page.eval_on_selector_all("#mistake-links a", "as => Object.fromEntries(as.map(a => "
                                     "[a.dataset.testid, a.getAttribute('href')]))")


def test_misclassified_panel_links_and_channel_table(page, base_url, sample_run: Path, artifacts: Path):
    run = Run(sample_run)
    page.goto(f"{base_url}/blocks.html?image={EAGLE}&layer=fire9")
    loaded(page, "fire9", EAGLE)
    assert page.locator("[data-testid=mistake]").is_visible()
    head = page.inner_text("[data-testid=mistake-head]")
    assert head.startswith("true class 022_bald_eagle") and "the model says kite (" in head
    assert "not a class of this run" in head
    assert hrefs(page) == {"mistake-true-graph": "/#class=022_bald_eagle",
                           "mistake-wrong-graph": "/#class=022_bald_eagle&images=wrong",
                           "mistake-correct-vs-wrong": "/#class=022_bald_eagle&images=correct-vs-wrong"}
    assert "not a class of this run" in page.inner_text("[data-testid=mistake-missing-predicted]")
    # the table: the layer's 10 strongest channels, marked in the graphs class_graph builds
    true_g, wrong_g = class_graph(run, "022_bald_eagle"), class_graph(run, "022_bald_eagle", images="wrong")
    rows = page.locator("[data-testid=mistake-row]")
    assert rows.count() == 10
    marks = page.eval_on_selector_all("[data-testid=mistake-row]", "rs => rs.map(r => [+r.dataset.channel, "
                                      "Object.fromEntries([...r.querySelectorAll('td[data-role]')].map(td => "
                                      "[td.dataset.role, td.dataset.in]))])")
    for ch, m in marks:
        node = f"fire9:{ch}"
        assert m == {"true": "1" if node in true_g else "0", "predicted": "", "wrong": "1" if node in wrong_g else "0"}
    assert any(m["true"] == "1" for _, m in marks) and any(m["wrong"] == "1" for _, m in marks)
    assert page.locator("[data-testid=mistake-row].toward-wrong").count() > 0
    page.wait_for_load_state("networkidle")
    page.locator("[data-testid=mistake]").screenshot(path=str(artifacts / "blocks_mistake.png"))
    page.screenshot(path=str(artifacts / "blocks_mistake_page.png"), full_page=True)
    # a channel of the table opens its dataset images, as the chips do
    page.locator("[data-testid=mistake-row] .chan").first.click()
    page.wait_for_selector("[data-testid=explore-image]")
    # the true class's link lands on its class graph
    page.click("[data-testid=mistake-true-graph]")
    page.wait_for_selector("#graph svg g.node")
    page.wait_for_function("() => document.querySelector('#graph-title').textContent.includes('022_bald_eagle')")
    page.go_back()
    loaded(page, "fire9", EAGLE)


def test_compare_link_goes_to_the_best_run_class(page, base_url):
    page.goto(f"{base_url}/blocks.html?image={SPOONBILL}&layer=fire9")
    loaded(page, "fire9", SPOONBILL)
    assert hrefs(page)["mistake-compare"] == "/#class=129_spoonbill&compare=099_goose"
    assert "the run class it ranks highest is 099_goose" in page.inner_text("[data-testid=mistake-head]")
    assert page.locator("th", has_text="099_goose graph").count() == 1  # the best run class's column
    page.click("[data-testid=layer-tab] >> text=fire8")  # the table follows the layer
    loaded(page, "fire8", SPOONBILL)
    assert "10 strongest fire8 channels" in page.inner_text("[data-testid=mistake-table]")
    assert page.locator("[data-testid=mistake-row]").count() == 10


def test_prediction_that_is_a_run_class_links_its_graph(page, base_url):
    """No sample image is taken for another class of the run: the explanation is the real one with
    its predicted output relabelled as the run class 099_goose (the page only reads these fields)."""
    def relabel(route) -> None:
        data = route.fetch().json()
        data["mistake"]["predicted"].update(run_class=1, run_name="099_goose")
        route.fulfill(status=200, content_type="application/json", body=json.dumps(data))

    page.route("**/api/explain?*", relabel)
    page.goto(f"{base_url}/blocks.html?image={EAGLE}&layer=fire9")
    loaded(page, "fire9", EAGLE)
    h = hrefs(page)
    assert h["mistake-predicted-graph"] == "/#class=099_goose"
    assert h["mistake-compare"] == "/#class=022_bald_eagle&compare=099_goose"


def test_correct_image_has_no_panel(page, base_url):
    """From a misclassified image to a correct one (picked in the same page): the panel goes."""
    page.goto(f"{base_url}/blocks.html?image={EAGLE}&layer=fire9")
    loaded(page, "fire9", EAGLE)
    assert page.locator("[data-testid=mistake-row]").count() == 10
    page.select_option("[data-testid=pick-class]", "099_goose")
    page.wait_for_selector(f'[data-testid=pick-image] option[value="{GOOSE}"]', state="attached")
    assert page.locator("[data-testid=pick-image] option[data-wrong]").count() == 0  # goose: all correct
    page.select_option("[data-testid=pick-image]", GOOSE)
    loaded(page, "fire9", GOOSE)
    assert page.locator("[data-testid=mistake]").count() == 1 and page.locator("[data-testid=mistake]").is_hidden()
    assert page.locator("[data-testid=mistake-row]").count() == 0
    assert page.locator("[data-testid=link]").count() > 0  # the rest of the page as before


def test_mistakes_only_lists_the_predictions_wrong_images(page, base_url, sample_run: Path):
    wrong = wrong_images(Run(sample_run))
    page.goto(f"{base_url}/blocks.html")
    page.wait_for_selector("body[data-ready]")
    options = "sel => [...sel.options].filter(o => o.value).map(o => o.value)"
    page.check("[data-testid=mistakes-only]")
    page.wait_for_function("() => document.querySelector('#pick-image').options.length > 1")
    assert page.eval_on_selector("[data-testid=pick-image]", options) == wrong
    assert page.inner_text("#mistakes-count") == f"({len(wrong)})"
    page.select_option("[data-testid=pick-class]", "471_cannon")
    page.wait_for_function("() => document.querySelector('#pick-image').options.length > 1")
    assert page.eval_on_selector("[data-testid=pick-image]", options) == [p for p in wrong if p.startswith("471_cannon/")]
    # without the filter the class's images are all listed, its misclassified ones marked
    page.uncheck("[data-testid=mistakes-only]")
    page.wait_for_selector('[data-testid=pick-image] option[value="471_cannon/imagenet_13_471_orig.jpg"]', state="attached")
    marked = page.eval_on_selector("[data-testid=pick-image]", "sel => [...sel.options].filter(o => o.dataset.wrong)"
                                   ".map(o => o.value)")
    assert marked == [p for p in wrong if p.startswith("471_cannon/")] and len(marked) == 2
    assert "taken for" in page.locator("[data-testid=pick-image] option[data-wrong]").first.inner_text()
    page.select_option("[data-testid=pick-image]", marked[0])
    loaded(page, "fire7", marked[0])
    assert page.locator("[data-testid=mistake]").is_visible()
