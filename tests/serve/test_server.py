"""JSON API of `summit serve` on a real run: happy paths, validation messages, path traversal."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import pytest
from cli_runner import CliRunner
from flask.testing import FlaskClient
from PIL import Image

from summit.cli import build_parser
from summit.graph.build import class_graph, compare_graph
from summit.graph.embedding import class_embedding
from summit.graph.export import to_json
from summit.run.store import Run
from summit.serve.app import create_app
from summit.serve.common import STATIC_DIR, HostCheck, Memo
from summit.serve.http import make_http_server

SECRET = "TOP-SECRET-OUTSIDE-THE-RUN"


@pytest.fixture(scope="module")
def run_dir(sample_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the sample run with one rendered feature vis, a symlink pointing out of
    the run, and a secret file next to the run directory."""
    root = tmp_path_factory.mktemp("served")
    (root / "secret.txt").write_text(SECRET)
    out = root / "run"
    shutil.copytree(sample_run, out)
    fv = out / "featurevis" / "fire5"
    fv.mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(fv / "7.png")
    (fv / "8.png").symlink_to(root / "secret.txt")
    (out / "examples" / "fire5" / "9.jpg").unlink()
    (out / "examples" / "fire5" / "9.jpg").symlink_to(root / "secret.txt")
    return out


@pytest.fixture(scope="module")
def client(run_dir: Path) -> FlaskClient:
    return create_app(run_dir).test_client()


@pytest.fixture(scope="module")
def run(run_dir: Path) -> Run:
    return Run(run_dir)


def get_json(client: FlaskClient, url: str, status: int = 200) -> dict:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.data[:300])
    assert r.mimetype == "application/json"
    return r.get_json()


# -- happy paths ------------------------------------------------------------------------------
def test_meta(client: FlaskClient, run: Run) -> None:
    m = get_json(client, "/api/meta")
    assert m["model"] == "squeezenet1_1" and m["weights"] == run.meta["weights"]
    assert [(l["name"], l["channels"]) for l in m["layers"]] == list(run.channels.items())
    assert [p["name"] for p in m["pairs"]] == run.pairs
    assert m["dataset"]["n_images"] == sum(run.classes.column("n_images").to_pylist())
    assert m["dataset"]["n_classes"] == len(run.class_names) == 19
    assert m["has_examples"] is True
    assert m["selections"] == ["mass0.01", "mass0.03", "top5"] and m["default_selection"] == "mass0.03"
    assert m["ubiquitous"] == run.meta["ubiquitous"]["channels"]
    assert m["featurevis"]["fire5"] == [7]  # 8.png links out of the run: not listed
    assert all(m["featurevis"][l] == [] for l in run.layers if l != "fire5")


def test_classes(client: FlaskClient, run: Run) -> None:
    rows = get_json(client, "/api/classes")["classes"]
    assert [r["name"] for r in rows] == run.class_names
    for r, ref in zip(rows, run.classes.to_pylist(), strict=True):
        assert (r["class"], r["n_images"], r["n_correct"]) == (ref["class"], ref["n_images"], ref["n_correct"])
        assert r["accuracy"] == pytest.approx(ref["n_correct"] / ref["n_images"])
        assert r["hist"] == ref["hist"] and sum(r["hist"]) == r["n_images"]
        assert (r["wnid"], r["label"]) == (ref["wnid"], ref["label"])
    goose = next(r for r in rows if r["name"] == "099_goose")  # the bundled sample's index_name folders
    assert (goose["wnid"], goose["label"]) == ("n01855672", "goose")


def test_class_by_wnid_or_label(client: FlaskClient) -> None:
    for q in ("099_goose", "n01855672", "goose", "Goose"):
        c = get_json(client, f"/api/graph?class={q}")["summit"]["class"]
        assert (c["name"], c["wnid"], c["label"]) == ("099_goose", "n01855672", "goose"), q


def test_graph_matches_library(client: FlaskClient, run: Run) -> None:
    name = run.class_names[3]
    g = get_json(client, f"/api/graph?class={name}")
    assert g == json.loads(json.dumps(to_json(class_graph(run, name))))
    assert g["nodes"] and g["links"] and g["summit"]["class"]["name"] == name
    assert g["summit"]["settings"]["method"] == "pagerank" and all("pagerank" in n for n in g["nodes"])
    g2 = get_json(client, "/api/graph?class=3&method=topn&top_n=2&edges_per_node=1&min_edge_count=1")
    ref = to_json(class_graph(run, 3, method="topn", top_n=2, edges_per_node=1))
    assert g2 == json.loads(json.dumps(ref))
    per_layer = Counter(n["layer"] for n in g2["nodes"])
    assert max(per_layer.values()) <= 2
    g3 = get_json(client, f"/api/graph?class={name}&method=topn&layers=fire8,fire9&min_count=1")
    assert {n["layer"] for n in g3["nodes"]} <= {"fire8", "fire9"}


def test_graph_results_are_cached(client: FlaskClient, run: Run) -> None:
    api = client.application.extensions["summit"]
    get_json(client, f"/api/graph?class={run.class_names[5]}&mass=0.1")
    hits, misses = api.graph.hits, api.graph.misses
    get_json(client, "/api/graph?class=5&mass=0.1&method=pagerank")  # same graph by index: a cache hit
    assert (api.graph.hits, api.graph.misses) == (hits + 1, misses)


def test_memo_computes_each_key_once_under_concurrency() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def slow(x: int) -> int:
        calls.append(x)
        gate.wait(5)
        if x < 0:
            raise ValueError("negative")
        return x * 2

    memo = Memo(slow, maxsize=2)
    with ThreadPoolExecutor(40) as pool:  # every call in flight before the gate opens
        futs = [pool.submit(memo, i % 2) for i in range(32)]
        bad = [pool.submit(memo, -1) for _ in range(4)]
        time.sleep(0.2)
        gate.set()
        assert [f.result() for f in futs] == [i % 2 * 2 for i in range(32)]
        assert all(isinstance(f.exception(), ValueError) for f in bad)
    assert sorted(calls) == [-1, 0, 1]  # one computation per key, concurrent callers waited
    assert memo(0) == 0  # a hit: 0 becomes the most recently used
    memo(2)  # evicts the least recently used key: 1
    assert memo(1) == 2 and sorted(calls) == [-1, 0, 1, 1, 2]
    with pytest.raises(ValueError):
        memo(-1)  # errors are not kept: computed again
    assert calls.count(-1) == 2


def test_compare(client: FlaskClient, run: Run) -> None:
    a, b = run.class_names[1], run.class_names[4]
    g = get_json(client, f"/api/compare?a={a}&b={b}&method=topn&top_n=5")
    assert g == json.loads(json.dumps(to_json(compare_graph(run, a, b, method="topn", top_n=5))))
    g = get_json(client, f"/api/compare?a={a}&b={b}&ubiquitous=show")
    assert g == json.loads(json.dumps(to_json(compare_graph(run, a, b, hide_ubiquitous=False))))
    assert {n["membership"] for n in g["nodes"]} <= {"a", "b", "both"}
    assert g["summit"]["class"]["name"] == a and g["summit"]["class_b"]["name"] == b


def test_embedding(client: FlaskClient, run: Run) -> None:
    e = get_json(client, "/api/embedding?method=pca&layer=fire7")
    pts = e["points"]
    assert (e["layer"], e["method"]) == ("fire7", "pca") and {p["layer"] for p in pts} == {"fire7"}
    assert [p["name"] for p in pts] == run.class_names
    assert all(np.isfinite([p["x"], p["y"]]).all() and p["n_images"] > 0 for p in pts)


def test_layer_units(client: FlaskClient, run: Run) -> None:
    d = get_json(client, "/api/layer/fire6")
    count = run.activation_matrix("fire6", "count")
    assert d["layer"] == "fire6" and d["channels"] == run.channels["fire6"] == len(d["units"])
    for u in d["units"]:
        c = u["channel"]
        assert u["count"] == count[:, c].sum()
        tops = [t["count"] for t in u["top_classes"]]
        assert tops == sorted(count[:, c][count[:, c] > 0], reverse=True)[:3]
        assert all(t["name"] == run.class_names[t["class"]] for t in u["top_classes"])
        assert u["n_examples"] == run.meta["examples_k"] and u["has_featurevis"] is False
    assert get_json(client, "/api/layer/fire5")["units"][7]["has_featurevis"] is True


def test_channel_detail(client: FlaskClient, run: Run) -> None:
    count, sums = run.activation_matrix("fire5", "count"), run.activation_matrix("fire5", "sum")
    ch = int(count.sum(0).argmax())
    d = get_json(client, f"/api/channel/fire5/{ch}")
    n_img = np.array(run.classes.column("n_images").to_pylist())
    assert d["id"] == f"fire5:{ch}" and d["count"] == count[:, ch].sum() > 0
    assert d["mean_activation"] == pytest.approx(sums[:, ch].sum() / n_img.sum())
    assert [c["count"] for c in d["top_classes"]] == sorted(count[:, ch][count[:, ch] > 0], reverse=True)[:10]
    for c in d["top_classes"]:
        assert c["fraction"] == pytest.approx(count[c["class"], ch] / n_img[c["class"]])
        assert c["mean"] == pytest.approx(sums[c["class"], ch] / n_img[c["class"]])
    table = run.examples("fire5")
    assert table is not None
    ex = table.to_pylist()
    ref = sorted((r for r in ex if r["channel"] == ch), key=lambda r: r["rank"])
    assert [(r["rank"], r["image"]) for r in d["examples"]] == [(r["rank"], r["image"]) for r in ref]
    assert d["examples_url"] == f"/api/examples/fire5/{ch}.jpg"
    assert d["has_featurevis"] is False and d["featurevis_url"] is None
    fv = get_json(client, "/api/channel/fire5/7")
    assert fv["has_featurevis"] is True and fv["featurevis_url"] == "/api/featurevis/fire5/7.png"


def test_example_strip_and_featurevis(client: FlaskClient, run_dir: Path) -> None:
    r = client.get("/api/examples/fire7/3.jpg")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert r.data == (run_dir / "examples" / "fire7" / "3.jpg").read_bytes()
    assert Image.open(io.BytesIO(r.data)).size[1] == 64
    r = client.get("/api/featurevis/fire5/7.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert r.data == (run_dir / "featurevis" / "fire5" / "7.png").read_bytes()
    msg = get_json(client, "/api/featurevis/fire5/6.png", 404)["error"]
    assert "no feature visualization rendered for fire5:6" in msg and "summit render" in msg


def test_export_download(client: FlaskClient, run: Run) -> None:
    name = run.class_names[2]
    r = client.get(f"/api/export/{name}.json?method=topn&top_n=4")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["Content-Disposition"] == f"attachment; filename=summit-{name}.json"
    assert json.loads(r.data) == get_json(client, f"/api/graph?class={name}&method=topn&top_n=4")
    b = run.class_names[6]
    r = client.get(f"/api/export/{name}.json?compare={b}")
    assert r.headers["Content-Disposition"] == f"attachment; filename=summit-{name}-vs-{b}.json"
    assert json.loads(r.data)["summit"]["class_b"]["name"] == b


def test_static_app_is_self_contained(client: FlaskClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.data.decode()
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        if not src.startswith("data:"):
            assert src.startswith(("/static/", "/api/")), src  # local: the app or its API
            assert client.get(src).status_code == 200, src
    assert "/static/vendor/d3.v7.min.js" in html
    files = [p for p in STATIC_DIR.iterdir() if p.suffix in (".html", ".js", ".css")]
    assert {"index.html", "app.js", "api.js", "graph.js", "style.css"} <= {p.name for p in files}
    for p in files:
        f, text = p.name, p.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f"{f} references a remote URL"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_http_server_on_loopback(run_dir: Path) -> None:
    """The server `summit serve` runs (waitress): ephemeral port, real HTTP, no Server banner."""
    srv = make_http_server(create_app(run_dir), "127.0.0.1", 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        assert srv.server_address[0] == "127.0.0.1" and srv.server_port > 0
        with urlopen(f"http://127.0.0.1:{srv.server_port}/api/classes") as r:
            assert len(json.load(r)["classes"]) == 19
            assert "Server" not in r.headers
    finally:
        srv.shutdown()
        t.join()


def test_serve_defaults_to_loopback() -> None:
    a = build_parser().parse_args(["serve", "--run", "somewhere"])
    assert (a.host, a.port, a.allow_host) == ("127.0.0.1", 5000, [])
    assert a.func.__name__ == "_cmd_serve"


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("url,status,message", [
    ("/api/graph", 400, "missing parameter 'class'"),
    ("/api/graph?class=gose", 400, "unknown class 'gose'; close matches: goose"),
    ("/api/graph?class=99", 400, "class index 99 out of range 0..18"),
    ("/api/graph?class=099_goose&method=topn&top_n=abc", 400, "top_n must be an integer, got 'abc'"),
    ("/api/graph?class=099_goose&method=topn&top_n=0", 400, "top_n must be in 1..512, got 0"),
    ("/api/graph?class=099_goose&method=topn&top_n=1e3", 400, "top_n must be an integer"),
    ("/api/graph?class=099_goose&method=topn&edges_per_node=-1", 400, "edges_per_node must be in 0..512, got -1"),
    ("/api/graph?class=099_goose&method=topn&min_count=0", 400, "min_count must be in 1.."),
    ("/api/graph?class=099_goose&method=topn&min_edge_count=99999999999", 400, "min_edge_count must be in 1.."),
    ("/api/graph?class=099_goose&method=topn&topn=3", 400, "unknown parameter(s) topn; valid: class, images, method, selection"),
    ("/api/graph?class=099_goose&layers=fire5,conv1", 400, "unknown layer 'conv1'; valid: fire2, fire3"),
    ("/api/graph?class=099_goose&method=best", 400, "bad method 'best'; valid: pagerank, topn"),
    ("/api/graph?class=099_goose&selection=top9", 400, "unknown selection 'top9'; valid: mass0.01, mass0.03"),
    ("/api/graph?class=099_goose&mass=1.5", 400, "bad mass '1.5': need a number in (0, 1]"),
    ("/api/graph?class=099_goose&mass=x", 400, "bad mass 'x'"),
    ("/api/graph?class=099_goose&mass=%D9%A1", 400, "bad mass '١'"),  # Arabic-Indic digit one
    ("/api/graph?class=099_goose&mass=%F0%9D%9F%8F", 400, "bad mass '𝟏'"),  # mathematical bold one
    ("/api/graph?class=099_goose&mass=%EF%BC%91", 400, "bad mass '１'"),  # fullwidth one
    ("/api/graph?class=099_goose&mass=%201", 400, "bad mass ' 1'"),
    ("/api/graph?class=099_goose&mass_step=0.5%0A", 400, "bad mass_step '0.5\\n'"),
    ("/api/graph?class=099_goose&ubiquitous=maybe", 400, "bad ubiquitous 'maybe'; valid: hide, show"),
    ("/api/graph?class=099_goose&exclude=fire5:999", 400, "need layer:channel with channel 0..255"),
    ("/api/embedding?method=mds", 400, "bad method 'mds'; valid: umap, pca, tsne"),
    ("/api/embedding?method=pca&layer=fire1", 400, "unknown layer 'fire1'"),
    ("/api/compare?a=099_goose", 400, "missing parameter 'b'"),
    ("/api/compare?a=099_goose&b=dalmatien", 400, "close matches: dalmatian, 251_dalmatian"),
    ("/api/layer/fire10", 404, "unknown layer 'fire10'; valid: fire2, fire3, fire4, fire5, fire6, fire7, fire8, fire9"),
    ("/api/channel/conv1/3", 404, "unknown layer 'conv1'"),
    ("/api/channel/fire5/256", 404, "channel must be in 0..255, got 256"),
    ("/api/channel/fire5/-1", 404, "channel must be in 0..255, got -1"),
    ("/api/channel/fire5/x1", 404, "channel must be an integer, got 'x1'"),
    ("/api/examples/fire5/999.jpg", 404, "channel must be in 0..255, got 999"),
    ("/api/examples/nope/1.jpg", 404, "unknown layer 'nope'"),
    ("/api/featurevis/fire9/512.png", 404, "channel must be in 0..511, got 512"),
    ("/api/export/not_a_class.json", 404, "unknown class 'not_a_class'"),
    ("/api/export/099_goose.json?compare=zzz", 400, "unknown class 'zzz'"),
    ("/api/export/099_goose.json?method=topn&top_n=x", 400, "top_n must be an integer, got 'x'"),
    ("/api/nothing", 404, "not found: /api/nothing"),
    ("/api/graph?class=099_goose&keep_dangling=2", 400, "bad keep_dangling '2'; valid: 0, 1"),
    ("/api/similar", 400, "missing parameter 'class'"),
    ("/api/similar?class=gose", 400, "unknown class 'gose'; close matches: goose"),
    ("/api/similar?class=099_goose&layer=conv1", 400, "unknown layer 'conv1'; valid: fire2"),
    ("/api/embedding?layer=conv1", 400, "unknown layer 'conv1'; valid: fire2"),
    ("/api/diversity/fire5/7/0.png", 404, "no diversity image 0 rendered for fire5:7"),
    ("/api/diversity/fire5/7/16.png", 404, "image must be in 0..15, got 16"),
    ("/api/diversity/fire5/256/0.png", 404, "channel must be in 0..255, got 256"),
])
def test_bad_input_messages(client: FlaskClient, url: str, status: int, message: str) -> None:
    err = get_json(client, url, status)["error"]
    assert message in err and "\n" not in err


def test_post_is_refused(client: FlaskClient) -> None:
    assert get_json(client, "/api/classes", 200)
    r = client.post("/api/classes")
    assert r.status_code == 405 and "error" in r.get_json()


# -- path traversal ---------------------------------------------------------------------------
TRAVERSALS = [
    "/api/examples/..%2F..%2Fetc/passwd",
    "/api/examples/..%2F..%2F..%2F..%2Fetc%2Fpasswd/1.jpg",
    "/api/examples/fire5/..%2F..%2Frun.json",
    "/api/examples/fire5/..%2F..%2F..%2Fsecret.txt",
    "/api/examples/%2e%2e/%2e%2e/secret.txt",
    "/api/examples/%2e%2e%2f%2e%2e%2fsecret.txt/1.jpg",
    "/api/examples/..%252F..%252Fsecret.txt/1.jpg",
    "/api/examples/..%5C..%5Csecret.txt/1.jpg",
    "/api/examples/%2Fetc%2Fpasswd/1.jpg",
    "/api/examples//etc/passwd/1.jpg",
    "/api/examples/fire5/%2Fetc%2Fpasswd.jpg",
    "/api/examples/fire5/1.jpg%00.png",
    "/api/examples/fire5/9.jpg",  # a symlink in the run pointing outside it
    "/api/featurevis/..%2F..%2Fsecret.txt/1.png",
    "/api/featurevis/fire5/..%2F..%2F..%2F..%2Fsecret.png",
    "/api/featurevis/fire5/8.png",  # a symlink in the run pointing outside it
    "/api/diversity/..%2F..%2Fsecret.txt/1/0.png",
    "/api/diversity/fire5/..%2F..%2Fsecret/0.png",
    "/api/diversity/fire5/7/..%2F..%2F..%2Fsecret.png",
    "/api/channel/..%2F..%2F/1",
    "/api/layer/..%2F..%2Fsecret.txt",
    "/api/export/..%2F..%2Fsecret.txt.json",
    "/static/../run.json",
    "/static/..%2F..%2Fsummit%2Fserver.py",
    "/static/%2e%2e/server.py",
    "/static/..%5Cserver.py",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "/..%2F..%2Fetc%2Fpasswd",
    "/etc/passwd",
]


@pytest.mark.parametrize("url", TRAVERSALS)
def test_path_traversal_is_refused(client: FlaskClient, run_dir: Path, url: str) -> None:
    r = client.get(url, follow_redirects=True)  # "//" is merged by a redirect, then refused
    assert r.status_code in (400, 404), (url, r.status_code)
    assert SECRET.encode() not in r.data and b"root:" not in r.data
    assert b'"model"' not in r.data  # run.json contents
    assert r.mimetype == "application/json" and "error" in r.get_json()


def test_served_files_stay_inside(client: FlaskClient, run_dir: Path) -> None:
    """Every file the file routes can reach resolves inside the run; links out are dropped."""
    api = client.application.extensions["summit"]
    root = run_dir.resolve()
    for layer in api.run.layers:
        for ch in range(api.run.channels[layer]):
            p = api.examples_file(layer, ch)
            assert (p is None) if (layer, ch) == ("fire5", 9) else p.is_relative_to(root)
    assert api.featurevis_file("fire5", 7).is_relative_to(root)
    assert api.featurevis_file("fire5", 8) is None
    assert os.path.realpath(run_dir / "featurevis" / "fire5" / "8.png").endswith("secret.txt")


# -- hostile requests -------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "/api/graph?class=%C2%B2", "/api/graph?class=%C2%B9", "/api/graph?class=%E2%91%A0", "/api/graph?class=%D9%A1",
    "/api/compare?a=%C2%B2&b=1", "/api/compare?a=0&b=%E2%91%A0", "/api/export/%C2%B2.json",
    "/api/export/0.json?compare=%C2%B9", "/api/graph?class=0&top_n=%C2%B2", "/api/channel/fire5/%C2%B2",
])
def test_unicode_digits_are_client_errors(client: FlaskClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code in (400, 404) and r.mimetype == "application/json", (url, r.status_code)
    assert "\n" not in r.get_json()["error"]


def test_fuzzed_requests_never_fail_on_the_server(client: FlaskClient, run: Run) -> None:
    """Random query values from a hostile alphabet on every endpoint: 2xx or a JSON 4xx, never 5xx."""
    rng = np.random.default_rng(7)
    pieces = ["0", "1", "18", "19", "-1", "²", "①", "١", "%00", "%ff", "%C2%B2", "..%2F", "\u202e", "1e9",
              "99999999999999999999", " ", "+3", "0x10", "fire5", "fire2,fire9", "", "&", "=", "%", "goose",
              run.class_names[4], "NaN", "inf", "[]", "{}", "'", '"', "<b>"]
    params = ["class", "a", "b", "top_n", "min_count", "edges_per_node", "min_edge_count", "layers", "compare", "x"]
    paths = ["/api/graph", "/api/compare", "/api/export/{v}.json", "/api/layer/{v}", "/api/channel/fire5/{v}",
             "/api/channel/{v}/1", "/api/examples/fire5/{v}.jpg", "/api/featurevis/{v}/1.png", "/api/meta"]
    statuses = Counter()
    for _ in range(300):
        value = "".join(rng.choice(pieces, size=rng.integers(1, 3)))
        path = str(rng.choice(paths)).replace("{v}", value or "x")
        query = "&".join(f"{rng.choice(params)}={''.join(rng.choice(pieces, size=rng.integers(1, 3)))}"
                         for _ in range(rng.integers(0, 4)))
        r = client.get(f"{path}?{query}")
        statuses[r.status_code] += 1
        assert r.status_code < 500, (path, query, r.data[:200])
        if r.status_code >= 400:
            assert r.mimetype == "application/json" and "error" in r.get_json(), (path, query)
    assert statuses[200] > 10 and sum(v for k, v in statuses.items() if k >= 400) > 100


@pytest.mark.parametrize("host,bound,allow,ok", [
    ("localhost:5000", "127.0.0.1", [], True),
    ("127.0.0.1:5000", "127.0.0.1", [], True),
    ("[::1]:5000", "127.0.0.1", [], True),
    ("LOCALHOST.", "127.0.0.1", [], True),
    ("evil.example:5000", "127.0.0.1", [], False),  # a rebinding page sends its own name
    ("localhost.evil.example", "127.0.0.1", [], False),
    ("127.0.0.1.nip.io", "127.0.0.1", [], False),
    ("", "127.0.0.1", [], False),
    ("summit.lab:8080", "127.0.0.1", ["summit.lab"], True),
    ("10.1.2.3:5000", "0.0.0.0", [], True),  # bound to every interface: IP literals are fine
    ("evil.example", "0.0.0.0", [], False),
    ("10.1.2.3", "10.1.2.3", [], True),
    ("10.9.9.9", "10.1.2.3", [], False),
    ("localhost:5000@evil.com", "127.0.0.1", [], False),  # user info: the browser's host is evil.com
    ("[::1].evil.com", "127.0.0.1", [], False),
    ("localhost:5000, evil.com", "127.0.0.1", [], False),  # two Host headers, as waitress joins them
    ("localhost/evil", "127.0.0.1", [], False),
    ("[0:0:0:0:0:0:0:1]:80", "127.0.0.1", [], True),
    ("[::1]", "::1", [], True),
])
def test_host_check(host: str, bound: str, allow: list[str], ok: bool) -> None:
    assert HostCheck(bound, allow)(host) is ok


def test_foreign_host_header_is_refused(run_dir: Path) -> None:
    client = create_app(run_dir, hosts=HostCheck("127.0.0.1", ["summit.lab"])).test_client()
    r = client.get("/api/classes", headers={"Host": "attacker.example"})
    assert r.status_code == 403 and "--allow-host" in r.get_json()["error"]
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 403
    assert client.get("/api/classes", headers={"Host": "summit.lab:5000"}).status_code == 200
    assert client.get("/api/classes").status_code == 200  # localhost


def raw_http(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers, body) of one raw request on a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, dict(l.split(": ", 1) for l in lines), body


def test_server_errors_are_json_without_banner(run_dir: Path) -> None:
    srv = make_http_server(create_app(run_dir), "127.0.0.1", 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        cases = [
            (b"GARBAGE\r\n\r\n", "400"),
            (b"GET /api/classes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\nConnection: close\r\n\r\n", "400"),
            (b"GET /api/graph?class=" + b"a" * 70000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             "414"),
            (b"GET /api/classes HTTP/1.1\r\nHost: rebound.example\r\nConnection: close\r\n\r\n", "403"),
            (b"GET /api/graph?class=%C2%B2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", "400"),
            (b"GET /api/classes HTTP/1.0\r\n\r\n", "200"),  # no Host header: the bound address
        ]
        for request, status in cases:
            line, headers, body = raw_http(srv.server_port, request)
            assert line.split()[1] == status, (request[:60], line, body[:200])
            assert "Server" not in headers and b"Werkzeug" not in body and b"waitress" not in body.lower()
            assert headers["Content-Type"].startswith("application/json"), (request[:60], headers)
            if status != "200":
                assert list(json.loads(body)) == ["error"], body
    finally:
        srv.shutdown()
        t.join()


def test_memo_is_bounded_by_weight() -> None:
    memo = Memo(lambda n: b"x" * n, maxsize=100, weigh=len, max_weight=1000)
    for n in (400, 400, 300, 100):
        memo(n)
    assert memo.weight <= 1000 and len(memo._done) == 3  # the first 400 evicted, 400 cached once
    memo(5000)  # larger than the budget on its own: kept alone
    assert list(memo._done) == [(5000,)] and memo.weight == 5000


def test_summit_serve_runs_waitress_with_host_check(run_dir: Path, cli: CliRunner) -> None:
    """`summit serve` itself (a real process): production server, two processes, --allow-host."""
    port = free_port()
    pid = cli.start("serve", "--run", str(run_dir), "--port", str(port), "--allow-host", "summit.lab",
                    "--processes", "2")
    try:
        deadline = time.time() + 300
        while True:
            try:
                line, headers, body = raw_http(port, b"GET /api/meta HTTP/1.1\r\nHost: summit.lab\r\n"
                                                     b"Connection: close\r\n\r\n")
                break
            except OSError:
                assert time.time() < deadline, "summit serve did not answer"
                time.sleep(0.2)
        assert line.split()[1] == "200" and "Server" not in headers and json.loads(body)["model"] == "squeezenet1_1"
        for _ in range(10):
            line, _, body = raw_http(port, b"GET /api/meta HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
            assert line.split()[1] == "403" and "--allow-host" in json.loads(body)["error"]
        for host in (b"localhost:%d@evil.com" % port, b"[::1].evil.com"):  # DNS rebinding disguises
            line, _, body = raw_http(port, b"GET /api/meta HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            assert line.split()[1] == "403", host
        line, _, body = raw_http(port, b"GET /api/meta HTTP/1.1\r\nHost: localhost\r\nHost: evil.com\r\n"
                                       b"Connection: close\r\n\r\n")  # a second, foreign Host header
        assert line.split()[1] in ("400", "403"), line
    finally:
        os.kill(pid, signal.SIGTERM)
    p = cli.wait(pid, timeout=60)
    assert f"on http://127.0.0.1:{port}/ (2 process(es) x 8 threads" in p.stdout, (p.stdout, p.stderr[-2000:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- class similarity, per-layer embedding, feature vis listing, diversity, warm-up --------------
def test_similar_is_cosine_similarity_of_a_rows(client: FlaskClient, run: Run) -> None:
    """Similarity of the A rows the embedding uses (Summit's tau 0.01 selection), per layer or all."""
    from scipy.spatial.distance import cdist
    i = run.class_index("099_goose")
    for layer in ("fire5", None):
        d = get_json(client, "/api/similar?class=099_goose" + (f"&layer={layer}" if layer else ""))
        a = np.hstack([run.activation_matrix(l, "count", "mass0.01") for l in ([layer] if layer else run.layers)])
        assert d["class"] == "099_goose" and d["layer"] == layer and len(d["similarity"]) == len(run.class_names)
        np.testing.assert_allclose(d["similarity"], 1 - cdist(a, a[[i]], "cosine")[:, 0], atol=1e-6)
        assert d["similarity"][i] == pytest.approx(1.0)
    assert get_json(client, "/api/similar?class=5")["class"] == run.class_names[5]


def test_embedding_of_one_layer(client: FlaskClient, run: Run) -> None:
    d = get_json(client, "/api/embedding?layer=fire5&method=pca")
    ref = [r for r in class_embedding(run, "pca") if r["layer"] == "fire5"]
    assert d["layer"] == "fire5" and d["method"] == "pca"
    assert [(p["name"], p["x"], p["y"]) for p in d["points"]] == [(r["name"], r["x"], r["y"]) for r in ref]
    assert d["points"] != get_json(client, "/api/embedding?layer=fire9&method=pca")["points"]
    top = get_json(client, "/api/embedding")
    assert (top["layer"], top["method"]) == (run.layers[-1], "umap") and {p["layer"] for p in top["points"]} == {run.layers[-1]}


def test_keep_dangling_keeps_units_without_edges(client: FlaskClient, run: Run) -> None:
    g = get_json(client, "/api/graph?class=3&method=topn&top_n=2&edges_per_node=0&keep_dangling=1")
    ref = class_graph(run, 3, method="topn", top_n=2, edges_per_node=0, keep_dangling=True)
    assert g == json.loads(json.dumps(to_json(ref)))
    assert not g["links"] and Counter(n["layer"] for n in g["nodes"]) == {l: 2 for l in run.layers}
    assert get_json(client, "/api/graph?class=3&method=topn&top_n=2&edges_per_node=0")["nodes"] == []  # the default


def test_meta_lists_extra_pages(client: FlaskClient) -> None:
    pages = get_json(client, "/api/meta")["pages"]
    assert pages == sorted(p.name for p in STATIC_DIR.glob("*.html") if p.name != "index.html")
    assert "index.html" not in pages


@pytest.fixture(scope="module")
def div_dir(sample_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample run with diversity images: fire5:7 has d0..d3, fire5:9 d0..d1,
    fire5:11 only d1 (no d0: not listed), fire5:12 a d0 linking out of the run."""
    root = tmp_path_factory.mktemp("diversity")
    (root / "secret.png").write_bytes(SECRET.encode())
    out = Path(shutil.copytree(sample_run, root / "run"))
    d = out / "featurevis" / "fire5"
    d.mkdir(parents=True)
    for ch, idx in ((7, range(4)), (9, range(2)), (11, [1])):
        for i in idx:
            Image.new("RGB", (16, 16), (40 * i, ch, 90)).save(d / f"{ch}_d{i}.png")
    (d / "12_d0.png").symlink_to(root / "secret.png")
    return out


def test_featurevis_listing_and_diversity_images(div_dir: Path) -> None:
    client = create_app(div_dir).test_client()
    first = get_json(client, "/api/featurevis")
    assert first["diversity"]["fire5"] == {"7": 4, "9": 2}
    assert all(first["diversity"][l] == {} for l in first["diversity"] if l != "fire5")
    assert first["featurevis"]["fire5"] == []  # diversity files are not channel images
    r = client.get("/api/diversity/fire5/7/2.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert r.data == (div_dir / "featurevis" / "fire5" / "7_d2.png").read_bytes()
    assert "no diversity image 2 rendered for fire5:9" in get_json(client, "/api/diversity/fire5/9/2.png", 404)["error"]
    r = client.get("/api/diversity/fire5/12/0.png")
    assert r.status_code == 404 and SECRET.encode() not in r.data
    time.sleep(0.01)
    Image.new("RGB", (16, 16)).save(div_dir / "featurevis" / "fire5" / "3.png")  # rendered later
    second = get_json(client, "/api/featurevis")
    assert second["featurevis"]["fire5"] == [3] and second["stamp"] != first["stamp"]
    assert get_json(client, "/api/featurevis")["stamp"] == second["stamp"]


def test_serving_does_not_import_torch(run_dir: Path) -> None:
    """The server, the graph code and what the first page view asks for run without torch
    (seconds of start-up on a busy machine)."""
    urls = ["/", "/api/meta", "/api/classes", "/api/featurevis", "/api/graph?class=3", "/api/compare?a=1&b=2",
            "/api/embedding", "/api/similar?class=3", "/api/layer/fire5", "/api/channel/fire5/3",
            "/api/export/3.json", "/api/diversity/fire5/3/0.png"]
    code = ("import sys, summit.cli, summit.serve.app as s; c = s.create_app(sys.argv[1]).test_client(); "
            f"print([c.get(u).status_code for u in {urls!r}]); "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == str([200] * (len(urls) - 1) + [404]) and out[1] == "[]", out


def test_warm_up_loads_what_the_first_page_needs(run_dir: Path) -> None:
    app = create_app(run_dir)
    api, client = app.extensions["summit"], app.test_client()
    t = api.warm_up()
    t.join(120)
    assert not t.is_alive() and (api.similarity_rows.misses, api.embedding.misses) == (1, 1)
    get_json(client, "/api/similar?class=4")
    get_json(client, "/api/embedding")
    assert (api.similarity_rows.misses, api.embedding.misses) == (1, 1)  # computed by the warm-up


def test_default_graphs_come_from_the_stored_graphs(sample_run: Path, tmp_path: Path) -> None:
    """With `summit graphs` run, default-settings graphs are answered from graphs.parquet (here
    with a planted body, to see where the answer comes from); other settings are computed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from summit.graph.cache import graph_bytes, store_graphs
    from summit.run.files import write_table
    from summit.run.layout import GRAPHS_FILE
    out = tmp_path / "run"
    shutil.copytree(sample_run, out)
    run = Run(out)
    store_graphs(run, progress=False)
    t = pq.read_table(out / GRAPHS_FILE)
    bodies = t.column("json").to_pylist()
    assert bodies[2] == graph_bytes(class_graph(run, 2))
    bodies[2] = b'{"planted":true}'
    write_table(t.set_column(1, t.schema.field("json"), pa.array(bodies, pa.binary())), out / GRAPHS_FILE,
                row_group_size=1)  # the stored layout: one class per row group
    client = create_app(out).test_client()
    assert get_json(client, f"/api/graph?class={run.class_names[2]}") == {"planted": True}
    assert get_json(client, "/api/graph?class=3").get("nodes")  # stored, the real graph
    assert get_json(client, f"/api/graph?class=2&selection={run.check_selection(None)}") == {"planted": True}
    computed = get_json(client, "/api/graph?class=2&mass=0.075&mass_step=0.01")
    assert computed == json.loads(graph_bytes(class_graph(run, 2, mass_step=0.01)))
    assert get_json(client, "/api/compare?a=2&b=3")["summit"]["kind"] == "compare"


def test_classes_split_histograms_by_correctness(client: FlaskClient, run: Run, tmp_path: Path) -> None:
    """/api/classes: hist_correct counts, per top-1 bin, the images predictions.parquet marks correct."""
    rows = get_json(client, "/api/classes")["classes"]
    preds = run.predictions().to_pylist()
    for r in rows:
        mine = [p for p in preds if p["class"] == r["class"] and p["correct"]]
        want = [sum(1 for p in mine if min(9, int(p["top_prob"][0] * 10)) == b) for b in range(10)]
        assert r["hist_correct"] == want and sum(want) == r["n_correct"]
        assert all(c <= h for c, h in zip(r["hist_correct"], r["hist"]))
    old = Path(shutil.copytree(run.path, tmp_path / "old"))
    (old / "predictions.parquet").unlink()  # a run written before predictions existed
    assert all(r["hist_correct"] is None for r in get_json(create_app(old).test_client(), "/api/classes")["classes"])


def _child_running(parent: int, marker: str) -> int | None:
    """The pid of a running child of `parent` whose command line holds `marker` (from /proc)."""
    for d in Path("/proc").iterdir():
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) if d.name.isdigit() else -1
            if ppid == parent and marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                return int(d.name)
        except OSError:
            continue
    return None


def test_background_graph_build_leaves_no_zombie(run_copy: Path) -> None:
    """`summit serve` starts `summit graphs` when the cache is missing; once it has stored the
    graphs it must be reaped (it stayed as a defunct child until the server stopped)."""
    import subprocess
    import sys
    import time
    srv = subprocess.Popen([sys.executable, "-m", "summit", "serve", "--run", str(run_copy), "--port", str(free_port())],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert srv.stdout is not None and "serving" in srv.stdout.readline()
        builder = _child_running(srv.pid, "graphs\0--run")
        assert builder is not None, "no background `summit graphs` was started"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (run_copy / "graphs.parquet").exists():
            time.sleep(0.2)
        time.sleep(2.0)  # the builder exits right after its rename; the reaper's wait() returns then
        state = Path(f"/proc/{builder}/stat")
        assert (run_copy / "graphs.parquet").exists()
        assert not state.exists() or " Z " not in state.read_text(), "the finished builder is a zombie"
    finally:
        srv.terminate()
        srv.wait(30)
