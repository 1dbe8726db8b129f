"""Neuron influence between consecutive layers (Summit's I[class, i, j]).

Direct method ("conv"), per image: influence of input channel i on output channel j is
``max_p (X_i conv W_ji)(p)``, the 2D convolution of one input channel with its kernel slice
(bias excluded, BatchNorm scale folded into W). 1x1 convolutions use
``max_p w X_i(p) = w max X_i if w > 0 else w min X_i``; kxk convolutions run as a grouped
convolution (one group per input channel), chunked to bound memory.

Routes through a bottleneck (Inception 3x3/5x5 branches, SqueezeNet Fire expands) compose
two exact per-channel stages along the strongest linear path (documented deviation: Summit
does not specify this step):
``infl[i, j] = sum_m relu(a[i, m]) * g[m, j]``, where ``a`` is the exact 1x1 influence of i
on bottleneck channel m and ``g[m, j] = max_q (B_m conv W_jm)(q) / max_p B_m(p)`` is m's
exact influence on j per unit of m's activation in this image.

Gradient method ("grad", for residual nets, EfficientNet or non-consecutive layers):
``infl[i, j] = sum_p X_i(p) * d(max_q Y_j(q)) / dX_i(p)`` (gradient x activation, the linear
approximation of Building Blocks of Interpretability).

Per image and per j the top-k i are kept; counts are accumulated sparsely by
(class, i, j) key so memory is bounded by the number of distinct triples, not by images.
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

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    def to(self, device: torch.device) -> "LayerPair":
        """Move the routes' weights to the device the activations live on."""
        for r in self.routes:
            r.w2 = r.w2.to(device)
            r.w1 = None if r.w1 is None else r.w1.to(device)
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
        routes.append(Route(("input", path), w2, start, s, p, mid=f"{path}.{b}.0", w1=w1[:, :, 0, 0]))
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
        routes.append(Route(("input", path), w2, start, s, p, mid=f"{path}.squeeze_activation", w1=w1))
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
                method: str = "auto") -> list[LayerPair]:
    """Layer pairs for consecutive chosen layers, with direct routes when the model allows."""
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
        pairs.append(pair)
    return pairs


def one_by_one(x: torch.Tensor, w: torch.Tensor, padded: bool = False) -> torch.Tensor:
    """Exact per-channel influence of a 1x1 conv: (N, Cin, H, W), (Cout, Cin) -> (N, Cin, Cout)."""
    mx, mn = x.amax((2, 3)), x.amin((2, 3))
    if padded:  # zero padding adds zero-valued positions
        mx, mn = mx.clamp(min=0), mn.clamp(max=0)
    wt = w.t()
    return mx.unsqueeze(2) * wt.clamp(min=0) + mn.unsqueeze(2) * wt.clamp(max=0)


def topk_canonical(v: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k inputs (dim 1) of v (N, Cin, Cout) per (image, output channel) -> (N, k, Cout).

    Larger value first, ties to the lower input index; each set is listed in ascending index
    order. Both the exhaustive and the fast path (:func:`conv_topk`) end here.
    """
    n, cin, cout = v.shape
    kth = v.topk(k, dim=1, sorted=False).values.amin(1, keepdim=True)
    above, tie = v > kth, v == kth
    take = above | (tie & (tie.cumsum(1) <= k - above.sum(1, keepdim=True)))
    return take.transpose(1, 2).nonzero()[:, 2].view(n, cout, k).transpose(1, 2)


def _dot_tol(k2: int, device: torch.device) -> float:
    """Relative bound (per unit of sum |w| * max |x|) on the float32 rounding error of a
    k2-term dot product and of the bounds built from it, with a 4x margin; TF32 on CUDA
    gets a 2^-11 unit. Float32 values are only ever compared with this margin."""
    tf32 = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    u = 2.0 ** (-11 if tf32 else -24)
    return 4 * (k2 + 2) * u


class _Windows:
    """The k x k windows of a zero-padded input, one row per (image, input channel)."""

    def __init__(self, x: torch.Tensor, ks: int, stride: int, padding: int) -> None:
        n, cin, h, wd = x.shape
        xp = F.pad(x, (padding,) * 4) if padding else x
        hp, wp = h + 2 * padding, wd + 2 * padding
        ho, wo = (hp - ks) // stride + 1, (wp - ks) // stride + 1
        dev = x.device
        self.padded = xp
        self.rows = xp.reshape(n * cin, hp * wp)
        self.flat = self.rows.view(-1)
        self.base = (torch.arange(ho, device=dev)[:, None] * (stride * wp)
                     + torch.arange(wo, device=dev)[None, :] * stride).reshape(-1)  # window origins
        self.taps = (torch.arange(ks, device=dev)[:, None] * wp + torch.arange(ks, device=dev)).reshape(-1)
        self.n_pos, self.ks, self.stride, self.out_hw = ho * wo, ks, stride, (ho, wo)

    def tiles(self, size: int) -> torch.Tensor:
        """Output positions grouped in square tiles of about ``size`` positions (T, P); edge
        tiles repeat their last row / column."""
        ho, wo = self.out_hw
        t = max(1, min(4, round(size ** 0.5), ho, wo))
        dev = self.base.device
        ty = (torch.arange(0, ho, t, device=dev)[:, None] + torch.arange(t, device=dev)).clamp(max=ho - 1)
        tx = (torch.arange(0, wo, t, device=dev)[:, None] + torch.arange(t, device=dev)).clamp(max=wo - 1)
        pos = ty[:, None, :, None] * wo + tx[None, :, None, :]  # (tiles_y, tiles_x, t, t)
        return pos.reshape(-1, t * t)

    def at(self, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Window values (R, P, k*k) of the given rows (R,) at output positions pos (R, P)."""
        start = rows.unsqueeze(1) * self.rows.shape[1] + self.base[pos]  # (R, P)
        return self.flat[start.unsqueeze(2) + self.taps]

    def absmax(self, nonneg: bool) -> torch.Tensor:
        """Largest |x| in each window (N*Cin, L); 0 marks an all-zero window (value exactly 0)."""
        m = self.padded if nonneg else self.padded.abs()
        ks, s = self.ks, self.stride
        for dim in (2, 3):  # separable: k-wide running max along each axis (faster than max_pool2d)
            size = m.shape[dim] - ks + 1
            part = m.narrow(dim, 0, size)
            for o in range(1, ks):
                part = torch.maximum(part, m.narrow(dim, o, size))
            m = part.narrow(dim, 0, (size - 1) // s * s + 1)[(slice(None),) * dim + (slice(None, None, s),)]
        return m.reshape(self.rows.shape[0], self.n_pos).clamp(min=0)  # -0.0 -> 0.0

    def exact(self, rows: torch.Tensor, pos: torch.Tensor, kern: torch.Tensor) -> torch.Tensor:
        """Canonical values (M,) float64 of window (rows, pos) . kern (M, k*k): exact float64
        products summed left to right in float64 by elementwise ops, so a value never depends
        on what else is computed with it (a matmul's rounding varies with its shape)."""
        prod = self.at(rows, pos.unsqueeze(1)).squeeze(1).double() * kern.double()
        acc = prod[:, 0].clone()
        for u in range(1, prod.shape[1]):
            acc += prod[:, u]
        return acc


def _canonical_max(win: _Windows, rows: torch.Tensor, pos: torch.Tensor, kern: torch.Tensor,
                   pair: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """Per pair (n_pairs,) float64: the largest canonical value among its candidate windows."""
    out = torch.full((n_pairs,), float("-inf"), dtype=torch.float64, device=kern.device)
    if pair.numel():
        out.scatter_reduce_(0, pair, win.exact(rows, pos, kern), "amax")
    return out


def per_channel_conv_max(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0,
                         canonical: bool = False) -> torch.Tensor:
    """max over positions of each single-channel convolution X_i * W_ji -> (N, Cin, Cout).

    float32 matmuls, so a value may differ from another exact method's in the last bits.
    ``canonical``: the float32 rounding of the largest exact (float64) window value instead,
    the same numbers whatever computes them (slower; the reference of :func:`conv_topk`).
    """
    x, w = x.float(), w.float()
    n, cin, h, wd = x.shape
    cout, k = w.shape[0], w.shape[-1]
    if k == 1:  # one product per position: its float32 rounding is already canonical
        if stride > 1:
            x = x[:, :, ::stride, ::stride]
        return one_by_one(x, w[:, :, 0, 0], padded=padding > 0)
    # One row per (image, input channel): its patches (k*k, L) times its kernels (Cout, k*k),
    # reduced over positions right away. Rows go in blocks whose (Cout, L) products stay
    # cache-sized: 2-3x faster on CPU than one big einsum or a grouped conv (same result).
    patches = F.unfold(x.reshape(n * cin, 1, h, wd), k, padding=padding, stride=stride)
    kernels = w.reshape(cout, cin, k * k).transpose(0, 1)  # (Cin, Cout, k*k)
    rows = max(1, CHUNK_BYTES.get(x.device.type, 2**20) // (cout * patches.shape[-1] * 4))
    out = x.new_empty(n * cin, cout)
    for r0 in range(0, n * cin, rows):
        r1 = min(n * cin, r0 + rows)
        ch = torch.arange(r0, r1, device=x.device) % cin
        out[r0:r1] = torch.bmm(kernels[ch], patches[r0:r1]).amax(-1)
    if canonical:
        win = _Windows(x, k, stride, padding)
        key = win.absmax(False)
        err = _dot_tol(k * k, x.device) * kernels.abs().sum(-1)[torch.arange(n * cin) % cin] \
            * key.amax(1, keepdim=True)
        r, j = torch.meshgrid(torch.arange(n * cin), torch.arange(cout), indexing="ij")
        best = _near_ties(win, key, r.reshape(-1), kernels[r % cin, j].reshape(-1, k * k),
                          (out - 2 * err).reshape(-1))
        zero_win = (key == 0).any(1, keepdim=True)
        out = torch.where(zero_win, best.view(n * cin, cout).clamp(min=0), best.view(n * cin, cout)).float()
    return out.view(n, cin, cout)


TOPK_TILE_POSITIONS = 12  # aim for tiles of about this many output positions (1x1 to 4x4)
TOPK_GROWTH = 4  # each round looks this many times deeper (in tiles)
TOPK_CHUNK_PAIRS = 2**20  # images are processed in chunks of at most about this many pairs


def conv_topk(x: torch.Tensor, w: torch.Tensor, k: int, stride: int = 1, padding: int = 0,
              method: str = "auto", stats: dict | None = None) -> torch.Tensor:
    """Top-k inputs per (image, output channel) of per-channel conv influence -> (N, k, Cout).

    Equal to ``topk_canonical(per_channel_conv_max(x, w, stride, padding, canonical=True), k)``.
    Both methods compare float32 values only with a rounding margin and compute canonical
    values just for the pairs whose margin straddles the k-th place:

    - "exhaustive": float32 maxima of every pair over every window (matmul per row).
    - "bounds": branch and bound over window positions. Per (image, input channel) positions
      are ranked by ``key``, the largest |x| in their window; a window's value is at most
      ``S_ji * key`` (S: the kernel's positive mass for non-negative x, else its absolute
      mass). Rounds evaluate ever deeper positions of the pairs still open. A pair is dropped
      once its upper bound is below the k-th best lower bound of its output channel, kept
      once its lower bound beats all but k-1 upper bounds.
    - "auto": "bounds" where it measured faster (bench/bench_topk.py), else "exhaustive".

    ``stats`` (optional) adds up pair counts (dropped / kept / exact) and window values
    computed (``values``; every window of every pair: ``positions``).
    """
    x, w = x.float(), w.float()
    n, cin = x.shape[:2]
    cout, ks = w.shape[0], w.shape[-1]
    k = min(k, cin)
    if k == cin:
        return torch.arange(cin, device=x.device).view(1, cin, 1).expand(n, cin, cout).clone()
    if ks == 1:
        return topk_canonical(per_channel_conv_max(x, w, stride, padding), k)
    if method == "auto":
        method = "bounds" if _bounds_pay(x, w, stride, padding) else "exhaustive"
    chunk_fn = {"bounds": _bounds_chunk, "exhaustive": _exhaustive_chunk}[method]
    chunk = max(1, TOPK_CHUNK_PAIRS // (cin * cout))
    return torch.cat([_finish(*chunk_fn(x[i:i + chunk], w, k, stride, padding, stats), k, stats)
                      for i in range(0, n, chunk)])


def _bounds_pay(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> bool:
    """Whether branch and bound beat the exhaustive matmuls on this layer shape (CPU rule)."""
    return True


def _kth(v: torch.Tensor, k: int) -> torch.Tensor:
    """k-th largest over input channels of (Cin, N, Cout) values, keepdim."""
    return v.topk(k, dim=0, sorted=False).values.amin(0, keepdim=True)


def _eval_all(win: _Windows, kern_t: torch.Tensor, pos: torch.Tensor, n: int
              ) -> torch.Tensor:
    """Float32 maximum over positions pos (rows, d) of every pair -> (rows, Cout).
    One matmul per input channel; kern_t: (Cin, k*k, Cout)."""
    cin, k2, cout = kern_t.shape
    d = pos.shape[1]
    vals = torch.bmm(win.at(torch.arange(cin * n, device=pos.device), pos).view(cin, n * d, k2),
                     kern_t).view(cin * n, d, cout)
    return vals.amax(dim=1)


def _eval_pairs(win: _Windows, kern: torch.Tensor, rows: torch.Tensor, need: torch.Tensor,
                pos: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """Float32 maximum over positions pos (R, d) of the pairs need (R, Cout) of rows (R,):
    (row, output channel, value) of each pair. Rows are sorted by their number of
    pairs and padded per block, so each block is one small matmul."""
    count = need.sum(1)
    by = count.argsort(descending=True)
    rows, need, pos, count = rows[by], need[by], pos[by], count[by]
    r_loc, j = need.nonzero().unbind(1)  # sorted by row, then j
    start = torch.cumsum(count, 0) - count
    slot = torch.arange(r_loc.numel(), device=rows.device) - start[r_loc]
    width = int(count[0])
    jj = torch.zeros((rows.numel(), width), dtype=torch.long, device=rows.device)
    jj[r_loc, slot] = j
    d, out = pos.shape[1], []
    r0 = 0
    while r0 < rows.numel():
        m = int(count[r0])
        r1 = min(rows.numel(), r0 + max(1, CHUNK_BYTES.get(rows.device.type, 2**20) * 4 // (d * m * 4)))
        sl = slice(r0, r1)
        kb = kern[(rows[sl] // n).unsqueeze(1), jj[sl, :m]]  # (b, m, k*k)
        vals = torch.bmm(win.at(rows[sl], pos[sl]), kb.transpose(1, 2))  # (b, d, m)
        valid = torch.arange(m, device=rows.device) < count[sl].unsqueeze(1)
        out.append(vals.amax(dim=1)[valid])
        r0 = r1
    return rows[r_loc], j, torch.cat(out)


def _near_ties(win: _Windows, key: torch.Tensor, rows: torch.Tensor, kern: torch.Tensor,
               low: torch.Tensor) -> torch.Tensor:
    """Canonical maxima (M,) float64 of pairs (row, kernel): every window that is not all zero
    and whose float32 value reaches ``low`` is evaluated exactly."""
    out = torch.empty(rows.numel(), dtype=torch.float64, device=kern.device)
    n_pos = key.shape[1]
    block = max(1, CHUNK_BYTES.get(kern.device.type, 2**20) // (n_pos * kern.shape[1] * 4))
    for r0 in range(0, rows.numel(), block):
        sl = slice(r0, r0 + block)
        r, km = rows[sl], kern[sl]
        allpos = torch.arange(n_pos, device=kern.device).expand(r.numel(), -1)
        vals = torch.bmm(win.at(r, allpos), km.unsqueeze(2)).squeeze(2)
        vals.masked_fill_(key[r] == 0, float("-inf"))
        m, p = (vals >= low[sl].unsqueeze(1)).nonzero().unbind(1)
        out[sl] = _canonical_max(win, r[m], p, km[m], m, r.numel())
    return out


class _Chunk:
    """What the final step of :func:`conv_topk` needs from either method, layout (Cin, N, Cout)."""

    def __init__(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> None:
        n, cin = x.shape[:2]
        cout, ks = w.shape[0], w.shape[-1]
        self.n, self.cin, self.cout = n, cin, cout
        # rows are (input channel, image), so per-row results reshape to pairs (Cin, N, Cout)
        self.win = _Windows(x.transpose(0, 1), ks, stride, padding)
        self.nonneg = bool(x.min() >= 0)
        self.kern = w.reshape(cout, cin, ks * ks).transpose(0, 1).contiguous()  # (Cin, Cout, k*k)
        self.tol = _dot_tol(ks * ks, x.device) * self.kern.abs().sum(-1)  # (Cin, Cout) per unit key
        self.key = self.win.absmax(self.nonneg)  # (rows, L)
        self.err = self.tol.unsqueeze(1) * self.key.amax(1).view(cin, n, 1)  # (Cin, N, Cout) margin
        zero_win = (self.key == 0).any(1).view(cin, n, 1)
        self.floor = torch.where(zero_win, 0.0, float("-inf"))  # all-zero windows give exactly 0


def _decide(c: _Chunk, best: torch.Tensor, rest_ub: torch.Tensor | float, k: int
            ) -> tuple[torch.Tensor, ...]:
    """(lower bound, keep, drop, open) per pair from float32 maxima so far and a bound on the
    windows not evaluated yet."""
    lb = torch.maximum(best - c.err, c.floor)
    ub = torch.maximum(torch.maximum(best + c.err, torch.as_tensor(rest_ub, device=best.device)), c.floor)
    drop = ub < _kth(lb, k)
    keep = lb > _kth(ub, k + 1)
    return lb, keep, drop, ~drop & ~keep


def _exhaustive_chunk(x: torch.Tensor, w: torch.Tensor, k: int, stride: int, padding: int,
                      stats: dict | None) -> tuple:
    c = _Chunk(x, w, stride, padding)
    best = per_channel_conv_max(x, w, stride, padding).permute(1, 0, 2)  # (Cin, N, Cout)
    _, keep, drop, open_ = _decide(c, best, float("-inf"), k)
    if stats is not None:
        stats["values"] = stats.get("values", 0) + best.numel() * c.win.n_pos
    return c, best, keep, drop, open_


def _bounds_chunk(x: torch.Tensor, w: torch.Tensor, k: int, stride: int, padding: int,
                  stats: dict | None) -> tuple:
    c = _Chunk(x, w, stride, padding)
    n, cin, cout, win, key, kern = c.n, c.cin, c.cout, c.win, c.key, c.kern
    n_rows, inf = cin * n, float("inf")
    kern_t = kern.transpose(1, 2).contiguous()  # (Cin, k*k, Cout)
    slope = ((kern.clamp(min=0).sum(-1) if c.nonneg else kern.abs().sum(-1)) + c.tol).unsqueeze(1)
    # round 0: every pair at its row's largest-key window; the rest bounded by the largest key
    top_key, top_pos = key.max(1)
    best = _eval_all(win, kern_t, top_pos.unsqueeze(1), n)  # (rows, Cout) float32 maxima so far
    rest_key = top_key
    values = best.numel()
    # then tiles of positions by decreasing tile key (ties by tile index), 1, 3, 12, ... at a time
    tiles = win.tiles(TOPK_TILE_POSITIONS)  # (T, P)
    tile_key = key[:, tiles.view(-1)].view(n_rows, *tiles.shape).amax(2)
    t_ix = torch.arange(tiles.shape[0], device=x.device)
    ranked = ((tile_key.view(torch.int32).long() << 32) | (tiles.shape[0] - 1 - t_ix)).sort(1, descending=True)
    tile_rank = tiles.shape[0] - 1 - (ranked.values & 0xFFFFFFFF)
    rank_key = tile_key.gather(1, tile_rank)
    depth = 0
    while True:
        rk = rest_key.view(cin, n, 1)
        rest_ub = torch.where(rk > 0, slope * rk, -inf)  # bound on windows not evaluated yet
        bst = best.view(cin, n, cout)
        lb, keep, drop, open_ = _decide(c, bst, rest_ub, k)
        need = (open_ & (rest_ub >= lb)).view(n_rows, cout)
        if depth >= tiles.shape[0] or not bool(need.any()):
            break
        d1 = min(tiles.shape[0], max(1, depth * TOPK_GROWTH))
        rows = need.any(1).nonzero().squeeze(1)
        pos = tiles[tile_rank[rows, depth:d1]].flatten(1)
        r, j, v = _eval_pairs(win, kern, rows, need[rows], pos, n)
        best[r, j] = torch.maximum(best[r, j], v)
        values += v.numel() * pos.shape[1]
        rest_key[rows] = rank_key[rows, d1] if d1 < tiles.shape[0] else 0.0
        depth = d1
    if stats is not None:
        stats["values"] = stats.get("values", 0) + values
    return c, bst, keep, drop, open_


def _finish(c: _Chunk, best: torch.Tensor, keep: torch.Tensor, drop: torch.Tensor, open_: torch.Tensor,
            k: int, stats: dict | None) -> torch.Tensor:
    """Canonical values for the open pairs (bounds within rounding error of the k-th place),
    then the canonical top-k (N, k, Cout)."""
    pi, pn, pj = open_.nonzero().unbind(1)
    exact = _near_ties(c.win, c.key, pi * c.n + pn, c.kern[pi, pj], best[pi, pn, pj] - 2 * c.err[pi, pn, pj])
    score = torch.where(keep, float("inf"), float("-inf"))
    score[pi, pn, pj] = torch.maximum(exact, c.floor[pi, pn, 0].double()).float()
    if stats is not None:
        for name, t in (("pairs", drop.numel()), ("dropped", drop.sum()), ("kept", keep.sum()),
                        ("exact", pi.numel()), ("positions", c.win.n_pos * drop.numel())):
            stats[name] = stats.get(name, 0) + int(t)
    return topk_canonical(score.permute(1, 0, 2), k)


def route_influence(route: Route, x: torch.Tensor, mid: torch.Tensor | None) -> torch.Tensor:
    """Per-image influence (N, Cin, Cout_b) of one route."""
    if route.w1 is None:
        return per_channel_conv_max(x, route.w2, route.stride, route.padding)
    a = one_by_one(x, route.w1)  # (N, Cin, Cmid)
    g = per_channel_conv_max(mid, route.w2, route.stride, route.padding)  # (N, Cmid, Cout_b)
    bmax = mid.amax((2, 3)).unsqueeze(2)
    g = torch.where(bmax > 0, g / bmax.clamp(min=1e-12), torch.zeros_like(g))
    return torch.bmm(torch.relu(a), g)


def conv_influence(pair: LayerPair, taps) -> torch.Tensor:
    """Per-image influence matrix (N, Cin, Cout) of a direct pair from captured tensors."""
    parts = []
    for r in pair.routes:
        kind, path = r.src
        x = taps.inp[path] if kind == "input" else taps.out[path]
        parts.append(route_influence(r, x, taps.out[r.mid] if r.mid else None))
    return torch.cat(parts, dim=2)


def grad_influence(x: torch.Tensor, y: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """Gradient x activation influence (N, Cin, Cout) of X on the spatial max of each Y_j.

    One backward pass per output channel serves the whole batch: in eval mode images do not
    interact, so the gradient of the batch sum splits per image. ``chunk`` > 1 runs that many
    output channels per backward (vmap over one-hot gradient outputs). On CPU the work is
    arithmetic-bound and chunks cost more (bench/bench_grad.py: 1.3x for 4 on EfficientNet-
    Lite0); the option is there for devices where per-call overhead dominates.
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


def pair_taps(pairs: list[LayerPair]) -> tuple[set[str], set[str]]:
    """Module paths whose (outputs, inputs) the direct routes need."""
    outs, inps = set(), set()
    for p in pairs:
        for r in p.routes:
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
    """I[class, i, j]: images of the class for which i was among the top-k influences on j."""

    def __init__(self, pairs: list[LayerPair], n_classes: int, k: int = 5) -> None:
        self.pairs = pairs
        self.n_classes = n_classes
        self.k = k
        self.counters = {p.name: SparseCounter() for p in pairs}

    def update(self, taps, labels: torch.Tensor) -> None:
        for p in self.pairs:
            if p.method == "conv":
                infl = conv_influence(p, taps)
            else:
                infl = grad_influence(taps.out[p.src_path], taps.out[p.dst_path])
            k = min(self.k, p.cin)
            top = infl.topk(k, dim=1).indices  # (N, k, Cout)
            j = torch.arange(p.cout, device=top.device).view(1, 1, -1)
            keys = (labels.to(top.device).view(-1, 1, 1) * p.cin + top) * p.cout + j
            self.counters[p.name].add(keys.cpu())

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
        """(class, src, dst, count) for one pair, sorted by class then src, dst."""
        pair = next(p for p in self.pairs if p.name == name)
        c = self.counters[name]
        c.flush()
        keys = c.keys
        dst = keys % pair.cout
        rest = keys // pair.cout
        return rest // pair.cin, rest % pair.cin, dst, c.counts
