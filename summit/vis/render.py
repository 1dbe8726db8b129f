"""Feature visualization: Lucid-style optimization of images that excite channels, in PyTorch.

An image batch (param.py) is transformed every step (transform.py) and optimized with Adam to
maximize an objective (objectives.py). ReLUs get Lucid's "redirected" gradient for the duration
of a render (``redirected_relu``), so channels that start dead still receive a signal.
``render`` renders one channel per batch item, many channels per optimization; cache.py keeps
PNGs on disk (see docs/FEATUREVIS.md).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..errors import SummitError
from ..model.models import ModelSpec, resolve_device
from ..model.pixels import to_pil
from .objectives import (
    DIVERSITY_WEIGHT,
    Acts,
    Objective,
    channels,
    dream,
    grouped_diversity,
)
from .param import FourierImage, fourier_from_images
from .transform import STANDARD_TRANSFORMS, Transforms


class _RedirectedClamp(torch.autograd.Function):
    """clamp(x, lo, hi) whose gradient, for items where none passes, lets through the part
    that would move clamped inputs back into range (Lucid's redirected ReLU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        lo, hi = ctx.lo, ctx.hi
        if hi is None:
            passed = torch.ops.aten.threshold_backward(grad, x, lo)
        else:
            passed = torch.ops.aten.hardtanh_backward(grad, x, lo, hi)
        batched = x.dim() > 1
        live = passed.flatten(1).any(1) if batched else passed.any()
        if not x.is_cuda and bool(live.all()):  # common case; skipped on GPU to avoid a sync
            return passed, None, None
        # grad is d(loss)/d(out) of a minimized loss: grad > 0 pushes the input down.
        pushes_out = (x <= lo) & (grad > 0)
        if hi is not None:
            pushes_out |= (x >= hi) & (grad < 0)
        redirected = grad.masked_fill(pushes_out, 0.0)
        dead = ~live.view(-1, *[1] * (x.dim() - 1)) if batched else ~live
        return torch.where(dead, redirected, passed), None, None


_patch_lock = threading.Lock()


_patch_depth = 0


_originals: tuple[Callable, Callable] = (F.relu, F.hardtanh)


_active = threading.local()


def _redirect_here(x: torch.Tensor) -> bool:
    return getattr(_active, "on", False) and torch.is_grad_enabled() and x.requires_grad


def _relu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    if _redirect_here(input):
        return _RedirectedClamp.apply(input, 0.0, None)
    return _originals[0](input, inplace=inplace)


def _hardtanh(input: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0,
              inplace: bool = False) -> torch.Tensor:
    if _redirect_here(input):
        return _RedirectedClamp.apply(input, min_val, max_val)
    return _originals[1](input, min_val, max_val, inplace)


@contextlib.contextmanager
def redirected_relu() -> Iterator[None]:
    """In this thread, give ``F.relu`` and ``F.hardtanh`` the redirected gradient.

    Covers ``nn.ReLU``, ``nn.ReLU6`` and functional ``F.relu`` calls (GoogLeNet's BasicConv2d).
    Other threads keep the original functions' behaviour; the originals are restored when the
    last concurrent user exits. Forward values are unchanged (but never computed in place).
    """
    global _patch_depth, _originals
    with _patch_lock:
        if _patch_depth == 0:
            _originals = (F.relu, F.hardtanh)
            F.relu, F.hardtanh = _relu, _hardtanh
        _patch_depth += 1
    previous = getattr(_active, "on", False)
    _active.on = True
    try:
        yield
    finally:
        _active.on = previous
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                F.relu, F.hardtanh = _originals


class _Captured(Exception):
    """Raised by the capture hook to stop the forward pass once every layer is seen."""


@contextlib.contextmanager
def _capture(spec: ModelSpec, layers: Sequence[str]) -> Iterator[Callable[[torch.Tensor], Acts]]:
    """Yield ``run(x) -> {layer: output}``, which stops the forward after the last layer needed."""
    acts: Acts = {}
    handles = []

    def make_hook(name: str) -> Callable:
        def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
            acts[name] = out
            if len(acts) == len(layers):
                raise _Captured
        return hook

    def run(x: torch.Tensor) -> Acts:
        acts.clear()
        try:
            spec.model(x)
        except _Captured:
            pass
        missing = [l for l in layers if l not in acts]
        if missing:
            raise SummitError(f"layer(s) {', '.join(missing)} produced no output")
        return dict(acts)

    try:
        for name in layers:
            handles.append(spec.module(name).register_forward_hook(make_hook(name)))
        yield run
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _model_on(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Model in eval mode on `device` for the block; mode and device restored after."""
    first = next(model.parameters(), None)
    original = first.device if first is not None else torch.device("cpu")
    training = model.training
    model.eval().to(device)
    try:
        yield
    finally:
        model.train(training).to(original)


def visualize(spec: ModelSpec, objective: Objective, init_seeds: Sequence[int], size: int = 128,
              steps: int = 512, lr: float = 0.05, seed: int = 0, device: str = "auto",
              transforms: Transforms = STANDARD_TRANSFORMS,
              on_step: Callable[[], object] | None = None,
              start: FourierImage | None = None) -> torch.Tensor:
    """Optimize ``len(init_seeds)`` images for `objective`; returns (B, 3, size, size) in [0, 1], CPU.

    `seed` drives the transforms; item i's initial spectrum comes from ``init_seeds[i]``, or
    the images start from `start` (e.g. :func:`fourier_from_images`; then `size` and
    `init_seeds` are ignored).
    """
    spec.check_layers(list(objective.layers))
    dev = resolve_device(device)
    image = (FourierImage(size, init_seeds) if start is None else start).to(dev)
    opt = torch.optim.Adam([image.spectrum], lr=lr)
    g = torch.Generator().manual_seed(seed)
    with _model_on(spec.model, dev), redirected_relu(), _capture(spec, objective.layers) as run, \
            torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = -objective(run(transforms(image(), g))).sum()
            loss.backward(inputs=[image.spectrum])
            opt.step()
            if on_step is not None:
                on_step()
    with torch.no_grad():
        return image().cpu()


def channel_count(spec: ModelSpec, layer: str, size: int = 64) -> int:
    """Number of channels of `layer` (one small no-grad forward)."""
    spec.check_layers([layer])
    first = next(spec.model.parameters(), None)
    dev = first.device if first is not None else torch.device("cpu")
    with _capture(spec, [layer]) as run, torch.no_grad():
        return int(run(torch.full((1, 3, size, size), 0.5, device=dev))[layer].shape[1])


def check_channels(layer: str, chs: Sequence[int], n: int) -> None:
    """Refuse channels outside 0..n-1."""
    bad = [c for c in chs if not 0 <= c < n]
    if bad:
        raise SummitError(f"channel(s) {', '.join(map(str, bad))} out of range for {layer}: "
                          f"valid 0..{n - 1}")


def _item_seed(seed: int, ch: int) -> int:
    return seed * 1_000_003 + ch


def _check_render_args(batch: int, steps: int, size: int) -> None:
    if batch < 1 or steps < 0 or size < 8:
        raise SummitError("render needs batch >= 1, steps >= 0 and size >= 8")


def _render_chunks(spec: ModelSpec, layer: str, chs: Sequence[int], size: int, steps: int,
                   lr: float, seed: int, batch: int, device: str,
                   progress: bool) -> Iterator[tuple[list[int], list[Image.Image]]]:
    spec.check_layers([layer])
    _check_render_args(batch, steps, size)
    check_channels(layer, chs, channel_count(spec, layer, size))
    chunks = [list(chs[i:i + batch]) for i in range(0, len(chs), batch)]
    with tqdm(total=steps * len(chunks), desc=f"render {layer}", unit="step",
              disable=not progress) as bar:
        for chunk in chunks:
            imgs = visualize(spec, channels(layer, chunk), [_item_seed(seed, c) for c in chunk],
                             size=size, steps=steps, lr=lr, seed=seed, device=device,
                             on_step=bar.update)
            yield chunk, [to_pil(im) for im in imgs]


def render(spec: ModelSpec, layer: str, channels: list[int], size: int = 128, steps: int = 512,
           lr: float = 0.05, seed: int = 0, batch: int = 32, device: str = "auto",
           progress: bool = True) -> list[Image.Image]:
    """Feature visualizations of `channels` of `layer`, `batch` channels per optimization.

    Item i depends only on (seed, channel, settings), not on which batch it was rendered in
    (up to floating-point differences between batch sizes).
    """
    out: list[Image.Image] = []
    for _, imgs in _render_chunks(spec, layer, channels, size, steps, lr, seed, batch, device,
                                  progress):
        out += imgs
    return out


def render_dream(spec: ModelSpec, image: torch.Tensor, layer: str, steps: int = 512, lr: float = 0.05,
                 seed: int = 0, device: str = "auto", progress: bool = True) -> Image.Image:
    """DeepDream: amplify what `layer` sees in `image` (3, S, S) in [0, 1], optimizing the image
    with the feature-visualization parameterization (it starts as the image) and transforms."""
    spec.check_layers([layer])
    _check_render_args(1, steps, image.shape[-1])
    with tqdm(total=steps, desc=f"dream {layer}", unit="step", disable=not progress) as bar:
        out = visualize(spec, dream(layer), [seed], steps=steps, lr=lr, seed=seed, device=device,
                        on_step=bar.update, start=fourier_from_images(image[None]))
    return to_pil(out[0])


def check_diversity(n: int) -> None:
    """Refuse a number of diversity images per channel outside 2..16."""
    if not 2 <= n <= 16:
        raise SummitError(f"diversity wants 2..16 images per channel, got {n}")


def render_diversity(spec: ModelSpec, layer: str, chs: Sequence[int], n: int = 4,
                     weight: float = DIVERSITY_WEIGHT, size: int = 128, steps: int = 512,
                     lr: float = 0.05, seed: int = 0, batch: int = 32, device: str = "auto",
                     progress: bool = True) -> Iterator[tuple[int, list[Image.Image]]]:
    """(channel, n images) per channel: the n images of a channel are optimized together, each
    maximizing the channel while their Gram matrices at `layer` are pushed apart (Lucid's
    diversity objective, times `weight`); ``batch // n`` channels per optimization."""
    spec.check_layers([layer])
    check_diversity(n)
    if batch < 1 or steps < 0 or size < 8:
        raise SummitError("render needs batch >= 1, steps >= 0 and size >= 8")
    check_channels(layer, chs, channel_count(spec, layer, size))
    per = max(1, batch // n)
    chunks = [list(chs[i:i + per]) for i in range(0, len(chs), per)]
    with tqdm(total=steps * len(chunks), desc=f"diversity {layer}", unit="step",
              disable=not progress) as bar:
        for chunk in chunks:
            items = [c for c in chunk for _ in range(n)]
            seeds = [_item_seed(seed, c) * 16 + i for c in chunk for i in range(n)]
            obj = channels(layer, items) + weight * grouped_diversity(layer, n)
            imgs = visualize(spec, obj, seeds, size=size, steps=steps, lr=lr, seed=seed,
                             device=device, on_step=bar.update)
            for j, c in enumerate(chunk):
                yield c, [to_pil(im) for im in imgs[j * n:(j + 1) * n]]
