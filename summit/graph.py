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

from .errors import SummitError
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
    ubiquitous: list[str]  # "layer:channel" of selection.ubiquitous_channels, per layer in run order


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
        keep = slice(None)
        if "selection" in t.column_names:  # a boolean mask on numpy columns: no filtered copy of the table
            eq = pc.equal(t.column("selection"), sel)
            if not pc.all(eq).as_py():
                keep = eq.to_numpy()
        li = pc.index_in(t.column("layer"), value_set=pa.array(run.layers)).to_numpy(zero_copy_only=False)[keep]
        cell = (t.column("class").to_numpy()[keep].astype(np.int64) * total
                + np.asarray(list(offs.values()), dtype=np.int64)[li] + t.column("channel").to_numpy()[keep])
        count = np.zeros((len(run.class_names), total), dtype=np.int64)
        total_sum = np.zeros((len(run.class_names), total), dtype=np.float64)
        count.reshape(-1)[cell] = t.column("count").to_numpy()[keep]
        total_sum.reshape(-1)[cell] = t.column("sum").to_numpy()[keep]
        n_images = run.classes.column("n_images").to_numpy()
        ubiquitous = [f"{l}:{c}" for l in run.layers for c in
                      ubiquitous_channels(count[:, offs[l]:offs[l] + run.channels[l]], n_images)[0].tolist()]
        cache[sel] = _Dense(offs, count, total_sum, n_images, run.classes.column("n_correct").to_pylist(),
                            ubiquitous)
    return cache[sel]


# -- a class's full graph -----------------------------------------------------------------------
@dataclass
class _Edges:
    """Edges of one class, per layer pair (index into run.pairs): (src, dst, weight) arrays."""

    pair: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    bottleneck: np.ndarray  # bool: route "bottleneck" (composed through a 1x1 bottleneck), else "direct"

    @classmethod
    def concat(cls, parts: list[tuple]) -> _Edges:
        if not parts:
            return cls(*(np.zeros(0, dtype=np.int64) for _ in range(4)), np.zeros(0, dtype=bool))
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
    """A class's full-graph edges and the candidates for each destination's strongest raw inputs
    (attr_channels: direct edges and every composed bottleneck edge; the same object as `full`
    where no pair has a bottleneck)."""

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
    """(full-graph edges, composed bottleneck edges before the cut or None) of one pair as
    (src, dst, weight, bottleneck) arrays."""
    stages = [st for st in run.stages if st["pair"] == pair["name"]]
    direct = next((st for st in stages if st["kind"] == "direct"), None)
    parts, composed_parts = [], []
    n_direct: list[int] = []
    if direct is not None:
        s, d, c = rows.get(direct["name"], (np.zeros(0, int),) * 3)
        parts.append((s, d, c, np.zeros(len(c), dtype=bool)))
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
        cand = (ii, js[jj], w[jj, ii], np.ones(len(ii), dtype=bool))
        composed_parts.append(cand)
        top = _top_per_dst(cand[:3], keep)
        parts.append(tuple(x[top] for x in cand))
    full = tuple(np.concatenate([p[i] for p in parts]) for i in range(4)) if parts else None
    composed = tuple(np.concatenate([p[i] for p in composed_parts]) for i in range(4)) if composed_parts else None
    return full, composed


def class_edges(run: Run, class_index: int) -> _ClassEdges:
    """The class's full graph (every pair) and the candidates for its nodes' top raw inputs."""
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
        f, composed = _pair_edges(run, rows, pair)
        if f is not None:
            full.append((np.full(len(f[0]), pi), *f))
        if composed is not None:
            attr.append((np.full(len(composed[0]), pi), *composed))
    edges = _Edges.concat(full)
    if not attr:
        return _ClassEdges(edges, edges)
    direct = ~edges.bottleneck
    attr.append(tuple(x[direct] for x in (edges.pair, edges.src, edges.dst, edges.weight, edges.bottleneck)))
    return _ClassEdges(edges, _Edges.concat(attr))


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
    found = dense(run, o.selection).ubiquitous if hide_ubiquitous else []
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
    a.data *= np.repeat(inv, np.diff(a.indptr))  # rows divided by the degree
    at = a.T.tocsr()  # x @ a as at @ x: the same sums in the same order, without a transpose per step
    p = personalization / personalization.sum() if personalization.sum() > 0 else np.full(n, 1.0 / n)
    dangling = deg == 0
    x = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        last = x
        x = alpha * (at @ x + x[dangling].sum() * p) + (1 - alpha) * p
        if np.abs(x - last).sum() < n * tol:
            return x
    raise SummitError(f"PageRank did not converge in {max_iter} iterations")


def _cut_shares(pr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PageRank values in descending order and their cumulative share."""
    vals = np.sort(pr)[::-1]
    return vals, np.cumsum(vals / vals.sum())


def mass_threshold(pr: np.ndarray, mass: float) -> np.ndarray:
    """Summit's cut: accumulate PageRank values in descending order until the share reaches
    ``mass``; keep the nodes strictly above the next value (all nodes if none is left)."""
    vals, cum = _cut_shares(pr)
    cnt = int(np.searchsorted(cum, mass, side="left")) + 1
    return pr > vals[cnt] if cnt < len(vals) else np.ones(len(pr), dtype=bool)


def connected_mass(pr: np.ndarray, u: np.ndarray, v: np.ndarray, group: np.ndarray, mass: float,
                   step: float) -> float:
    """Summit's raised threshold: the first of ``mass``, ``round(mass + k * step, 10)`` (k = 1, 2, ...,
    capped at 1) whose ``mass_threshold`` keeps both ends of an edge (u, v) of every group (layer pair).

    One sort instead of a cut per step: node i is kept once the cut takes at least rank[i] values
    (how many are >= pr[i]), so a group is joined once the cut takes the smallest max(rank[u],
    rank[v]) of its edges; the cut grows with the mass, so a binary search finds the first step."""
    vals, cum = _cut_shares(pr)
    rank = len(pr) - np.searchsorted(vals[::-1], pr, side="left")
    need = 0
    if len(u):
        joined = np.full(int(group.max()) + 1, len(pr))
        np.minimum.at(joined, group, np.maximum(rank[u], rank[v]))
        need = int(joined[np.bincount(group) > 0].max())

    def at(k: int) -> float:
        return mass if k == 0 else min(1.0, round(mass + k * step, 10))

    def ok(k: int) -> bool:
        m = at(k)
        return m >= 1 or int(np.searchsorted(cum, m, side="left")) + 1 >= need

    if ok(0):
        return mass
    lo, hi = 0, 1  # ok(lo) is false, ok(hi) true once the loop ends; ok is monotone for k >= 1
    while not ok(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return at(hi)


def _add_nodes(G: nx.DiGraph, run: Run, d: _Dense, ci: int, cols: np.ndarray,
               pagerank: np.ndarray | None = None) -> None:
    """Nodes for the given global channel columns, in that order (see docs/GRAPH.md)."""
    starts = np.array(list(d.offsets.values()))
    li = np.searchsorted(starts, cols, side="right") - 1
    n = int(d.n_images[ci])
    count, total = d.count[ci, cols], d.sum[ci, cols]
    for k, (col, l) in enumerate(zip(cols.tolist(), li.tolist())):
        layer, ch = run.layers[l], col - int(starts[l])
        attrs = {"layer": layer, "layer_index": l, "channel": ch, "count": int(count[k]),
                 "fraction": float(count[k] / n) if n else 0.0, "mean": float(total[k] / n) if n else 0.0}
        if pagerank is not None:
            attrs["pagerank"] = float(pagerank[k])
        G.add_node(f"{layer}:{ch}", **attrs)


def _pair_offsets(run: Run, d: _Dense) -> tuple[np.ndarray, np.ndarray]:
    """Global column offset of each pair's source and destination layer (plus a 0 sentinel)."""
    pairs = run.meta["pairs"]
    return (np.array([d.offsets[p["src"]] for p in pairs] + [0], dtype=np.int64),
            np.array([d.offsets[p["dst"]] for p in pairs] + [0], dtype=np.int64))


def _attr_channels(run: Run, d: _Dense, e: _Edges, nodes: np.ndarray) -> dict[str, list[dict]]:
    """Top ATTR_CHANNELS raw inputs of the given global destination columns, per layer pair."""
    pairs = run.meta["pairs"]
    wanted = np.zeros(d.count.shape[1], dtype=bool)
    wanted[nodes] = True
    rows = np.flatnonzero(wanted[_pair_offsets(run, d)[1][e.pair] + e.dst])
    width = int(e.dst.max(initial=0)) + 1
    rows = rows[_top_per_dst((e.src[rows], e.pair[rows] * width + e.dst[rows], e.weight[rows]), ATTR_CHANNELS)]
    rows = rows[np.lexsort((e.src[rows], -e.weight[rows], e.dst[rows], e.pair[rows]))]
    out: dict[str, list[dict]] = {}
    for p, s, t, w in zip(e.pair[rows].tolist(), e.src[rows].tolist(), e.dst[rows].tolist(),
                          e.weight[rows].tolist()):
        out.setdefault(f"{pairs[p]['dst']}:{t}", []).append({"channel": s, "count": w})
    return out


def _edge_view(run: Run, d: _Dense, e: _Edges, o: _Options,
               bad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows of active pairs without excluded ends (``bad``: :func:`_excluded_columns`), global src
    ids, global dst ids)."""
    pairs = run.meta["pairs"]
    active = np.array([p["src"] in o.layers and p["dst"] in o.layers for p in pairs] + [False])
    src_off, dst_off = _pair_offsets(run, d)
    gs, gd = src_off[e.pair] + e.src, dst_off[e.pair] + e.dst
    rows = np.flatnonzero(active[e.pair] & ~bad[gs] & ~bad[gd])
    return rows, gs, gd


def _excluded_columns(d: _Dense, o: _Options) -> np.ndarray:
    """Boolean mask over global columns of the excluded channels."""
    bad = np.zeros(d.count.shape[1], dtype=bool)
    for v in o.excluded:
        layer, ch = v.split(":")
        bad[d.offsets[layer] + int(ch)] = True
    return bad


def _new_graph(run: Run, d: _Dense, ci: int, o: _Options) -> nx.DiGraph:
    return ClassGraph(kind="class", class_index=ci, class_name=run.class_names[ci], n_images=int(d.n_images[ci]),
                      n_correct=d.n_correct[ci], model=run.meta.get("model"), weights=run.meta.get("weights"),
                      k=run.meta.get("k"), selection=o.selection, settings=o.settings())


def _add_edges(G: nx.DiGraph, run: Run, ce: _ClassEdges, rows: np.ndarray, n: int) -> None:
    e = ce.full
    pairs = run.meta["pairs"]
    for p, s, t, c, b in zip(e.pair[rows].tolist(), e.src[rows].tolist(), e.dst[rows].tolist(),
                             e.weight[rows].tolist(), e.bottleneck[rows].tolist()):
        pr = pairs[p]
        G.add_edge(f"{pr['src']}:{s}", f"{pr['dst']}:{t}", pair=pr["name"], count=c,
                   fraction=c / n if n else 0.0, route="bottleneck" if b else "direct")


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
    bad = _excluded_columns(d, o)
    rows, gs, gd = _edge_view(run, d, ce.full, o, bad)
    present = np.zeros(d.count.shape[1], dtype=bool)
    if len(rows):
        present[gs[rows]] = present[gd[rows]] = True
    else:  # no influence between chosen layers: PageRank is the personalization itself
        for l in o.layers:
            present[d.offsets[l]:d.offsets[l] + run.channels[l]] = True
        present &= (d.count[ci] > 0) & ~bad
    nodes = np.flatnonzero(present)
    if not len(nodes):
        return G
    pers = np.zeros(len(nodes))
    for l in o.layers:
        a, b = d.offsets[l], d.offsets[l] + run.channels[l]
        ok = np.flatnonzero(~bad[a:b]) + a
        top = d.count[ci, ok].max() if len(ok) else 0
        inl = (nodes >= a) & (nodes < b)
        pers[inl] = d.count[ci, nodes[inl]] / top if top > 0 else 0.0
    index = np.cumsum(present) - 1
    u, v = index[gs[rows]], index[gd[rows]]
    pr = pagerank(len(nodes), u, v, ce.full.weight[rows], pers)
    mass = connected_mass(pr, u, v, ce.full.pair[rows], o.mass, o.mass_step)
    keep = mass_threshold(pr, mass)
    G.graph["settings"] = o.settings(mass)
    kept = np.flatnonzero(keep)[np.argsort(-pr[keep], kind="stable")]
    _add_nodes(G, run, d, ci, nodes[kept], pr[kept])
    _add_edges(G, run, ce, rows[keep[u] & keep[v]], int(d.n_images[ci]))
    _finish_nodes(G, _attr_channels(run, d, ce.attr, nodes[kept]))
    return G


def _build_topn(run: Run, d: _Dense, ci: int, ce: _ClassEdges, o: _Options) -> nx.DiGraph:
    G = _new_graph(run, d, ci, o)
    selected = np.zeros(d.count.shape[1], dtype=bool)
    bad = _excluded_columns(d, o)
    chosen = []
    for layer in o.layers:
        start = d.offsets[layer]
        count = d.count[ci, start:start + run.channels[layer]]
        cand = np.flatnonzero((count >= (o.min_count or 1)) & ~bad[start:start + len(count)])
        order = np.lexsort((cand, -d.sum[ci, start + cand], -count[cand]))
        chosen.append(start + (cand[order] if o.min_count is not None else cand[order[:o.top_n]]))
    cols = np.concatenate(chosen)
    selected[cols] = True
    _add_nodes(G, run, d, ci, cols)
    rows, gs, gd = _edge_view(run, d, ce.full, o, bad)
    e = ce.full
    if len(rows) and o.edges_per_node:
        rows = rows[selected[gs[rows]] & selected[gd[rows]] & (e.weight[rows] >= o.min_edge_count)]
        top = _top_per_dst((e.src[rows], gd[rows], e.weight[rows]), o.edges_per_node)
        _add_edges(G, run, ce, rows[top], int(d.n_images[ci]))
    if any(p["src"] in o.layers and p["dst"] in o.layers for p in run.meta["pairs"]) and not o.keep_dangling:
        G.remove_nodes_from([v for v in list(G) if G.degree(v) == 0])
    _finish_nodes(G, _attr_channels(run, d, ce.attr, cols))
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
