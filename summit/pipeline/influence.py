"""Neuron influence between consecutive layers (Summit's I[class, i, j]).

Direct method ("conv"), per image: influence of input channel i on output channel j is
``max_p (X_i conv W_ji)(p)``, the 2D convolution of one input channel with its kernel slice
(bias excluded, BatchNorm scale folded into W). The positions p (``positions``): by default
Summit's grid, the outputs of ``tf.nn.depthwise_conv2d(X, W, [1, 3, 3, 1], "SAME")`` (stride 3,
TF SAME zero padding, :func:`convmax.same_pad`) for every stage, the 1x1 ones included, and the
pool projection applied to the unpooled previous layer; our option "exact" takes every
position of the module's own convolution (stride, padding, pool projection on the max-pooled
input). 1x1 convolutions use ``max_p w X_i(p) = w max_p X_i if w > 0 else w min_p X_i`` over
those positions; kxk convolutions one matmul of each channel's unfolded windows with its
kernels, in cache-sized blocks.

Routes through a 1x1 bottleneck (Inception 3x3/"5x5" branches, SqueezeNet Fire expands)
follow Summit's rule by default (``bottleneck="summit"``): they are counted as two separate
*stages*, previous layer -> bottleneck (1x1 max/min trick) and bottleneck -> branch output
(exact per-channel max), and composed per class at graph time (summit.graph). Each stage is
one counted matrix, stored under its own name in influence.parquet:
``"a->b"`` (direct routes: 1x1, pool-proj, plain kxk), ``"a->b/branch2"`` (into the bottleneck
``b/branch2``) and ``"b/branch2->b"`` (out of it). Our option ``bottleneck="linear"`` instead
composes the two exact stages per image along the strongest linear path and counts one matrix:
``infl[i, j] = sum_m relu(a[i, m]) * g[m, j]``, where ``a`` is the exact 1x1 influence of i
on bottleneck channel m and ``g[m, j] = max_q (B_m conv W_jm)(q) / max_p B_m(p)`` (q and the
positions of ``a`` as above; ``max_p B_m`` over every position).

Gradient method ("grad", for residual nets, EfficientNet or non-consecutive layers):
``infl[i, j] = sum_p X_i(p) * d(max_q Y_j(q)) / dX_i(p)`` (gradient x activation, the linear
approximation of Building Blocks of Interpretability), over every position whatever ``positions``.
Its targets (our option ``targets``): "selected" (default) attributes, per image, only the
destination channels the image selects under Summit's graph rule (mass 0.03 of the destination
layer, excluded channels left out), one backward per selection rank for the whole batch, and
counts only those (image, j); "all" attributes every destination channel, one backward each.

Per image, stage and destination j the top-k sources i are kept (:func:`topk_canonical`: ties
to the lower index; :func:`stage_topk` gives the same sets as the exhaustive canonical values,
at about the cost of the float32 maxima); counts are accumulated sparsely by (class, i, j) key
(summit.counter: bounded memory, sorted runs spilled to disk and merged exactly).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model.models import ModelSpec
from .activations import kept_selections
from .convmax import conv_topk, per_channel_conv_max, same_pad, topk_canonical
from .counter import SparseCounter, unique_sum

TARGET_MASS = 0.03  # the grad method's "selected" targets: Summit's graph selection
SUMMIT_STRIDE = 3  # Summit's grid: tf.nn.depthwise_conv2d(X, W, [1, 3, 3, 1], "SAME")


@dataclass
class Route:
    """One path from the previous layer's channels into a slice of the next layer's channels."""

    src: tuple[str, str]  # ("input" | "output", module path) that yields the route input X
    w2: torch.Tensor  # (Cout_b, Cin_or_Cmid, k, k), BN folded
    out_start: int
    stride: int = 1
    padding: int = 0
    mid: str | None = None  # module path whose output is the bottleneck activation B
    w1: torch.Tensor | None = None  # (Cmid, Cin) 1x1 bottleneck weight, BN folded
    bottleneck: str = ""  # the bottleneck's name inside the block ("branch2", "squeeze")
    grid: bool = False  # Summit's positions: stride 3, TF SAME padding (not the module's own)

    @property
    def width(self) -> int:
        return self.w2.shape[0]

    def conv_args(self, x: torch.Tensor, into_bottleneck: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(input, kernels (Cout, Cin, k, k), stride, padding) of the per-channel convolution of
        x with w2, or with the 1x1 bottleneck w1: the module's own stride and padding, or on
        Summit's grid x padded as TF SAME (convmax.same_pad) at stride 3 with padding 0."""
        w, s, p = (self.w1[:, :, None, None], 1, 0) if into_bottleneck else (self.w2, self.stride, self.padding)
        if self.grid:
            return same_pad(x, w.shape[-1], SUMMIT_STRIDE), w, SUMMIT_STRIDE, 0
        return x, w, s, p


@dataclass
class Stage:
    """One counted influence matrix: per image and destination channel, its top-k sources."""

    name: str
    kind: str  # direct | bottleneck_in | bottleneck_out
    n_src: int
    n_dst: int
    routes: list[Route]  # each fills destinations [out_start, out_start + width)
    bottleneck: str | None = None  # "<dst layer>/<name>" for bottleneck stages

    def dst_index(self, device: torch.device) -> torch.Tensor:
        return torch.cat([torch.arange(r.out_start, r.out_start + r.width, device=device) for r in self.routes])

    def describe(self, pair: str) -> dict:
        return {"name": self.name, "pair": pair, "kind": self.kind, "bottleneck": self.bottleneck,
                "src_channels": self.n_src, "dst_channels": self.n_dst,
                "dst_ranges": [[r.out_start, r.out_start + r.width] for r in self.routes]}


@dataclass
class LayerPair:
    """Consecutive chosen layers and how influence between them is computed."""

    src: str
    dst: str
    cin: int
    cout: int
    method: str  # "conv" or "grad"
    routes: list[Route] = field(default_factory=list)
    src_path: str = ""  # module paths of the two layers (used by the grad method)
    dst_path: str = ""
    stages: list[Stage] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    def to(self, device: torch.device) -> "LayerPair":
        """Move the stages' weights to the device the activations live on."""
        for st in self.stages:
            for r in st.routes:
                r.w2 = r.w2.to(device)
                r.w1 = None if r.w1 is None else r.w1.to(device)
        return self

    def make_stages(self, bottleneck: str = "summit", positions: str = "summit") -> "LayerPair":
        """Split the routes into counted stages (see the module docstring); ``positions`` "summit"
        puts every conv route on Summit's grid (:meth:`Route.conv_args`), "exact" keeps all."""
        whole = [Route((), torch.empty(self.cout, 0), 0)]  # grad: only the destinations' width
        for r in self.routes:
            r.grid = positions == "summit"
        if self.method != "conv" or bottleneck == "linear":
            self.stages = [Stage(self.name, "direct", self.cin, self.cout, self.routes if self.routes else whole)]
            return self
        direct = [r for r in self.routes if r.w1 is None]
        self.stages = [Stage(self.name, "direct", self.cin, self.cout, direct)] if direct else []
        for mid in dict.fromkeys(r.mid for r in self.routes if r.w1 is not None):
            rs = [r for r in self.routes if r.mid == mid]
            b = f"{self.dst}/{rs[0].bottleneck}"
            w1 = rs[0].w1
            self.stages.append(Stage(f"{self.src}->{b}", "bottleneck_in", self.cin, w1.shape[0],
                                     [Route(rs[0].src, w1[:, :, None, None], 0, grid=rs[0].grid)], b))
            self.stages.append(Stage(f"{b}->{self.dst}", "bottleneck_out", w1.shape[0], self.cout,
                                     [Route(("output", mid), r.w2, r.out_start, r.stride, r.padding, grid=r.grid)
                                      for r in rs], b))
        return self


def _fold(block: nn.Module) -> tuple[torch.Tensor, int, int]:
    """(weight with BN scale folded, stride, padding) of a Conv2d or conv+BN block."""
    conv = block if isinstance(block, nn.Conv2d) else block.conv
    w = conv.weight.detach().float()
    bn = getattr(block, "bn", None)
    if bn is not None:
        w = w * (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().view(-1, 1, 1, 1)
    if conv.groups != 1 or conv.dilation != (1, 1) or len(set(conv.stride)) != 1 \
            or len(set(conv.padding)) != 1:
        raise ValueError("unsupported conv for direct influence")
    return w, conv.stride[0], conv.padding[0]


def _inception_routes(spec: ModelSpec, path: str, pooled: bool) -> list[Route]:
    """The four branches; the pool projection reads the max-pooled block input if ``pooled``,
    else (Summit) the block input itself."""
    blk = spec.model.net.get_submodule(path)
    routes, start = [], 0
    w, s, p = _fold(blk.branch1)
    routes.append(Route(("input", path), w, start, s, p))
    start += w.shape[0]
    for b in ("branch2", "branch3"):
        br = getattr(blk, b)
        w1, _, _ = _fold(br[0])
        w2, s, p = _fold(br[1])
        routes.append(Route(("input", path), w2, start, s, p, mid=f"{path}.{b}.0", w1=w1[:, :, 0, 0],
                            bottleneck=b))
        start += w2.shape[0]
    w, s, p = _fold(blk.branch4[1])
    routes.append(Route(("output", f"{path}.branch4.0") if pooled else ("input", path), w, start, s, p))
    return routes


def _fire_routes(spec: ModelSpec, path: str) -> list[Route]:
    fire = spec.model.net.get_submodule(path)
    w1 = fire.squeeze.weight.detach()[:, :, 0, 0]
    routes, start = [], 0
    for e in ("expand1x1", "expand3x3"):
        w2, s, p = _fold(getattr(fire, e))
        routes.append(Route(("input", path), w2, start, s, p, mid=f"{path}.squeeze_activation", w1=w1,
                            bottleneck="squeeze"))
        start += w2.shape[0]
    return routes


def _chain_conv_path(spec: ModelSpec, dst: str) -> str:
    """Module path of the Conv2d that produces a sequential-chain layer."""
    parent, _, idx = spec.layers[dst].rpartition(".")
    seq = spec.model.net.get_submodule(parent)
    i = int(idx)
    while not isinstance(seq[i], nn.Conv2d):
        i -= 1
    return f"{parent}.{i}"


def build_pairs(spec: ModelSpec, layers: list[str], channels: dict[str, int],
                method: str = "auto", bottleneck: str = "summit", positions: str = "summit") -> list[LayerPair]:
    """Layer pairs for consecutive chosen layers, with direct routes when the model allows,
    split into counted stages by the bottleneck rule ("summit" or "linear"), evaluated at the
    positions of ``positions`` ("summit": Summit's grid, pool projection on the unpooled
    previous layer; "exact": every position of the module's own convolution)."""
    canonical = list(spec.layers)
    pairs = []
    for a, b in zip(layers, layers[1:]):
        pair = LayerPair(a, b, channels[a], channels[b], "grad", src_path=spec.layers[a],
                         dst_path=spec.layers[b])
        consecutive = a in canonical and b in canonical and canonical.index(b) == canonical.index(a) + 1
        if method != "grad" and consecutive:
            try:
                if spec.name.startswith("googlenet"):
                    pair.routes = _inception_routes(spec, spec.layers[b], pooled=positions == "exact")
                elif spec.name.startswith("squeezenet"):
                    pair.routes = _fire_routes(spec, spec.layers[b])
                elif spec.name.startswith(("vgg", "alexnet")):
                    conv = _chain_conv_path(spec, b)
                    w, s, p = _fold(spec.model.net.get_submodule(conv))
                    pair.routes = [Route(("input", conv), w, 0, s, p)]
            except ValueError:
                pair.routes = []
            if pair.routes and sum(r.w2.shape[0] for r in pair.routes) == pair.cout and \
                    all((r.w1 if r.w1 is not None else r.w2).shape[1] == pair.cin for r in pair.routes):
                pair.method = "conv"
            else:
                pair.routes = []
        if method == "conv" and pair.method != "conv":
            raise ValueError(f"no direct convolution connects {a} and {b}; use --influence auto or grad")
        pairs.append(pair.make_stages(bottleneck, positions))
    return pairs


def route_influence(route: Route, x: torch.Tensor, mid: torch.Tensor | None) -> torch.Tensor:
    """Per-image influence (N, Cin, Cout_b) of one route."""
    if route.w1 is None:
        return per_channel_conv_max(*route.conv_args(x))
    a = per_channel_conv_max(*route.conv_args(x, into_bottleneck=True))  # (N, Cin, Cmid)
    g = per_channel_conv_max(*route.conv_args(mid))  # (N, Cmid, Cout_b)
    bmax = mid.amax((2, 3)).unsqueeze(2)
    g = torch.where(bmax > 0, g / bmax.clamp(min=1e-12), torch.zeros_like(g))
    return torch.bmm(torch.relu(a), g)


def _route_tensors(route: Route, taps) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(route input X, bottleneck activation B or None) from captured tensors."""
    kind, path = route.src
    return (taps.inp[path] if kind == "input" else taps.out[path]), (taps.out[route.mid] if route.mid else None)


def stage_influence(stage: Stage, taps) -> torch.Tensor:
    """Per-image influence (N, n_src, routes' destinations) of a conv stage from captured tensors."""
    return torch.cat([route_influence(r, *_route_tensors(r, taps)) for r in stage.routes], dim=2)


def stage_topk(stage: Stage, taps, k: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Top-k sources (N, k, routes' destinations) per image of a conv stage, among the source
    channels ``keep`` (ascending; default all).

    Routes of exact per-channel maxima (every route of Summit's stages: direct, into and out of
    a bottleneck) go through :func:`conv_topk`, equal to ``topk_canonical`` of the canonical
    values; routes composed through a bottleneck (our ``linear`` option) rank their float32
    composition with :func:`topk_canonical`. Each route fills its own destinations, so the
    per-route sets are the stage's sets."""
    parts = []
    for r in stage.routes:
        x, mid = _route_tensors(r, taps)
        if r.w1 is None and keep is None:
            xc, w, s, p = r.conv_args(x)
            parts.append(conv_topk(xc, w, k, s, p))
        elif r.w1 is None:  # the kept channels' convolutions, indices mapped back
            kd = keep.to(x.device)
            xc, w, s, p = r.conv_args(x[:, kd])
            parts.append(kd[conv_topk(xc, w[:, kd], k, s, p)])
        else:
            parts.append(topk_among(route_influence(r, x, mid), k, keep))
    return torch.cat(parts, dim=2)


def topk_among(v: torch.Tensor, k: int, keep: torch.Tensor | None) -> torch.Tensor:
    """:func:`topk_canonical` of v (N, Cin, Cout) among the inputs ``keep`` (ascending; None:
    all) -> (N, k, Cout) input indices; ascending keep preserves the ties-to-lower-index order."""
    if keep is None:
        return topk_canonical(v, k)
    keep = keep.to(v.device)
    return keep[topk_canonical(v[:, keep], k)]


def grad_influence(x: torch.Tensor, y: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """Gradient x activation influence (N, Cin, Cout) of X on the spatial max of each Y_j.

    One backward pass per output channel serves the whole batch: in eval mode images do not
    interact, so the gradient of the batch sum splits per image. ``chunk`` > 1 runs that many
    output channels per backward (vmap over one-hot gradient outputs). On CPU the work is
    arithmetic-bound and chunks cost more (`bench/bench_influence.py grad`: 1.3x for 4 on
    EfficientNet-Lite0); the option is there for devices where per-call overhead dominates.
    """
    s = y.flatten(2).amax(2).sum(0)  # (Cout,)
    xd = x.detach()
    cout = y.shape[1]
    out = x.new_empty(x.shape[0], x.shape[1], cout)
    eye = torch.eye(cout, dtype=s.dtype, device=s.device)
    for j0 in range(0, cout, chunk):
        j1 = min(cout, j0 + chunk)
        if chunk == 1:
            (g,) = torch.autograd.grad(s[j0], x, retain_graph=True)
            out[:, :, j0] = (g * xd).sum((2, 3))
        else:
            (g,) = torch.autograd.grad(s, x, grad_outputs=eye[j0:j1], retain_graph=True,
                                       is_grads_batched=True)
            out[:, :, j0:j1] = torch.einsum("cnihw,nihw->nic", g, xd)
    return out


def grad_influence_selected(x: torch.Tensor, y: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """:func:`grad_influence` (N, Cin, Cout) at the selected (n, j) of sel (N, Cout) bool, 0
    elsewhere. Backward r attributes every image's r-th selected channel (ascending order) at
    once, so a batch costs max_n |sel[n]| backwards instead of Cout."""
    ymax = y.flatten(2).amax(2)  # (N, Cout)
    xd = x.detach()
    out = x.new_zeros(x.shape[0], x.shape[1], y.shape[1])
    counts = sel.sum(1)
    order = torch.sort(sel.to(torch.int8), dim=1, descending=True, stable=True).indices
    for r in range(int(counts.max()) if counts.numel() else 0):
        rows = torch.nonzero(counts > r).squeeze(1)
        cols = order[rows, r]
        (g,) = torch.autograd.grad(ymax[rows, cols].sum(), x, retain_graph=True)
        out[rows, :, cols] = (g[rows] * xd[rows]).sum((2, 3))
    return out


def pair_taps(pairs: list[LayerPair]) -> tuple[set[str], set[str]]:
    """Module paths whose (outputs, inputs) the direct routes need."""
    outs, inps = set(), set()
    for p in pairs:
        for r in (r for st in p.stages for r in st.routes if p.method == "conv"):
            (inps if r.src[0] == "input" else outs).add(r.src[1])
            if r.mid:
                outs.add(r.mid)
    return outs, inps


class InfluenceAccumulator:
    """I[class, i, j] per stage: images of the class for which i was among the top-k sources of j."""

    def __init__(self, pairs: list[LayerPair], n_classes: int, k: int = 5,
                 keep: dict[str, torch.Tensor] | None = None, targets: str = "selected", bins: int = 1) -> None:
        """keep: per layer with excluded channels, its other channels (ascending): the only
        top-k candidates of the stages whose sources are that layer's channels (and the only
        selectable targets of the grad method's "selected" mode). targets: "selected" | "all".
        bins: rows per class (:class:`activations.ActivationAccumulator`): ``update`` takes bins
        ``class * bins + part`` and :meth:`decode` gives one part or their sum."""
        self.pairs = pairs
        self.targets = targets
        self.bins = bins
        self.layer_keep = dict(keep or {})
        self.stages = {st.name: st for p in pairs for st in p.stages}
        self.n_classes = n_classes
        self.k = k
        self.counters = {name: SparseCounter() for name in self.stages}
        self.keep = {st.name: keep[p.src] for p in pairs for st in p.stages
                     if keep and p.src in keep and st.kind != "bottleneck_out"}

    def update(self, taps, labels: torch.Tensor) -> None:
        """Count the batch's top-k sources into the bins ``labels`` (N,)."""
        for p in self.pairs:
            for st in p.stages:
                keep = self.keep.get(st.name)
                k = min(self.k, st.n_src if keep is None else keep.numel())
                sel = None
                if p.method == "conv":
                    top = stage_topk(st, taps, k, keep)
                elif self.targets == "all":
                    top = topk_among(grad_influence(taps.out[p.src_path], taps.out[p.dst_path]), k, keep)
                else:
                    y = taps.out[p.dst_path]
                    sel, = kept_selections(y.detach().flatten(2).amax(2), self.layer_keep.get(p.dst), [TARGET_MASS])
                    top = topk_among(grad_influence_selected(taps.out[p.src_path], y, sel), k, keep)
                dst = st.dst_index(top.device).view(1, 1, -1)  # (N, k, n_dst of the routes)
                keys = (labels.to(top.device).view(-1, 1, 1) * st.n_src + top) * st.n_dst + dst
                if sel is not None:  # only the (image, j) attributed
                    keys = keys[sel.unsqueeze(1).expand_as(keys)]
                self.counters[st.name].add(keys.cpu())

    def spill_to(self, directory: str | os.PathLike, max_entries: int) -> None:
        """Let each stage's counter keep at most max_entries in memory, spilling sorted runs
        to directory/stage<i> beyond that (summit.counter)."""
        for i, c in enumerate(self.counters.values()):
            c.spill_dir, c.max_entries = Path(directory) / f"stage{i}", max_entries
            c.flush_at = min(c.flush_at, max_entries)

    def state(self) -> dict:
        return {name: c.state() for name, c in self.counters.items()}

    def load(self, state: dict) -> None:
        for name, st in state.items():
            self.counters[name].load(st)

    def merge(self, state: dict) -> None:
        for name, st in state.items():
            self.counters[name].merge(st)

    def decode(self, name: str, c0: int | None = None, c1: int | None = None,
               part: int | None = None) -> tuple[torch.Tensor, ...]:
        """(class, src, dst, count) for one stage and classes c0 <= class < c1 (default all),
        sorted by class then src, dst: of one part (0 .. bins-1) of the classes' images, or
        (None) of all, summed exactly over the parts."""
        st = self.stages[name]
        per_bin, b = st.n_src * st.n_dst, self.bins
        keys, counts = self.counters[name].range(None if c0 is None else c0 * b * per_bin,
                                                 None if c1 is None else c1 * b * per_bin)
        keys, counts = np.asarray(keys), np.asarray(counts)
        if b > 1:  # bin -> class: keep one part, or sum the parts of each (class, src, dst)
            bin_, rest = keys // per_bin, keys % per_bin
            if part is not None:
                hit = bin_ % b == part
                keys, counts = (bin_[hit] // b) * per_bin + rest[hit], counts[hit]
            else:
                keys, counts = unique_sum((bin_ // b) * per_bin + rest, counts)
        keys, counts = torch.from_numpy(keys), torch.from_numpy(counts)
        dst = keys % st.n_dst
        rest = keys // st.n_dst
        return rest // st.n_src, rest % st.n_src, dst, counts

    def spill(self) -> None:
        """Move every in-memory table to disk (before a state travels to another process)."""
        for c in self.counters.values():
            c.spill()

    def discard_files(self) -> None:
        """Delete the spilled runs this accumulator wrote (other ranks' or shards' stay)."""
        for c in self.counters.values():
            c.discard_files()
