"""A class's correct and wrong images in the browser (frontend/mistakes.js, docs/UI.md): the
images menu (all | correct | wrong | correct vs wrong, hash images=), the part graphs with
their captions, the correct-vs-wrong view in membership colours, and the Mistaken-for list with
its links. Screenshots go to artifacts/."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_mistakes_api  # noqa: E402
import test_ui  # noqa: E402
from test_mistakes_api import EAGLE, GOOSE, JEEP  # noqa: E402
from test_ui import api, checked_page, serving, shot  # noqa: E402

browser = test_ui.browser  # the module-scoped fixtures
mixed_run, unsplit_run = test_mistakes_api.mixed_run, test_mistakes_api.unsplit_run
COLORS = {"a": "#0072b2", "b": "#e69f00", "both": "#cc79a7"}  # compare.js's membership colours
LEGEND = ("only in the correct images' graph", "only in the mistakes' graph", "in both")


@pytest.fixture(scope="module")
def server(sample_run: Path) -> Iterator[str]:
    with serving(sample_run) as base:
        yield base


def wait_view(page, cls: str, images: str | None) -> None:
    """The graph of `cls` drawn for the images view (None: all images), the page idle."""
    sel = f'#graph svg[data-class="{cls}"]' + (f'[data-images="{images}"]' if images else ":not([data-images])")
    page.wait_for_selector(f"{sel} g.node")
    page.wait_for_function("() => !document.querySelector('#graph').classList.contains('busy')")


def hash_of(page) -> dict[str, str]:
    return dict(p.split("=", 1) for p in page.evaluate("location.hash.slice(1)").split("&") if p)


def chosen(page) -> str:
    """The images menu's view ("" while comparing classes or runs)."""
    return page.input_value("#images-select")


def option(page, view: str) -> tuple[bool, str]:
    """Whether the menu's view is disabled, and its tooltip."""
    return tuple(page.eval_on_selector(f'#images-select option[value="{view}"]', "o => [o.disabled, o.title]"))


def downloads(page, stem: str) -> tuple[dict, str]:
    """The JSON and SVG downloads of the view, checked to be named `stem`.json / .svg."""
    out = []
    for kind in ("json", "svg"):
        with page.expect_download() as dl:
            page.click(f"#download-{kind}")
        assert dl.value.suggested_filename == f"{stem}.{kind}"
        out.append(Path(dl.value.path()).read_text())
    return json.loads(out[0]), out[1]


def drawn(page) -> set[str]:
    return set(page.eval_on_selector_all("#graph svg g.node", "els => els.map(e => e.dataset.node)"))


def test_wrong_images_from_the_hash(browser, server: str) -> None:
    """#class=X&images=wrong: the graph of the class's misclassified images, named in the title
    and in the downloads."""
    with checked_page(browser, server, f"class={EAGLE}&images=wrong") as page:
        wait_view(page, EAGLE, "wrong")
        title = page.inner_text("#graph-title")
        assert title.startswith("bald eagle: wrong images") and "1 of its 4 images (misclassified)" in title
        want = api(server, f"/api/graph?class={EAGLE}&images=wrong&method=pagerank")
        assert want["graph"]["images"] == "wrong" and drawn(page) == {n["id"] for n in want["nodes"]}
        assert chosen(page) == "wrong" and hash_of(page)["images"] == "wrong"
        data, svg = downloads(page, f"summit-{EAGLE}-wrong")
        assert data == want
        assert "bald eagle: wrong images" in svg and "bald eagle, wrong images only: 1 of its 4 images (misclassified)" in svg


def test_control_switches_parts(browser, server: str) -> None:
    """The menu switches the graph and the hash; a part turns a class comparison off."""
    with checked_page(browser, server, f"class={EAGLE}") as page:
        wait_view(page, EAGLE, None)
        everything = drawn(page)
        assert chosen(page) == "all" and "images" not in hash_of(page)
        page.select_option("#images-select", "correct")
        wait_view(page, EAGLE, "correct")
        assert "3 of its 4 images (classified correctly)" in page.inner_text("#graph-title")
        assert hash_of(page)["images"] == "correct" and chosen(page) == "correct"
        u = urlsplit(page.graph_urls[-1])
        assert u.path == "/api/graph" and "images=correct" in u.query
        page.select_option("#images-select", "all")
        wait_view(page, EAGLE, None)
        assert drawn(page) == everything and "images" not in hash_of(page)
        page.check("#compare-toggle")
        page.select_option("#compare-select", GOOSE)
        page.wait_for_selector(f'#graph svg[data-class="{EAGLE}"][data-compare="{GOOSE}"] g.node')
        assert chosen(page) == ""  # a comparison is none of the views of one class's images
        page.select_option("#images-select", "wrong")
        wait_view(page, EAGLE, "wrong")
        assert not page.is_checked("#compare-toggle") and "compare" not in hash_of(page)
        page.check("#compare-toggle")  # and a comparison turns the part off
        page.wait_for_selector(f'#graph svg[data-class="{EAGLE}"][data-compare]:not([data-images]) g.node')
        assert "images" not in hash_of(page) and chosen(page) == ""


def test_views_a_class_has_not_are_disabled(browser, server: str) -> None:
    """099_goose has no wrong images: its wrong and correct-vs-wrong views are disabled with the
    reason, and a link to its wrong images shows all of them saying why; 609_jeep has no correct ones."""
    with checked_page(browser, server, f"class={GOOSE}&images=wrong") as page:
        wait_view(page, GOOSE, None)
        assert page.inner_text("#images-note") == "no wrong view: all 4 images are classified correctly; showing all images"
        assert "images" not in hash_of(page) and chosen(page) == "all"
        for v in ("wrong", "correct-vs-wrong"):
            assert option(page, v) == (True, "all 4 images are classified correctly")
        assert not option(page, "correct")[0]
        assert page.is_hidden("#mistaken-for")  # never mistaken
        page.evaluate(f"() => {{ location.hash = 'class={JEEP}'; }}")
        wait_view(page, JEEP, None)
        assert page.inner_text("#images-note") == \
            "no correct or correct vs wrong view: none of its 8 images is classified correctly"
        assert option(page, "correct") == (True, "none of its 8 images is classified correctly")
        page.select_option("#images-select", "wrong")
        wait_view(page, JEEP, "wrong")
        assert "8 of its 8 images (misclassified)" in page.inner_text("#graph-title")


def test_correct_vs_wrong_view(browser, server: str, artifacts: Path) -> None:
    """#class=X&images=correct-vs-wrong: /api/mistakes drawn in the class compare's membership
    colours, its legend naming the parts, both parts' counts in the popover."""
    with checked_page(browser, server, f"class={EAGLE}&images=correct-vs-wrong") as page:
        wait_view(page, EAGLE, "correct-vs-wrong")
        want = api(server, f"/api/mistakes?class={EAGLE}&method=pagerank")
        ch = want["summit"]["change"]
        title = page.inner_text("#graph-title")
        assert title.startswith("bald eagle: correct vs wrong images")
        assert f"3 correct, 1 wrong images · change {ch['score']:.3f}" in title
        legend = page.text_content("#legend")
        assert all(t in legend for t in LEGEND)
        marks = page.eval_on_selector_all("#graph g.node", "els => els.map(e => [e.dataset.node, e.dataset.membership, "
                                          "e.querySelector('.frame').getAttribute('stroke')])")
        assert {n: m for n, m, _ in marks} == {n["id"]: n["membership"] for n in want["nodes"]}
        assert {m for _, m, _ in marks} == {"a", "b", "both"}
        assert all(stroke == COLORS[m] for _, m, stroke in marks)
        keys = page.eval_on_selector_all("#legend rect.membership-key", "els => els.map(e => [e.dataset.membership, "
                                         "e.getAttribute('fill')])")
        assert dict(keys) == COLORS
        n = next(x for x in want["nodes"] if x["membership"] == "a")
        page.hover(f'#graph g.node[data-node="{n["id"]}"]')
        page.wait_for_selector(f'#popover[data-node="{n["id"]}"]')
        assert f"correct: {n['count_a']} of 3, wrong: {n['count_b']} of 1 images (only in the correct images' graph)" \
            in page.inner_text("#popover")
        page.click(f'#graph g.node[data-node="{n["id"]}"]')  # the detail panel: both parts' counts
        page.wait_for_selector(f'#channel-detail[data-node="{n["id"]}"] tr.part-count')
        assert page.locator("#channel-detail tr.part-count").all_inner_texts() == [
            f"selected in the bald eagle images classified correctly\t{n['count_a']} of 3 images",
            f"selected in the bald eagle images classified wrongly\t{n['count_b']} of 1 images"]
        page.mouse.move(5, 5)
        shot(page, artifacts, "mistakes_correct_vs_wrong.png")
        data, svg = downloads(page, f"summit-{EAGLE}-correct-vs-wrong")
        assert data == want
        assert "bald eagle: correct vs wrong images" in svg and "only in the mistakes' graph" in svg
        assert "3 correctly classified images vs 1 misclassified" in svg


def test_mistaken_for_links(browser, mixed_run: Path, artifacts: Path) -> None:
    """The list names what the class's mistakes were predicted as; a class of the run links to its
    graph and to the class compare, another output says it is not a class of this run."""
    with serving(mixed_run) as base, checked_page(browser, base, f"class={EAGLE}&images=wrong") as page:
        wait_view(page, EAGLE, "wrong")
        page.wait_for_selector("#mistaken-for li")
        items = page.locator("#mistaken-for li")
        assert items.count() == 2
        assert items.nth(0).inner_text() == "goose 2 of 6 images · compare"
        assert items.nth(1).inner_text() == "kite 1 of 6 images · not a class of this run"
        assert items.nth(1).locator("a").count() == 0
        shot(page, artifacts, "mistakes_mistaken_for.png")
        page.click(f'#mistaken-for li[data-class="{GOOSE}"] a.to-class')
        wait_view(page, GOOSE, None)
        assert hash_of(page)["class"] == GOOSE and "images" not in hash_of(page)
        page.go_back()
        wait_view(page, EAGLE, "wrong")
        page.wait_for_selector(f'#mistaken-for li[data-class="{GOOSE}"] a.to-compare')
        page.click(f'#mistaken-for li[data-class="{GOOSE}"] a.to-compare')
        page.wait_for_selector(f'#graph svg[data-class="{EAGLE}"][data-compare="{GOOSE}"] g.node')
        assert page.is_checked("#compare-toggle") and hash_of(page)["compare"] == GOOSE


def test_a_run_without_the_split(browser, unsplit_run: Path) -> None:
    """Every part is off, saying why; the Mistaken-for list (predictions only) is still there."""
    with serving(unsplit_run) as base, checked_page(browser, base, f"class={EAGLE}&images=correct-vs-wrong") as page:
        wait_view(page, EAGLE, None)
        why = "this run has no correct / wrong split of its images (re-run summit aggregate with --split-correct)"
        assert all(option(page, v) == (True, why) for v in ("correct", "wrong", "correct-vs-wrong"))
        assert page.inner_text("#images-note") == f"no correct vs wrong view: {why}; showing all images"
        page.wait_for_selector(f'#mistaken-for li[data-class="{GOOSE}"]')
