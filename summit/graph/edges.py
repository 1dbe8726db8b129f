"""A class's full graph from the influence table: per layer pair the counted (src, dst) edges,
and through 1x1 bottlenecks Summit's max-min composition (``compose_max_min``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..run.store import Run


@dataclass
class Edges:
    """Edges of one class, per layer pair (index into run.pairs): (src, dst, weight) arrays."""

    pair: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    bottleneck: np.ndarray  # bool: route "bottleneck" (composed through a 1x1 bottleneck), else "direct"

    @classmethod
    def concat(cls, parts: list[tuple]) -> Edges:
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
class ClassEdges:
    """A class's full-graph edges and the candidates for each destination's strongest raw inputs
    (attr_channels: direct edges and every composed bottleneck edge; the same object as `full`
    where no pair has a bottleneck)."""

    full: Edges
    attr: Edges


def _rank_within(dst: np.ndarray, weight: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered by (dst, weight desc, src) and each row's rank within its dst."""
    order = np.lexsort((src, -weight, dst))
    d = dst[order]
    first = np.r_[True, d[1:] != d[:-1]] if len(d) else np.zeros(0, dtype=bool)
    idx = np.arange(len(d))
    return order, idx - np.maximum.accumulate(np.where(first, idx, 0))


def top_per_dst(rows: tuple[np.ndarray, np.ndarray, np.ndarray], k: int) -> np.ndarray:
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
        top = top_per_dst(cand[:3], keep)
        parts.append(tuple(x[top] for x in cand))
    full = tuple(np.concatenate([p[i] for p in parts]) for i in range(4)) if parts else None
    composed = tuple(np.concatenate([p[i] for p in composed_parts]) for i in range(4)) if composed_parts else None
    return full, composed


def class_edges(run: Run, class_index: int) -> ClassEdges:
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
    edges = Edges.concat(full)
    if not attr:
        return ClassEdges(edges, edges)
    direct = ~edges.bottleneck
    attr.append(tuple(x[direct] for x in (edges.pair, edges.src, edges.dst, edges.weight, edges.bottleneck)))
    return ClassEdges(edges, Edges.concat(attr))


