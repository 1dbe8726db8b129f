"""Attribution graphs (Summit's per-class graphs), class comparison, class embedding, export.

A class graph has, per layer, the channels that most often rank in the top-k of the class's
images (A[class, channel] counts) and, between consecutive layers, the strongest influence
edges (I[class, src, dst] counts) among those channels. See docs/GRAPH.md for the exact
definitions, the pruning rule and the JSON fields.
"""
from __future__ import annotations

import io
import json
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .models import SummitError
from .store import Run, atomic_write_bytes, write_json, write_table

GRAPH_SCHEMA_VERSION = 1
FORMATS = ("json", "graphml", "gexf", "dot")
EMBEDDING_METHODS = ("pca", "mds", "tsne")
EMBEDDING_FILE = "embedding.parquet"
EMBEDDING_SCHEMA = pa.schema([("class", pa.int32()), ("name", pa.string()), ("x", pa.float64()),
                              ("y", pa.float64()), ("method", pa.string())])


class ClassGraph(nx.DiGraph):
    """A class graph or comparison: a networkx DiGraph that draws itself in Jupyter."""

    def _repr_svg_(self) -> str:
        from .notebook import graph_svg
        return graph_svg(self)


# -- cached dense data ------------------------------------------------------------------------
@dataclass
class _Dense:
    """All layers' A matrices side by side: columns offsets[layer] .. offsets[layer] + channels."""

    offsets: dict[str, int]
    count: np.ndarray  # (n_classes, total_channels) int64
    sum: np.ndarray  # (n_classes, total_channels) float64
    n_images: np.ndarray  # (n_classes,) int64
    n_correct: list[int | None]


_DENSE: weakref.WeakKeyDictionary[Run, _Dense] = weakref.WeakKeyDictionary()


def _dense(run: Run) -> _Dense:
    """Dense activation matrices of a run, built once per Run object."""
    d = _DENSE.get(run)
    if d is None:
        offsets = dict(zip(run.layers, np.cumsum([0] + [run.channels[l] for l in run.layers]).tolist()))
        total = sum(run.channels.values())
        t = run.activations()
        li = pc.index_in(t.column("layer"), value_set=pa.array(run.layers)).to_numpy(zero_copy_only=False)
        col = np.asarray(list(offsets.values()), dtype=np.int64)[li] + t.column("channel").to_numpy()
        row = t.column("class").to_numpy()
        count = np.zeros((len(run.class_names), total), dtype=np.int64)
        total_sum = np.zeros((len(run.class_names), total), dtype=np.float64)
        count[row, col] = t.column("count").to_numpy()
        total_sum[row, col] = t.column("sum").to_numpy()
        d = _Dense(offsets, count, total_sum, run.classes.column("n_images").to_numpy(),
                   run.classes.column("n_correct").to_pylist())
        _DENSE[run] = d
    return d


@dataclass
class _Influence:
    """One class's sparse influence rows, with the pair as an index into run.pairs."""

    pair: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    count: np.ndarray

    @classmethod
    def read(cls, run: Run, class_index: int) -> _Influence:
        t = run.influence(class_index)
        pair = pc.index_in(t.column("layer_pair"), value_set=pa.array(run.pairs, pa.string()))
        return cls(pair.to_numpy(zero_copy_only=False).astype(np.int64), t.column("src").to_numpy(),
                   t.column("dst").to_numpy(), t.column("count").to_numpy())

    def lookup(self, pair: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Counts of the given (pair, src, dst) triples, 0 where the class has no row."""
        if not len(self.count):
            return np.zeros(len(pair), dtype=np.int64)
        width = int(max(self.src.max(), self.dst.max(), src.max(initial=0), dst.max(initial=0))) + 1
        keys = (self.pair * width + self.src) * width + self.dst
        order = np.argsort(keys)
        want = (pair * width + src) * width + dst
        hit = order[np.minimum(np.searchsorted(keys, want, sorter=order), len(keys) - 1)]
        return np.where(keys[hit] == want, self.count[hit], 0)


# -- class graph ------------------------------------------------------------------------------
@dataclass
class _Options:
    top_n: int
    min_count: int | None
    edges_per_node: int
    min_edge_count: int
    keep_dangling: bool
    layers: list[str]

    def settings(self) -> dict[str, Any]:
        return {"top_n": self.top_n, "min_count": self.min_count, "edges_per_node": self.edges_per_node,
                "min_edge_count": self.min_edge_count, "keep_dangling": self.keep_dangling,
                "layers": self.layers}


def _options(run: Run, top_n: int, min_count: int | None, edges_per_node: int, min_edge_count: int,
             keep_dangling: bool, layers: list[str] | None) -> _Options:
    if top_n < 1:
        raise SummitError(f"top_n must be >= 1, got {top_n}")
    if min_count is not None and min_count < 1:
        raise SummitError(f"min_count must be >= 1, got {min_count}")
    if edges_per_node < 0:
        raise SummitError(f"edges_per_node must be >= 0, got {edges_per_node}")
    if min_edge_count < 1:
        raise SummitError(f"min_edge_count must be >= 1, got {min_edge_count}")
    if layers is None:
        chosen = list(run.layers)
    else:
        wanted = {run.check_layer(l) for l in layers}
        chosen = [l for l in run.layers if l in wanted]
        if not chosen:
            raise SummitError(f"no layers chosen; valid: {', '.join(run.layers)}")
    return _Options(top_n, min_count, edges_per_node, min_edge_count, keep_dangling, chosen)


def _select(d: _Dense, ci: int, layer: str, channels: int, o: _Options) -> np.ndarray:
    """Selected channels of one layer, best first (count, then mean activation, then id)."""
    start = d.offsets[layer]
    count = d.count[ci, start:start + channels]
    cand = np.flatnonzero(count >= (o.min_count or 1))
    order = np.lexsort((cand, -d.sum[ci, start + cand], -count[cand]))
    return cand[order] if o.min_count is not None else cand[order[:o.top_n]]


def _build(run: Run, d: _Dense, ci: int, infl: _Influence, o: _Options) -> nx.DiGraph:
    n = int(d.n_images[ci])
    G = ClassGraph(kind="class", class_index=ci, class_name=run.class_names[ci], n_images=n,
                   n_correct=d.n_correct[ci], model=run.meta.get("model"), weights=run.meta.get("weights"),
                   k=run.meta.get("k"), settings=o.settings())
    selected = np.zeros(d.count.shape[1], dtype=bool)
    for layer in o.layers:
        start = d.offsets[layer]
        for c in _select(d, ci, layer, run.channels[layer], o).tolist():
            selected[start + c] = True
            G.add_node(f"{layer}:{c}", layer=layer, layer_index=run.layers.index(layer), channel=c,
                       count=int(d.count[ci, start + c]), fraction=float(d.count[ci, start + c] / n),
                       mean=float(d.sum[ci, start + c] / n))
    active = [i for i, p in enumerate(run.meta["pairs"]) if p["src"] in o.layers and p["dst"] in o.layers]
    if active and o.edges_per_node:
        pairs = run.meta["pairs"]
        src_off = np.array([d.offsets.get(p["src"], 0) for p in pairs], dtype=np.int64)
        dst_off = np.array([d.offsets.get(p["dst"], 0) for p in pairs], dtype=np.int64)
        gs = src_off[infl.pair] + infl.src
        gd = dst_off[infl.pair] + infl.dst
        keep = np.isin(infl.pair, active) & selected[gs] & selected[gd] & (infl.count >= o.min_edge_count)
        rows = np.flatnonzero(keep)
        rows = rows[np.lexsort((infl.src[rows], -infl.count[rows], gd[rows]))]
        first = np.r_[True, gd[rows][1:] != gd[rows][:-1]]
        rank = np.arange(len(rows)) - np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
        for r in rows[rank < o.edges_per_node].tolist():
            p = pairs[infl.pair[r]]
            c = int(infl.count[r])
            G.add_edge(f"{p['src']}:{infl.src[r]}", f"{p['dst']}:{infl.dst[r]}", pair=p["name"], count=c,
                       fraction=c / n)
    if active and not o.keep_dangling:
        G.remove_nodes_from([v for v in list(G) if G.degree(v) == 0])
    return G


def class_graph(run: Run, cls: str | int, top_n: int = 10, min_count: int | None = None,
                edges_per_node: int = 3, min_edge_count: int = 1, keep_dangling: bool = False,
                layers: list[str] | None = None) -> nx.DiGraph:
    """Summit attribution graph of one class (may be empty; write_graph refuses empty graphs)."""
    ci = run.class_index(cls)
    o = _options(run, top_n, min_count, edges_per_node, min_edge_count, keep_dangling, layers)
    return _build(run, _dense(run), ci, _Influence.read(run, ci), o)


def compare_graph(run: Run, a: str | int, b: str | int, top_n: int = 10, min_count: int | None = None,
                  edges_per_node: int = 3, min_edge_count: int = 1, keep_dangling: bool = False,
                  layers: list[str] | None = None) -> nx.DiGraph:
    """Union of the class graphs of a and b (same settings); nodes and edges carry membership
    a | b | both and both classes' counts and fractions."""
    ia, ib = run.class_index(a), run.class_index(b)
    o = _options(run, top_n, min_count, edges_per_node, min_edge_count, keep_dangling, layers)
    d = _dense(run)
    fa, fb = _Influence.read(run, ia), _Influence.read(run, ib)
    ga, gb = _build(run, d, ia, fa, o), _build(run, d, ib, fb, o)
    na, nb = int(d.n_images[ia]), int(d.n_images[ib])
    G = ClassGraph(kind="compare", model=run.meta.get("model"), weights=run.meta.get("weights"),
                   k=run.meta.get("k"), settings=o.settings(),
                   class_index_a=ia, class_name_a=run.class_names[ia], n_images_a=na,
                   n_correct_a=d.n_correct[ia], class_index_b=ib, class_name_b=run.class_names[ib],
                   n_images_b=nb, n_correct_b=d.n_correct[ib])
    nodes = sorted(set(ga) | set(gb), key=lambda v: ((ga.nodes.get(v) or gb.nodes[v])["layer_index"],
                                                     (ga.nodes.get(v) or gb.nodes[v])["channel"]))
    for v in nodes:
        attrs = ga.nodes.get(v) or gb.nodes[v]
        col = d.offsets[attrs["layer"]] + attrs["channel"]
        ca, cb = int(d.count[ia, col]), int(d.count[ib, col])
        G.add_node(v, layer=attrs["layer"], layer_index=attrs["layer_index"], channel=attrs["channel"],
                   membership=_membership(v in ga, v in gb), count_a=ca, count_b=cb,
                   fraction_a=ca / na if na else 0.0, fraction_b=cb / nb if nb else 0.0,
                   mean_a=float(d.sum[ia, col] / na) if na else 0.0,
                   mean_b=float(d.sum[ib, col] / nb) if nb else 0.0)
    edges = list(ga.edges) + [e for e in gb.edges if not ga.has_edge(*e)]
    if edges:
        pid = np.array([run.pairs.index((ga.edges.get(e) or gb.edges[e])["pair"]) for e in edges])
        src = np.array([G.nodes[u]["channel"] for u, _ in edges])
        dst = np.array([G.nodes[v]["channel"] for _, v in edges])
        counts_a, counts_b = fa.lookup(pid, src, dst).tolist(), fb.lookup(pid, src, dst).tolist()
        for (u, v), p, ca, cb in zip(edges, pid.tolist(), counts_a, counts_b):
            G.add_edge(u, v, pair=run.pairs[p], membership=_membership(ga.has_edge(u, v), gb.has_edge(u, v)),
                       count_a=ca, count_b=cb, fraction_a=ca / na if na else 0.0,
                       fraction_b=cb / nb if nb else 0.0)
    return G


def _membership(in_a: bool, in_b: bool) -> str:
    return "both" if in_a and in_b else "a" if in_a else "b"


# -- class embedding --------------------------------------------------------------------------
def _class_vectors(run: Run, layer: str | None) -> np.ndarray:
    """A counts per class (one layer or all concatenated), divided by the class's n_images."""
    d = _dense(run)
    if layer is None:
        m = d.count
    else:
        start = d.offsets[run.check_layer(layer)]
        m = d.count[:, start:start + run.channels[layer]]
    return m / np.maximum(d.n_images, 1)[:, None]


def _flip(y: np.ndarray) -> np.ndarray:
    """Deterministic sign per column: the entry of largest magnitude is positive."""
    signs = np.sign(y[np.abs(y).argmax(0), np.arange(y.shape[1])])
    return y * np.where(signs == 0, 1, signs)


def _pad2(y: np.ndarray) -> np.ndarray:
    out = np.zeros((y.shape[0], 2))
    out[:, :min(2, y.shape[1])] = y[:, :2]
    return out


def _top2(gram: np.ndarray) -> np.ndarray:
    """Coordinates along the two largest eigenvectors of a (double-centered) Gram matrix."""
    w, v = np.linalg.eigh(gram)
    top = np.argsort(w)[::-1][:2]
    return _pad2(_flip(v[:, top] * np.sqrt(np.clip(w[top], 0.0, None))))


def _pca(x: np.ndarray) -> np.ndarray:
    """PCA scores (U * S of the centered data) from the n x n Gram matrix: n classes << channels."""
    xc = x - x.mean(0)
    return _top2(xc @ xc.T)


def _cosine_distance(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    u = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    dist = np.clip(1.0 - u @ u.T, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    return dist


def _mds(x: np.ndarray) -> np.ndarray:
    """Classical (Torgerson) MDS on cosine distances."""
    d2 = _cosine_distance(x) ** 2
    j = np.eye(len(x)) - 1.0 / len(x)
    return _top2(-0.5 * j @ d2 @ j)


def _tsne(x: np.ndarray, seed: int, iterations: int = 750) -> np.ndarray:
    """Exact t-SNE (van der Maaten & Hinton 2008) on cosine distances; O(n^2) per step."""
    n = len(x)
    if n < 3:
        return _pca(x)
    d = _cosine_distance(x) ** 2
    perplexity = min(30.0, (n - 1) / 3.0)
    p = np.zeros((n, n))
    for i in range(n):  # binary search of each point's Gaussian precision for the perplexity
        lo, hi, beta = 0.0, np.inf, 1.0
        di = np.delete(d[i], i)
        for _ in range(64):
            pi = np.exp(-(di - di.min()) * beta)
            pi /= pi.sum()
            h = -np.sum(pi * np.log(np.maximum(pi, 1e-300)))
            if abs(h - np.log(perplexity)) < 1e-5:
                break
            lo, hi = (beta, hi) if h > np.log(perplexity) else (lo, beta)
            beta = beta * 2 if hi == np.inf else (lo + hi) / 2
        p[i, np.arange(n) != i] = pi
    p = np.maximum((p + p.T) / (2 * n), 1e-12)
    y = np.random.default_rng(seed).normal(0.0, 1e-4, (n, 2))
    velocity, gains = np.zeros_like(y), np.ones_like(y)
    rate = max(n / 48.0, 50.0)  # sklearn's "auto" learning rate: n / exaggeration / 4
    for it in range(iterations):
        a, b = y[:, 0], y[:, 1]  # broadcasting and two matvecs: BLAS is slow for (n, 2) matmuls
        num = 1.0 / (1.0 + (a[:, None] - a[None]) ** 2 + (b[:, None] - b[None]) ** 2)
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        w = ((12.0 if it < 250 else 1.0) * p - q) * num
        grad = 4.0 * (w.sum(1)[:, None] * y - np.stack([w @ a, w @ b], 1))  # sum_j w_ij (y_i - y_j)
        gains = np.where(np.sign(grad) != np.sign(velocity), gains + 0.2, gains * 0.8).clip(0.01)
        velocity = (0.5 if it < 250 else 0.8) * velocity - rate * gains * grad
        y = y + velocity
        y -= y.mean(0)
    return _flip(y)


def class_embedding(run: Run, method: str = "pca", layer: str | None = None,
                    seed: int = 0) -> list[dict]:
    """2-D positions of all classes from their normalized activation vectors."""
    if method not in EMBEDDING_METHODS:
        raise SummitError(f"unknown embedding method {method!r}; valid: {', '.join(EMBEDDING_METHODS)}")
    x = _class_vectors(run, layer)
    y = {"pca": _pca, "mds": _mds, "tsne": lambda v: _tsne(v, seed)}[method](x)
    n_images = _dense(run).n_images
    return [{"class": i, "name": name, "x": float(y[i, 0]), "y": float(y[i, 1]), "n_images": int(n_images[i])}
            for i, name in enumerate(run.class_names)]


def _run_key(run: Run) -> str:
    """Identifies the run's contents, so that an embedding of an overwritten run is recomputed."""
    return json.dumps([run.meta.get("config"), run.class_names], sort_keys=True)


def write_embedding(run: Run, method: str = "pca") -> Path:
    """Compute the class embedding and store it as embedding.parquet in the run directory."""
    rows = class_embedding(run, method)
    table = pa.table({"class": [r["class"] for r in rows], "name": [r["name"] for r in rows],
                      "x": [r["x"] for r in rows], "y": [r["y"] for r in rows],
                      "method": [method] * len(rows)}, schema=EMBEDDING_SCHEMA)
    path = run.path / EMBEDDING_FILE
    write_table(table.replace_schema_metadata({"summit_run": _run_key(run)}), path)
    return path


def load_embedding(run: Run, method: str | None = None) -> list[dict]:
    """Stored embedding rows (class, name, x, y, n_images, method); computed and stored if missing,
    stale, or made with another method than `method` (None: whichever is stored, else pca)."""
    path = run.path / EMBEDDING_FILE
    t = pq.read_table(path) if path.is_file() else None
    meta = (t.schema.metadata or {}) if t is not None else {}
    stored = t.column("method")[0].as_py() if t is not None and t.num_rows else None
    if t is None or meta.get(b"summit_run", b"").decode() != _run_key(run) or \
            (method is not None and method != stored):
        write_embedding(run, method or "pca")
        t = pq.read_table(path)
    n_images = _dense(run).n_images
    return [{**r, "n_images": int(n_images[r["class"]])} for r in t.to_pylist()]


# -- serialization ----------------------------------------------------------------------------
def _class_info(g: dict, suffix: str = "") -> dict:
    return {k: g.get(f"{k2}{suffix}") for k, k2 in (("index", "class_index"), ("name", "class_name"),
                                                    ("n_images", "n_images"), ("n_correct", "n_correct"))}


def _summit_meta(G: nx.DiGraph) -> dict:
    g = G.graph
    meta = {"schema": "summit-graph", "schema_version": GRAPH_SCHEMA_VERSION, "doc": "docs/GRAPH.md",
            "kind": g.get("kind"), "model": g.get("model"), "weights": g.get("weights"), "k": g.get("k"),
            "settings": g.get("settings")}
    if g.get("kind") == "compare":
        return {**meta, "class": _class_info(g, "_a"), "class_b": _class_info(g, "_b")}
    return {**meta, "class": _class_info(g)}


def to_json(G: nx.DiGraph) -> dict:
    """node-link dict (edges under "links") plus a "summit" key; nx.node_link_graph(d, edges="links")
    gives the graph back."""
    return {**nx.node_link_data(G, edges="links"), "summit": _summit_meta(G)}


def _title(G: nx.DiGraph) -> str:
    g = G.graph
    names = g.get("class_name") or f"{g.get('class_name_a')} vs {g.get('class_name_b')}"
    return f"{g.get('model')} {names}"


def _flat(G: nx.DiGraph) -> nx.DiGraph:
    """Copy with graph attributes GraphML/GEXF can store: dicts and lists as JSON, None dropped."""
    H = G.copy()
    H.graph = {k: json.dumps(v) if isinstance(v, (dict, list)) else v
               for k, v in G.graph.items() if v is not None}
    H.graph["name"] = _title(G)
    return H


def _dot_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        v = json.dumps(v)
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={_dot_value(json.dumps(v) if isinstance(v, (dict, list)) else v)}"
                     for k, v in attrs.items())


def to_dot(G: nx.DiGraph) -> str:
    """Graphviz DOT text: one rank per layer, summit metadata as a JSON comment."""
    lines = [f"// summit: {json.dumps(_summit_meta(G), sort_keys=True)}",
             f"digraph {_dot_value(_title(G))} {{", "  rankdir=TB;", "  node [shape=box];"]
    layers: dict[str, list[str]] = {}
    for v, attrs in G.nodes(data=True):
        layers.setdefault(attrs["layer"], []).append(v)
        lines.append(f"  {_dot_value(v)} [{_dot_attrs({'label': v, **attrs})}];")
    for members in layers.values():
        lines.append("  { rank=same; " + " ".join(_dot_value(v) + ";" for v in members) + " }")
    for u, v, attrs in G.edges(data=True):
        lines.append(f"  {_dot_value(u)} -> {_dot_value(v)} [{_dot_attrs(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _empty_reason(G: nx.DiGraph) -> str:
    g = G.graph
    if g.get("kind") == "compare":
        return f"graph comparing {g.get('class_name_a')!r} and {g.get('class_name_b')!r} is empty"
    if not g.get("n_images"):
        return f"graph of class {g.get('class_name')!r} is empty: the class has no images in this run"
    return (f"graph of class {g.get('class_name')!r} is empty: no channel or edge passes the thresholds "
            f"{json.dumps(g.get('settings'), sort_keys=True)}")


def safe_filename(name: str) -> str:
    """A class name reduced to [A-Za-z0-9._-] (export prefixes the class index, so it stays unique)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"


def write_graph(G: nx.DiGraph, path: str | os.PathLike, fmt: str = "json") -> Path:
    """Write a graph as json | graphml | gexf | dot; an empty graph is an error, not an empty file."""
    if fmt not in FORMATS:
        raise SummitError(f"unknown graph format {fmt!r}; valid: {', '.join(FORMATS)}")
    if G.number_of_nodes() == 0:
        raise SummitError(_empty_reason(G))
    path = Path(path)
    if fmt == "json":
        write_json(to_json(G), path)
        return path
    if fmt == "dot":
        atomic_write_bytes(path, to_dot(G).encode())
        return path
    buf = io.BytesIO()
    (nx.write_graphml if fmt == "graphml" else nx.write_gexf)(_flat(G), buf)
    atomic_write_bytes(path, buf.getvalue())
    return path
