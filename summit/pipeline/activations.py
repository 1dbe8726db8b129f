"""The activation accumulator: per selection, class and channel the count of images that select
the channel (A), fixed-point sums of spatial maxima, and per class the top-1 histogram.

Sums are kept in int64 fixed point with 2^-20 resolution, so that they are exact and
order-independent: resumed, sharded and torchrun runs give byte-identical files.
"""
from __future__ import annotations

import torch

from ..run.selection import mass_select, selection_names, top_select
from ..run.store import HIST_BINS

FIXED_POINT = 2**20


class ActivationAccumulator:
    """A[selection, class, channel] counts, fixed-point sums of spatial maxima, top-1 histograms."""

    def __init__(self, channels: dict[str, int], n_classes: int, masses: list[float], k: int) -> None:
        self.masses, self.k = list(masses), k
        n_sel = len(selection_names(masses, k))
        self.count = {l: torch.zeros(n_sel, n_classes, c, dtype=torch.long) for l, c in channels.items()}
        self.sum = {l: torch.zeros(n_classes, c, dtype=torch.long) for l, c in channels.items()}
        self.n_images = torch.zeros(n_classes, dtype=torch.long)
        self.n_correct = torch.zeros(n_classes, dtype=torch.long)
        self.hist = torch.zeros(n_classes, HIST_BINS, dtype=torch.long)

    def update(self, layer: str, maxval: torch.Tensor, labels: torch.Tensor) -> None:
        chosen = [mass_select(maxval, m) for m in self.masses]
        if self.k > 0:
            chosen.append(top_select(maxval, min(self.k, maxval.shape[1])))
        for s, sel in enumerate(chosen):
            self.count[layer][s].index_add_(0, labels, sel.long())
        self.sum[layer].index_add_(0, labels, (maxval.double() * FIXED_POINT).round().long())

    def count_images(self, labels: torch.Tensor, correct: torch.Tensor, top1: torch.Tensor) -> None:
        """Count images, top-1 hits and the histogram of top-1 probabilities (N,) in [0, 1]."""
        self.n_images.index_add_(0, labels, torch.ones_like(labels))
        self.n_correct.index_add_(0, labels, correct.long())
        bins = (top1.double() * HIST_BINS).long().clamp(0, HIST_BINS - 1)
        self.hist.view(-1).index_add_(0, labels * HIST_BINS + bins, torch.ones_like(labels))

    def state(self) -> dict:
        return {"count": self.count, "sum": self.sum, "n_images": self.n_images,
                "n_correct": self.n_correct, "hist": self.hist}

    def load(self, state: dict) -> None:
        self.count, self.sum = state["count"], state["sum"]
        self.n_images, self.n_correct, self.hist = state["n_images"], state["n_correct"], state["hist"]

    def merge(self, state: dict) -> None:
        for l in self.count:
            self.count[l] += state["count"][l]
            self.sum[l] += state["sum"][l]
        self.n_images += state["n_images"]
        self.n_correct += state["n_correct"]
        self.hist += state["hist"]
