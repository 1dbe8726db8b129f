"""The Building Blocks page (frontend/blocks.html) in a real headless Chromium against the real
server: pick an image, switch layers, hover a cell, see groups, jump to the class graph and back,
open a graph node's dataset image, upload a file. Screenshots go to artifacts/."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from summit.pipeline.data import BUNDLED_SAMPLE
from summit.serve.app import create_app
from summit.serve.http import make_http_server

CHROMIUM = "/usr/bin/chromium"
IMAGE = "099_goose/imagenet_15_99_orig.jpg"
EXPECTED_ERROR = "status of 415"  # the refused upload in test_examples_and_upload


@pytest.fixture(scope="module")
def base_url(sample_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app on a private copy of the sample run (uploads are written into it)."""
    run = shutil.copytree(sample_run, tmp_path_factory.mktemp("blocks-ui") / "run")
    srv = make_http_server(create_app(run), "127.0.0.1", 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    t.join()


@pytest.fixture
def page(base_url: str) -> Iterator:
    """A page that fails the test on JS errors, failed requests and requests off the server."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (scripts/test.sh installs Debian's chromium)"
    from playwright.sync_api import sync_playwright
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1500, "height": 1100})
        host = urlsplit(base_url).netloc
        pg.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        pg.on("console", lambda m: problems.extend(
            [f"console: {m.text}"] if m.type == "error" and EXPECTED_ERROR not in m.text else []))
        pg.on("request", lambda r: problems.extend(
            [] if urlsplit(r.url).scheme in ("data", "blob") or urlsplit(r.url).netloc == host else [f"foreign: {r.url}"]))
        pg.set_default_timeout(120_000)  # explanations take seconds on a busy 2-core machine
        yield pg
        browser.close()
    assert not problems, problems


def loaded(page, layer: str, image: str) -> None:
    page.wait_for_selector(f'body[data-loaded="{layer}|{image}"]')


def test_pick_switch_hover_groups_and_class_graph_round_trip(page, base_url, artifacts):
    page.goto(base_url + "/blocks.html")
    page.wait_for_selector("body[data-ready]")
    assert page.locator("#content").is_hidden()
    # pick an image from the dataset
    page.select_option("[data-testid=pick-class]", "099_goose")
    page.wait_for_selector(f'[data-testid=pick-image] option[value="{IMAGE}"]', state="attached")
    page.select_option("[data-testid=pick-image]", IMAGE)
    loaded(page, "fire7", IMAGE)
    assert page.locator("[data-testid=dict-cell]").count() == 13 * 13
    assert page.locator("[data-testid=class-row]").first.inner_text().startswith("1. goose")
    assert "layer=fire7" in page.url and "image=099_goose" in page.url
    # switch layers
    page.click("[data-testid=layer-tab] >> text=fire4")
    loaded(page, "fire4", IMAGE)
    assert page.locator("[data-testid=dict-cell]").count() == 14 * 14  # 27x27 positions pooled
    page.click("[data-testid=layer-tab] >> text=fire9")
    loaded(page, "fire9", IMAGE)
    # hover a grid cell: its channels, class attribution and what builds it one layer down
    cell = page.locator("[data-testid=dict-cell]").nth(6 * 13 + 6)
    cell.hover()
    page.wait_for_selector("[data-testid=cell-title] >> text=cell (6, 6) of fire9")
    assert page.locator("[data-testid=cell-channels] .chan").count() == 5
    assert page.locator("[data-testid=cell-box]").count() == 1
    page.wait_for_selector("[data-testid=built-from] canvas")
    assert page.text_content("[data-testid=built-from] h2") == "Built from fire8"
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifacts / "blocks_hover.png"), full_page=True)
    # neuron groups: six by default, their region map on the image, their links to classes
    assert page.locator("[data-testid=group]").count() == 6
    page.click("[data-testid=overlay-groups]")
    assert "overlay=groups" in page.url
    page.locator("[data-testid=group]").nth(1).hover()
    page.fill("[data-testid=groups]", "4")
    page.dispatch_event("[data-testid=groups]", "change")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=group]').length === 4")
    loaded(page, "fire9", IMAGE)
    page.screenshot(path=str(artifacts / "blocks_groups.png"), full_page=True)
    # jump to the class graph and back
    link = page.locator("[data-testid=graph-link]").first
    assert link.get_attribute("href") == "/#class=099_goose"
    link.click()
    page.wait_for_selector("#graph svg g.node")
    page.wait_for_function("() => document.querySelector('#graph-title').textContent.includes('099_goose')")
    page.go_back()
    loaded(page, "fire9", IMAGE)
    assert page.locator("[data-testid=group]").count() == 4 and "groups=4" in page.url
    assert page.input_value("[data-testid=pick-image]") == IMAGE


def test_graph_node_opens_its_dataset_images(page, base_url):
    page.goto(f"{base_url}/blocks.html?image={IMAGE}&layer=fire8")
    loaded(page, "fire8", IMAGE)
    chips = page.locator("[data-testid=node-chip]")
    assert chips.count() > 0 and page.locator("[data-testid=node-chip].active-here").count() > 0
    chips.first.click()
    page.wait_for_selector("[data-testid=explore-image]")
    page.wait_for_selector("[data-testid=node-built-from] canvas")  # what builds the node in this image
    assert page.text_content("[data-testid=node-built-from] h2") == "Built from fire7"
    target = page.locator("[data-testid=explore-image]").nth(1)
    name = target.inner_text()
    target.click()
    loaded(page, "fire8", name)
    assert page.inner_text("[data-testid=image-name]") == name
    page.go_back()
    loaded(page, "fire8", IMAGE)


def test_examples_and_upload(page, base_url, artifacts, tmp_path):
    page.goto(base_url + "/blocks.html")
    page.wait_for_selector("body[data-ready]")
    page.select_option("[data-testid=source]", "examples")
    page.wait_for_selector("[data-testid=pick-example] option >> nth=2", state="attached")
    example = page.locator("[data-testid=pick-example] option").nth(1).get_attribute("value")
    page.select_option("[data-testid=pick-example]", example)
    loaded(page, "fire7", example)
    page.select_option("[data-testid=source]", "upload")
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("[data-testid=upload]", str(bad))
    page.wait_for_selector("[data-testid=error] >> text=not an image")
    page.set_input_files("[data-testid=upload]", str(BUNDLED_SAMPLE / "915_yurt" / "imagenet_08_915_orig.jpg"))
    page.wait_for_function("() => (document.body.dataset.loaded || '').startsWith('fire7|') && location.search.includes('upload=')")
    assert page.inner_text("[data-testid=error]") == ""
    assert "yurt" in page.inner_text("[data-testid=classes]")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifacts / "blocks_upload.png"), full_page=True)
