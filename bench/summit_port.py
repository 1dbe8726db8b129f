"""The peer for bench_pipeline.py: Summit's influence computation ported to PyTorch as a user
would write it, for torchvision's GoogLeNet (written from the issue's description, not from
summit's package).

Per Inception block, six influence tensors: the 1x1 branch, the two 1x1 bottlenecks, the 3x3
and "5x5" convolutions out of them, and the pool projection (on the unpooled block input, as
Summit does). Each is every input channel convolved with each of its kernels as depthwise
filters, ``conv2d(X, W', stride=3, groups=Cin)`` with TensorFlow's SAME padding and
``W'[i * Cout + j] = W[j, i]``: (N, Cin * Cout, H', W'); then the max over positions, (N, Cin,
Cout), the top 5 inputs per output channel, and a count per (class, j, i) in dense per-class
matrices (``np.add.at``). No activation matrices, no examples, no exactness checks: only the
influence pass, as the peer's ratio to the bare forward.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

BLOCKS = ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
          "inception4e", "inception5a", "inception5b")


def tf_same(x: torch.Tensor, k: int, stride: int = 3) -> torch.Tensor:
    """x zero-padded as TensorFlow's SAME: out = ceil(in / stride), the odd pixel at the end."""
    h = x.shape[-1]
    total = max((math.ceil(h / stride) - 1) * stride + k - h, 0)
    return F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))


def depthwise_influence(x: torch.Tensor, w: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Top-k inputs (N, k, Cout) of max_p (X_i conv W_ji)(p) on the stride-3 grid."""
    cout, cin, kh, _ = w.shape
    filt = w.permute(1, 0, 2, 3).reshape(cin * cout, 1, kh, kh)
    y = F.conv2d(tf_same(x, kh), filt, stride=3, groups=cin)  # (N, Cin * Cout, H', W')
    m = y.amax((2, 3)).view(x.shape[0], cin, cout)
    return m.topk(k, dim=1).indices


class SummitPort:
    """Counts I[class][block tensor] (Cout, Cin) over batches of a torchvision GoogLeNet."""

    def __init__(self, net: torch.nn.Module, n_classes: int) -> None:
        self.net, self.n_classes = net, n_classes
        self.taps: dict[str, torch.Tensor] = {}
        self.counts: dict[tuple[int, str], np.ndarray] = {}
        self.handles = []
        for b in BLOCKS:
            blk = getattr(net, b)
            self.handles += [blk.register_forward_hook(self._keep(b + "/in", inp=True)),
                             blk.branch2[0].register_forward_hook(self._keep(b + "/b2")),
                             blk.branch3[0].register_forward_hook(self._keep(b + "/b3"))]

    def close(self) -> None:
        """Remove the hooks (the net is shared with the other variants)."""
        for h in self.handles:
            h.remove()

    def _keep(self, name: str, inp: bool = False):  # noqa: ANN202 (a hook)
        def hook(_m, args, out) -> None:  # noqa: ANN001
            self.taps[name] = args[0] if inp else out
        return hook

    def tensors(self, b: str) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """(name, input X, weight W (Cout, Cin, k, k)) of a block's six influence tensors."""
        blk = getattr(self.net, b)
        x, b2, b3 = self.taps[b + "/in"], self.taps[b + "/b2"], self.taps[b + "/b3"]
        return [("1x1", x, blk.branch1.conv.weight), ("3x3_bottleneck", x, blk.branch2[0].conv.weight),
                ("3x3", b2, blk.branch2[1].conv.weight), ("5x5_bottleneck", x, blk.branch3[0].conv.weight),
                ("5x5", b3, blk.branch3[1].conv.weight), ("pool_proj", x, blk.branch4[1].conv.weight)]

    @torch.no_grad()
    def update(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.net(images)
        lab = labels.numpy()
        for b in BLOCKS:
            for name, x, w in self.tensors(b):
                top = depthwise_influence(x, w).numpy()  # (N, 5, Cout)
                for n, c in enumerate(lab):
                    key = (int(c), f"{b}/{name}")
                    if key not in self.counts:
                        self.counts[key] = np.zeros((w.shape[0], w.shape[1]), np.int64)
                    np.add.at(self.counts[key], (np.arange(w.shape[0])[None, :], top[n]), 1)
