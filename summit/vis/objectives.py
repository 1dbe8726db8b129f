"""What an optimization maximizes: a differentiable score of the captured layer activations
(channels, neurons, directions, DeepDream, diversity), composable with + - * like Lucid's.

An objective maps {layer: (N, C, H, W) activations} to one loss per batch item (N,).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Acts = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A score to maximize, per batch item: ``fn(acts) -> (B,)``; ``layers`` are the layers read.

    Objectives compose with ``+`` / ``-`` (with objectives or numbers) and ``*`` / ``/`` by numbers.
    """

    fn: Callable[[Acts], torch.Tensor]
    layers: tuple[str, ...]
    name: str

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, Objective):
            return Objective(lambda a: self(a) + other(a),
                             tuple(dict.fromkeys(self.layers + other.layers)),
                             f"({self.name} + {other.name})")
        if isinstance(other, (int, float)):
            return Objective(lambda a: self(a) + other, self.layers, f"({self.name} + {other})")
        return NotImplemented

    __radd__ = __add__

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Objective(lambda a: self(a) * k, self.layers, f"{k} * {self.name}")

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Objective:
        return self * (1.0 / k)

    def __neg__(self) -> Objective:
        return self * -1

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other


def channel(layer: str, ch: int) -> Objective:
    """Mean activation of channel `ch` of `layer`, in every batch item."""
    return Objective(lambda a: a[layer][:, ch].mean((-2, -1)), (layer,), f"channel({layer}:{ch})")


def neuron(layer: str, ch: int, x: int | None = None, y: int | None = None) -> Objective:
    """Activation of channel `ch` at one position (default: the centre)."""
    def fn(a: Acts) -> torch.Tensor:
        t = a[layer]
        h, w = t.shape[-2:]
        return t[:, ch, h // 2 if y is None else y, w // 2 if x is None else x]
    return Objective(fn, (layer,), f"neuron({layer}:{ch})")


def direction(layer: str, vector: Sequence[float] | torch.Tensor) -> Objective:
    """Dot product of the activation vector with `vector`, averaged over positions."""
    v = torch.as_tensor(vector, dtype=torch.float32).flatten()

    def fn(a: Acts) -> torch.Tensor:
        t = a[layer]
        return (t * v.to(t).view(1, -1, 1, 1)).sum(1).mean((-2, -1))
    return Objective(fn, (layer,), f"direction({layer})")


def direction_neuron(layer: str, vector: Sequence[float] | torch.Tensor, x: int | None = None,
                     y: int | None = None) -> Objective:
    """Dot product of the activation vector at one position (default: the centre) with `vector`."""
    return directions(layer, torch.as_tensor(vector, dtype=torch.float32).view(1, -1), neuron=True,
                      x=x, y=y, broadcast=True)


def directions(layer: str, vectors: torch.Tensor, neuron: bool = False, x: int | None = None,
               y: int | None = None, broadcast: bool = False) -> Objective:
    """Batched direction objective: item b maximizes the dot product with ``vectors[b]``, averaged
    over positions, or at one position (default: the centre) with ``neuron=True``. With
    ``broadcast`` a single vector serves every item."""
    v = torch.as_tensor(vectors, dtype=torch.float32)
    if v.dim() != 2:
        raise ValueError(f"directions wants a (B, C) matrix, got shape {tuple(v.shape)}")

    def fn(a: Acts) -> torch.Tensor:
        t = a[layer]
        if not broadcast and t.shape[0] != len(v):
            raise ValueError(f"directions objective for {len(v)} images got a batch of {t.shape[0]}")
        if neuron:
            h, w = t.shape[-2:]
            t = t[..., h // 2 if y is None else y, w // 2 if x is None else x]
            return (t * v.to(t)).sum(1)
        return torch.einsum("bchw,bc->b", t, v.to(t).expand(t.shape[0], -1)) / t[0, 0].numel()
    kind = "direction_neuron" if neuron else "directions"
    return Objective(fn, (layer,), f"{kind}({layer}:{len(v)})")


def dream(layer: str) -> Objective:
    """DeepDream's objective: the mean squared activation of `layer` (amplify whatever it sees)."""
    return Objective(lambda a: a[layer].pow(2).mean((1, 2, 3)), (layer,), f"dream({layer})")


def channels(layer: str, chs: Sequence[int]) -> Objective:
    """Batched channel objective: batch item b maximizes the mean of channel ``chs[b]``."""
    idx = torch.as_tensor(list(chs), dtype=torch.long)

    def fn(a: Acts) -> torch.Tensor:
        t = a[layer]
        if t.shape[0] != len(idx):
            raise ValueError(f"channels objective for {len(idx)} images got a batch of {t.shape[0]}")
        return t[torch.arange(len(idx), device=t.device), idx.to(t.device)].mean((-2, -1))
    return Objective(fn, (layer,), f"channels({layer}:{list(chs)})")


def diversity(layer: str) -> Objective:
    """Negative cosine similarity of each item's Gram matrix with the others' (Lucid's diversity)."""
    def fn(a: Acts) -> torch.Tensor:
        t = a[layer]
        f = t.flatten(2)
        gram = F.normalize((f @ f.transpose(1, 2)).flatten(1), dim=1, eps=1e-10)
        sim = gram @ gram.t()
        return -(sim.sum(1) - sim.diagonal()) / t.shape[0]
    return Objective(fn, (layer,), f"diversity({layer})")


DIVERSITY_WEIGHT = 100.0  # Lucid's tutorial objective: channel - 1e2 * diversity


def grouped_diversity(layer: str, n: int) -> Objective:
    """``diversity(layer)`` within each run of n consecutive batch items (one run per channel)."""
    div = diversity(layer)

    def fn(a: Acts) -> torch.Tensor:
        t = a[layer]
        return torch.cat([div({layer: t[i:i + n]}) for i in range(0, t.shape[0], n)])
    return Objective(fn, (layer,), f"grouped_diversity({layer}, {n})")
