"""Neuron influence between consecutive layers (Summit's I[class, i, j]).

Direct method ("conv"), per image: influence of input channel i on output channel j is
``max_p (X_i conv W_ji)(p)``, the 2D convolution of one input channel with its kernel slice
(bias excluded, BatchNorm scale folded into W). 1x1 convolutions use
``max_p w X_i(p) = w max X_i if w > 0 else w min X_i``; kxk convolutions run as a grouped
convolution (one group per input channel), chunked to bound memory.

Routes through a 1x1 bottleneck (Inception 3x3/"5x5" branches, SqueezeNet Fire expands)
follow Summit's rule by default (``bottleneck="summit"``): they are counted as two separate
*stages*, previous layer -> bottleneck (1x1 max/min trick) and bottleneck -> branch output
(exact per-channel max), and composed per class at graph time (summit.graph). Each stage is
one counted matrix, stored under its own name in influence.parquet:
``"a->b"`` (direct routes: 1x1, pool-proj, plain kxk), ``"a->b/branch2"`` (into the bottleneck
``b/branch2``) and ``"b/branch2->b"`` (out of it). Our option ``bottleneck="linear"`` instead
composes the two exact stages per image along the strongest linear path and counts one matrix:
``infl[i, j] = sum_m relu(a[i, m]) * g[m, j]``, where ``a`` is the exact 1x1 influence of i
on bottleneck channel m and ``g[m, j] = max_q (B_m conv W_jm)(q) / max_p B_m(p)``.

Gradient method ("grad", for residual nets, EfficientNet or non-consecutive layers):
``infl[i, j] = sum_p X_i(p) * d(max_q Y_j(q)) / dX_i(p)`` (gradient x activation, the linear
approximation of Building Blocks of Interpretability).

Per image, stage and destination j the top-k sources i are kept; counts are accumulated
sparsely by (class, i, j) key so memory is bounded by the number of distinct triples, not by images.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .models import ModelSpec

CHUNK_BYTES = {"cpu": 2**20, "cuda": 256 * 2**20}  # per block of per-channel products


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

    @property
    def width(self) -> int:
        return self.w2.shape[0]


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

    def make_stages(self, bottleneck: str = "summit") -> "LayerPair":
        """Split the routes into counted stages (see the module docstring)."""
        whole = [Route((), torch.empty(self.cout, 0), 0)]  # grad: only the destinations' width
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
                                     [Route(rs[0].src, w1[:, :, None, None], 0)], b))
            self.stages.append(Stage(f"{b}->{self.dst}", "bottleneck_out", w1.shape[0], self.cout,
                                     [Route(("output", mid), r.w2, r.out_start, r.stride, r.padding) for r in rs], b))
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


def _inception_routes(spec: ModelSpec, path: str) -> list[Route]:
    blk = spec.model.net.get_submodule(path)
    routes, start = [], 0
    w, s, p = _fold(blk.branch1)
    routes.append(Route(("input", path), w, start, s, p)); start += w.shape[0]
    for b in ("branch2", "branch3"):
        br = getattr(blk, b)
        w1, _, _ = _fold(br[0])
        w2, s, p = _fold(br[1])
        routes.append(Route(("input", path), w2, start, s, p, mid=f"{path}.{b}.0", w1=w1[:, :, 0, 0],
                            bottleneck=b))
        start += w2.shape[0]
    w, s, p = _fold(blk.branch4[1])
    routes.append(Route(("output", f"{path}.branch4.0"), w, start, s, p))
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
                method: str = "auto", bottleneck: str = "summit") -> list[LayerPair]:
    """Layer pairs for consecutive chosen layers, with direct routes when the model allows,
    split into counted stages by the bottleneck rule ("summit" or "linear")."""
    canonical = list(spec.layers)
    pairs = []
    for a, b in zip(layers, layers[1:]):
        pair = LayerPair(a, b, channels[a], channels[b], "grad", src_path=spec.layers[a],
                         dst_path=spec.layers[b])
        consecutive = a in canonical and b in canonical and canonical.index(b) == canonical.index(a) + 1
        if method != "grad" and consecutive:
            try:
                if spec.name.startswith("googlenet"):
                    pair.routes = _inception_routes(spec, spec.layers[b])
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
        pairs.append(pair.make_stages(bottleneck))
    return pairs


def one_by_one(x: torch.Tensor, w: torch.Tensor, padded: bool = False) -> torch.Tensor:
    """Exact per-channel influence of a 1x1 conv: (N, Cin, H, W), (Cout, Cin) -> (N, Cin, Cout)."""
    mx, mn = x.amax((2, 3)), x.amin((2, 3))
    if padded:  # zero padding adds zero-valued positions
        mx, mn = mx.clamp(min=0), mn.clamp(max=0)
    wt = w.t()
    return mx.unsqueeze(2) * wt.clamp(min=0) + mn.unsqueeze(2) * wt.clamp(max=0)


def per_channel_conv_max(x: torch.Tensor, w: torch.Tensor, stride: int = 1,
                         padding: int = 0) -> torch.Tensor:
    """max over positions of each single-channel convolution X_i * W_ji -> (N, Cin, Cout)."""
    n, cin, h, wd = x.shape
    cout, k = w.shape[0], w.shape[-1]
    if k == 1:
        if stride > 1:
            x = x[:, :, ::stride, ::stride]
        return one_by_one(x, w[:, :, 0, 0], padded=padding > 0)
    ho = (h + 2 * padding - k) // stride + 1
    wo = (wd + 2 * padding - k) // stride + 1
    # One row per (image, input channel): its patches (k*k, L) times its kernels (Cout, k*k),
    # reduced over positions right away. Rows go in blocks whose (Cout, L) products stay
    # cache-sized: 2-3x faster on CPU than one big einsum or a grouped conv (same result).
    patches = F.unfold(x.reshape(n * cin, 1, h, wd), k, padding=padding, stride=stride)
    kernels = w.reshape(cout, cin, k * k).transpose(0, 1)  # (Cin, Cout, k*k)
    rows = max(1, CHUNK_BYTES.get(x.device.type, 2**20) // (cout * ho * wo * 4))
    out = x.new_empty(n * cin, cout)
    for r0 in range(0, n * cin, rows):
        r1 = min(n * cin, r0 + rows)
        ch = torch.arange(r0, r1, device=x.device) % cin
        out[r0:r1] = torch.bmm(kernels[ch], patches[r0:r1]).amax(-1)
    return out.view(n, cin, cout)


def route_influence(route: Route, x: torch.Tensor, mid: torch.Tensor | None) -> torch.Tensor:
    """Per-image influence (N, Cin, Cout_b) of one route."""
    if route.w1 is None:
        return per_channel_conv_max(x, route.w2, route.stride, route.padding)
    a = one_by_one(x, route.w1)  # (N, Cin, Cmid)
    g = per_channel_conv_max(mid, route.w2, route.stride, route.padding)  # (N, Cmid, Cout_b)
    bmax = mid.amax((2, 3)).unsqueeze(2)
    g = torch.where(bmax > 0, g / bmax.clamp(min=1e-12), torch.zeros_like(g))
    return torch.bmm(torch.relu(a), g)


def stage_influence(stage: Stage, taps) -> torch.Tensor:
    """Per-image influence (N, n_src, routes' destinations) of a conv stage from captured tensors."""
    parts = []
    for r in stage.routes:
        kind, path = r.src
        x = taps.inp[path] if kind == "input" else taps.out[path]
        parts.append(route_influence(r, x, taps.out[r.mid] if r.mid else None))
    return torch.cat(parts, dim=2)


def grad_influence(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient x activation influence (N, Cin, Cout) of X on the spatial max of each Y_j.

    One backward pass per output channel serves the whole batch: in eval mode images do not
    interact, so the gradient of the batch sum splits per image (a plain loop measured 2x
    faster on CPU than vmap'd is_grads_batched).
    """
    s = y.flatten(2).amax(2).sum(0)  # (Cout,)
    xd = x.detach()
    out = x.new_empty(x.shape[0], x.shape[1], y.shape[1])
    for j in range(y.shape[1]):
        (g,) = torch.autograd.grad(s[j], x, retain_graph=True)
        out[:, :, j] = (g * xd).sum((2, 3))
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


class SparseCounter:
    """Counts of int64 keys, kept sorted and unique; merging is exact and order-independent."""

    def __init__(self, flush_at: int = 2_000_000) -> None:
        self.keys = torch.empty(0, dtype=torch.long)
        self.counts = torch.empty(0, dtype=torch.long)
        self._pending: list[torch.Tensor] = []
        self._pending_n = 0
        self.flush_at = flush_at

    def add(self, keys: torch.Tensor) -> None:
        self._pending.append(keys.reshape(-1))
        self._pending_n += keys.numel()
        if self._pending_n >= self.flush_at:
            self.flush()

    def add_counts(self, keys: torch.Tensor, counts: torch.Tensor) -> None:
        self.flush()
        self._combine(torch.cat([self.keys, keys]), torch.cat([self.counts, counts]))

    def flush(self) -> None:
        if self._pending:
            new = torch.cat(self._pending)
            self._pending, self._pending_n = [], 0
            self._combine(torch.cat([self.keys, new]),
                          torch.cat([self.counts, torch.ones_like(new)]))

    def _combine(self, keys: torch.Tensor, counts: torch.Tensor) -> None:
        uniq, inv = torch.unique(keys, sorted=True, return_inverse=True)
        self.counts = torch.zeros_like(uniq).scatter_add_(0, inv, counts)
        self.keys = uniq


class InfluenceAccumulator:
    """I[class, i, j] per stage: images of the class for which i was among the top-k sources of j."""

    def __init__(self, pairs: list[LayerPair], n_classes: int, k: int = 5) -> None:
        self.pairs = pairs
        self.stages = {st.name: st for p in pairs for st in p.stages}
        self.n_classes = n_classes
        self.k = k
        self.counters = {name: SparseCounter() for name in self.stages}

    def update(self, taps, labels: torch.Tensor) -> None:
        for p in self.pairs:
            for st in p.stages:
                if p.method == "conv":
                    infl, dst = stage_influence(st, taps), st.dst_index(labels.device)
                else:
                    infl = grad_influence(taps.out[p.src_path], taps.out[p.dst_path])
                    dst = torch.arange(p.cout, device=infl.device)
                k = min(self.k, st.n_src)
                top = infl.topk(k, dim=1).indices  # (N, k, n_dst of the routes)
                keys = (labels.to(top.device).view(-1, 1, 1) * st.n_src + top) * st.n_dst + dst.view(1, 1, -1)
                self.counters[st.name].add(keys.cpu())

    def state(self) -> dict:
        out = {}
        for name, c in self.counters.items():
            c.flush()
            out[name] = (c.keys.clone(), c.counts.clone())
        return out

    def load(self, state: dict) -> None:
        for name, (keys, counts) in state.items():
            c = self.counters[name] = SparseCounter()
            c.keys, c.counts = keys, counts

    def merge(self, state: dict) -> None:
        for name, (keys, counts) in state.items():
            self.counters[name].add_counts(keys, counts)

    def decode(self, name: str) -> tuple[torch.Tensor, ...]:
        """(class, src, dst, count) for one stage, sorted by class then src, dst."""
        st = self.stages[name]
        c = self.counters[name]
        c.flush()
        keys = c.keys
        dst = keys % st.n_dst
        rest = keys // st.n_dst
        return rest // st.n_src, rest % st.n_src, dst, c.counts
