"""Attribution graphs on a real sample run, checked against the Parquet files read independently."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import pytest

from summit.cli import main
from summit.graph import (EMBEDDING_METHODS, class_embedding, class_graph, compare_graph, load_embedding,
                          to_json, write_embedding, write_graph)
from summit.models import SummitError
from summit.store import Run


@pytest.fixture(scope="module")
def run(sample_run: Path) -> Run:
    return Run(sample_run)


def reference_nodes(path: Path, cls: int, top_n: int = 10, min_count: int | None = None) -> dict[str, set]:
    """Selected channels per layer, computed from activations.parquet with plain numpy."""
    t = pq.read_table(path / "activations.parquet").to_pydict()
    layer, c, ch = np.array(t["layer"]), np.array(t["class"]), np.array(t["channel"])
    count, total = np.array(t["count"]), np.array(t["sum"])
    out = {}
    for name in dict.fromkeys(t["layer"]):
        m = (layer == name) & (c == cls)
        rows = sorted(zip(-count[m], -total[m], ch[m]))
        if min_count is None:
            out[name] = {int(r[2]) for r in rows[:top_n] if r[0] < 0}
        else:
            out[name] = {int(r[2]) for r in rows if -r[0] >= min_count}
    return out


def reference_edges(path: Path, cls: int, nodes: dict[str, set], per_node: int = 3,
                    min_edge: int = 1) -> dict[tuple[str, str], int]:
    """Strongest incoming edges per selected destination, from influence.parquet with plain Python."""
    meta = json.loads((path / "run.json").read_text())
    rows = [r for r in pq.read_table(path / "influence.parquet").to_pylist() if r["class"] == cls]
    edges = {}
    for p in meta["pairs"]:
        incoming: dict[int, list] = {}
        for r in rows:
            if r["layer_pair"] == p["name"] and r["src"] in nodes[p["src"]] and r["dst"] in nodes[p["dst"]] \
                    and r["count"] >= min_edge:
                incoming.setdefault(r["dst"], []).append((-r["count"], r["src"]))
        for dst, cands in incoming.items():
            for neg, src in sorted(cands)[:per_node]:
                edges[(f"{p['src']}:{src}", f"{p['dst']}:{dst}")] = -neg
    return edges


def private_copy(sample_run: Path, dest: Path) -> Path:
    """The run's tables in a folder of the test's own, so that writing embedding.parquet stays local."""
    dest.mkdir()
    for name in ("run.json", "classes.parquet", "activations.parquet", "influence.parquet"):
        shutil.copy(sample_run / name, dest / name)
    return dest


def graph_nodes(G: nx.DiGraph) -> dict[str, set]:
    out: dict[str, set] = {}
    for _, d in G.nodes(data=True):
        out.setdefault(d["layer"], set()).add(d["channel"])
    return out


@pytest.mark.parametrize("cls,kwargs", [(0, {}), (5, {"top_n": 4, "edges_per_node": 1}),
                                        (11, {"min_count": 2, "min_edge_count": 2})])
def test_graph_equals_independent_computation(run, sample_run, cls, kwargs):
    G = class_graph(run, run.class_names[cls], **kwargs)
    selected = reference_nodes(sample_run, cls, kwargs.get("top_n", 10), kwargs.get("min_count"))
    edges = reference_edges(sample_run, cls, selected, kwargs.get("edges_per_node", 3),
                            kwargs.get("min_edge_count", 1))
    linked = {v for e in edges for v in e}
    expected_nodes = {f"{l}:{c}" for l, cs in selected.items() for c in cs if f"{l}:{c}" in linked}
    assert set(G.nodes) == expected_nodes
    assert {(u, v): d["count"] for u, v, d in G.edges(data=True)} == edges
    n = run.classes.column("n_images")[cls].as_py()
    for v, d in G.nodes(data=True):
        assert v == f"{d['layer']}:{d['channel']}" and d["layer_index"] == run.layers.index(d["layer"])
        assert d["fraction"] == pytest.approx(d["count"] / n)
    assert G.graph["class_index"] == cls and G.graph["n_images"] == n
    assert G.graph["model"] == "squeezenet1_1" and G.graph["k"] == run.meta["k"]


def test_edges_between_consecutive_layers_with_influence_counts(run, sample_run):
    G = class_graph(run, 3, top_n=20)
    t = pq.read_table(sample_run / "influence.parquet", filters=[("class", "=", 3)])
    counts = {(r["layer_pair"], r["src"], r["dst"]): r["count"] for r in t.to_pylist()}
    pairs = {p["name"]: (p["src"], p["dst"]) for p in run.meta["pairs"]}
    assert G.number_of_edges() > 0
    for u, v, d in G.edges(data=True):
        su, sv = G.nodes[u], G.nodes[v]
        assert pairs[d["pair"]] == (su["layer"], sv["layer"]) and sv["layer_index"] == su["layer_index"] + 1
        assert d["count"] == counts[(d["pair"], su["channel"], sv["channel"])]


def test_settings_respected_and_no_dangling(run):
    G = class_graph(run, 7, top_n=6, edges_per_node=2, min_edge_count=2)
    per_layer = graph_nodes(G)
    assert all(len(cs) <= 6 for cs in per_layer.values())
    assert all(G.in_degree(v) <= 2 for v in G) and all(d["count"] >= 2 for *_, d in G.edges(data=True))
    assert all(G.degree(v) > 0 for v in G)
    full = class_graph(run, 7, top_n=6, edges_per_node=2, min_edge_count=2, keep_dangling=True)
    assert set(G) <= set(full) and set(G.edges) == set(full.edges)
    assert all(len(cs) == 6 for cs in graph_nodes(full).values())
    M = class_graph(run, 7, min_count=3, keep_dangling=True)
    assert min(d["count"] for _, d in M.nodes(data=True)) >= 3
    # layers without a pair between them: nothing to connect, so nothing is pruned
    S = class_graph(run, 7, layers=["fire9", "fire2"])
    assert S.number_of_edges() == 0 and set(graph_nodes(S)) == {"fire2", "fire9"}


def test_json_round_trip(run):
    G = class_graph(run, "099_goose")
    d = json.loads(json.dumps(to_json(G)))
    assert d["summit"]["class"]["name"] == "099_goose" and d["summit"]["model"] == "squeezenet1_1"
    assert d["summit"]["settings"]["top_n"] == 10 and d["summit"]["schema_version"] == 1
    H = nx.node_link_graph(d, edges="links")
    assert H.is_directed() and not H.is_multigraph()
    assert dict(H.nodes(data=True)) == dict(G.nodes(data=True))
    assert {(u, v): a for u, v, a in H.edges(data=True)} == {(u, v): a for u, v, a in G.edges(data=True)}
    assert H.graph == G.graph


def test_write_formats(run, tmp_path):
    G = class_graph(run, 2)
    for fmt in ("json", "graphml", "gexf", "dot"):
        assert write_graph(G, tmp_path / f"g.{fmt}", fmt).stat().st_size > 0
    H = nx.read_graphml(tmp_path / "g.graphml")
    assert set(H.nodes) == set(G.nodes) and set(H.edges) == set(G.edges)
    v = next(iter(G))
    assert H.nodes[v]["count"] == G.nodes[v]["count"] and H.nodes[v]["layer"] == G.nodes[v]["layer"]
    assert json.loads(H.graph["settings"]) == G.graph["settings"]
    X = nx.read_gexf(tmp_path / "g.gexf")
    assert set(X.nodes) == set(G.nodes) and X.number_of_edges() == G.number_of_edges()
    dot = (tmp_path / "g.dot").read_text()
    assert dot.count(" -> ") == G.number_of_edges() and f'"{v}" [label="{v}"' in dot
    with pytest.raises(SummitError, match="valid: json, graphml, gexf, dot"):
        write_graph(G, tmp_path / "g.png", "png")


def test_compare_membership(run):
    kw = {"top_n": 8}
    a, b = class_graph(run, 0, **kw), class_graph(run, 1, **kw)
    C = compare_graph(run, 0, 1, **kw)
    assert set(C) == set(a) | set(b) and set(C.edges) == set(a.edges) | set(b.edges)
    for v, d in C.nodes(data=True):
        expected = {(True, True): "both", (True, False): "a", (False, True): "b"}[(v in a, v in b)]
        assert d["membership"] == expected
        if v in a:
            assert d["count_a"] == a.nodes[v]["count"] and d["fraction_a"] == a.nodes[v]["fraction"]
        if v in b:
            assert d["count_b"] == b.nodes[v]["count"]
    for u, v, d in C.edges(data=True):
        assert d["membership"] == ("both" if a.has_edge(u, v) and b.has_edge(u, v) else
                                   "a" if a.has_edge(u, v) else "b")
        if a.has_edge(u, v):
            assert d["count_a"] == a.edges[u, v]["count"]
        if b.has_edge(u, v):
            assert d["count_b"] == b.edges[u, v]["count"]
    assert C.graph["class_name_a"] == "022_bald_eagle" and C.graph["class_name_b"] == "099_goose"
    same = compare_graph(run, 4, 4)
    assert {d["membership"] for *_, d in same.edges(data=True)} | \
        {d["membership"] for _, d in same.nodes(data=True)} == {"both"}
    assert to_json(C)["summit"]["class_b"]["name"] == "099_goose"


def test_embedding(sample_run, tmp_path):
    run = Run(private_copy(sample_run, tmp_path / "run"))
    for method in EMBEDDING_METHODS:
        rows = class_embedding(run, method)
        assert [r["class"] for r in rows] == list(range(len(run.class_names)))
        assert all(math.isfinite(r["x"]) and math.isfinite(r["y"]) for r in rows)
        assert len({(round(r["x"], 6), round(r["y"], 6)) for r in rows}) > 1
    assert len(class_embedding(run, "pca", layer="fire5")) == len(run.class_names)
    # PCA equals an SVD of the per-class count vectors read back from Parquet (up to axis signs)
    t = pq.read_table(sample_run / "activations.parquet").sort_by([("class", "ascending")])
    x = np.asarray(t.column("count").to_numpy(), float).reshape(len(run.class_names), -1)
    x /= pq.read_table(sample_run / "classes.parquet").column("n_images").to_numpy()[:, None]
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    pca = np.array([[r["x"], r["y"]] for r in class_embedding(run, "pca")])
    np.testing.assert_allclose(np.abs(pca), np.abs(u[:, :2] * s[:2]), atol=1e-9)
    path = write_embedding(run, "mds")
    t = pq.read_table(path)
    assert path == run.path / "embedding.parquet" and t.column_names == ["class", "name", "x", "y", "method"]
    assert t.column("name").to_pylist() == run.class_names and set(t.column("method").to_pylist()) == {"mds"}
    mtime = path.stat().st_mtime_ns
    stored = load_embedding(run)
    assert path.stat().st_mtime_ns == mtime and stored[0]["method"] == "mds"
    assert [r["n_images"] for r in stored] == run.classes.column("n_images").to_pylist()
    assert [r["x"] for r in stored] == pytest.approx([r["x"] for r in class_embedding(run, "mds")])
    assert load_embedding(run, "pca")[0]["method"] == "pca"
    with pytest.raises(SummitError, match="valid: pca, mds, tsne"):
        class_embedding(run, "umap")


def test_errors(run, tmp_path):
    with pytest.raises(SummitError, match="022_bald_eagle"):
        class_graph(run, "022_bald_egle")
    with pytest.raises(SummitError, match="valid: fire2, fire3"):
        class_graph(run, 0, layers=["fire10"])
    with pytest.raises(SummitError, match="top_n"):
        class_graph(run, 0, top_n=0)
    empty = class_graph(run, 0, min_count=1000)
    assert empty.number_of_nodes() == 0
    with pytest.raises(SummitError, match="empty"):
        write_graph(empty, tmp_path / "empty.json", "json")
    assert not (tmp_path / "empty.json").exists()


def test_cli(sample_run, tmp_path, capsys):
    out = tmp_path / "eagle.graphml"
    ok = subprocess.run([sys.executable, "-m", "summit", "graph", "--run", str(sample_run), "--class",
                         "022_bald_eagle", "--top-n", "5", "--format", "graphml", "--out", str(out)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert nx.read_graphml(out).number_of_nodes() > 0 and "022_bald_eagle" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "summit", "graph", "--run", str(sample_run), "--class",
                          "022_bald_egle", "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "022_bald_eagle" in bad.stderr and not (tmp_path / "x.json").exists()
    # export --all: classes whose graph is empty are skipped and reported
    assert main(["export", "--run", str(sample_run), "--all", "--min-count", "4", "--out-dir",
                 str(tmp_path / "all")]) == 0
    index = json.loads((tmp_path / "all" / "index.json").read_text())
    assert len(index["graphs"]) + len(index["skipped"]) == 19 and index["graphs"]
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == \
        sorted([g["file"] for g in index["graphs"]] + ["index.json"])
    assert f"{len(index['skipped'])} classes skipped" in capsys.readouterr().out
    own = private_copy(sample_run, tmp_path / "run")
    assert main(["export", "--run", str(own), "--embedding", "--method", "pca"]) == 0
    assert pq.read_table(own / "embedding.parquet").num_rows == 19
