"""The activation accumulator: per selection, class and channel the count of images that select
the channel (A), fixed-point sums of spatial maxima, and per class the top-1 histogram.
Excluded channels (``exclude``) take no part in the selections: they are left out of the
layer's mass normalisation and never selected (their maxima are still summed).

Sums are kept in int64 fixed point with 2^-20 resolution, so that they are exact and
order-independent: resumed, sharded and torchrun runs give byte-identical files.

With ``bins`` b > 1 (our correct/wrong split, docs/MISTAKES.md) every class has b rows: bin
``class * b + part`` (part 0: images whose top-1 prediction is the class, 1: the others), so the
counts of each part go through checkpoints, shards and merges as those of classes do;
:meth:`ActivationAccumulator.tally` gives one part, or their sum (the all-images counts).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SummitError
from ..run.selection import mass_select, selection_names, top_select
from ..run.store import HIST_BINS, hist_bin

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


@dataclass
class Tally:
    """Per class (rows 0..n_classes-1) the counts of one part of the images, or of all:
    count[layer] (selections, classes, channels), sum[layer] (classes, channels, fixed point),
    n_images, n_correct (classes,), hist (classes, HIST_BINS)."""

    count: dict[str, torch.Tensor]
    sum: dict[str, torch.Tensor]
    n_images: torch.Tensor
    n_correct: torch.Tensor
    hist: torch.Tensor


def fold_bins(t: torch.Tensor, bins: int, part: int | None, dim: int = 0) -> torch.Tensor:
    """Rows class * bins + p of t along dim -> per class the row of ``part``, or (None) the sum
    over the parts; exact (int64) and the tensor itself when bins == 1 and part is None."""
    if bins == 1 and part is None:
        return t
    v = t.unflatten(dim, (t.shape[dim] // bins, bins))
    return v.sum(dim + 1) if part is None else v.select(dim + 1, part).contiguous()


class ActivationAccumulator:
    """A[selection, bin, channel] counts, fixed-point sums of spatial maxima, top-1 histograms;
    a bin is a class (bins=1) or one part of a class's images (see the module docstring)."""

    def __init__(self, channels: dict[str, int], n_classes: int, masses: list[float], k: int,
                 keep: dict[str, torch.Tensor] | None = None, bins: int = 1) -> None:
        self.masses, self.k, self.bins = list(masses), k, bins
        self.keep = keep or {}  # per layer with excluded channels, the others (excluded_channels)
        n_sel, rows = len(selection_names(masses, k)), n_classes * bins
        self.count = {l: torch.zeros(n_sel, rows, c, dtype=torch.long) for l, c in channels.items()}
        self.sum = {l: torch.zeros(rows, c, dtype=torch.long) for l, c in channels.items()}
        self.n_images = torch.zeros(rows, dtype=torch.long)
        self.n_correct = torch.zeros(rows, dtype=torch.long)
        self.hist = torch.zeros(rows, HIST_BINS, dtype=torch.long)

    def tally(self, part: int | None = None) -> Tally:
        """The counts of one part (0 .. bins-1) of every class's images, or (None) of all."""
        b = self.bins
        return Tally({l: fold_bins(c, b, part, 1) for l, c in self.count.items()},
                     {l: fold_bins(s, b, part) for l, s in self.sum.items()},
                     fold_bins(self.n_images, b, part), fold_bins(self.n_correct, b, part),
                     fold_bins(self.hist, b, part))

    def update(self, layer: str, maxval: torch.Tensor, labels: torch.Tensor) -> None:
        """Count the selections of maxval (N, C) among the layer's kept channels into the bins
        ``labels`` (N,)."""
        for s, sel in enumerate(kept_selections(maxval, self.keep.get(layer), self.masses, self.k)):
            self.count[layer][s].index_add_(0, labels, sel.long())
        self.sum[layer].index_add_(0, labels, (maxval.double() * FIXED_POINT).round().long())

    def count_images(self, labels: torch.Tensor, correct: torch.Tensor, top1: torch.Tensor) -> None:
        """Count images, top-1 hits and the histogram of top-1 probabilities (N,) in [0, 1]."""
        self.n_images.index_add_(0, labels, torch.ones_like(labels))
        self.n_correct.index_add_(0, labels, correct.long())
        bins = torch.from_numpy(hist_bin(top1.double().numpy())).to(labels.device)
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
