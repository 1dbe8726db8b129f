"""Exact per-channel convolution maxima and their top-k: the numbers behind Summit's influence.

For input channel i and output channel j of a convolution, ``max_p (X_i conv W_ji)(p)`` (bias
excluded). Ranking these per (image, output channel) and keeping the top k is what every
influence stage counts (summit.influence). Values are float32; a *canonical* value (the largest
float64 window value, summed left to right, rounded once) settles the rare columns whose float32
ranking could depend on rounding, so the top-k sets are those of the exhaustive canonical values
on any device, thread count or blocking.

On CPU, :func:`conv_topk` evaluates only the (pair, position) windows that can matter: cheap
lower bounds (exact values at each channel's strongest windows) give every output channel a
threshold, and Cauchy-Schwarz upper bounds per window (kernel norm times window norm) skip the
windows, and whole pairs, that cannot reach it (:func:`_pruned_max`, a numba kernel).
"""
from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F

# numba's OpenMP layer shares torch's OpenMP runtime and, in a one-thread process, changes the
# float results of torch's later convolutions: runs would stop being byte-identical across
# resume, shards and ranks. Its own thread pool ("workqueue") leaves torch alone.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

CHUNK_BYTES = {"cpu": 2**20, "cuda": 256 * 2**20}  # per block of per-channel products


def same_pad(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """x (N, C, H, W) zero-padded as TensorFlow's ``SAME`` padding for a k x k kernel at
    ``stride``: per axis of size n, out = ceil(n / stride) positions, pad_total =
    max((out - 1) * stride + k - n, 0), pad_total // 2 before and the rest after. A plain
    convolution (padding 0) of the result at ``stride`` is TF's SAME convolution."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad lists the last axis first
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def one_by_one(x: torch.Tensor, w: torch.Tensor, padded: bool = False) -> torch.Tensor:
    """Exact per-channel influence of a 1x1 conv: (N, Cin, H, W), (Cout, Cin) -> (N, Cin, Cout)."""
    mx, mn = x.amax((2, 3)), x.amin((2, 3))
    if padded:  # zero padding adds zero-valued positions
        mx, mn = mx.clamp(min=0), mn.clamp(max=0)
    wt = w.t()
    out = mx.unsqueeze(2) * wt.clamp(min=0)
    if bool(mn.any()):  # else (post-ReLU maps reach 0) the negative weights add exact zeros
        out += mn.unsqueeze(2) * wt.clamp(max=0)
    return out


def topk_canonical(v: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k inputs (dim 1) of v (N, Cin, Cout) per (image, output channel) -> (N, k, Cout).

    Larger value first, ties to the lower input index; each set is listed in ascending index
    order. Both the exhaustive and the fast path (:func:`conv_topk`) end here. One topk settles
    every column whose k-th and (k+1)-th values differ; the others break the tie by index.
    """
    n, cin, cout = v.shape
    if k >= cin:
        return torch.arange(cin, device=v.device).view(1, cin, 1).expand(n, cin, cout).clone()
    top = v.topk(k + 1, dim=1)
    out = top.indices[:, :k].sort(dim=1).values
    tie = ~(top.values[:, k - 1] > top.values[:, k])  # (N, Cout)
    if bool(tie.any()):
        cn, cj = tie.nonzero().unbind(1)
        out[cn, :, cj] = _ties_to_lower_index(v[cn, :, cj].t().unsqueeze(0), k)[0].t()
    return out


def _ties_to_lower_index(v: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`topk_canonical` of v (N, Cin, Cout) column by column, ties at the k-th value taken
    in ascending index order."""
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
        self.n_pos, self.ks, self.stride = ho * wo, ks, stride

    def at(self, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Window values (R, P, k*k) of the given rows (R,) at output positions pos (R, P)."""
        start = rows.unsqueeze(1) * self.rows.shape[1] + self.base[pos]  # (R, P)
        return self.flat[start.unsqueeze(2) + self.taps]

    def absmax(self, rows: torch.Tensor) -> torch.Tensor:
        """Largest |x| in each window of the given rows (R, L); 0: an all-zero window."""
        m = self.padded.reshape(-1, 1, *self.padded.shape[2:])[rows].abs()
        return self.reduce(m, torch.maximum).reshape(rows.numel(), self.n_pos)

    def norms(self) -> torch.Tensor:
        """L2 norm of every window (N * Cin, L), float32 rounded up: + 4e-19 covers the squares
        lost to underflow (at most k*k * 2^-126)."""
        return self.reduce(self.padded.square(), torch.add).sqrt_().add_(4e-19).reshape(-1, self.n_pos)

    def reduce(self, m: torch.Tensor, op) -> torch.Tensor:
        """op over each k x k window of m (..., Hp, Wp), separably along each axis."""
        ks, s = self.ks, self.stride
        for dim in (m.dim() - 2, m.dim() - 1):
            size = m.shape[dim] - ks + 1
            part = m.narrow(dim, 0, size)
            for o in range(1, ks):
                part = op(part, m.narrow(dim, o, size))
            m = part.narrow(dim, 0, (size - 1) // s * s + 1)[(slice(None),) * dim + (slice(None, None, s),)]
        return m

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
    # One row per (image, input channel): its patches (L, k*k) times its kernels (k*k, Cout),
    # reduced over positions right away. Rows go in blocks whose (L, Cout) products stay
    # cache-sized: 2-3x faster on CPU than one big einsum or a grouped conv, and positions as
    # the outer axis (a max across rows of Cout values) 1.3-3x faster than the transpose.
    patches = F.unfold(x.reshape(n * cin, 1, h, wd), k, padding=padding, stride=stride).transpose(1, 2)
    kernels = w.reshape(cout, cin, k * k).permute(1, 2, 0).contiguous()  # (Cin, k*k, Cout)
    rows = max(1, CHUNK_BYTES.get(x.device.type, 2**20) // (cout * patches.shape[1] * 4))
    out = x.new_empty(n * cin, cout)
    for r0 in range(0, n * cin, rows):
        r1 = min(n * cin, r0 + rows)
        ch = torch.arange(r0, r1, device=x.device) % cin
        out[r0:r1] = torch.bmm(patches[r0:r1], kernels[ch]).amax(1)
    if canonical:
        kernels = kernels.transpose(1, 2)  # (Cin, Cout, k*k)
        rows = torch.arange(n * cin, device=x.device)
        err = _dot_tol(k * k, x.device) * kernels.abs().sum(-1)[rows % cin] * x.abs().amax((2, 3)).view(-1, 1)
        out = _canonical(_Windows(x, k, stride, padding), rows.repeat_interleave(cout),
                         kernels[rows % cin].reshape(-1, k * k), (out - 2 * err).view(-1)).view(n * cin, cout)
    return out.view(n, cin, cout)


def conv_topk(x: torch.Tensor, w: torch.Tensor, k: int, stride: int = 1, padding: int = 0,
              prune: bool = True) -> torch.Tensor:
    """Top-k inputs per (image, output channel) of per-channel conv influence -> (N, k, Cout).

    Equal to ``topk_canonical(per_channel_conv_max(x, w, stride, padding, canonical=True), k)``
    at a fraction of the cost of the float32 maxima: a column (image, output channel) whose
    k-th and (k+1)-th float32 values are further apart than twice the rounding margin has the
    same top-k set under any exact arithmetic. The other columns (near-ties, e.g. duplicated
    or dead channels) get canonical values for the pairs within the margin of the k-th place.
    ``prune`` (CPU, overlapping windows: stride < kernel size): float32 maxima only of the
    pairs that can reach the top k (:func:`_pruned_max`); otherwise of every pair
    (:func:`per_channel_conv_max`). Windows that do not overlap (Summit's stride-3 grid of 3x3
    kernels) read each input value once, and there the dense maxima cost 0.6-0.8x the pruned
    ones (SqueezeNet's Fire shapes, one thread).
    """
    x, w = x.float(), w.float()
    n, cin = x.shape[:2]
    k = min(k, cin)
    if k == cin:
        return torch.arange(cin, device=x.device).view(1, cin, 1).expand(n, cin, w.shape[0]).clone()
    if w.shape[-1] == 1:  # 1x1: float32 products are the canonical values
        return topk_canonical(per_channel_conv_max(x, w, stride, padding), k)
    tol, xmax, margin = rounding_margins(x, w)
    if prune and x.device.type == "cpu" and stride < w.shape[-1]:
        v = _pruned_max(x, w, k, stride, padding, margin)
    else:
        v = per_channel_conv_max(x, w, stride, padding)  # (N, Cin, Cout) float32
    top = v.topk(k + 1, dim=1)
    clear = top.values[:, k - 1] - top.values[:, k] > 2 * margin
    out = top.indices[:, :k].sort(dim=1).values
    if not bool(clear.all()):
        cn, cj = (~clear).nonzero().unbind(1)
        out[cn, :, cj] = _near_tie_topk(x, w, v[cn, :, cj], tol[:, cj].t() * xmax[cn], cn, cj, k,
                                        stride, padding)
    return out


def rounding_margins(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bounds on the float32 rounding error of per-channel window values: ``tol`` (Cin, Cout) per
    unit of |x|, ``xmax`` (N, Cin) the largest |x| of each channel, and ``margin`` (N, Cout) at
    least every pair's error in a column (image, output channel)."""
    tol = _dot_tol(w[0, 0].numel(), x.device) * w.abs().sum((2, 3)).t()
    xmax = x.abs().amax((2, 3))
    return tol, xmax, tol.amax(0) * xmax.amax(1, keepdim=True)


def _pruned_max(x: torch.Tensor, w: torch.Tensor, k: int, stride: int, padding: int,
                margin: torch.Tensor) -> torch.Tensor:
    """float32 maxima (N, Cin, Cout) of the pairs that can be among the top k of their column
    (image, output channel); -inf for the others, which are sure to be out.

    Lower bounds: each pair's exact value at its input channel's strongest windows (largest
    L2 norm). Their k-th largest per column, less three rounding margins, is the column's
    threshold t. Upper bound of a window: ||W_ji|| * ||window|| (Cauchy-Schwarz; with the
    kernel's positive part when the channel is non-negative), with a 1e-4 slack for rounding.
    The kernel evaluates a window for a pair only if that bound reaches t. A pair whose
    maximum over the evaluated windows is at least t + margin has its true maximum there; the
    others are below t + 2 margins, under the k lower-bound pairs, and set to -inf.
    """
    n, cin = x.shape[:2]
    cout, ks = w.shape[0], w.shape[-1]
    win = _Windows(x.contiguous(), ks, stride, padding)
    norms = win.norms()
    kern = w.reshape(cout, cin, ks * ks)
    kernels = kern.permute(1, 2, 0).contiguous()  # (Cin, k*k, Cout)
    nonneg = (x.amin((2, 3)) >= 0).unsqueeze(2)
    knorm = torch.where(nonneg, kern.clamp(min=0).double().norm(dim=2).t(), kern.double().norm(dim=2).t())
    cand = norms.topk(min(win.n_pos, 8), dim=1).indices  # (R, P)
    wins = win.at(torch.arange(n * cin, device=x.device), cand).view(n, cin, -1, ks * ks)
    lower = torch.einsum("nipt,itj->nipj", wins, kernels).amax(2)  # (N, Cin, Cout)
    t = (_kth(lower, k) - 3 * margin.unsqueeze(1)).squeeze(1)  # (N, Cout)
    v = torch.empty(n * cin, cout)
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    pad = -(ks * ks) % 9  # taps in groups of 9: extra taps read the window's first value with weight 0
    taps = torch.cat([win.taps, win.taps.new_zeros(pad)])
    padded = torch.cat([kernels, kernels.new_zeros(cin, pad, cout)], 1)
    _window_max(win.rows.numpy(), win.base.numpy(), taps.numpy(), norms.numpy(), padded.numpy(),
                t.double().numpy(), knorm.reshape(n * cin, cout).numpy(), cin, v.numpy())
    v = v.view(n, cin, cout)
    return torch.where(v >= (t + margin).unsqueeze(1), v, float("-inf"))


def _compiled(fn):  # noqa: ANN001, ANN202 (a numba dispatcher)
    """numba-compile fn, cached on disk where numba finds a writable place (NUMBA_CACHE_DIR, the
    package's __pycache__, the user's cache folder); compiled per process when there is none (a
    read-only system-wide install run by a user without a writable HOME)."""
    try:
        return numba.njit(parallel=True, cache=True, fastmath={"contract"})(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(parallel=True, cache=False, fastmath={"contract"})(fn)


@_compiled
def _window_max(rows, base, taps, norms, kernels, t, knorm, cin, out):  # pragma: no cover (compiled)
    """out[r, j]: max of window . kernel over the windows of row r = (image, channel i) whose
    bound norms[r, p] * knorm[r, j] * (1 + 1e-4) reaches t[image, j]; -inf if none. The output
    channels of a row are sorted by the window norm they need, so each window runs one SIMD loop
    over a prefix of them. Taps come in groups of 9 (padded with zero weights), each group one
    unrolled 9-term sum."""
    n_rows, n_pos = norms.shape
    groups, cout = taps.shape[0] // 9, kernels.shape[2]
    for r in numba.prange(n_rows):
        i, img = r % cin, r // cin
        need = np.empty(cout)  # window norm each output channel needs
        for j in range(cout):
            out[r, j] = -np.inf
            if t[img, j] <= 0:
                need[j] = -np.inf
            elif knorm[r, j] > 0:
                need[j] = t[img, j] / (knorm[r, j] * 1.0001)
            else:
                need[j] = np.inf
        act = np.nonzero(need <= norms[r].max())[0]
        if act.shape[0] == 0:
            continue
        order = act[np.argsort(need[act])]
        need_sorted = need[order]
        kl = np.empty((taps.shape[0], order.shape[0]), np.float32)
        for u in range(taps.shape[0]):
            for a in range(order.shape[0]):
                kl[u, a] = kernels[i, u, order[a]]
        best = np.full(order.shape[0], -np.inf, np.float32)
        acc = np.zeros(order.shape[0], np.float32)
        row, lowest = rows[r], need_sorted[0]
        for p in range(n_pos):
            if norms[r, p] < lowest:
                continue
            m = np.searchsorted(need_sorted, norms[r, p], side="right")
            for g in range(groups):
                o = base[p]
                x0, x1, x2 = row[o + taps[9 * g]], row[o + taps[9 * g + 1]], row[o + taps[9 * g + 2]]
                x3, x4, x5 = row[o + taps[9 * g + 3]], row[o + taps[9 * g + 4]], row[o + taps[9 * g + 5]]
                x6, x7, x8 = row[o + taps[9 * g + 6]], row[o + taps[9 * g + 7]], row[o + taps[9 * g + 8]]
                u = 9 * g
                if g < groups - 1:
                    for a in range(m):
                        acc[a] += (x0 * kl[u, a] + x1 * kl[u + 1, a] + x2 * kl[u + 2, a] + x3 * kl[u + 3, a]
                                   + x4 * kl[u + 4, a] + x5 * kl[u + 5, a] + x6 * kl[u + 6, a]
                                   + x7 * kl[u + 7, a] + x8 * kl[u + 8, a])
                else:
                    for a in range(m):
                        v = acc[a] + (x0 * kl[u, a] + x1 * kl[u + 1, a] + x2 * kl[u + 2, a] + x3 * kl[u + 3, a]
                                      + x4 * kl[u + 4, a] + x5 * kl[u + 5, a] + x6 * kl[u + 6, a]
                                      + x7 * kl[u + 7, a] + x8 * kl[u + 8, a])
                        best[a] = max(best[a], v)
                        acc[a] = 0.0
        for a in range(order.shape[0]):
            out[r, order[a]] = best[a]


def _kth(v: torch.Tensor, k: int) -> torch.Tensor:
    """k-th largest along dim 1, keepdim."""
    return v.topk(k, dim=1, sorted=False).values.amin(1, keepdim=True)


def _near_tie_topk(x: torch.Tensor, w: torch.Tensor, v: torch.Tensor, err: torch.Tensor,
                   cn: torch.Tensor, cj: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    """Canonical top-k (M, k) of columns (image cn, output channel cj) from float32 values
    v (M, Cin) and rounding margins err (M, Cin): pairs sure in or out by the margins stay so,
    the others get canonical values."""
    lb, ub = v - err, v + err
    keep = lb > _kth(ub, k + 1)
    drop = ub < _kth(lb, k)
    m, i = (~keep & ~drop).nonzero().unbind(1)
    cin = x.shape[1]
    kern = w.reshape(w.shape[0], cin, -1)[cj[m], i]
    exact = _canonical(_Windows(x, w.shape[-1], stride, padding), cn[m] * cin + i, kern, v[m, i] - 2 * err[m, i])
    score = torch.where(keep, float("inf"), float("-inf"))
    score[m, i] = exact
    return topk_canonical(score.t().unsqueeze(0), k)[0].t()


def _canonical(win: _Windows, rows: torch.Tensor, kern: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """Canonical values (M,) of pairs (row, kernel (M, k*k)) whose float32 maximum less twice
    its rounding margin is ``low``: the largest exact value over the windows that are not all
    zero and reach ``low`` in float32, and 0 if the row has an all-zero window (exactly 0)."""
    uniq, inv = torch.unique(rows, return_inverse=True)
    key = win.absmax(uniq)  # (U, L)
    zero_win = (key == 0).any(1)
    out = torch.empty(rows.numel(), dtype=torch.float64, device=kern.device)
    block = max(1, CHUNK_BYTES.get(kern.device.type, 2**20) // (win.n_pos * kern.shape[1] * 4))
    for r0 in range(0, rows.numel(), block):
        sl = slice(r0, r0 + block)
        r, km = rows[sl], kern[sl]
        allpos = torch.arange(win.n_pos, device=kern.device).expand(r.numel(), -1)
        vals = torch.bmm(win.at(r, allpos), km.unsqueeze(2)).squeeze(2)
        vals.masked_fill_(key[inv[sl]] == 0, float("-inf"))
        m, p = (vals >= low[sl].unsqueeze(1)).nonzero().unbind(1)
        out[sl] = _canonical_max(win, r[m], p, km[m], m, r.numel())
    return torch.where(zero_win[inv], out.clamp(min=0), out).float()
