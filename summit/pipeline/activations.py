"""The activation accumulator: per selection, class and channel the count of images that select
the channel (A), fixed-point sums of spatial maxima, and per class the top-1 histogram.
Excluded channels (``exclude``) take no part in the selections: they are left out of the
layer's mass normalisation and never selected (their maxima are still summed).

Sums are kept in int64 fixed point with 2^-20 resolution, so that they are exact and
order-independent: resumed, sharded and torchrun runs give byte-identical files.
"""
from __future__ import annotations

import torch

from ..errors import SummitError
from ..run.selection import mass_select, selection_names, top_select
from ..run.store import HIST_BINS

FIXED_POINT = 2**20


def excluded_channels(items: list[str], channels: dict[str, int]) -> dict[str, torch.Tensor]:
    """"layer:channel" ids checked against the layers' channel counts -> per layer the kept
    channels (ascending); a layer must keep at least one."""
    out: dict[str, set[int]] = {}
    for it in items:
        layer, _, ch = it.partition(":")
        if layer not in channels:
            raise SummitError(f"unknown layer in --exclude {it!r}; valid: {', '.join(channels)}")
        if not (ch.isascii() and ch.isdigit() and int(ch) < channels[layer]):
            raise SummitError(f"bad channel in --exclude {it!r}: {layer} has channels 0..{channels[layer] - 1}")
        out.setdefault(layer, set()).add(int(ch))
    full = [l for l, s in out.items() if len(s) == channels[l]]
    if full:
        raise SummitError(f"--exclude leaves no channel of {full[0]}")
    return {l: torch.tensor(sorted(set(range(channels[l])) - s)) for l, s in out.items()}


def kept_selections(maxval: torch.Tensor, keep: torch.Tensor | None, masses: list[float],
                    k: int = 0) -> list[torch.Tensor]:
    """Summit's mass selections of maxval (N, C), one per mass, then our top-k if k > 0, each
    (N, C) bool, made among the channels ``keep`` (ascending; None: all): the others are never
    selected and take no part in the mass normalisation."""
    keep = None if keep is None else keep.to(maxval.device)
    v = maxval if keep is None else maxval[:, keep]
    chosen = [mass_select(v, m) for m in masses]
    if k > 0:
        chosen.append(top_select(v, min(k, v.shape[1])))
    if keep is None:
        return chosen
    return [torch.zeros(maxval.shape, dtype=torch.bool, device=maxval.device).index_copy_(1, keep, sel)
            for sel in chosen]


class ActivationAccumulator:
    """A[selection, class, channel] counts, fixed-point sums of spatial maxima, top-1 histograms."""

    def __init__(self, channels: dict[str, int], n_classes: int, masses: list[float], k: int,
                 keep: dict[str, torch.Tensor] | None = None) -> None:
        self.masses, self.k = list(masses), k
        self.keep = keep or {}  # per layer with excluded channels, the others (excluded_channels)
        n_sel = len(selection_names(masses, k))
        self.count = {l: torch.zeros(n_sel, n_classes, c, dtype=torch.long) for l, c in channels.items()}
        self.sum = {l: torch.zeros(n_classes, c, dtype=torch.long) for l, c in channels.items()}
        self.n_images = torch.zeros(n_classes, dtype=torch.long)
        self.n_correct = torch.zeros(n_classes, dtype=torch.long)
        self.hist = torch.zeros(n_classes, HIST_BINS, dtype=torch.long)

    def update(self, layer: str, maxval: torch.Tensor, labels: torch.Tensor) -> None:
        """Count the selections of maxval (N, C) among the layer's kept channels."""
        for s, sel in enumerate(kept_selections(maxval, self.keep.get(layer), self.masses, self.k)):
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
