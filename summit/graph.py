"""Attribution graphs: per-class graphs of channels and their influences, and class comparison.

Summit's rule (``method="pagerank"``, the default): the class's *full graph* has every channel
pair with influence (direct stages: every counted (i, j); bottleneck routes: Summit's max-min
composition, see ``_pair_edges``), undirected, weighted by counts. Personalized PageRank
(alpha 0.85, personalization A[class, channel] / the layer's max) ranks its nodes; one threshold
for all layers keeps the nodes that hold ``mass`` (7.5 %) of the PageRank mass, raised by
``mass_step`` (0.5 %) until every layer keeps a node joined to a kept node of the previous layer.
Every full-graph edge between kept nodes is kept.

Our option (``method="topn"``): per layer the ``top_n`` channels of highest A[class] (or all with
count >= ``min_count``), each keeping its ``edges_per_node`` strongest incoming edges.

Both rules can hide ubiquitous channels (selection.ubiquitous_channels) and explicit ones.
See docs/GRAPH.md for every field.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from .models import SummitError
from .selection import ubiquitous_channels
from .store import Run

METHODS = ("pagerank", "topn")
PAGERANK_ALPHA = 0.85
ATTR_CHANNELS = 3


class ClassGraph(nx.DiGraph):
    """A class graph or comparison: a networkx DiGraph that draws itself in Jupyter."""

    def _repr_svg_(self) -> str:
        from .notebook import graph_svg
        return graph_svg(self)


# -- cached dense data ------------------------------------------------------------------------
@dataclass
class _Dense:
    """All layers' A matrices (one selection) side by side: columns offsets[layer] + channel."""

    offsets: dict[str, int]
    count: np.ndarray  # (n_classes, total_channels) int64
    sum: np.ndarray  # (n_classes, total_channels) float64
    n_images: np.ndarray  # (n_classes,) int64
    n_correct: list[int | None]


_DENSE: weakref.WeakKeyDictionary[Run, dict[str, _Dense]] = weakref.WeakKeyDictionary()


def offsets(run: Run) -> dict[str, int]:
    """Column offset of each layer when all layers' channels are laid side by side."""
    return dict(zip(run.layers, np.cumsum([0] + [run.channels[l] for l in run.layers]).tolist()))


def dense(run: Run, selection: str | None = None) -> _Dense:
    """Dense activation matrices of a run for one selection, built once per Run object."""
    sel = run.check_selection(selection)
    cache = _DENSE.setdefault(run, {})
    if sel not in cache:
        offs = offsets(run)
        total = sum(run.channels.values())
        t = run.activations()
        if "selection" in t.column_names:
            t = t.filter(pc.field("selection") == sel)
        li = pc.index_in(t.column("layer"), value_set=pa.array(run.layers)).to_numpy(zero_copy_only=False)
        col = np.asarray(list(offs.values()), dtype=np.int64)[li] + t.column("channel").to_numpy()
        row = t.column("class").to_numpy()
        count = np.zeros((len(run.class_names), total), dtype=np.int64)
        total_sum = np.zeros((len(run.class_names), total), dtype=np.float64)
        count[row, col] = t.column("count").to_numpy()
        total_sum[row, col] = t.column("sum").to_numpy()
        cache[sel] = _Dense(offs, count, total_sum, run.classes.column("n_images").to_numpy(),
                            run.classes.column("n_correct").to_pylist())
    return cache[sel]


# -- a class's full graph -----------------------------------------------------------------------
@dataclass
class _Edges:
    """Edges of one class, per layer pair (index into run.pairs): (src, dst, weight) arrays."""

    pair: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    route: np.ndarray  # "direct" | "bottleneck"

    @classmethod
    def concat(cls, parts: list[tuple]) -> _Edges:
        if not parts:
            return cls(*(np.zeros(0, dtype=np.int64) for _ in range(4)), np.zeros(0, dtype=object))
        return cls(*(np.concatenate([p[i] for p in parts]) for i in range(5)))

    def lookup(self, pair: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Weights of the given (pair, src, dst) triples, 0 where the class has no such edge."""
        if not len(self.weight):
            return np.zeros(len(pair), dtype=np.int64)
        width = int(max(self.src.max(), self.dst.max(), src.max(initial=0), dst.max(initial=0))) + 1
        keys = (self.pair * width + self.src) * width + self.dst
        order = np.argsort(keys)
        want = (pair * width + src) * width + dst
        hit = order[np.minimum(np.searchsorted(keys, want, sorter=order), len(keys) - 1)]
        return np.where(keys[hit] == want, self.weight[hit], 0)


@dataclass
class _ClassEdges:
    """A class's full-graph edges and, per destination, its strongest raw inputs (attr_channels)."""

    full: _Edges
    attr: _Edges


def _rank_within(dst: np.ndarray, weight: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered by (dst, weight desc, src) and each row's rank within its dst."""
    order = np.lexsort((src, -weight, dst))
    d = dst[order]
    first = np.r_[True, d[1:] != d[:-1]] if len(d) else np.zeros(0, dtype=bool)
    idx = np.arange(len(d))
    return order, idx - np.maximum.accumulate(np.where(first, idx, 0))


def _top_per_dst(rows: tuple[np.ndarray, np.ndarray, np.ndarray], k: int) -> np.ndarray:
    """Indices of each destination's k strongest rows (weight desc, then lower source)."""
    src, dst, w = rows
    order, rank = _rank_within(dst, w, src)
    return order[rank < k]


def compose_max_min(i_out: np.ndarray, i_in: np.ndarray, chunk_bytes: int = 1 << 24) -> np.ndarray:
    """Summit's bottleneck composition: w[j, i] = max_m min(I_out[j, m], I_in[m, i]).

    i_out: (n_dst, n_mid) counts bottleneck m -> output j; i_in: (n_mid, n_src) counts i -> m.
    """
    n_dst, n_mid = i_out.shape
    out = np.zeros((n_dst, i_in.shape[1]), dtype=np.int64)
    rows = max(1, chunk_bytes // max(1, n_mid * i_in.shape[1] * 8))
    for a in range(0, n_dst, rows):
        out[a:a + rows] = np.minimum(i_out[a:a + rows, :, None], i_in[None]).max(1, initial=0)
    return out


def _pair_edges(run: Run, rows: dict[str, tuple], pair: dict) -> tuple[tuple, tuple]:
    """(full-graph edges, attr candidates) of one pair as (src, dst, weight, route) arrays."""
    stages = [st for st in run.stages if st["pair"] == pair["name"]]
    direct = next((st for st in stages if st["kind"] == "direct"), None)
    parts, attr = [], []
    n_direct: list[int] = []
    if direct is not None:
        s, d, c = rows.get(direct["name"], (np.zeros(0, int),) * 3)
        parts.append((s, d, c, np.full(len(c), "direct", dtype=object)))
        attr.append(parts[-1])
        for a, b in direct["dst_ranges"]:  # Summit: the average number of inputs of direct channels
            n_direct += np.bincount(d[(d >= a) & (d < b)] - a, minlength=b - a).tolist()
    keep = int(np.mean(n_direct)) if n_direct else int(run.meta.get("k_influence") or 5)
    for out_st in (st for st in stages if st["kind"] == "bottleneck_out"):
        in_st = next(st for st in stages if st["kind"] == "bottleneck_in" and st["bottleneck"] == out_st["bottleneck"])
        n_mid, n_src = in_st["dst_channels"], in_st["src_channels"]
        i_in = np.zeros((n_mid, n_src), dtype=np.int64)
        s, d, c = rows.get(in_st["name"], (np.zeros(0, int),) * 3)
        i_in[d, s] = c
        s, d, c = rows.get(out_st["name"], (np.zeros(0, int),) * 3)
        js = np.unique(d)
        if not len(js):
            continue
        i_out = np.zeros((len(js), n_mid), dtype=np.int64)
        i_out[np.searchsorted(js, d), s] = c
        w = compose_max_min(i_out, i_in)
        jj, ii = np.nonzero(w)
        cand = (ii, js[jj], w[jj, ii], np.full(len(ii), "bottleneck", dtype=object))
        attr.append(cand)
        top = _top_per_dst(cand[:3], keep)
        parts.append(tuple(x[top] for x in cand))
    full = tuple(np.concatenate([p[i] for p in parts]) for i in range(4)) if parts else None
    attr_all = tuple(np.concatenate([p[i] for p in attr]) for i in range(4)) if attr else None
    if attr_all is not None:
        top = _top_per_dst(attr_all[:3], ATTR_CHANNELS)
        attr_all = tuple(x[top] for x in attr_all)
    return full, attr_all


def class_edges(run: Run, class_index: int) -> _ClassEdges:
    """The class's full graph (every pair) and its per-destination top raw inputs."""
    t = run.influence(class_index)
    stage = pc.index_in(t.column("layer_pair"), value_set=pa.array(run.stage_names, pa.string()))
    stage = stage.to_numpy(zero_copy_only=False)
    src, dst, cnt = (t.column(c).to_numpy().astype(np.int64) for c in ("src", "dst", "count"))
    order = np.argsort(stage, kind="stable")
    bounds = np.searchsorted(stage[order], np.arange(len(run.stage_names) + 1))
    rows = {name: (src[order[a:b]], dst[order[a:b]], cnt[order[a:b]])
            for name, a, b in zip(run.stage_names, bounds[:-1], bounds[1:]) if b > a}
    full, attr = [], []
    for pi, pair in enumerate(run.meta["pairs"]):
        f, a = _pair_edges(run, rows, pair)
        if f is not None:
            full.append((np.full(len(f[0]), pi), *f))
        if a is not None:
            attr.append((np.full(len(a[0]), pi), *a))
    return _ClassEdges(_Edges.concat(full), _Edges.concat(attr))


# -- options ----------------------------------------------------------------------------------
@dataclass
class _Options:
    method: str
    selection: str
    layers: list[str]
    hide_ubiquitous: bool
    exclude: list[str]
    mass: float
    mass_step: float
    top_n: int
    min_count: int | None
    edges_per_node: int
    min_edge_count: int
    keep_dangling: bool
    excluded: list[str] = field(default_factory=list)  # resolved: ubiquitous + explicit

    def settings(self, final_mass: float | None = None) -> dict[str, Any]:
        s: dict[str, Any] = {"method": self.method, "selection": self.selection, "layers": self.layers,
                             "hide_ubiquitous": self.hide_ubiquitous, "excluded": self.excluded}
        if self.method == "pagerank":
            return {**s, "mass_start": self.mass, "mass_step": self.mass_step, "mass": final_mass,
                    "alpha": PAGERANK_ALPHA}
        return {**s, "top_n": self.top_n, "min_count": self.min_count, "edges_per_node": self.edges_per_node,
                "min_edge_count": self.min_edge_count, "keep_dangling": self.keep_dangling}


def _parse_exclude(run: Run, items: list[str]) -> list[str]:
    out = []
    for it in items:
        layer, _, ch = str(it).partition(":")
        run.check_layer(layer)
        if not ch.isascii() or not ch.isdigit() or int(ch) >= run.channels[layer]:
            raise SummitError(f"bad channel in --exclude {it!r}: need layer:channel with channel "
                              f"0..{run.channels[layer] - 1}")
        out.append(f"{layer}:{int(ch)}")
    return out


def _options(run: Run, method: str = "pagerank", selection: str | None = None, layers: list[str] | None = None,
             hide_ubiquitous: bool = True, exclude: list[str] | None = None, mass: float = 0.075,
             mass_step: float = 0.005, top_n: int = 10, min_count: int | None = None, edges_per_node: int = 3,
             min_edge_count: int = 1, keep_dangling: bool = False) -> _Options:
    if method not in METHODS:
        raise SummitError(f"unknown graph method {method!r}; valid: {', '.join(METHODS)}")
    if not 0 < mass <= 1 or not 0 < mass_step <= 1:
        raise SummitError(f"mass and mass_step must be in (0, 1], got {mass} and {mass_step}")
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
    o = _Options(method, run.check_selection(selection), chosen, hide_ubiquitous,
                 _parse_exclude(run, exclude or []), mass, mass_step, top_n, min_count, edges_per_node,
                 min_edge_count, keep_dangling)
    d = dense(run, o.selection)
    found = []
    if hide_ubiquitous:
        for l in run.layers:
            a = d.offsets[l]
            chans, _ = ubiquitous_channels(d.count[:, a:a + run.channels[l]], d.n_images)
            found += [f"{l}:{c}" for c in chans.tolist()]
    o.excluded = list(dict.fromkeys(found + o.exclude))
    return o


# -- building ----------------------------------------------------------------------------------
def pagerank(n: int, u: np.ndarray, v: np.ndarray, w: np.ndarray, personalization: np.ndarray,
             alpha: float = PAGERANK_ALPHA, max_iter: int = 100, tol: float = 1e-6) -> np.ndarray:
    """Personalized PageRank of an undirected weighted graph (edges u-v), as networkx computes it
    (dangling nodes jump by the personalization; stop when the L1 change < n * tol)."""
    a = sp.csr_array((np.r_[w, w].astype(np.float64), (np.r_[u, v], np.r_[v, u])), shape=(n, n))
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg != 0)
    a = sp.diags_array(inv) @ a
    p = personalization / personalization.sum() if personalization.sum() > 0 else np.full(n, 1.0 / n)
    dangling = deg == 0
    x = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        last = x
        x = alpha * (x @ a + x[dangling].sum() * p) + (1 - alpha) * p
        if np.abs(x - last).sum() < n * tol:
            return x
    raise SummitError(f"PageRank did not converge in {max_iter} iterations")


def mass_threshold(pr: np.ndarray, mass: float) -> np.ndarray:
    """Summit's cut: accumulate PageRank values in descending order until the share reaches
    ``mass``; keep the nodes strictly above the next value (all nodes if none is left)."""
    vals = np.sort(pr)[::-1]
    cum = np.cumsum(vals / vals.sum())
    cnt = int(np.searchsorted(cum, mass, side="left")) + 1
    return pr > vals[cnt] if cnt < len(vals) else np.ones(len(pr), dtype=bool)


def _node_attrs(run: Run, d: _Dense, ci: int, layer: str, ch: int) -> dict:
    col = d.offsets[layer] + ch
    n = int(d.n_images[ci])
    return {"layer": layer, "layer_index": run.layers.index(layer), "channel": ch,
            "count": int(d.count[ci, col]), "fraction": float(d.count[ci, col] / n) if n else 0.0,
            "mean": float(d.sum[ci, col] / n) if n else 0.0}


def _attr_channels(run: Run, e: _Edges) -> dict[str, list[dict]]:
    pairs = run.meta["pairs"]
    out: dict[str, list[dict]] = {}
    order = np.lexsort((e.src, -e.weight, e.dst, e.pair))
    for r in order.tolist():
        out.setdefault(f"{pairs[e.pair[r]]['dst']}:{e.dst[r]}", []).append(
            {"channel": int(e.src[r]), "count": int(e.weight[r])})
    return out


def _edge_view(run: Run, d: _Dense, e: _Edges, o: _Options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows of active pairs without excluded ends, global src ids, global dst ids)."""
    pairs = run.meta["pairs"]
    active = np.array([p["src"] in o.layers and p["dst"] in o.layers for p in pairs] + [False])
    src_off = np.array([d.offsets[p["src"]] for p in pairs] + [0], dtype=np.int64)
    dst_off = np.array([d.offsets[p["dst"]] for p in pairs] + [0], dtype=np.int64)
    gs, gd = src_off[e.pair] + e.src, dst_off[e.pair] + e.dst
    bad = np.zeros(d.count.shape[1], dtype=bool)
    for v in o.excluded:
        layer, ch = v.split(":")
        bad[d.offsets[layer] + int(ch)] = True
    rows = np.flatnonzero(active[e.pair] & ~bad[gs] & ~bad[gd])
    return rows, gs, gd


def _layer_of(run: Run, d: _Dense, gid: int) -> tuple[str, int]:
    i = int(np.searchsorted(np.array(list(d.offsets.values())), gid, side="right")) - 1
    return run.layers[i], gid - d.offsets[run.layers[i]]


def _new_graph(run: Run, d: _Dense, ci: int, o: _Options) -> nx.DiGraph:
    return ClassGraph(kind="class", class_index=ci, class_name=run.class_names[ci], n_images=int(d.n_images[ci]),
                      n_correct=d.n_correct[ci], model=run.meta.get("model"), weights=run.meta.get("weights"),
                      k=run.meta.get("k"), selection=o.selection, settings=o.settings())


def _add_edges(G: nx.DiGraph, run: Run, ce: _ClassEdges, rows: np.ndarray, n: int) -> None:
    e = ce.full
    pairs = run.meta["pairs"]
    for r in rows.tolist():
        p = pairs[e.pair[r]]
        c = int(e.weight[r])
        G.add_edge(f"{p['src']}:{e.src[r]}", f"{p['dst']}:{e.dst[r]}", pair=p["name"], count=c,
                   fraction=c / n if n else 0.0, route=str(e.route[r]))


def _finish_nodes(G: nx.DiGraph, attr: dict[str, list[dict]]) -> None:
    """Each node's in-graph inputs and its top raw inputs (attr_channels)."""
    for v in G:
        G.nodes[v]["inputs"] = sorted(({"channel": G.nodes[u]["channel"], "count": c["count"]}
                                       for u, _, c in G.in_edges(v, data=True)),
                                      key=lambda x: (-x["count"], x["channel"]))
        G.nodes[v]["attr_channels"] = attr.get(v, [])


def _build_pagerank(run: Run, d: _Dense, ci: int, ce: _ClassEdges, o: _Options) -> nx.DiGraph:
    G = _new_graph(run, d, ci, o)
    if not d.n_images[ci]:
        return G
    rows, gs, gd = _edge_view(run, d, ce.full, o)
    excluded = {d.offsets[v.split(":")[0]] + int(v.split(":")[1]) for v in o.excluded}
    if len(rows):
        nodes = np.unique(np.r_[gs[rows], gd[rows]])
    else:  # no influence between chosen layers: PageRank is the personalization itself
        cols = np.concatenate([np.arange(d.offsets[l], d.offsets[l] + run.channels[l]) for l in o.layers])
        nodes = np.array([c for c in cols[d.count[ci, cols] > 0] if c not in excluded], dtype=np.int64)
    if not len(nodes):
        return G
    pers = np.zeros(len(nodes))
    for l in o.layers:
        a, b = d.offsets[l], d.offsets[l] + run.channels[l]
        ok = [c for c in range(a, b) if c not in excluded]
        top = d.count[ci, ok].max() if ok else 0
        inl = (nodes >= a) & (nodes < b)
        pers[inl] = d.count[ci, nodes[inl]] / top if top > 0 else 0.0
    u, v = np.searchsorted(nodes, gs[rows]), np.searchsorted(nodes, gd[rows])
    pr = pagerank(len(nodes), u, v, ce.full.weight[rows], pers)
    pair_of = ce.full.pair[rows]
    need = np.unique(pair_of)
    mass, step = o.mass, 0
    while True:
        keep = mass_threshold(pr, mass)
        both = keep[u] & keep[v]
        if mass >= 1 or set(need.tolist()) <= set(pair_of[both].tolist()):
            break
        step += 1
        mass = min(1.0, round(o.mass + step * o.mass_step, 10))
    G.graph["settings"] = o.settings(mass)
    for i in np.flatnonzero(keep)[np.argsort(-pr[keep], kind="stable")].tolist():
        layer, ch = _layer_of(run, d, int(nodes[i]))
        G.add_node(f"{layer}:{ch}", **_node_attrs(run, d, ci, layer, ch), pagerank=float(pr[i]))
    _add_edges(G, run, ce, rows[both], int(d.n_images[ci]))
    _finish_nodes(G, _attr_channels(run, ce.attr))
    return G


def _build_topn(run: Run, d: _Dense, ci: int, ce: _ClassEdges, o: _Options) -> nx.DiGraph:
    G = _new_graph(run, d, ci, o)
    selected = np.zeros(d.count.shape[1], dtype=bool)
    excluded = {d.offsets[v.split(":")[0]] + int(v.split(":")[1]) for v in o.excluded}
    for layer in o.layers:
        start = d.offsets[layer]
        count = d.count[ci, start:start + run.channels[layer]]
        cand = np.array([c for c in np.flatnonzero(count >= (o.min_count or 1)) if start + c not in excluded],
                        dtype=np.int64)
        order = np.lexsort((cand, -d.sum[ci, start + cand], -count[cand]))
        for c in (cand[order] if o.min_count is not None else cand[order[:o.top_n]]).tolist():
            selected[start + c] = True
            G.add_node(f"{layer}:{c}", **_node_attrs(run, d, ci, layer, c))
    rows, gs, gd = _edge_view(run, d, ce.full, o)
    e = ce.full
    if len(rows) and o.edges_per_node:
        rows = rows[selected[gs[rows]] & selected[gd[rows]] & (e.weight[rows] >= o.min_edge_count)]
        top = _top_per_dst((e.src[rows], gd[rows], e.weight[rows]), o.edges_per_node)
        _add_edges(G, run, ce, rows[top], int(d.n_images[ci]))
    if any(p["src"] in o.layers and p["dst"] in o.layers for p in run.meta["pairs"]) and not o.keep_dangling:
        G.remove_nodes_from([v for v in list(G) if G.degree(v) == 0])
    _finish_nodes(G, _attr_channels(run, ce.attr))
    return G


def _build(run: Run, ci: int, ce: _ClassEdges, o: _Options) -> nx.DiGraph:
    d = dense(run, o.selection)
    return (_build_pagerank if o.method == "pagerank" else _build_topn)(run, d, ci, ce, o)


def class_graph(run: Run, cls: str | int, method: str = "pagerank", **options: Any) -> nx.DiGraph:
    """Attribution graph of one class (may be empty; write_graph refuses empty graphs).

    options: selection, layers, hide_ubiquitous, exclude ("layer:channel" list); pagerank: mass,
    mass_step; topn: top_n, min_count, edges_per_node, min_edge_count, keep_dangling.
    """
    ci = run.class_index(cls)
    o = _options(run, method, **options)
    return _build(run, ci, class_edges(run, ci), o)


def compare_graph(run: Run, a: str | int, b: str | int, method: str = "pagerank", **options: Any) -> nx.DiGraph:
    """Union of the class graphs of a and b (same settings); nodes and edges carry membership
    a | b | both and both classes' counts and fractions."""
    ia, ib = run.class_index(a), run.class_index(b)
    o = _options(run, method, **options)
    d = dense(run, o.selection)
    ea, eb = class_edges(run, ia), class_edges(run, ib)
    ga, gb = _build(run, ia, ea, o), _build(run, ib, eb, o)
    na, nb = int(d.n_images[ia]), int(d.n_images[ib])
    G = ClassGraph(kind="compare", model=run.meta.get("model"), weights=run.meta.get("weights"),
                   k=run.meta.get("k"), selection=o.selection,
                   settings={**o.settings(), "mass_a": ga.graph["settings"].get("mass"),
                             "mass_b": gb.graph["settings"].get("mass")},
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
        counts_a, counts_b = ea.full.lookup(pid, src, dst).tolist(), eb.full.lookup(pid, src, dst).tolist()
        for (u, v), p, ca, cb in zip(edges, pid.tolist(), counts_a, counts_b):
            G.add_edge(u, v, pair=run.pairs[p], membership=_membership(ga.has_edge(u, v), gb.has_edge(u, v)),
                       count_a=ca, count_b=cb, fraction_a=ca / na if na else 0.0,
                       fraction_b=cb / nb if nb else 0.0)
    return G


def _membership(in_a: bool, in_b: bool) -> str:
    return "both" if in_a and in_b else "a" if in_a else "b"
