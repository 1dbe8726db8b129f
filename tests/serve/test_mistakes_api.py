"""A class's correctly and wrongly classified images in the server (summit/serve/mistakes.py,
docs/MISTAKES.md): /api/graph?images=correct|wrong, /api/mistakes (correct vs wrong), and
/api/mistaken-for, on the sample run (split on by default) and on runs made here: one without
the split, and one whose bald eagle folder also holds two goose images (mistaken for a class of
the run)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from summit.graph.build import class_graph, mistaken_for
from summit.graph.cache import graph_bytes
from summit.graph.diff import mistakes_diff
from summit.graph.options import defaults
from summit.pipeline.aggregator import AggregateConfig, aggregate
from summit.run.store import Run
from summit.serve.app import create_app

SAMPLE = Path(__file__).resolve().parents[2] / "summit" / "data" / "sample"
EAGLE, GOOSE, JEEP = "022_bald_eagle", "099_goose", "609_jeep"
MOVED = ("imagenet_15_99_flip.jpg", "imagenet_15_99_orig.jpg")  # goose images put in the eagle's folder


def mixed_dataset(root: Path) -> Path:
    """Three sample classes, two goose images filed as bald eagles (classified as goose: the
    eagle is mistaken for a class of the run)."""
    for c in (EAGLE, GOOSE, JEEP):
        shutil.copytree(SAMPLE / c, root / c)
    for f in MOVED:
        (root / GOOSE / f).rename(root / EAGLE / f)
    return root


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    out = root / "run"
    aggregate(AggregateConfig(model="squeezenet1_1", batch_size=16), mixed_dataset(root / "data"), out, progress=False)
    return out


@pytest.fixture(scope="module")
def unsplit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixed dataset aggregated without the correct / wrong split."""
    root = tmp_path_factory.mktemp("unsplit")
    out = root / "run"
    aggregate(AggregateConfig(model="squeezenet1_1", batch_size=16, split_correct=False),
              mixed_dataset(root / "data"), out, progress=False)
    return out


@pytest.fixture(scope="module")
def client(sample_run: Path) -> FlaskClient:
    return create_app(sample_run).test_client()


def get(client: FlaskClient, url: str, status: int = 200) -> dict:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.data[:300])
    return r.get_json()


@pytest.mark.parametrize("query", ["", "&method=topn&top_n=5&keep_dangling=1", "&mass=0.2"])
@pytest.mark.parametrize("part", ["correct", "wrong"])
def test_part_graph_is_class_graph(client: FlaskClient, sample_run: Path, part: str, query: str) -> None:
    """images=correct|wrong: the bytes of class_graph(run, cls, images=part) under the same settings."""
    api = client.application.extensions["summit"]
    params = api.graph_params(dict(p.split("=") for p in query.split("&") if p), ())
    r = client.get(f"/api/graph?class={EAGLE}&images={part}{query}")
    assert r.status_code == 200, r.data[:300]
    want = class_graph(Run(sample_run), EAGLE, params, images=part)
    assert r.data == graph_bytes(want)
    g = json.loads(r.data)
    assert g["graph"]["images"] == part and g["summit"]["class"]["n_images"] == {"correct": 3, "wrong": 1}[part]


def test_all_images_graph_is_unchanged(sample_run: Path) -> None:
    """No images (or images=all) answers the all-images graph, one cache entry apart from the parts'."""
    client = create_app(sample_run).test_client()
    api = client.application.extensions["summit"]
    before = client.get(f"/api/graph?class={EAGLE}").data
    assert before == graph_bytes(class_graph(Run(sample_run), EAGLE))
    misses = api.graph.misses
    wrong = client.get(f"/api/graph?class={EAGLE}&images=wrong").data
    correct = client.get(f"/api/graph?class={EAGLE}&images=correct").data
    assert api.graph.misses == misses + 2 and len({before, wrong, correct}) == 3
    for q in ("", "&images=all", "&images="):
        assert client.get(f"/api/graph?class={EAGLE}{q}").data == before
    assert api.graph.misses == misses + 2  # all-images requests hit the entry made before the parts
    assert client.get(f"/api/graph?class={EAGLE}&images=wrong").data == wrong
    assert api.graph.misses == misses + 2


def test_stored_graphs_only_for_all_images(sample_run: Path) -> None:
    """A stored (precomputed) graph answers the default all-images request, never a part's."""
    c = create_app(sample_run).test_client()
    api = c.application.extensions["summit"]
    api.stored_graphs.get = lambda ci: b'{"stored": true}'
    assert c.get(f"/api/graph?class={EAGLE}").data == b'{"stored": true}'
    assert json.loads(c.get(f"/api/graph?class={EAGLE}&images=wrong").data)["graph"]["images"] == "wrong"


def test_mistakes_is_mistakes_diff(client: FlaskClient, sample_run: Path) -> None:
    """/api/mistakes: graph.diff.mistakes_diff in /api/against's shape, with both parts' image
    counts and what the class is mistaken for; kept per class and settings."""
    m = client.application.extensions["summit_mistakes"]
    misses = m.diffs.misses
    c = mistakes_diff(Run(sample_run), EAGLE)
    g = get(client, f"/api/mistakes?class={EAGLE}")
    s = g["summit"]
    assert get(client, "/api/meta")["split_correct"] is True
    assert s["kind"] == "diff" and s["class"]["name"] == EAGLE and s["images"] == {"a": "correct", "b": "wrong"}
    assert (s["class"]["n_images_a"], s["class"]["n_images_b"]) == (3, 1)
    assert s["change"] == {"score": c.score, "edge_score": c.edge_score, "counts": c.counts()}
    assert s["change"]["counts"]["nodes"]["lost"] > 0 and s["change"]["counts"]["nodes"]["gained"] > 0
    nodes = {n["id"]: n for n in g["nodes"]}
    assert set(nodes) == set(c.graph.nodes)
    keys = ("membership", "count_a", "count_b", "fraction_a", "fraction_b", "layer", "channel")
    for v, x in c.graph.nodes(data=True):
        assert {k: nodes[v][k] for k in keys} == {k: x[k] for k in keys}
    assert {(e["source"], e["target"], e["membership"]) for e in g["links"]} == \
        set(c.graph.edges(data="membership"))
    assert s["mistaken_for"] == [{"output": 21, "label": "kite", "class": None, "name": None, "images": 1}]
    assert m.diffs.misses == misses + 1
    get(client, f"/api/mistakes?class={EAGLE}")
    assert m.diffs.misses == misses + 1  # kept
    topn = get(client, f"/api/mistakes?class={EAGLE}&method=topn&top_n=3&keep_dangling=1")
    want = mistakes_diff(Run(sample_run), EAGLE, defaults().replace(method="topn", top_n=3, keep_dangling=True))
    assert topn["summit"]["change"]["score"] == want.score and m.diffs.misses == misses + 2


def test_mistaken_for(client: FlaskClient, mixed_run: Path) -> None:
    """/api/mistaken-for: build.mistaken_for with the run class's name where there is one."""
    assert get(client, f"/api/mistaken-for?class={JEEP}") == {
        "class": JEEP, "label": "jeep", "n_images": 8, "n_correct": 0, "n_wrong": 8,
        "mistaken_for": [{**x, "name": None} for x in mistaken_for(client.application.extensions["summit"].run, JEEP)]}
    assert get(client, f"/api/mistaken-for?class={GOOSE}")["mistaken_for"] == []
    mixed = create_app(mixed_run).test_client()
    body = get(mixed, f"/api/mistaken-for?class={EAGLE}")
    assert (body["n_images"], body["n_correct"], body["n_wrong"]) == (6, 3, 3)
    assert body["mistaken_for"] == [{"output": 99, "label": "goose", "class": 1, "name": GOOSE, "images": 2},
                                    {"output": 21, "label": "kite", "class": None, "name": None, "images": 1}]
    assert get(mixed, f"/api/mistakes?class={EAGLE}")["summit"]["mistaken_for"] == body["mistaken_for"]


def test_export_names_the_part(client: FlaskClient) -> None:
    r = client.get(f"/api/export/{EAGLE}.json?images=wrong")
    assert r.status_code == 200 and f"filename=summit-{EAGLE}-wrong.json" in r.headers["Content-Disposition"]
    assert r.data == client.get(f"/api/graph?class={EAGLE}&images=wrong").data
    r = client.get(f"/api/export/{EAGLE}.json")
    assert f"filename=summit-{EAGLE}.json" in r.headers["Content-Disposition"]


@pytest.mark.parametrize("url,message", [
    (f"/api/graph?class={GOOSE}&images=wrong",
     "class 099_goose has no wrong images: 4 of its 4 images are classified correctly"),
    (f"/api/graph?class={JEEP}&images=correct",
     "class 609_jeep has no correct images: 0 of its 8 images are classified correctly"),
    (f"/api/graph?class={EAGLE}&images=mistakes", "unknown images 'mistakes'; valid: all, correct, wrong"),
    (f"/api/mistakes?class={GOOSE}", "class 099_goose has no wrong images: 4 of its 4 images are classified correctly"),
    (f"/api/mistakes?class={JEEP}", "class 609_jeep has no correct images"),
    ("/api/mistakes", "missing parameter 'class'"),
    ("/api/mistakes?class=gose", "unknown class 'gose'; close matches: goose"),
    (f"/api/mistakes?class={EAGLE}&images=wrong", "unknown parameter(s) images"),
    (f"/api/mistaken-for?class={EAGLE}&top=3", "unknown parameter(s) top; valid: class"),
    (f"/api/compare?a={EAGLE}&b={GOOSE}&images=wrong", "unknown parameter(s) images"),
    (f"/api/export/{EAGLE}.json?compare={GOOSE}&images=wrong", "images is for one class's graph, not a comparison"),
])
def test_refusals(client: FlaskClient, url: str, message: str) -> None:
    """400 with one line; nothing kept."""
    m = client.application.extensions["summit_mistakes"]
    before = m.diffs.misses, len(m.diffs._done)
    err = get(client, url, 400)["error"]
    assert message in err and "\n" not in err
    assert len(m.diffs._done) == before[1]


def test_a_run_without_the_split(unsplit_run: Path) -> None:
    """The meta says so; the part endpoints refuse in one line; the rest is as before."""
    c = create_app(unsplit_run).test_client()
    assert get(c, "/api/meta")["split_correct"] is False
    for url in (f"/api/graph?class={EAGLE}&images=wrong", f"/api/graph?class={GOOSE}&images=correct",
                f"/api/mistakes?class={EAGLE}"):
        err = get(c, url, 400)["error"]
        assert err == f"{unsplit_run} has no correct/wrong split of its images; re-run `summit aggregate` " \
                      "with --split-correct", url
    assert get(c, f"/api/graph?class={EAGLE}")["summit"]["class"]["n_images"] == 6
    assert get(c, f"/api/graph?class={EAGLE}&images=all")["summit"]["class"]["n_images"] == 6
    assert [x["name"] for x in get(c, f"/api/mistaken-for?class={EAGLE}")["mistaken_for"]] == [GOOSE, None]
