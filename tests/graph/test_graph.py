"""Attribution graphs on a real sample run, checked against the Parquet files read independently
and against Summit's rules re-derived with plain Python and networkx."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import pytest

from summit.cli import main
from summit.graph.build import class_graph, compare_graph, connected_mass, mass_threshold, pagerank
from summit.graph.edges import compose_max_min
from summit.graph.export import to_json, to_summit, write_graph
from summit.model.models import SummitError
from summit.run.store import Run


@pytest.fixture(scope="module")
def run(sample_run: Path) -> Run:
    return Run(sample_run)


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


# -- Summit's rules, re-derived independently ---------------------------------------------------
def a_matrix(path: Path, selection: str, cls: int) -> dict[str, dict[int, int]]:
    t = pq.read_table(path / "activations.parquet").to_pylist()
    out: dict[str, dict[int, int]] = {}
    for r in t:
        if r["selection"] == selection and r["class"] == cls:
            out.setdefault(r["layer"], {})[r["channel"]] = r["count"]
    return out


def reference_full_graph(path: Path, cls: int, excluded: set[str], cut: bool = True) -> nx.Graph:
    """Summit's full graph from influence.parquet with dicts, as its attribution-graph notebook does:
    direct channels take every counted input; bottleneck channels take, per input i, the max over
    bottleneck channels m of min(I[j][m], I_b[m][i]), keeping as many inputs as the direct channels
    of the layer have on average (all of them with cut=False)."""
    meta = json.loads((path / "run.json").read_text())
    rows = [r for r in pq.read_table(path / "influence.parquet").to_pylist() if r["class"] == cls]
    I: dict[str, dict[int, dict[int, int]]] = {}
    for r in rows:
        I.setdefault(r["layer_pair"], {}).setdefault(r["dst"], {})[r["src"]] = r["count"]
    G = nx.Graph()
    for p in meta["pairs"]:
        stages = [st for st in meta["stages"] if st["pair"] == p["name"]]
        direct = [st for st in stages if st["kind"] == "direct"]
        n_inputs = []
        for st in direct:
            for a, b in st["dst_ranges"]:
                for j in range(a, b):
                    ins = I.get(st["name"], {}).get(j, {})
                    n_inputs.append(len(ins))
                    for i, c in ins.items():
                        G.add_edge(f"{p['dst']}:{j}", f"{p['src']}:{i}", weight=c)
        avg = int(np.average(n_inputs)) if n_inputs else meta["k_influence"]
        for out in (st for st in stages if st["kind"] == "bottleneck_out"):
            into = next(st for st in stages if st["kind"] == "bottleneck_in" and st["bottleneck"] == out["bottleneck"])
            for j, mids in I.get(out["name"], {}).items():
                cand: dict[int, list[int]] = {}
                for m, c_jm in mids.items():
                    for i, c_mi in I.get(into["name"], {}).get(m, {}).items():
                        cand.setdefault(i, []).append(min(c_jm, c_mi))
                best = sorted(((max(v), i) for i, v in cand.items()), key=lambda t: (-t[0], t[1]))[:avg if cut else None]
                for w, i in best:
                    G.add_edge(f"{p['dst']}:{j}", f"{p['src']}:{i}", weight=w)
    G.remove_nodes_from([v for v in excluded if v in G])
    return G


def reference_pagerank_graph(path: Path, cls: int, excluded: set[str]) -> tuple[set, set, float]:
    """Kept nodes, kept edges and final mass of Summit's PageRank rule (networkx + plain loops)."""
    meta = json.loads((path / "run.json").read_text())
    layers = [l["name"] for l in meta["layers"]]
    G = reference_full_graph(path, cls, excluded)
    A = a_matrix(path, "mass0.03", cls)
    pers = {}
    for layer in layers:
        top = max(c for ch, c in A[layer].items() if f"{layer}:{ch}" not in excluded)
        for v in G:
            if v.startswith(layer + ":"):
                pers[v] = A[layer][int(v.split(":")[1])] / top if top else 0.0
    pr = nx.pagerank(G, alpha=0.85, personalization=pers, weight="weight")
    vals = sorted(pr.values(), reverse=True)
    mass = 0.075
    step = 0
    while True:
        acc, cnt = 0.0, 0
        while acc < mass and cnt < len(vals):
            acc += vals[cnt] / sum(vals)
            cnt += 1
        kept = {v for v in pr if cnt >= len(vals) or pr[v] > vals[cnt]}
        edges = {(u, v) for u, v in G.edges if u in kept and v in kept}
        connected = all(any({a.split(":")[0], b.split(":")[0]} == {layers[i - 1], layers[i]} for a, b in edges)
                        for i in range(1, len(layers)))
        if connected or mass >= 1:
            return kept, edges, mass
        step += 1
        mass = min(1.0, round(0.075 + step * 0.005, 10))


@pytest.mark.parametrize("cls", [0, 3, 11])
def test_pagerank_graph_equals_summits_rule(run, sample_run, cls):
    G = class_graph(run, cls)
    excluded = set(G.graph["settings"]["excluded"])
    kept, edges, mass = reference_pagerank_graph(sample_run, cls, excluded)
    assert set(G) == kept and G.graph["settings"]["mass"] == pytest.approx(mass)
    assert {frozenset(e) for e in G.edges} == {frozenset(e) for e in edges}
    full = reference_full_graph(sample_run, cls, excluded)
    raw = reference_full_graph(sample_run, cls, set(), cut=False)
    for u, v, d in G.edges(data=True):
        assert G.nodes[v]["layer_index"] == G.nodes[u]["layer_index"] + 1  # directed input -> output
        assert d["count"] == full.edges[u, v]["weight"]
    layers = {d["layer"] for _, d in G.nodes(data=True)}
    assert layers == set(run.layers)  # every layer present...
    for a, b in zip(run.layers, run.layers[1:]):  # ... and joined to the previous one
        assert any(G.nodes[u]["layer"] == a and G.nodes[v]["layer"] == b for u, v in G.edges)
    A = a_matrix(sample_run, "mass0.03", cls)
    for v, d in G.nodes(data=True):
        assert d["count"] == A[d["layer"]][d["channel"]] and d["pagerank"] > 0
        assert d["inputs"] == sorted(({"channel": G.nodes[u]["channel"], "count": e["count"]}
                                      for u, _, e in G.in_edges(v, data=True)),
                                     key=lambda x: (-x["count"], x["channel"]))
        prev = run.layers[d["layer_index"] - 1]  # attr_channels: top-3 raw inputs, also outside G
        ins = sorted(((w["weight"], int(u.split(":")[1])) for u, w in raw[v].items()
                      if u.startswith(prev + ":")), key=lambda t: (-t[0], t[1])) if d["layer_index"] else []
        assert [(x["count"], x["channel"]) for x in d["attr_channels"]] == ins[:3]


def test_pagerank_matches_networkx():
    rng = np.random.default_rng(0)
    n = 40
    u, v = rng.integers(0, n, 120), rng.integers(0, n, 120)
    keep = u < v
    u, v = np.unique(np.c_[u[keep], v[keep]], axis=0).T
    w = rng.integers(1, 9, len(u)).astype(float)
    p = rng.random(n) * (rng.random(n) > 0.3)
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_weighted_edges_from(zip(u.tolist(), v.tolist(), w.tolist()))
    want = nx.pagerank(G, alpha=0.85, personalization=dict(enumerate(p)), weight="weight")
    np.testing.assert_allclose(pagerank(n, u, v, w, p), [want[i] for i in range(n)], rtol=1e-6, atol=1e-9)


def test_mass_threshold_is_summits_cut():
    pr = np.array([0.3, 0.05, 0.2, 0.2, 0.1, 0.15])
    assert mass_threshold(pr, 0.3).tolist() == [True, False, False, False, False, False]
    assert mass_threshold(pr, 0.31).tolist() == [True, False, False, False, False, False]  # ties at 0.2 stop
    assert mass_threshold(pr, 0.75).tolist() == [True, False, True, True, False, True]
    assert mass_threshold(pr, 1.0).all()


def test_max_min_composition_against_loop():
    rng = np.random.default_rng(1)
    i_out, i_in = rng.integers(0, 5, (7, 4)), rng.integers(0, 5, (4, 9))
    want = np.array([[max(min(i_out[j, m], i_in[m, i]) for m in range(4)) for i in range(9)] for j in range(7)])
    assert (compose_max_min(i_out, i_in, chunk_bytes=64) == want).all()


def test_topn_graph_option(run):
    G = class_graph(run, 7, method="topn", top_n=6, edges_per_node=2, min_edge_count=2)
    assert G.graph["settings"]["method"] == "topn" and "pagerank" not in next(iter(G.nodes.values()))
    assert all(len(cs) <= 6 for cs in graph_nodes(G).values())
    assert all(G.in_degree(v) <= 2 for v in G) and all(d["count"] >= 2 for *_, d in G.edges(data=True))
    assert all(G.degree(v) > 0 for v in G)
    full = class_graph(run, 7, method="topn", top_n=6, edges_per_node=2, min_edge_count=2, keep_dangling=True)
    assert set(G) <= set(full) and set(G.edges) == set(full.edges)
    M = class_graph(run, 7, method="topn", min_count=3, keep_dangling=True)
    assert min(d["count"] for _, d in M.nodes(data=True)) >= 3
    S = class_graph(run, 7, method="topn", layers=["fire9", "fire2"])  # no pair joins them: nothing pruned
    assert S.number_of_edges() == 0 and set(graph_nodes(S)) == {"fire2", "fire9"}
    top5 = class_graph(run, 7, method="topn", selection="top5")
    assert top5.graph["selection"] == "top5"


def test_ubiquitous_and_explicit_exclusion(run):
    ubi = {f"{u['layer']}:{u['channel']}" for u in run.meta["ubiquitous"]["channels"]}
    G = class_graph(run, 1)
    assert set(G.graph["settings"]["excluded"]) == ubi and not ubi & set(G)
    shown = class_graph(run, 1, hide_ubiquitous=False)
    assert shown.graph["settings"]["excluded"] == []
    victim = next(iter(G))
    H = class_graph(run, 1, exclude=[victim])
    assert victim not in H and victim in H.graph["settings"]["excluded"]
    with pytest.raises(SummitError, match="layer:channel"):
        class_graph(run, 1, exclude=["fire2:99999"])


def test_json_round_trip(run):
    G = class_graph(run, "099_goose")
    d = json.loads(json.dumps(to_json(G)))
    assert d["summit"]["class"]["name"] == "099_goose" and d["summit"]["model"] == "squeezenet1_1"
    assert d["summit"]["settings"]["method"] == "pagerank" and d["summit"]["schema_version"] == 2
    H = nx.node_link_graph(d, edges="links")
    assert H.is_directed() and not H.is_multigraph()
    assert dict(H.nodes(data=True)) == dict(G.nodes(data=True))
    assert {(u, v): a for u, v, a in H.edges(data=True)} == {(u, v): a for u, v, a in G.edges(data=True)}
    assert H.graph == G.graph


def test_summit_format_has_the_published_fields(run, tmp_path):
    """Field set and types of Summit's published data/ag/ag-<class>.json files."""
    G = class_graph(run, 3)
    write_graph(G, tmp_path / "ag-3.json", "summit")
    ag = json.loads((tmp_path / "ag-3.json").read_text())
    assert list(ag) == run.layers[::-1]  # top layer first, as published
    for layer, nodes in ag.items():
        for n in nodes:
            assert list(n) == ["channel", "count", "layer", "pagerank", "prev_channels", "attr_channels"]
            assert n["layer"] == layer and isinstance(n["channel"], int) and isinstance(n["pagerank"], float)
            assert all(set(p) == {"prev_channel", "inf"} and isinstance(p["prev_channel"], int)
                       for p in n["prev_channels"])
            assert all(set(p) == {"prev_channel", "inf"} and isinstance(p["prev_channel"], str)
                       for p in n["attr_channels"]) and len(n["attr_channels"]) <= 3
    assert sum(len(v) for v in ag.values()) == G.number_of_nodes()
    assert sum(len(n["prev_channels"]) for v in ag.values() for n in v) == G.number_of_edges()
    assert to_summit(G) == ag


def test_write_formats(run, tmp_path):
    G = class_graph(run, 2)
    for fmt in ("json", "summit", "graphml", "gexf", "dot"):
        assert write_graph(G, tmp_path / f"g.{fmt}", fmt).stat().st_size > 0
    H = nx.read_graphml(tmp_path / "g.graphml")
    assert set(H.nodes) == set(G.nodes) and set(H.edges) == set(G.edges)
    v = next(iter(G))
    assert H.nodes[v]["count"] == G.nodes[v]["count"] and H.nodes[v]["layer"] == G.nodes[v]["layer"]
    assert json.loads(H.nodes[v]["attr_channels"]) == G.nodes[v]["attr_channels"]
    assert json.loads(H.graph["settings"]) == G.graph["settings"]
    X = nx.read_gexf(tmp_path / "g.gexf")
    assert set(X.nodes) == set(G.nodes) and X.number_of_edges() == G.number_of_edges()
    dot = (tmp_path / "g.dot").read_text()
    assert dot.count(" -> ") == G.number_of_edges() and f'"{v}" [label="{v}"' in dot
    with pytest.raises(SummitError, match="valid: json, summit, graphml, gexf, dot"):
        write_graph(G, tmp_path / "g.png", "png")


@pytest.mark.parametrize("method", ["pagerank", "topn"])
def test_compare_membership(run, method):
    a, b = class_graph(run, 0, method=method), class_graph(run, 1, method=method)
    C = compare_graph(run, 0, 1, method=method)
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
    same = compare_graph(run, 4, 4, method=method)
    assert {d["membership"] for *_, d in same.edges(data=True)} | \
        {d["membership"] for _, d in same.nodes(data=True)} == {"both"}
    assert to_json(C)["summit"]["class_b"]["name"] == "099_goose"


def test_errors(run, tmp_path):
    with pytest.raises(SummitError, match="022_bald_eagle"):
        class_graph(run, "022_bald_egle")
    with pytest.raises(SummitError, match="valid: fire2, fire3"):
        class_graph(run, 0, layers=["fire10"])
    with pytest.raises(SummitError, match="valid: pagerank, topn"):
        class_graph(run, 0, method="random")
    with pytest.raises(SummitError, match="valid: mass0.01, mass0.03, top5"):
        class_graph(run, 0, selection="mass0.5")
    with pytest.raises(SummitError, match="top_n"):
        class_graph(run, 0, method="topn", top_n=0)
    empty = class_graph(run, 0, method="topn", min_count=1000)
    assert empty.number_of_nodes() == 0
    with pytest.raises(SummitError, match="empty"):
        write_graph(empty, tmp_path / "empty.json", "json")
    assert not (tmp_path / "empty.json").exists()


def test_cli(sample_run, tmp_path, capsys):
    out = tmp_path / "eagle.graphml"
    ok = subprocess.run([sys.executable, "-m", "summit", "graph", "--run", str(sample_run), "--class",
                         "022_bald_eagle", "--format", "graphml", "--out", str(out)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert nx.read_graphml(out).number_of_nodes() > 0 and "022_bald_eagle" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "summit", "graph", "--run", str(sample_run), "--class",
                          "022_bald_egle", "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "022_bald_eagle" in bad.stderr and not (tmp_path / "x.json").exists()
    # export --all: classes whose graph is empty are skipped and reported
    assert main(["export", "--run", str(sample_run), "--all", "--method", "topn", "--min-count", "4",
                 "--out-dir", str(tmp_path / "all")]) == 0
    index = json.loads((tmp_path / "all" / "index.json").read_text())
    assert len(index["graphs"]) + len(index["skipped"]) == 19 and index["graphs"]
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == \
        sorted([g["file"] for g in index["graphs"]] + ["index.json"])
    assert f"{len(index['skipped'])} classes skipped" in capsys.readouterr().out
    assert main(["export", "--run", str(sample_run), "--all", "--format", "summit", "--out-dir",
                 str(tmp_path / "ag")]) == 0
    # named by ImageNet index as Summit names them (022_bald_eagle -> ag-22.json), not by run index
    assert sorted(p.name for p in (tmp_path / "ag").glob("ag-*.json")) == \
        sorted(f"ag-{int(n[:3])}.json" for n in Run(sample_run).class_names)


@pytest.fixture(scope="module")
def inception_run(tmp_path_factory) -> Path:
    """A run of a small random InceptionV1 (two blocks: 1x1 and pool-proj channels direct, 3x3 and
    "5x5" through bottlenecks), so that Summit's average-inputs rule is exercised."""
    import torch
    from tiny_nets import TinyGoogLeNet, randomize_bn, tiny_spec

    from summit.pipeline.aggregator import AggregateConfig, Aggregator
    from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder
    torch.manual_seed(11)
    net = TinyGoogLeNet()
    randomize_bn(net)
    spec = tiny_spec("googlenet_tiny", net, {"inception3a": "inception3a", "inception3b": "inception3b"})
    agg = Aggregator(AggregateConfig(model="googlenet_tiny", batch_size=8, image_size=64, examples_k=0),
                     SafeImageFolder(BUNDLED_SAMPLE, 64), spec)
    agg.run(progress=False)
    out = tmp_path_factory.mktemp("inception") / "run"
    agg.write(out, progress=False)
    return out


@pytest.mark.parametrize("cls", [2, 9])
def test_pagerank_graph_equals_summits_rule_on_inception(inception_run, cls):
    run = Run(inception_run)
    kinds = {st["kind"] for st in run.stages}
    assert kinds == {"direct", "bottleneck_in", "bottleneck_out"}
    G = class_graph(run, cls, hide_ubiquitous=False)
    kept, edges, mass = reference_pagerank_graph(inception_run, cls, set())
    assert set(G) == kept and G.graph["settings"]["mass"] == pytest.approx(mass)
    assert {frozenset(e) for e in G.edges} == {frozenset(e) for e in edges}
    assert {d["route"] for *_, d in G.edges(data=True)} <= {"direct", "bottleneck"}


def stepwise_mass(pr: np.ndarray, u: np.ndarray, v: np.ndarray, group: np.ndarray, mass: float,
                  step: float) -> float:
    """Summit's threshold loop as written: cut, test every group, raise the mass by one step."""
    start, k = mass, 0
    while True:
        keep = mass_threshold(pr, mass)
        both = keep[u] & keep[v]
        if mass >= 1 or set(group.tolist()) <= set(group[both].tolist()):
            return mass
        k += 1
        mass = min(1.0, round(start + k * step, 10))


def test_connected_mass_equals_the_stepwise_loop():
    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(2, 60))
        m = int(rng.integers(0, 3 * n))
        u, v = rng.integers(0, n, m), rng.integers(0, n, m)
        group = rng.integers(0, int(rng.integers(1, 6)), m)
        pr = rng.random(n) ** 4
        if trial % 3 == 0:
            pr = np.round(pr, 1) + 1e-3  # ties
        pr /= pr.sum()
        for mass, step in ((0.075, 0.005), (0.3, 0.1), (0.01, 0.0007), (0.9, 0.5), (1.0, 0.005)):
            assert connected_mass(pr, u, v, group, mass, step) == stepwise_mass(pr, u, v, group, mass, step)


def test_stored_graphs(sample_run, tmp_path):
    """`summit graphs` stores every class's default graph as the server sends it; a changed run
    makes the store stale, and readers ignore it until it is rebuilt."""
    import os

    from summit.graph.cache import GraphCache, graph_bytes, is_fresh, stored_key
    from summit.run.layout import GRAPHS_FILE
    path = private_copy(sample_run, tmp_path / "run")
    run = Run(path)
    reader = GraphCache(run)
    assert reader.get(0) is None and not is_fresh(run)
    assert main(["graphs", "--run", str(path), "--quiet"]) == 0
    assert is_fresh(run)
    t = pq.read_table(path / GRAPHS_FILE)
    assert t.column("class").to_pylist() == list(range(len(run.class_names)))
    f = pq.ParquetFile(path / GRAPHS_FILE)  # one class per row group: a reader decodes one graph
    assert f.metadata.num_row_groups == len(run.class_names)
    assert all(f.metadata.row_group(c).num_rows == 1 for c in range(len(run.class_names)))
    for c, body in enumerate(t.column("json").to_pylist()):
        assert body == graph_bytes(class_graph(run, c))
    reader._checked = float("-inf")  # as if RECHECK_SECONDS had passed
    assert reader.get(4) == graph_bytes(class_graph(run, 4))
    key = stored_key(path / GRAPHS_FILE)
    st = (path / "classes.parquet").stat()
    os.utime(path / "classes.parquet", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the run changed
    changed = Run(path)
    assert not is_fresh(changed) and GraphCache(changed).get(4) is None
    assert main(["graphs", "--run", str(path), "--quiet"]) == 0
    assert stored_key(path / GRAPHS_FILE) != key and is_fresh(changed)
    assert [p.name for p in path.iterdir() if p.name.startswith(".")] == []  # written atomically
    pq.write_table(pq.read_table(path / GRAPHS_FILE), path / GRAPHS_FILE)  # same key, one row group
    assert GraphCache(Run(path)).get(4) is None  # not the format the reader decodes per class
