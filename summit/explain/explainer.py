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
  attribution graphs (``summit.graph.class_graph`` with its defaults);
- for a misclassified image, the *mistake* (``summit.explain.mistake``, ours): its strongest
  channels' membership in the true, predicted and wrong-images graphs and their attribution to
  the true and the predicted class.

:class:`Explanation` holds the arrays; ``to_json()`` is what ``summit explain`` writes and
``/api/explain`` answers (see docs/BLOCKS.md), ``write(dir)`` adds the PNGs.
"""
from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from ..errors import SummitError
from ..model.models import load_model
from ..run.store import Run
from . import attribution
from .groups import DEFAULT_GROUPS, factorize
from .images import ImageInput, file_image, model_input, run_cache
from .mistake import GraphNodes, mistake_json, true_entry
from .result import (
    TOP_CHANNELS,
    Explanation,
    LayerExplanation,
    _top,
    cell_bounds,
    pool_sum,
    rounded,
    strongest,
)

GRID = 14  # cells per side of the semantic dictionary, at most
TOP_CLASSES = 3
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
        self._graphs: dict[tuple, GraphNodes] = {}  # see graph_nodes

    @property
    def cache_dir(self) -> Path:
        """Rendered position vectors and group directions: ``<run>/blocks/featurevis``."""
        return run_cache(self.run, "featurevis")

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

    def graph_nodes(self, ci: int, images: str = "all") -> GraphNodes:
        """(number of nodes, {layer: channels}) of class ci's graph under the defaults in force
        (of a part of its images: ``class_graph(..., images=)``), remembered per class, part and
        defaults (at most 3 small entries per class); SummitError when the part has no graph."""
        from ..graph.build import class_graph, graph_channels
        from ..graph.options import defaults
        key = (ci, images, defaults())
        if key not in self._graphs:
            G = class_graph(self.run, ci, images=images)
            self._graphs[key] = (G.number_of_nodes(), graph_channels(G))
        return self._graphs[key]

    def _wrong_graph(self, ci: int) -> GraphNodes | str:
        """The graph of class ci's misclassified images, or why there is none."""
        try:
            return self.graph_nodes(ci, "wrong")
        except SummitError as e:
            return str(e)

    def _links(self, logits: torch.Tensor, true: int | None, layers: list[str]) -> list[dict]:
        roles: dict[int, list[str]] = {}
        if self.run_class_of:
            outs = list(self.run_class_of)
            best = outs[int(torch.argmax(logits.detach()[outs]))]
            roles.setdefault(self.run_class_of[best], []).append("predicted")
        if true is not None:
            roles.setdefault(true, []).append("true")
        order = torch.argsort(logits.detach(), descending=True).tolist()
        out_of = {ci: m for m, ci in self.run_class_of.items()}
        links = []
        for ci, r in roles.items():
            n, nodes = self.graph_nodes(ci)
            m = out_of.get(ci)
            links.append({"roles": r, "class": ci, "name": self.run.class_names[ci],
                          "model_rank": None if m is None else order.index(m) + 1,
                          "graph_nodes": n, "nodes": {l: nodes[l] for l in layers if l in nodes}})
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
            k_true = true_entry(classes, inp.true_class)
            wrong = None if k_true is None else self._wrong_graph(inp.true_class)
        out: dict[str, LayerExplanation] = {}
        for i, l in enumerate(chosen):
            acts = fwd.act(l).numpy()
            gr = grads[l].numpy()
            out[l] = LayerExplanation(l, acts, gr, factored[l], factored[l].attribution(gr).T,
                                      chosen[i + 1] if i + 1 < len(chosen) else None, nxt.get(l),
                                      strongest(acts, k_active), grid)
        settings = {"layers": chosen, "groups": groups, "top": top, "grid": grid, "k": k_active}
        mistake = None if k_true is None else mistake_json(classes, k_true, links, out, k_active, wrong)
        return Explanation(self.run, inp, classes, out, links, settings, mistake)

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
        from ..vis.cache import direction_paths
        vecs, neuron = self.directions(self._layer(expl, layer), kind)
        return direction_paths(self.spec, layer, vecs, self.cache_dir, neuron=neuron, size=size, steps=steps)

    def render(self, expl: Explanation, layer: str, kind: str, size: int = VIS["size"],
               steps: int = VIS["steps"], batch: int = 256, progress: bool = False) -> list[Path]:
        """Render (batched, cached) what the network sees at each cell of `layer` ("positions":
        the dot product with the cell's activation vector at the centre) or each neuron group's
        direction ("groups", averaged over positions). Returns the PNG paths."""
        from ..vis.cache import render_directions_cached
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
