"""Which channels count for an image, and which channels count for (nearly) every class.

Summit's rule (``mass<τ>``): normalise an image's per-channel spatial maxima of a layer to sum 1
and take channels in descending order until the cumulative mass reaches τ (Summit used 0.03
for attribution graphs and 0.01 for the class embedding). Our option (``top<k>``): the k
largest maxima. A run counts several selections side by side (activations.parquet
``selection``), so changing the rule needs no second pass over the data.

Summit removed a few channels that fire for nearly every image by hand (five, in mixed3a and
mixed3b). We detect such *ubiquitous* channels per run instead: see ``ubiquitous_channels``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where rows are selected: graphs and the server load without it
    import torch

UBIQUITOUS_IMAGES = 0.5  # a channel "belongs" to a class when selected for >= this share of its images
UBIQUITOUS_CLASSES = 0.5  # ... and is ubiquitous when it belongs to more than this share of classes


def selection_names(masses: list[float], k: int) -> list[str]:
    """Names of the activation selections a run counts: ``mass<τ>`` for each τ, then ``top<k>``."""
    return [f"mass{m:g}" for m in masses] + ([f"top{k}"] if k > 0 else [])


def mass_select(maxval: torch.Tensor, tau: float) -> torch.Tensor:
    """Summit's selection: (N, C) bool, the channels taken in descending order of spatial max
    until the selected share of the layer's (non-negative) maxima reaches ``tau``.

    Ties are taken lower channel first; negative maxima count as 0; an image whose maxima are
    all <= 0 selects nothing.
    """
    import torch
    v = maxval.double().clamp(min=0)
    total = v.sum(1, keepdim=True)
    srt, order = torch.sort(v, dim=1, descending=True, stable=True)
    share = (srt / total.clamp(min=1e-300)).cumsum(1)
    before = torch.cat([torch.zeros_like(share[:, :1]), share[:, :-1]], 1)  # mass before each channel
    take = (before < tau) & (total > 0)
    return torch.zeros_like(take).scatter_(1, order, take)


def top_select(maxval: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C) bool: the k largest spatial maxima per image (ties: lower channel first)."""
    import torch
    order = torch.sort(maxval, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros(maxval.shape, dtype=torch.bool).scatter_(1, order, True)


def default_selection(selections: list[str], purpose: str = "graph") -> str:
    """The selection Summit used for a purpose (graph: mass0.03, embedding: mass0.01) if the run
    counted it, else the run's first selection."""
    want = {"graph": "mass0.03", "embedding": "mass0.01"}[purpose]
    return want if want in selections else selections[0]


def ubiquitous_channels(count: np.ndarray, n_images: np.ndarray, classes: float = UBIQUITOUS_CLASSES,
                        images: float = UBIQUITOUS_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """(channels, share of classes) of the channels selected for at least ``images`` of the
    images of more than ``classes`` of the classes that have images; count: (n_classes, channels)."""
    has = n_images > 0
    if not has.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    share = (count[has] >= images * n_images[has, None]).mean(0)
    chans = np.flatnonzero(share > classes)
    return chans, share[chans]
