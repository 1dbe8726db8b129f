"""Run comparison: what changed between two runs of one architecture (two checkpoints, a
fine-tune, other data), class by class and channel by channel (docs/DIFF.md).

The runs must have the same model, layers (names, in order), channel counts and layer pairs;
otherwise :func:`diff_runs` refuses in one line. Classes are matched by name (the class folder);
only the classes both runs hold are compared, and those of one run only are listed
(``only_a`` / ``only_b``); no common class at all is refused.

Per common class c, with G_a and G_b its attribution graphs (build.py) in run A and run B under
one GraphOptions (the excluded channels are the same in both: the union of both runs' ubiquitous
channels and the explicit ones, so that hiding does not differ between the runs):

- every node and edge of G_a ∪ G_b has membership ``a`` (lost: only in G_a), ``b`` (gained:
  only in G_b) or ``both`` (kept), and its count in each run (also where it is not in that run's
  graph: A[c, channel], or the full-graph influence count for an edge) and fraction (count /
  the class's images in that run);
- node weights w_r(v) = count_r(v) / sum_{u in G_r} count_r(u) for v in G_r, else 0 (the node's
  share of its graph's counts); ``score`` = 1 - sum_v min(w_a(v), w_b(v)) / sum_v max(w_a(v),
  w_b(v)) over G_a ∪ G_b: 1 - the weighted Jaccard index, in [0, 1], 0 exactly when both graphs
  have the same nodes with the same shares (0 when both are empty), 1 when no node is shared;
  ``edge_score`` is the same over edges, weights their influence-count shares;
- classes are ranked by score (descending; ties: edge_score, then name).

Channel roles, per layer l and channel j: F_r[c, j] = A_r[c, j] / n_r(c), the fraction of class
c's images in run r for which j is selected (the settings' selection; 0 for a class without
images), over the common classes c (a column of F_r, one entry per class). ``change`` =
1 - cos(F_a[:, j], F_b[:, j]) with cos(x, y) = x·y / (|x| |y|), in [0, 1] since F >= 0 (two zero
columns: change 0; one zero column: change 1): how much the set of classes the channel serves
changed, whatever its overall rate (cosine ignores a common scale). Ranked per layer by change
(descending), then by |F_a[:, j]|_1 + |F_b[:, j]|_1 (descending: frequent channels first), then
channel.

A run compared with itself gives score 0, edge_score 0 and change 0 everywhere (:meth:`RunDiff.is_empty`).

Our option ``images`` (a part for each side: "all", "correct", "wrong"; docs/MISTAKES.md) compares
the counts of part of the classes' images: ``diff_runs(run, run, images=("correct", "wrong"))`` is
a class's graph of its correctly classified images (A) against that of its mistakes (B) in one
run. A class without images of its part on either side is not compared (``without_images``;
named with ``classes``, it is refused in one line as in build.class_images).
"""
from __future__ import annotations

import html
import os
import re
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from ..errors import SummitError
from ..run.files import json_bytes, write_output
from ..run.store import Run
from .build import (
    ClassGraph,
    Recall,
    Resolved,
    _build,
    _edges,
    class_images,
    computed,
    part_recall,
    part_sizes,
    resolve,
)
from .edges import ClassEdges
from .matrices import Dense, dense
from .options import GraphOptions, graph_options
from .svg import MEMBERSHIP_COLORS, graph_svg

DIFF_SCHEMA_VERSION = 1
CHANGES = {"a": "lost", "b": "gained", "both": "kept"}  # membership -> what happened from run A to run B


@dataclass
class ClassDiff:
    """One class in both runs: the union graph (``graph``, kind "diff"; nodes and edges carry
    membership a | b | both, count_a/count_b, fraction_a/fraction_b, weight_a/weight_b) and its
    change scores (module docstring)."""

    name: str
    label: str
    index_a: int
    index_b: int
    score: float
    edge_score: float
    graph: ClassGraph

    def counts(self) -> dict[str, dict[str, int]]:
        """{"nodes" | "edges": {"lost" | "gained" | "kept": how many}}."""
        out: dict[str, dict[str, int]] = {}
        for what, items in (("nodes", self.graph.nodes(data="membership")),
                            ("edges", ((u, v, m) for u, v, m in self.graph.edges(data="membership")))):
            n = dict.fromkeys(CHANGES.values(), 0)
            for *_, m in items:
                n[CHANGES[m]] += 1
            out[what] = n
        return out


@dataclass
class ChannelRole:
    """A channel's role change between the runs (module docstring): ``fraction_a`` / ``fraction_b``
    are |F_r[:, j]|_1, its summed per-class fractions."""

    layer: str
    channel: int
    change: float
    fraction_a: float
    fraction_b: float


@dataclass
class RunDiff:
    """Two runs compared: per-class diffs ranked by change, per-layer channel roles ranked by
    change, the settings used, the classes of one run only and, comparing parts of the images
    (``images``), the classes without images of a side's part."""

    run_a: Run
    run_b: Run
    settings: dict[str, Any]
    classes: list[ClassDiff]
    roles: dict[str, list[ChannelRole]]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    images: tuple[str, str] = ("all", "all")
    without_images: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        """No class graph and no channel role changed."""
        return all(c.score == 0 and c.edge_score == 0 for c in self.classes) and \
            all(r.change == 0 for rs in self.roles.values() for r in rs)

    def get(self, cls: str | int) -> ClassDiff:
        """The diff of one class (name, index, WordNet id or label as in run A)."""
        name = self.run_a.class_names[self.run_a.class_index(cls)]
        for c in self.classes:
            if c.name == name:
                return c
        raise SummitError(f"class {name!r} was not compared (compared: {len(self.classes)} classes)")

    def top_roles(self, n: int) -> dict[str, list[ChannelRole]]:
        """The n channels per layer that changed role most."""
        return {layer: rs[:n] for layer, rs in self.roles.items()}


def _open(run: Run | str | os.PathLike) -> Run:
    return run if isinstance(run, Run) else Run(run)


def check_comparable(a: Run, b: Run) -> None:
    """Refuse (one line) two runs whose model, layers, channel counts or layer pairs differ."""
    ma, mb = a.meta.get("model"), b.meta.get("model")
    if ma != mb:
        raise SummitError(f"cannot compare runs of different models: {ma} ({a.path}) vs {mb} ({b.path})")
    if a.layers != b.layers:
        raise SummitError(f"cannot compare runs with different layers: {', '.join(a.layers)} ({a.path}) vs "
                          f"{', '.join(b.layers)} ({b.path}); aggregate both with the same --layers")
    bad = [f"{l} {a.channels[l]} vs {b.channels[l]}" for l in a.layers if a.channels[l] != b.channels[l]]
    if bad:
        raise SummitError(f"cannot compare runs with different channel counts: {', '.join(bad)}")
    if a.stage_names != b.stage_names:
        raise SummitError(f"cannot compare runs with different layer pairs or stages: {', '.join(a.stage_names)} "
                          f"vs {', '.join(b.stage_names)} (e.g. --bottleneck summit vs linear)")


def _same_exclusions(ra: Resolved, rb: Resolved) -> tuple[Resolved, Resolved]:
    """Both resolved settings with one excluded list: the union of both runs' (ubiquitous + explicit)."""
    both = list(dict.fromkeys(ra.excluded + rb.excluded))
    return replace(ra, excluded=both), replace(rb, excluded=both)


def _weighted_jaccard_distance(wa: np.ndarray, wb: np.ndarray) -> float:
    """1 - sum min / sum max of two weight vectors over the same items (0 for no items)."""
    top = float(np.maximum(wa, wb).sum())
    return 1.0 - float(np.minimum(wa, wb).sum()) / top if top > 0 else 0.0


def _shares(counts: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Each member's share of the members' counts (0 for non-members)."""
    w = np.where(member, counts, 0).astype(np.float64)
    total = w.sum()
    return w / total if total > 0 else w


def _class_diff(runs: tuple[Run, Run], ds: tuple[Dense, Dense], idx: tuple[int, int],
                rs: tuple[Resolved, Resolved], recalls: tuple[Recall, Recall]) -> ClassDiff:
    """The diff of one class (index idx[0] in run A, idx[1] in run B); ``recalls``: each run's
    memo of build inputs (build.class_graph's ``recall``), already for its part of the images."""
    (a, b), (da, db), (ia, ib), (qa, qb) = runs, ds, idx, recalls
    ea, eb = _edges(a, ia, qa), _edges(b, ib, qb)
    ga, gb = _build(a, ia, ea, rs[0], qa), _build(b, ib, eb, rs[1], qb)
    na, nb = int(da.n_images[ia]), int(db.n_images[ib])
    G = ClassGraph(kind="diff", class_name=a.class_names[ia], class_label=a.class_labels[ia],
                   class_wnid=a.class_wnids[ia], class_index_a=ia, class_index_b=ib, n_images_a=na,
                   n_images_b=nb, model=a.meta.get("model"), weights_a=a.meta.get("weights"),
                   weights_b=b.meta.get("weights"), selection=rs[0].selection,
                   settings={**rs[0].settings(), "mass_a": ga.graph["settings"].get("mass"),
                             "mass_b": gb.graph["settings"].get("mass")},
                   **({} if a.part == b.part == "all" else {"images_a": a.part, "images_b": b.part}))
    nodes = sorted(set(ga) | set(gb), key=lambda v: ((ga.nodes.get(v) or gb.nodes[v])["layer_index"],
                                                     (ga.nodes.get(v) or gb.nodes[v])["channel"]))
    info = [ga.nodes.get(v) or gb.nodes[v] for v in nodes]
    cols = np.array([da.offsets[x["layer"]] + x["channel"] for x in info], dtype=np.int64)
    in_a, in_b = np.array([v in ga for v in nodes], bool), np.array([v in gb for v in nodes], bool)
    ca, cb = da.count[ia, cols], db.count[ib, cols]
    wa, wb = _shares(ca, in_a), _shares(cb, in_b)
    for k, (v, x) in enumerate(zip(nodes, info)):
        G.add_node(v, layer=x["layer"], layer_index=x["layer_index"], channel=x["channel"],
                   membership=_membership(in_a[k], in_b[k]), count_a=int(ca[k]), count_b=int(cb[k]),
                   fraction_a=int(ca[k]) / na if na else 0.0, fraction_b=int(cb[k]) / nb if nb else 0.0,
                   weight_a=float(wa[k]), weight_b=float(wb[k]))
    edges = list(ga.edges) + [e for e in gb.edges if not ga.has_edge(*e)]
    edge_score = _add_edges(G, a, edges, (ga, gb), (ea, eb), (na, nb))
    return ClassDiff(a.class_names[ia], a.class_labels[ia], ia, ib, _weighted_jaccard_distance(wa, wb),
                     edge_score, G)


def _add_edges(G: ClassGraph, run: Run, edges: list[tuple[str, str]], gs: tuple[Any, Any],
               es: tuple[ClassEdges, ClassEdges], ns: tuple[int, int]) -> float:
    """The union's edges with both runs' full-graph counts; returns the edge change score."""
    if not edges:
        return 0.0
    ga, gb = gs
    pid = np.array([run.pairs.index((ga.edges.get(e) or gb.edges[e])["pair"]) for e in edges])
    src = np.array([G.nodes[u]["channel"] for u, _ in edges])
    dst = np.array([G.nodes[v]["channel"] for _, v in edges])
    ca, cb = es[0].full.lookup(pid, src, dst), es[1].full.lookup(pid, src, dst)
    in_a = np.array([ga.has_edge(*e) for e in edges], bool)
    in_b = np.array([gb.has_edge(*e) for e in edges], bool)
    wa, wb = _shares(ca, in_a), _shares(cb, in_b)
    for k, ((u, v), p) in enumerate(zip(edges, pid.tolist())):
        G.add_edge(u, v, pair=run.pairs[p], membership=_membership(in_a[k], in_b[k]),
                   count_a=int(ca[k]), count_b=int(cb[k]),
                   fraction_a=int(ca[k]) / ns[0] if ns[0] else 0.0, fraction_b=int(cb[k]) / ns[1] if ns[1] else 0.0,
                   weight_a=float(wa[k]), weight_b=float(wb[k]))
    return _weighted_jaccard_distance(wa, wb)


def _membership(in_a: bool, in_b: bool) -> str:
    return "both" if in_a and in_b else "a" if in_a else "b"


def _fractions(d: Dense, rows: Sequence[int]) -> np.ndarray:
    """(len(rows), total channels) F[c, j] = A[c, j] / n(c) (0 for a class without images)."""
    n = d.n_images[list(rows)].astype(np.float64)[:, None]
    return np.divide(d.count[list(rows)], n, out=np.zeros((len(rows), d.count.shape[1])), where=n > 0)


def channel_roles(a: Run, b: Run, da: Dense, db: Dense, pairs: Sequence[tuple[int, int]],
                  layers: Iterable[str]) -> dict[str, list[ChannelRole]]:
    """Per layer, every channel's role change 1 - cos(F_a[:, j], F_b[:, j]) over the matched
    classes ``pairs`` (index in A, index in B), ranked (module docstring)."""
    fa, fb = _fractions(da, [p[0] for p in pairs]), _fractions(db, [p[1] for p in pairs])
    na, nb = np.linalg.norm(fa, axis=0), np.linalg.norm(fb, axis=0)
    dot = (fa * fb).sum(axis=0)
    cos = np.divide(dot, na * nb, out=np.where((na == 0) & (nb == 0), 1.0, 0.0), where=(na > 0) & (nb > 0))
    change = np.clip(1.0 - cos, 0.0, 1.0)
    change[(na > 0) & (nb > 0) & np.all(fa == fb, axis=0)] = 0.0  # exactly equal columns: exactly 0
    sa, sb = fa.sum(axis=0), fb.sum(axis=0)
    out: dict[str, list[ChannelRole]] = {}
    for layer in layers:
        lo = da.offsets[layer]
        cols = np.arange(lo, lo + a.channels[layer])
        order = cols[np.lexsort((cols, -(sa[cols] + sb[cols]), -change[cols]))]
        out[layer] = [ChannelRole(layer, int(j - lo), float(change[j]), float(sa[j]), float(sb[j]))
                      for j in order.tolist()]
    return out


def _matched(a: Run, b: Run, classes: Sequence[str | int] | None) -> tuple[list[tuple[int, int]], list[str],
                                                                           list[str]]:
    """(index in A, index in B) of the classes both runs hold (by name, in run A's order; only
    ``classes`` when given), and the names of the classes of one run only."""
    in_a, in_b = set(a.class_names), {n: i for i, n in enumerate(b.class_names)}
    only_a = [n for n in a.class_names if n not in in_b]
    only_b = [n for n in b.class_names if n not in in_a]
    if classes is None:
        chosen = [i for i, n in enumerate(a.class_names) if n in in_b]
    else:
        chosen = list(dict.fromkeys(a.class_index(c) for c in classes))
        missing = [a.class_names[i] for i in chosen if a.class_names[i] not in in_b]
        if missing:
            raise SummitError(f"class {missing[0]!r} is not in run B ({b.path})")
    if not chosen:
        raise SummitError(f"the runs have no class in common ({a.path}: {len(a.class_names)} classes, "
                          f"{b.path}: {len(b.class_names)} classes)")
    return [(i, in_b[a.class_names[i]]) for i in chosen], only_a, only_b


def _with_images(a: Run, b: Run, matched: list[tuple[int, int]],
                 named: bool) -> tuple[list[tuple[int, int]], list[str]]:
    """The matched classes with images of their part on both sides, and the names of the others
    (``named``: classes the caller asked for, refused in one line instead)."""
    if a.part == b.part == "all":
        return matched, []
    if named:
        for ia, ib in matched:
            class_images(a.base or a, ia, a.part), class_images(b.base or b, ib, b.part)
        return matched, []
    na, nb = part_sizes(a.base or a, a.part), part_sizes(b.base or b, b.part)
    keep = [(ia, ib) for ia, ib in matched if na[ia] and nb[ib]]
    return keep, [a.class_names[ia] for ia, ib in matched if not (na[ia] and nb[ib])]


def diff_runs(run_a: Run | str | os.PathLike, run_b: Run | str | os.PathLike,
              options: GraphOptions | None = None, classes: Sequence[str | int] | None = None,
              progress: bool = False, images: tuple[str, str] = ("all", "all"), roles: bool = True,
              recalls: tuple[Recall, Recall] = (computed, computed), **changes: Any) -> RunDiff:
    """Compare two runs class by class (module docstring): every common class (or only
    ``classes``, named as in run A), under ``options`` with ``changes`` (as in class_graph), from
    the images of part ``images[0]`` in run A and ``images[1]`` in run B (Run.images). Channel
    roles always use every common class (``roles=False``: not computed, ``roles`` empty).
    ``recalls``: run A's and run B's memo of build inputs, as class_graph's ``recall`` (a
    server's, so that a diff reuses the class graphs it built; the keys of a part start with the
    part's name). ``progress``: a tqdm bar over classes."""
    a, b = _open(run_a).images(images[0]), _open(run_b).images(images[1])
    check_comparable(a, b)
    o = graph_options(options, **changes)
    ra, rb = _same_exclusions(resolve(a, o), resolve(b, o))
    matched, only_a, only_b = _matched(a, b, classes)
    matched, without = _with_images(a, b, matched, classes is not None)
    if not matched:
        raise SummitError(f"no class has both {images[0]} images in run A and {images[1]} images in run B")
    da, db = dense(a, ra.selection), dense(b, rb.selection)
    qs = (part_recall(recalls[0], a.part), part_recall(recalls[1], b.part))
    diffs = [_class_diff((a, b), (da, db), ij, (ra, rb), qs)
             for ij in tqdm(matched, desc="diff classes", unit="class", disable=not progress)]
    diffs.sort(key=lambda c: (-c.score, -c.edge_score, c.name))
    common = matched if classes is None or not roles else _with_images(a, b, _matched(a, b, None)[0], False)[0]
    settings = {**ra.settings(), "ubiquitous_a": da.ubiquitous if o.hide_ubiquitous else [],
                "ubiquitous_b": db.ubiquitous if o.hide_ubiquitous else []}
    return RunDiff(a, b, settings, diffs, channel_roles(a, b, da, db, common, ra.layers) if roles else {},
                   only_a, only_b, (a.part, b.part), without)


def mistakes_diff(run: Run | str | os.PathLike, cls: str | int, options: GraphOptions | None = None,
                  recall: Recall = computed, **changes: Any) -> ClassDiff:
    """A class's graph of its correctly classified images (A) against that of its mistakes (B),
    one run, same settings (:func:`diff_runs` with images ("correct", "wrong"), no channel roles;
    ``recall``: the run's memo of build inputs, as in class_graph)."""
    return diff_runs(run, run, options, [cls], images=("correct", "wrong"), roles=False, recalls=(recall, recall),
                     **changes).classes[0]


# -- export ----------------------------------------------------------------------------------------
def _run_info(run: Run) -> dict[str, Any]:
    return {"path": str(run.path.resolve()), "model": run.meta.get("model"), "weights": run.meta.get("weights"),
            "n_images": run.meta["dataset"]["n_images"], "n_classes": len(run.class_names), "images": run.part}


def _class_json(rank: int, c: ClassDiff) -> dict[str, Any]:
    g = c.graph.graph
    keys = ("count_a", "count_b", "fraction_a", "fraction_b", "weight_a", "weight_b")
    return {"rank": rank, "name": c.name, "label": c.label, "index_a": c.index_a, "index_b": c.index_b,
            "n_images_a": g["n_images_a"], "n_images_b": g["n_images_b"], "score": c.score,
            "edge_score": c.edge_score, "mass_a": g["settings"].get("mass_a"), "mass_b": g["settings"].get("mass_b"),
            "counts": c.counts(),
            "nodes": [{"id": v, "layer": x["layer"], "channel": x["channel"], "change": CHANGES[x["membership"]],
                       **{k: x[k] for k in keys}} for v, x in c.graph.nodes(data=True)],
            "edges": [{"source": u, "target": v, "pair": x["pair"], "change": CHANGES[x["membership"]],
                       **{k: x[k] for k in keys}} for u, v, x in c.graph.edges(data=True)]}


def diff_json(rd: RunDiff) -> dict[str, Any]:
    """The diff as a JSON-ready dict (schema: docs/DIFF.md)."""
    return {"schema": "summit-diff", "schema_version": DIFF_SCHEMA_VERSION, "doc": "docs/DIFF.md",
            "run_a": _run_info(rd.run_a), "run_b": _run_info(rd.run_b), "settings": rd.settings,
            "classes_only_a": rd.only_a, "classes_only_b": rd.only_b, "classes_without_images": rd.without_images,
            "classes": [_class_json(i + 1, c) for i, c in enumerate(rd.classes)],
            "channel_roles": {layer: [{"channel": r.channel, "change": r.change, "fraction_a": r.fraction_a,
                                       "fraction_b": r.fraction_b} for r in rs] for layer, rs in rd.roles.items()}}


def write_diff_json(rd: RunDiff, path: str | os.PathLike) -> Path:
    """Write :func:`diff_json` to ``path`` (run.files.write_output: atomic, or through a device)."""
    return write_output(path, json_bytes(diff_json(rd)))


def side_names(rd: RunDiff) -> tuple[str, str]:
    """How a figure names sides A and B: "run A" / "run B", or the image parts compared."""
    if rd.images == ("all", "all"):
        return "run A", "run B"
    same = rd.run_a.path.resolve() == rd.run_b.path.resolve()
    return tuple(f"{p} images" if same else f"run {w}'s {p} images" for w, p in zip("AB", rd.images))


def legend(rd: RunDiff) -> tuple[tuple[str, str], ...]:
    """(membership, text) of the figure's legend."""
    na, nb = (f"{n}'s graph" if rd.images == ("all", "all") else f"the graph of {n}" for n in side_names(rd))
    return (("a", f"lost: in {na} only"), ("b", f"gained: in {nb} only"), ("both", "kept: in both"))


def diff_caption(rd: RunDiff, c: ClassDiff) -> str:
    """The figure's caption: the runs, the counts, the scores and the settings."""
    n, s, a, b = c.counts(), c.graph.graph["settings"], rd.run_a, rd.run_b
    na, nb = side_names(rd)
    parts = "" if rd.images == ("all", "all") else \
        f" of {na} ({c.graph.graph['n_images_a']}) vs {nb} ({c.graph.graph['n_images_b']})"
    return (f"Run comparison{parts}, class {c.label} ({a.meta.get('model')}): A = {a.path.name} "
            f"({a.meta.get('weights')}), B = {b.path.name} ({b.meta.get('weights')}). "
            f"Nodes: {n['nodes']['lost']} lost, {n['nodes']['gained']} gained, {n['nodes']['kept']} kept; "
            f"edges: {n['edges']['lost']} lost, {n['edges']['gained']} gained, {n['edges']['kept']} kept. "
            f"Change score {c.score:.3f} (1 - weighted Jaccard of the nodes), edges {c.edge_score:.3f}. "
            f"Settings: {s['method']}, selection {s['selection']}, mass A {s.get('mass_a')}, "
            f"mass B {s.get('mass_b')}. Node area: the larger of the two runs' fractions of the class's "
            "images; edge width: the larger of the two runs' influence counts.")


def diff_svg(rd: RunDiff, cls: str | int, width: int = 720) -> str:
    """One class's diff as SVG: svg.graph_svg's drawing of the union graph (membership colours)
    nested at the top, a legend and the wrapped caption (:func:`diff_caption`) below it."""
    c = rd.get(cls)
    if c.graph.number_of_nodes() == 0:
        raise SummitError(f"class {c.name!r} has an empty graph in both runs: nothing to draw")
    inner = graph_svg(c.graph, width=width)
    match = re.search(r'height="([0-9]+)"', inner)
    y0 = int(match.group(1)) + 8 if match else 8
    lines = textwrap.wrap(diff_caption(rd, c), width // 6)
    height = y0 + 28 + 14 * len(lines)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>', inner]
    x = 8
    for key, text in legend(rd):
        out.append(f'<circle cx="{x + 6}" cy="{y0 + 6}" r="6" fill="{MEMBERSHIP_COLORS[key]}"/>'
                   f'<text x="{x + 16}" y="{y0 + 10}">{html.escape(text)}</text>')
        x += 40 + 6 * len(text)
    out += [f'<text x="8" y="{y0 + 32 + 14 * i}" font-size="10">{html.escape(line)}</text>'
            for i, line in enumerate(lines)]
    out.append("</svg>")
    return "".join(out)


def write_diff_svg(rd: RunDiff, cls: str | int, path: str | os.PathLike) -> Path:
    """Write :func:`diff_svg` to ``path`` (run.files.write_output)."""
    return write_output(path, diff_svg(rd, cls).encode())
