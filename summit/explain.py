"""Building Blocks: one image explained layer by layer, linked to Summit's class graphs.

The per-image explorer of "The Building Blocks of Interpretability" (Olah et al., Distill
2018), for the run's model. For each chosen layer an :class:`Explainer` computes, from one
forward pass and one backward pass per target:

- the *semantic dictionary*: the layer's positions pooled into at most ``grid x grid`` cells,
  each with its activation vector's length and strongest channels;
- *attribution* (activation x gradient, ``summit.attribution``) of every position and channel
  to the top predicted classes (and the true class), also per cell and channel;
- *neuron groups* (``summit.groups``): NMF of the layer's activations, the groups' region maps,
  their attribution to those classes and to the next chosen layer's groups;
- the *link to Summit*: which of the image's active channels (its top-k by spatial max, the
  same rule that counts A[class, channel]) are nodes of the predicted and true classes'
  attribution graphs (``summit.graph.class_graph`` with its defaults).

:class:`Explanation` holds the arrays; ``to_json()`` is what ``summit explain`` writes and
``/api/explain`` answers (see docs/BLOCKS.md), ``write(dir)`` adds the PNGs.
"""
from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from . import attribution
from .groups import DEFAULT_GROUPS, Groups, factorize
from .images import CACHE_DIR, ImageInput, file_image, model_input
from .errors import SummitError
from .models import load_model
from .store import Run

SCHEMA_VERSION = 1
GRID = 14  # cells per side of the semantic dictionary, at most
TOP_CLASSES = 3
CELL_CHANNELS = 5  # strongest channels listed per cell (activation and attribution)
TOP_CHANNELS = 10  # channels listed per class in the channel attribution (each sign)
VIS = {"size": 96, "steps": 256}  # default renders of position vectors and group directions


def default_layers(run: Run) -> list[str]:
    """Three layers spread over the second half of the run's layers (e.g. fire5, fire7, fire9)."""
    n = len(run.layers)
    idx = sorted(set(np.linspace(n // 2 - 1 if n > 3 else 0, n - 1, min(3, n)).round().astype(int)))
    return [run.layers[i] for i in idx]


def order_layers(run: Run, layers: Sequence[str] | None) -> list[str]:
    """Validated layers in network order (duplicates dropped)."""
    if not layers:
        return default_layers(run)
    wanted = {run.check_layer(l) for l in layers}
    return [l for l in run.layers if l in wanted]


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
        }

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """explain.json plus PNGs (input, per layer: heat maps, groups, dictionary) into out_dir."""
        from .drawing import write_explanation
        return write_explanation(self, Path(out_dir))

    def _repr_html_(self) -> str:
        from .notebook import explanation_html
        return explanation_html(self)


class Explainer:
    """The run's model, loaded once, explaining images (one at a time: calls are serialized)."""

    def __init__(self, run: Run | str | os.PathLike, device: str = "cpu") -> None:
        self.run = run if isinstance(run, Run) else Run(run)
        self.spec = load_model(self.run.meta["model"], self.run.meta["weights"], layers=self.run.layers)
        self.device = device
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._render_spec = copy.deepcopy(self.spec)  # renders hook their own copy of the model
        model_index = self.run.classes.column("model_index").to_pylist()
        self.run_class_of = {int(m): i for i, m in enumerate(model_index) if m is not None}

    @property
    def cache_dir(self) -> Path:
        """Rendered position vectors and group directions: ``<run>/blocks/featurevis``."""
        return self.run.path / CACHE_DIR / "featurevis"

    def input(self, image: ImageInput | Image.Image | str | os.PathLike) -> ImageInput:
        if isinstance(image, ImageInput):
            return image
        if isinstance(image, Image.Image):
            return ImageInput("memory", "image", model_input(image.convert("RGB"), self.spec.input_size))
        return file_image(self.run, image)

    def _output_name(self, i: int) -> str:
        names = self.spec.class_names
        return names[i] if i < len(names) else str(i)

    def _classes(self, logits: torch.Tensor, top: int, true: int | None) -> list[dict]:
        logits = logits.detach()
        probs = torch.softmax(logits, 0)
        order = torch.argsort(logits, descending=True).tolist()
        chosen = [(i, "top") for i in order[:top]]
        true_out = None if true is None else self.run.classes.column("model_index")[true].as_py()
        if true_out is not None and true_out not in order[:top]:
            chosen.append((true_out, "true"))
        out = []
        for i, role in chosen:
            rc = self.run_class_of.get(i)
            out.append({"index": i, "name": self._output_name(i), "role": role, "rank": order.index(i) + 1,
                        "prob": float(probs[i]), "logit": float(logits[i]), "run_class": rc,
                        "run_name": None if rc is None else self.run.class_names[rc]})
        return out

    def _links(self, logits: torch.Tensor, true: int | None, layers: list[str]) -> list[dict]:
        from .graph import class_graph
        roles: dict[int, list[str]] = {}
        if self.run_class_of:
            outs = list(self.run_class_of)
            best = outs[int(torch.argmax(logits.detach()[outs]))]
            roles.setdefault(self.run_class_of[best], []).append("predicted")
        if true is not None:
            roles.setdefault(true, []).append("true")
        links = []
        for ci, r in roles.items():
            G = class_graph(self.run, ci)
            nodes: dict[str, list[int]] = {}
            for _, d in G.nodes(data=True):
                if d["layer"] in layers:
                    nodes.setdefault(d["layer"], []).append(int(d["channel"]))
            links.append({"roles": r, "class": ci, "name": self.run.class_names[ci],
                          "graph_nodes": G.number_of_nodes(),
                          "nodes": {l: sorted(v) for l, v in nodes.items()}})
        return links

    def explain(self, image: ImageInput | Image.Image | str | os.PathLike, layers: Sequence[str] | None = None,
                groups: int = DEFAULT_GROUPS, top: int = TOP_CLASSES, grid: int = GRID) -> Explanation:
        """Explain one image at `layers` (default :func:`default_layers`)."""
        inp = self.input(image)
        chosen = order_layers(self.run, layers)
        if not 1 <= top <= 10:
            raise SummitError(f"top must be in 1..10, got {top}")
        if not 1 <= grid <= 64:
            raise SummitError(f"grid must be in 1..64, got {grid}")
        k_active = int(self.run.meta.get("k") or 5)
        with self._lock:
            fwd = attribution.forward(self.spec, to_tensor(inp.image), chosen)
            classes = self._classes(fwd.logits, top, inp.true_class)
            grads = attribution.class_gradients(fwd, chosen, [c["index"] for c in classes])
            factored = {l: factorize(fwd.act(l), groups) for l in chosen}
            nxt: dict[str, np.ndarray] = {}
            for a, b in zip(chosen, chosen[1:]):
                dirs = torch.from_numpy(factored[b].directions).float()
                g = attribution.direction_gradients(fwd, a, b, dirs)
                nxt[a] = factored[a].attribution(g).T  # (G_a, G_b)
            links = self._links(fwd.logits, inp.true_class, chosen)
        out: dict[str, LayerExplanation] = {}
        for i, l in enumerate(chosen):
            acts = fwd.act(l).numpy()
            peak = acts.reshape(len(acts), -1).max(1)
            active = [(int(c), float(peak[c])) for c in np.argsort(-peak, kind="stable")[:k_active]]
            gr = grads[l].numpy()
            out[l] = LayerExplanation(l, acts, gr, factored[l], factored[l].attribution(gr).T,
                                      chosen[i + 1] if i + 1 < len(chosen) else None, nxt.get(l),
                                      active, grid)
        settings = {"layers": chosen, "groups": groups, "top": top, "grid": grid, "k": k_active}
        return Explanation(self.run, inp, classes, out, links, settings)

    def layer_attribution(self, image: ImageInput | Image.Image | str | os.PathLike, src: str, dst: str,
                          channel: int | None = None, box: tuple[int, int, int, int] | None = None,
                          grid: int = GRID) -> dict:
        """Which positions and channels of `src` build a channel and/or a box (y0, y1, x0, x1) of
        positions of the later layer `dst`: spatial map, top channels, per-cell sums (JSON)."""
        inp = self.input(image)
        self.run.check_layer(src)
        self.run.check_layer(dst)
        if self.run.layers.index(src) >= self.run.layers.index(dst):
            raise SummitError(f"layer {src} must come before {dst}")
        with self._lock:
            fwd = attribution.forward(self.spec, to_tensor(inp.image), [src, dst])
            a = attribution.layer_attribution(fwd, src, dst, channel, box).numpy()
        yb, xb = cell_bounds(a.shape[1], grid), cell_bounds(a.shape[2], grid)
        chan = a.sum((1, 2))
        return {"src": src, "dst": dst, "channel": channel, "box": None if box is None else list(box),
                "height": a.shape[1], "width": a.shape[2], "total": float(a.sum()),
                "spatial": rounded(a.sum(0).reshape(-1)),
                "cells": {"rows": len(yb) - 1, "cols": len(xb) - 1, "y": yb.tolist(), "x": xb.tolist(),
                          "attr": rounded(pool_sum(a.sum(0), yb, xb).reshape(-1))},
                "positive": _top(chan, TOP_CHANNELS, positive=True),
                "negative": _top(-chan, TOP_CHANNELS, positive=True)}

    # -- feature visualizations of position vectors and group directions ----------------------
    def directions(self, layer: LayerExplanation, kind: str) -> tuple[torch.Tensor, bool]:
        """(vectors, neuron) of a layer: its cells' mean activation vectors ("positions", rendered at
        one position) or its groups' directions ("groups", rendered over all positions)."""
        if kind == "positions":
            return torch.from_numpy(layer.cell_vectors()).float(), True
        if kind == "groups":
            return torch.from_numpy(layer.groups.directions).float(), False
        raise SummitError(f"unknown kind {kind!r}; valid: positions, groups")

    def _layer(self, expl: Explanation, layer: str) -> LayerExplanation:
        if layer not in expl.layers:
            raise SummitError(f"layer {layer!r} was not explained; explained: {', '.join(expl.layers)}")
        return expl.layers[layer]

    def vis_paths(self, expl: Explanation, layer: str, kind: str, size: int = VIS["size"],
                  steps: int = VIS["steps"]) -> list[Path]:
        """Where the renders of :meth:`render` are cached (files exist once rendered)."""
        from .featurevis import direction_paths
        vecs, neuron = self.directions(self._layer(expl, layer), kind)
        return direction_paths(self.spec, layer, vecs, self.cache_dir, neuron=neuron, size=size, steps=steps)

    def render(self, expl: Explanation, layer: str, kind: str, size: int = VIS["size"],
               steps: int = VIS["steps"], batch: int = 256, progress: bool = False) -> list[Path]:
        """Render (batched, cached) what the network sees at each cell of `layer` ("positions":
        the dot product with the cell's activation vector at the centre) or each neuron group's
        direction ("groups", averaged over positions). Returns the PNG paths."""
        from .featurevis import render_directions_cached
        vecs, neuron = self.directions(self._layer(expl, layer), kind)
        with self._render_lock:
            return render_directions_cached(self._render_spec, layer, vecs, self.cache_dir, neuron=neuron,
                                            size=size, steps=steps, batch=batch, device=self.device,
                                            progress=progress)


def explain(run: Run | str | os.PathLike, image: ImageInput | Image.Image | str | os.PathLike,
            layers: Sequence[str] | None = None, groups: int = DEFAULT_GROUPS, top: int = TOP_CLASSES,
            grid: int = GRID) -> Explanation:
    """One-shot :meth:`Explainer.explain` (loads the model each call; keep an Explainer for many)."""
    return Explainer(run).explain(image, layers, groups=groups, top=top, grid=grid)
