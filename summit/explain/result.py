"""What the Building Blocks explorer shows for one image, as arrays: per layer the activations,
class gradients, neuron groups and grid cells (:class:`LayerExplanation`), and the whole
:class:`Explanation` with ``to_json()`` (docs/BLOCKS.md). Pictures: drawing.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..run.store import Run
from .groups import Groups
from .images import ImageInput

SCHEMA_VERSION = 1
CELL_CHANNELS = 5  # strongest channels listed per cell (activation and attribution)
TOP_CHANNELS = 10  # channels listed per class in the channel attribution (each sign)


def cell_bounds(n: int, cells: int) -> np.ndarray:
    """Boundaries of min(n, cells) nearly equal runs of 0..n."""
    return np.linspace(0, n, min(n, cells) + 1).round().astype(int)


def pool_sum(a: np.ndarray, yb: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """(..., H, W) summed over the cells given by boundaries yb, xb -> (..., rows, cols)."""
    return np.add.reduceat(np.add.reduceat(a, yb[:-1], axis=-2), xb[:-1], axis=-1)


def rounded(a: Any, digits: int = 4) -> Any:
    """Numbers to `digits` significant digits, as (nested) lists for JSON."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log10(np.abs(a)))
    scale = 10.0 ** (digits - 1 - np.where(np.isfinite(e), e, 0))
    return (np.round(a * scale) / scale).tolist()


def _tops(m: np.ndarray, n: int, by_abs: bool = False) -> tuple[list[list[list]], np.ndarray]:
    """Per row of (rows, C): [[index, value], ...] of the n largest (or largest |v|) entries,
    strongest first; and the (rows,) sums of those entries."""
    idx = np.argsort(-(np.abs(m) if by_abs else m), axis=1, kind="stable")[:, :n]
    vals = np.take_along_axis(m, idx, 1)
    return ([[[i, v] for i, v in zip(ri, rv)] for ri, rv in zip(idx.tolist(), rounded(vals))],
            vals.sum(1))


def strongest(acts: np.ndarray, n: int) -> list[tuple[int, float]]:
    """[(channel, peak), ...] of the n channels of (C, H, W) activations with the highest spatial
    max ``peak[c] = max_(y, x) a[c, y, x]``, strongest first (ties: lower channel): the rule that
    counts A[class, channel] when n is the run's k."""
    peak = acts.reshape(len(acts), -1).max(1)
    return [(int(c), float(peak[c])) for c in np.argsort(-peak, kind="stable")[:n]]


def _top(v: np.ndarray, n: int, positive: bool = False) -> list[list]:
    """[[index, value], ...] of the n largest entries of a vector (only those > 0 if positive)."""
    top = _tops(v[None], n)[0][0]
    return [x for x in top if x[1] > 0] if positive else top


@dataclass
class LayerExplanation:
    """One layer of one image: activations, class gradients, neuron groups, grid cells."""

    name: str
    acts: np.ndarray  # (C, H, W)
    grads: np.ndarray  # (K, C, H, W): gradient of each explained class's logit
    groups: Groups
    group_attr: np.ndarray  # (G, K)
    next_layer: str | None  # the next explained layer, whose groups group_next refers to
    group_next: np.ndarray | None  # (G, G_next): attribution of these groups to the next's groups
    active: list[tuple[int, float]]  # the image's top-k channels by spatial max
    grid: int

    @property
    def attr(self) -> np.ndarray:
        """(K, C, H, W) activation x gradient."""
        return self.grads * self.acts

    @property
    def spatial(self) -> np.ndarray:
        """(K, H, W) attribution of each position to each class."""
        return self.attr.sum(1)

    @property
    def channel_attr(self) -> np.ndarray:
        """(K, C) attribution of each channel to each class."""
        return self.attr.sum((2, 3))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.acts.shape[1:]
        return cell_bounds(h, self.grid), cell_bounds(w, self.grid)

    def cell_vectors(self) -> np.ndarray:
        """(rows * cols, C) mean activation vector of each cell, row-major."""
        yb, xb = self.bounds
        counts = np.outer(np.diff(yb), np.diff(xb))
        pooled = pool_sum(self.acts, yb, xb) / counts
        return pooled.reshape(len(pooled), -1).T

    def cell_attr(self) -> np.ndarray:
        """(K, C, rows * cols) attribution of each channel in each cell (sum over its positions)."""
        yb, xb = self.bounds
        a = pool_sum(self.attr, yb, xb)
        return a.reshape(*a.shape[:2], -1)

    def to_json(self, links: list[dict]) -> dict:
        c, h, w = self.acts.shape
        yb, xb = self.bounds
        vec = self.cell_vectors()
        cattr = self.cell_attr()
        cell_total = cattr.sum(1)  # (K, cells)
        k = len(self.grads)
        tops = [_tops(cattr[i].T, CELL_CHANNELS, by_abs=True) for i in range(k)]
        chan = self.channel_attr
        g = self.groups
        return {
            "name": self.name, "channels": c, "height": h, "width": w,
            "active": [{"channel": ch, "value": v,
                        "in": [i for i, l in enumerate(links) if ch in l["nodes"].get(self.name, [])]}
                       for ch, v in self.active],
            "grid": {"rows": len(yb) - 1, "cols": len(xb) - 1, "y": yb.tolist(), "x": xb.tolist(),
                     "norm": rounded(np.linalg.norm(vec, axis=1)),
                     "top": _tops(vec, CELL_CHANNELS)[0],
                     "attr": rounded(cell_total), "attr_top": [t for t, _ in tops],
                     "attr_rest": rounded(cell_total - np.stack([s for _, s in tops]))},
            "spatial": rounded(self.spatial.reshape(k, -1)),
            "channel_attr": [{"positive": _top(row, TOP_CHANNELS, positive=True),
                              "negative": _top(-row, TOP_CHANNELS, positive=True)} for row in chan],
            "groups": {"n": g.n, "error": round(g.error, 4),
                       "maps": rounded(g.maps.reshape(g.n, -1), 3),
                       "directions": _tops(g.directions, CELL_CHANNELS)[0],
                       "attr": rounded(self.group_attr),
                       "next": None if self.group_next is None else
                       {"layer": self.next_layer, "attr": rounded(self.group_next)}},
        }


@dataclass
class Explanation:
    """Everything the explorer shows for one image."""

    run: Run
    input: ImageInput
    classes: list[dict]  # explained classes: model output index, name, prob, logit, role, run class
    layers: dict[str, LayerExplanation]
    links: list[dict]  # class graphs: roles, class, name, nodes {layer: [channels]}
    settings: dict
    mistake: dict | None = None  # a misclassified image's true and predicted classes (mistake.py)

    def to_json(self) -> dict:
        inp = self.input
        true = inp.true_class
        return {
            "schema": "summit-explain", "schema_version": SCHEMA_VERSION, "doc": "docs/BLOCKS.md",
            "model": self.run.meta.get("model"), "weights": self.run.meta.get("weights"),
            "image": {"source": inp.source, "name": inp.name, "query": inp.query, "size": inp.image.size[0],
                      "true_class": None if true is None else {"class": true, "name": self.run.class_names[true]}},
            "settings": self.settings, "classes": self.classes, "links": self.links,
            "layers": [l.to_json(self.links) for l in self.layers.values()],
            "mistake": self.mistake,
        }
