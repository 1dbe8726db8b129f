"""Attribution graphs: per-class graphs of channels and their influences, and class comparison.

Summit's rule (``method="pagerank"``, the default): the class's *full graph* has every channel
pair with influence (direct stages: every counted (i, j); bottleneck routes: Summit's max-min
composition, see edges.py), undirected, weighted by counts. Personalized PageRank (alpha 0.85,
personalization A[class, channel] / the layer's max) ranks its nodes; one threshold for all
layers keeps the nodes that hold ``mass`` (7.5 %) of the PageRank mass, raised by ``mass_step``
(0.5 %) until every layer keeps a node joined to a kept node of the previous layer. Every
full-graph edge between kept nodes is kept.

Our option (``method="topn"``): per layer the ``top_n`` channels of highest A[class] (or all with
count >= ``min_count``), each keeping its ``edges_per_node`` strongest incoming edges.

Both rules can hide ubiquitous channels (selection.ubiquitous_channels) and explicit ones.
Settings and defaults: options.py; every field: docs/GRAPH.md.

Our option ``images`` ("correct" | "wrong", of a run aggregated with ``--split-correct``) builds
the same graph from the counts of the class's correctly or wrongly classified images alone
(Run.images); :func:`mistaken_for` lists the classes its wrong images were taken for
(docs/MISTAKES.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import networkx as nx
import numpy as np
import pyarrow.compute as pc
import scipy.sparse as sp

from ..errors import SummitError
from ..run.imagenet import imagenet_table
from ..run.store import Run
from .edges import ClassEdges, Edges, class_edges, top_per_dst
from .matrices import Dense, dense
from .options import PAGERANK_ALPHA, GraphOptions, graph_options

ATTR_CHANNELS = 3
Recall = Callable[[Hashable, Callable[[], Any]], Any]  # recall(key, compute): compute()'s value, maybe remembered


def computed(key: Hashable, compute: Callable[[], Any]) -> Any:
    """The `Recall` that remembers nothing: every build computes its inputs."""
    return compute()


@dataclass
class Resolved:
    """GraphOptions checked against one run: the selection named, the layers in run order and the
    excluded channels (ubiquitous + explicit) listed."""

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
        """The settings a graph records (``graph["settings"]``; docs/GRAPH.md)."""
        s: dict[str, Any] = {"method": self.method, "selection": self.selection, "layers": self.layers,
                             "hide_ubiquitous": self.hide_ubiquitous, "excluded": self.excluded}
        if self.method == "pagerank":
            return {**s, "mass_start": self.mass, "mass_step": self.mass_step, "mass": final_mass,
                    "alpha": PAGERANK_ALPHA}
        return {**s, "top_n": self.top_n, "min_count": self.min_count, "edges_per_node": self.edges_per_node,
                "min_edge_count": self.min_edge_count, "keep_dangling": self.keep_dangling}


def parse_exclude(run: Run, items: list[str] | tuple[str, ...]) -> list[str]:
    """Validated "layer:channel" ids of a run."""
    out = []
    for it in items:
        layer, _, ch = str(it).partition(":")
        run.check_layer(layer)
        if not ch.isascii() or not ch.isdigit() or int(ch) >= run.channels[layer]:
            raise SummitError(f"bad channel in --exclude {it!r}: need layer:channel with channel "
                              f"0..{run.channels[layer] - 1}")
        out.append(f"{layer}:{int(ch)}")
    return out


def resolve(run: Run, o: GraphOptions) -> Resolved:
    """``o`` checked against ``run``, with the selection's ubiquitous channels listed as excluded
    when ``o.hide_ubiquitous``."""
    if o.layers is None:
        chosen = list(run.layers)
    else:
        wanted = {run.check_layer(l) for l in o.layers}
        chosen = [l for l in run.layers if l in wanted]
        if not chosen:
            raise SummitError(f"no layers chosen; valid: {', '.join(run.layers)}")
    explicit = parse_exclude(run, o.exclude)
    selection = run.check_selection(o.selection)
    found = dense(run, selection).ubiquitous if o.hide_ubiquitous else []
    return Resolved(o.method, selection, chosen, o.hide_ubiquitous, explicit, o.mass,
                    o.mass_step, o.top_n, o.min_count, o.edges_per_node, o.min_edge_count, o.keep_dangling,
                    list(dict.fromkeys(found + explicit)))


class ClassGraph(nx.DiGraph):
    """A class graph or comparison: a networkx DiGraph with the run's and settings' facts in
    ``graph`` (drawing stays outside: svg.graph_svg, and summit.notebook shows it in Jupyter)."""


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


def _add_nodes(G: nx.DiGraph, run: Run, d: Dense, ci: int, cols: np.ndarray,
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


def _pair_offsets(run: Run, d: Dense) -> tuple[np.ndarray, np.ndarray]:
    """Global column offset of each pair's source and destination layer (plus a 0 sentinel)."""
    pairs = run.meta["pairs"]
    return (np.array([d.offsets[p["src"]] for p in pairs] + [0], dtype=np.int64),
            np.array([d.offsets[p["dst"]] for p in pairs] + [0], dtype=np.int64))


def _attr_channels(run: Run, d: Dense, e: Edges, nodes: np.ndarray) -> dict[str, list[dict]]:
    """Top ATTR_CHANNELS raw inputs of the given global destination columns, per layer pair."""
    pairs = run.meta["pairs"]
    wanted = np.zeros(d.count.shape[1], dtype=bool)
    wanted[nodes] = True
    rows = np.flatnonzero(wanted[_pair_offsets(run, d)[1][e.pair] + e.dst])
    width = int(e.dst.max(initial=0)) + 1
    rows = rows[top_per_dst((e.src[rows], e.pair[rows] * width + e.dst[rows], e.weight[rows]), ATTR_CHANNELS)]
    rows = rows[np.lexsort((e.src[rows], -e.weight[rows], e.dst[rows], e.pair[rows]))]
    out: dict[str, list[dict]] = {}
    for p, s, t, w in zip(e.pair[rows].tolist(), e.src[rows].tolist(), e.dst[rows].tolist(),
                          e.weight[rows].tolist()):
        out.setdefault(f"{pairs[p]['dst']}:{t}", []).append({"channel": s, "count": w})
    return out


def _edge_view(run: Run, d: Dense, e: Edges, o: Resolved,
               bad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows of active pairs without excluded ends (``bad``: :func:`_excluded_columns`), global src
    ids, global dst ids)."""
    pairs = run.meta["pairs"]
    active = np.array([p["src"] in o.layers and p["dst"] in o.layers for p in pairs] + [False])
    src_off, dst_off = _pair_offsets(run, d)
    gs, gd = src_off[e.pair] + e.src, dst_off[e.pair] + e.dst
    rows = np.flatnonzero(active[e.pair] & ~bad[gs] & ~bad[gd])
    return rows, gs, gd


def _excluded_columns(d: Dense, o: Resolved) -> np.ndarray:
    """Boolean mask over global columns of the excluded channels."""
    bad = np.zeros(d.count.shape[1], dtype=bool)
    for v in o.excluded:
        layer, ch = v.split(":")
        bad[d.offsets[layer] + int(ch)] = True
    return bad


def _new_graph(run: Run, d: Dense, ci: int, o: Resolved) -> ClassGraph:
    return ClassGraph(kind="class", class_index=ci, class_name=run.class_names[ci],
                      class_wnid=run.class_wnids[ci], class_label=run.class_labels[ci], n_images=int(d.n_images[ci]),
                      n_correct=d.n_correct[ci], model=run.meta.get("model"), weights=run.meta.get("weights"),
                      k=run.meta.get("k"), selection=o.selection, settings=o.settings())


def _add_edges(G: nx.DiGraph, run: Run, ce: ClassEdges, rows: np.ndarray, n: int) -> None:
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


@dataclass(frozen=True)
class _Ranked:
    """A class's PageRank under one (selection, layers, excluded): the ranked nodes (global
    columns, ascending), the full-graph edge rows between them, their ends (u, v) as indices into
    ``nodes`` and the PageRank vector over ``nodes``. Mass and mass step only cut it."""

    nodes: np.ndarray
    rows: np.ndarray
    u: np.ndarray
    v: np.ndarray
    pr: np.ndarray


def _rank(run: Run, d: Dense, ci: int, ce: ClassEdges, o: Resolved) -> _Ranked | None:
    """The class's personalized PageRank over its full graph (None: no node to rank); the arrays
    are read-only, as they may be shared by later builds."""
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
        return None
    pers = np.zeros(len(nodes))
    for l in o.layers:
        a, b = d.offsets[l], d.offsets[l] + run.channels[l]
        ok = np.flatnonzero(~bad[a:b]) + a
        top = d.count[ci, ok].max() if len(ok) else 0
        inl = (nodes >= a) & (nodes < b)
        pers[inl] = d.count[ci, nodes[inl]] / top if top > 0 else 0.0
    index = np.cumsum(present) - 1
    u, v = index[gs[rows]], index[gd[rows]]
    r = _Ranked(nodes, rows, u, v, pagerank(len(nodes), u, v, ce.full.weight[rows], pers))
    for a in vars(r).values():
        a.setflags(write=False)
    return r


def _build_pagerank(run: Run, d: Dense, ci: int, ce: ClassEdges, o: Resolved, recall: Recall) -> nx.DiGraph:
    G = _new_graph(run, d, ci, o)
    if not d.n_images[ci]:
        return G
    r = recall(("pagerank", ci, o.selection, tuple(o.layers), tuple(o.excluded)), lambda: _rank(run, d, ci, ce, o))
    if r is None:
        return G
    mass = connected_mass(r.pr, r.u, r.v, ce.full.pair[r.rows], o.mass, o.mass_step)
    keep = mass_threshold(r.pr, mass)
    G.graph["settings"] = o.settings(mass)
    kept = np.flatnonzero(keep)[np.argsort(-r.pr[keep], kind="stable")]
    _add_nodes(G, run, d, ci, r.nodes[kept], r.pr[kept])
    _add_edges(G, run, ce, r.rows[keep[r.u] & keep[r.v]], int(d.n_images[ci]))
    _finish_nodes(G, _attr_channels(run, d, ce.attr, r.nodes[kept]))
    return G


def _build_topn(run: Run, d: Dense, ci: int, ce: ClassEdges, o: Resolved) -> nx.DiGraph:
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
        top = top_per_dst((e.src[rows], gd[rows], e.weight[rows]), o.edges_per_node)
        _add_edges(G, run, ce, rows[top], int(d.n_images[ci]))
    if any(p["src"] in o.layers and p["dst"] in o.layers for p in run.meta["pairs"]) and not o.keep_dangling:
        G.remove_nodes_from([v for v in list(G) if G.degree(v) == 0])
    _finish_nodes(G, _attr_channels(run, d, ce.attr, cols))
    return G


def _edges(run: Run, ci: int, recall: Recall) -> ClassEdges:
    return recall(("edges", ci), lambda: class_edges(run, ci))


def _build(run: Run, ci: int, ce: ClassEdges, o: Resolved, recall: Recall) -> nx.DiGraph:
    d = dense(run, o.selection)
    return _build_pagerank(run, d, ci, ce, o, recall) if o.method == "pagerank" else _build_topn(run, d, ci, ce, o)


def part_recall(recall: Recall, images: str) -> Recall:
    """``recall`` for the graphs of part ``images`` of the images: its keys start with the part's
    name ("all": unchanged), so that one memo holds every part's build inputs apart."""
    return recall if images == "all" else (lambda key, compute: recall((images, *key), compute))


def part_sizes(run: Run, images: str) -> np.ndarray:
    """(n_classes,) images of each class that a graph of part ``images`` counts: the class's
    images in that part, 0 for a class that is not a model output (neither correct nor wrong;
    :func:`class_images` refuses it)."""
    n = run.images(images).classes.column("n_images").to_numpy().astype(np.int64)
    if images != "all":
        n[run.classes.column("model_index").is_null().to_numpy(zero_copy_only=False)] = 0
    return n


def class_images(run: Run, ci: int, images: str) -> Run:
    """The run whose counts a graph of class ``ci`` is built from: ``images`` "all" (the run),
    "correct" or "wrong" (Run.images); refused in one line when the class has no such images or
    is not one of the model's outputs (then its images are neither correct nor wrong)."""
    view = run.images(images)
    if images == "all":
        return view
    name = run.class_names[ci]
    if run.classes.column("model_index")[ci].as_py() is None:
        raise SummitError(f"class {name} is not one of the model's outputs: its images are neither correct nor "
                          "wrong; use --images all")
    n, hits = int(run.classes.column("n_images")[ci].as_py()), int(run.classes.column("n_correct")[ci].as_py())
    if not view.classes.column("n_images")[ci].as_py():
        raise SummitError(f"class {name} has no {images} images: {hits} of its {n} images are classified "
                          "correctly")
    return view


def mistaken_for(run: Run, cls: str | int, top: int = 5) -> list[dict[str, Any]]:
    """The model outputs the class's wrongly classified images were most often predicted as (from
    predictions.parquet), most frequent first (ties: lower output): ``output`` (model index),
    ``label``, ``class`` (the run class of that output, None if the run has none) and ``images``.
    Empty for runs without predictions or classes that are not one of the model's outputs."""
    ci = run.class_index(cls)
    t = run.predictions()
    if t is None or run.classes.column("model_index")[ci].as_py() is None:
        return []
    t = t.filter(pc.and_(pc.equal(t.column("class"), ci), pc.equal(t.column("correct"), False)))
    first = pc.list_element(t.column("top"), 0).to_numpy(zero_copy_only=False) if len(t) else np.zeros(0, int)
    outputs, counts = np.unique(first, return_counts=True)
    order = np.lexsort((outputs, -counts))[:top]
    of = {m: c for c, m in enumerate(run.classes.column("model_index").to_pylist()) if m is not None}
    table = imagenet_table()
    out = []
    for m, c in zip(outputs[order].tolist(), counts[order].tolist()):
        rc = of.get(m)
        label = run.class_labels[rc] if rc is not None else table[m].label if m < len(table) else str(m)
        out.append({"output": m, "label": label, "class": rc, "images": c})
    return out


def class_graph(run: Run, cls: str | int, options: GraphOptions | None = None, recall: Recall = computed,
                images: str = "all", **changes: Any) -> ClassGraph:
    """Attribution graph of one class (may be empty; write_graph refuses empty graphs).

    ``options`` (default: the defaults in force, options.DEFAULTS) with ``changes`` by name:
    method, selection, layers, hide_ubiquitous, exclude ("layer:channel" list); pagerank: mass,
    mass_step; topn: top_n, min_count, edges_per_node, min_edge_count, keep_dangling.

    ``recall(key, compute)`` may remember what depends only on the class and the PageRank's
    settings (a server does; the graph is the same either way): key ("edges", class) the class's
    full graph, ("pagerank", class, selection, layers, excluded) its PageRank, so that another
    mass or mass step only re-cuts (keys of a part of the images start with the part's name).

    ``images``: "all", or (our option) "correct" / "wrong": the graph of the class's correctly or
    wrongly classified images only (:func:`class_images`); its ``images`` attribute names the part,
    its ``n_images`` and fractions count that part, and ubiquitous channels are the whole run's.
    """
    ci = run.class_index(cls)
    view = class_images(run, ci, images)
    o = resolve(view, graph_options(options, **changes))
    rec = part_recall(recall, images)
    G = _build(view, ci, _edges(view, ci, rec), o, rec)
    if images != "all":
        G.graph["images"] = images
    return G


def graph_channels(G: nx.DiGraph, layers: Sequence[str] | None = None) -> dict[str, list[int]]:
    """{layer: sorted channels} of a graph's nodes (only ``layers``' when given)."""
    nodes: dict[str, set[int]] = {}
    for _, d in G.nodes(data=True):
        if layers is None or d["layer"] in layers:
            nodes.setdefault(d["layer"], set()).add(int(d["channel"]))
    return {layer: sorted(chs) for layer, chs in nodes.items()}


def compare_graph(run: Run, a: str | int, b: str | int, options: GraphOptions | None = None,
                  recall: Recall = computed, **changes: Any) -> ClassGraph:
    """Union of the class graphs of a and b (same settings, as in class_graph); nodes and edges
    carry membership a | b | both and both classes' counts and fractions."""
    ia, ib = run.class_index(a), run.class_index(b)
    o = resolve(run, graph_options(options, **changes))
    d = dense(run, o.selection)
    ea, eb = _edges(run, ia, recall), _edges(run, ib, recall)
    ga, gb = _build(run, ia, ea, o, recall), _build(run, ib, eb, o, recall)
    na, nb = int(d.n_images[ia]), int(d.n_images[ib])
    G = ClassGraph(kind="compare", model=run.meta.get("model"), weights=run.meta.get("weights"),
                   k=run.meta.get("k"), selection=o.selection,
                   settings={**o.settings(), "mass_a": ga.graph["settings"].get("mass"),
                             "mass_b": gb.graph["settings"].get("mass")},
                   class_index_a=ia, class_name_a=run.class_names[ia], class_wnid_a=run.class_wnids[ia],
                   class_label_a=run.class_labels[ia], n_images_a=na, n_correct_a=d.n_correct[ia],
                   class_index_b=ib, class_name_b=run.class_names[ib], class_wnid_b=run.class_wnids[ib],
                   class_label_b=run.class_labels[ib], n_images_b=nb, n_correct_b=d.n_correct[ib])
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
