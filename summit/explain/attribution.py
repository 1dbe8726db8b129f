"""Attribution of one image: the linear approximation activation x gradient.

As in "The Building Blocks of Interpretability" (Olah et al., Distill 2018), the attribution
of a unit to a scalar target is its activation times the target's gradient with respect to
it: ``attr[c, y, x] = a[c, y, x] * d target / d a[c, y, x]``. Summing over channels gives the
*spatial* attribution of each position, summing over positions the *channel* attribution, so
the channel attributions of a position always add up to that position's spatial attribution.
Targets are a class logit (class attribution), or an activation of a later layer: a channel,
a position's activation vector, or a direction (layer-to-layer attribution).

One :func:`forward` keeps the activations of the chosen layers in the autograd graph; every
attribution after that is one backward pass from the target down to those layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import SummitError
from ..model.hooks import Taps
from ..model.models import ModelSpec


@dataclass
class Forward:
    """One image's logits and layer activations, still attached to the autograd graph."""

    logits: torch.Tensor  # (n_outputs,)
    batch: dict[str, torch.Tensor]  # layer -> (1, C, H, W), the tensors the graph goes through

    def act(self, layer: str) -> torch.Tensor:
        """(C, H, W) activation of `layer` (detached)."""
        return self.batch[layer][0].detach()

    def grad(self, target: torch.Tensor, layer: str) -> torch.Tensor:
        """(C, H, W) gradient of a scalar target with respect to the activation of `layer`."""
        return gradients(target, [self.batch[layer]])[0][0]


def forward(spec: ModelSpec, x: torch.Tensor, layers: Sequence[str]) -> Forward:
    """Run one image (3, H, W) in [0, 1] through the model, keeping `layers` for gradients."""
    spec.check_layers(list(layers))
    paths = {l: spec.layers[l] for l in layers}
    x = x.detach().unsqueeze(0).requires_grad_(True)  # graph is built even with frozen weights
    with Taps(spec.model.net, paths.values(), detach=False) as taps, torch.enable_grad():
        logits = spec.model(x)[0]
    for l, p in paths.items():
        if not isinstance(taps.out.get(p), torch.Tensor) or taps.out[p].dim() != 4:
            raise SummitError(f"layer {l} produced no (N, C, H, W) output")
    return Forward(logits, {l: taps.out[p] for l, p in paths.items()})


def gradients(target: torch.Tensor, acts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d target / d each of `acts` (zeros for activations the target does not depend on)."""
    grads = torch.autograd.grad(target, list(acts), retain_graph=True, allow_unused=True)
    return [torch.zeros_like(a) if g is None else g for a, g in zip(acts, grads)]


def class_gradients(fwd: Forward, layers: Sequence[str], classes: Sequence[int]) -> dict[str, torch.Tensor]:
    """{layer: (K, C, H, W)} gradient of each class logit in `classes`; the attribution is this
    times the activation (:func:`times_activation`)."""
    acts = [fwd.batch[l] for l in layers]
    per_class = [gradients(fwd.logits[k], acts) for k in classes]
    return {l: torch.cat([g[i] for g in per_class]) for i, l in enumerate(layers)}


def layer_target(act: torch.Tensor, channel: int | None = None,
                 box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """A scalar of a (C, H, W) activation: a channel summed over positions (only `channel`), a
    channel summed over a box of positions (y0, y1, x0, x1: rows y0..y1-1, columns x0..x1-1), or
    the box's summed activation vector projected on its own direction (only `box`: the vector's
    length, the quantity "what the network sees" maximizes)."""
    c, h, w = act.shape
    if channel is not None and not 0 <= channel < c:
        raise SummitError(f"channel {channel} out of range 0..{c - 1}")
    if box is not None:
        y0, y1, x0, x1 = box
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise SummitError(f"box {list(box)} (y0, y1, x0, x1) out of range: the layer is {h}x{w}")
    if channel is None and box is None:
        raise SummitError("a layer target needs a channel, a box of positions, or both")
    region = act if box is None else act[:, box[0]:box[1], box[2]:box[3]]
    if channel is not None:
        return region[channel].sum()
    v = region.sum((1, 2))
    return v @ (v.detach() / v.detach().norm().clamp(min=1e-12))


def layer_attribution(fwd: Forward, src: str, dst: str, channel: int | None = None,
                      box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """(C, H, W) attribution of layer `src` to a target in the later layer `dst`
    (see :func:`layer_target`)."""
    target = layer_target(fwd.batch[dst][0], channel, box)
    return times_activation(fwd.grad(target, src), fwd.act(src))


def times_activation(grad: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """The linear approximation: activation x gradient (grad may have leading target dims)."""
    return grad * act.detach()


def direction_gradients(fwd: Forward, src: str, dst: str, directions: torch.Tensor) -> torch.Tensor:
    """(G, C_src, H, W): gradient at `src` of each direction's projection summed over the
    positions of `dst` (``sum_p <a_dst[:, p], d_g>``), one backward pass per direction."""
    a = fwd.batch[dst][0]
    proj = torch.einsum("chw,gc->g", a, directions.to(a))
    return torch.stack([fwd.grad(proj[g], src) for g in range(len(directions))])
