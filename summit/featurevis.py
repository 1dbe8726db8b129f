"""Feature visualization: Lucid-style optimization of images that excite channels, in PyTorch.

An image batch is parameterized by a 1/f-scaled Fourier spectrum in a decorrelated color
space (``FourierImage``), randomly padded, jittered, scaled and rotated every step
(``Transforms``), and optimized with Adam to maximize an ``Objective``. ReLUs get Lucid's
"redirected" gradient for the duration of a render (``redirected_relu``), so channels that
start dead still receive a signal. ``render`` renders one channel per batch item, many
channels per optimization; ``render_cached`` / ``render_run`` keep PNGs on disk (see
docs/FEATUREVIS.md for the cache layout).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from .errors import SummitError
from .featurevis_files import diversity_counts, diversity_path, featurevis_path
from .models import ModelSpec, resolve_device

if TYPE_CHECKING:
    from .store import Run

FEATUREVIS_VERSION = 1  # bump when the algorithm changes: invalidates every cache entry

_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = _SVD_SQRT / _SVD_SQRT.norm(dim=0).max()

Acts = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Image parameterization


class FourierImage(nn.Module):
    """A batch of images as a decorrelated, 1/f-scaled Fourier spectrum.

    ``spectrum`` has shape (B, 3, H, W//2+1, 2) (real, imaginary); item i starts from
    N(0, sd) noise drawn with seed ``seeds[i]``. ``forward()`` -> (B, 3, H, W) RGB in [0, 1].
    """

    def __init__(self, size: int, seeds: Sequence[int], sd: float = 0.01,
                 decay_power: float = 1.0) -> None:
        super().__init__()
        self.size = size
        fy = torch.fft.fftfreq(size).view(-1, 1)
        fx = torch.fft.rfftfreq(size).view(1, -1)
        freqs = (fy * fy + fx * fx).sqrt()
        scale = freqs.clamp(min=1.0 / size).pow(-decay_power) * size
        self.register_buffer("scale", scale.unsqueeze(-1))  # (H, W//2+1, 1)
        self.register_buffer("color", COLOR_CORRELATION.clone())
        shape = (3, size, size // 2 + 1, 2)
        init = [torch.randn(shape, generator=torch.Generator().manual_seed(s)) * sd for s in seeds]
        self.spectrum = nn.Parameter(torch.stack(init))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum * self.scale)
        img = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4.0
        img = torch.einsum("bchw,dc->bdhw", img, self.color)
        return torch.sigmoid(img)


def fourier_from_images(images: torch.Tensor) -> FourierImage:
    """A FourierImage whose ``forward()`` starts at `images` (B, 3, S, S) in [0, 1] (values are
    clamped to [0.005, 0.995] so the sigmoid can be inverted)."""
    b, _, h, w = images.shape
    if h != w:
        raise SummitError(f"Fourier images are square, got {h}x{w}")
    image = FourierImage(h, [0] * b)
    y = torch.logit(images.detach().float().clamp(0.005, 0.995))
    z = torch.einsum("bdhw,cd->bchw", y, torch.linalg.inv(image.get_buffer("color")))
    spectrum = torch.fft.rfft2(z * 4.0) / image.get_buffer("scale")[..., 0]
    image.spectrum.data.copy_(torch.view_as_real(spectrum))
    return image


# ---------------------------------------------------------------------------------------------
# Transforms


@dataclass(frozen=True)
class Transforms:
    """Lucid's standard transforms: pad, jitter, random scale, random rotate, jitter.

    One random draw per step for the whole batch, from the generator passed in.
    """

    pad: int = 12
    jitter: tuple[int, int] = (8, 4)
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    angles: tuple[float, ...] = tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = F.pad(x, [self.pad] * 4, value=0.5)
        x = _jitter(x, self.jitter[0], g)
        s = self.scales[_randint(len(self.scales), g)]
        a = math.radians(self.angles[_randint(len(self.angles), g)])
        n, c, h, w = x.shape
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                             dtype=x.dtype, device=x.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, [n, c, max(1, round(h * s)), max(1, round(w * s))],
                             align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return _jitter(x, self.jitter[1], g)


def _randint(n: int, g: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=g))


def _jitter(x: torch.Tensor, d: int, g: torch.Generator) -> torch.Tensor:
    """Random crop that removes `d` pixels from each spatial dimension."""
    if d <= 0:
        return x
    oy, ox = _randint(d + 1, g), _randint(d + 1, g)
    h, w = x.shape[-2:]
    return x[..., oy:oy + h - d, ox:ox + w - d]


STANDARD_TRANSFORMS = Transforms()


# ---------------------------------------------------------------------------------------------
# Objectives


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


# ---------------------------------------------------------------------------------------------
# Redirected ReLU gradient


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


# ---------------------------------------------------------------------------------------------
# Optimization


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


def to_pil(img: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> RGB PIL image."""
    arr = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr, "RGB")


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


# ---------------------------------------------------------------------------------------------
# Disk cache and run directories


def cache_key(spec: ModelSpec, size: int, steps: int, lr: float, seed: int) -> dict:
    """What a cached image depends on besides (layer, channel)."""
    weights: dict = {"name": spec.weights}
    if os.path.isfile(spec.weights):
        st = os.stat(spec.weights)
        weights.update(bytes=st.st_size, mtime_ns=st.st_mtime_ns)
    return {"version": FEATUREVIS_VERSION, "model": spec.name, "weights": weights,
            "size": size, "steps": steps, "lr": lr, "seed": seed}


def settings_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def render_cached(spec: ModelSpec, layer: str, channels: list[int], cache_dir: str | os.PathLike,
                  *, size: int = 128, steps: int = 512, lr: float = 0.05, seed: int = 0,
                  batch: int = 32, device: str = "auto", progress: bool = True) -> list[Path]:
    """PNG paths ``cache_dir/<hash>/<layer>/<channel>.png``, rendering only the missing ones.

    <hash> covers model, weights, size, steps, lr, seed and the algorithm version; each
    finished batch is written at once, so an interrupted render resumes where it stopped.
    """
    from .store import atomic_write_bytes, write_json
    spec.check_layers([layer])
    key = cache_key(spec, size, steps, lr, seed)
    root = Path(cache_dir) / settings_hash(key)
    paths = [root / layer / f"{c}.png" for c in channels]
    todo = sorted({c for c, p in zip(channels, paths) if not p.is_file()})
    if todo:
        (root / layer).mkdir(parents=True, exist_ok=True)
        if not (root / "settings.json").is_file():
            write_json(key, root / "settings.json")
        for chunk, imgs in _render_chunks(spec, layer, todo, size, steps, lr, seed, batch, device,
                                          progress):
            for c, img in zip(chunk, imgs):
                atomic_write_bytes(root / layer / f"{c}.png", _png(img))
    return paths


def _place(src: Path, dst: Path) -> None:
    """Atomically make `dst` a hardlink to `src` (a copy where links are not possible)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_file() and os.path.samefile(src, dst):
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def render_run(run_dir: str | os.PathLike, nodes: dict[str, list[int]], *, size: int = 128,
               steps: int = 512, lr: float = 0.05, seed: int = 0, batch: int = 32,
               device: str = "auto", progress: bool = True) -> list[Path]:
    """Render {layer: channels} for a run's model into ``run_dir/featurevis``.

    Images go to the cache ``featurevis/cache/<hash>/`` and are linked to the stable
    ``featurevis/<layer>/<channel>.png`` (the latest render wins); ``featurevis/settings.json``
    records which settings each stable image was rendered with.
    """
    from .models import load_model
    from .store import Run, write_json
    run = Run(run_dir)
    for layer, chs in nodes.items():
        run.check_layer(layer)
        check_channels(layer, chs, run.channels[layer])
    spec = load_model(run.meta["model"], run.meta["weights"], layers=run.layers)
    base = run.path / "featurevis"
    key = cache_key(spec, size, steps, lr, seed)
    digest = settings_hash(key)
    manifest_path = base / "settings.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("settings", {})[digest] = key
    out: list[Path] = []
    for layer, chs in nodes.items():
        cached = render_cached(spec, layer, chs, base / "cache", size=size, steps=steps, lr=lr,
                               seed=seed, batch=batch, device=device, progress=progress)
        for c, src in zip(chs, cached):
            dst = featurevis_path(run.path, layer, c)
            _place(src, dst)
            manifest.setdefault("channels", {}).setdefault(layer, {})[str(c)] = digest
            out.append(dst)
        write_json(manifest, manifest_path)
    return out


# ---------------------------------------------------------------------------------------------
# Directions (positions, neuron groups) and DeepDream


def direction_id(vector: torch.Tensor) -> str:
    """16 hex digits naming a direction (its float16 values: the same activations computed with
    another thread count name the same file)."""
    return hashlib.sha256(vector.detach().cpu().to(torch.float16).numpy().tobytes()).hexdigest()[:16]


def directions_key(spec: ModelSpec, neuron: bool, size: int = 128, steps: int = 512, lr: float = 0.05,
                   seed: int = 0) -> dict:
    """What a cached direction image depends on besides (layer, direction): its settings hash names
    the folder ``cache_dir/<hash>/`` of :func:`render_directions_cached`."""
    return {**cache_key(spec, size, steps, lr, seed),
            "objective": "direction_neuron" if neuron else "direction"}


def direction_paths(spec: ModelSpec, layer: str, vectors: torch.Tensor, cache_dir: str | os.PathLike, *,
                    neuron: bool = False, size: int = 128, steps: int = 512, lr: float = 0.05,
                    seed: int = 0) -> list[Path]:
    """Where :func:`render_directions_cached` keeps (or will keep) each direction's image."""
    root = Path(cache_dir) / settings_hash(directions_key(spec, neuron, size, steps, lr, seed)) / layer
    return [root / f"{direction_id(v)}.png" for v in torch.as_tensor(vectors, dtype=torch.float32)]


def render_directions_cached(spec: ModelSpec, layer: str, vectors: torch.Tensor,
                             cache_dir: str | os.PathLike, *, neuron: bool = False, size: int = 128,
                             steps: int = 512, lr: float = 0.05, seed: int = 0, batch: int = 32,
                             device: str = "auto", progress: bool = True) -> list[Path]:
    """Feature visualizations of directions (N, C) of `layer`, `batch` per optimization:
    PNG paths ``cache_dir/<hash>/<layer>/<direction_id>.png``, rendering only the missing ones.

    ``neuron=True`` maximizes the dot product at the centre position (a position's activation
    vector: "what the network sees" there), else averaged over positions (a neuron group).
    <hash> covers the settings as in :func:`render_cached` plus the objective.
    """
    from .store import atomic_write_bytes, write_json
    spec.check_layers([layer])
    _check_render_args(batch, steps, size)
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    paths = direction_paths(spec, layer, vectors, cache_dir, neuron=neuron, size=size, steps=steps,
                            lr=lr, seed=seed)
    todo = list({p.stem: v for v, p in zip(vectors, paths) if not p.is_file()}.items())
    if todo:
        folder = paths[0].parent
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder.parent / "settings.json").is_file():
            write_json(directions_key(spec, neuron, size, steps, lr, seed), folder.parent / "settings.json")
        chunks = [todo[i:i + batch] for i in range(0, len(todo), batch)]
        with tqdm(total=steps * len(chunks), desc=f"render {layer} directions", unit="step",
                  disable=not progress) as bar:
            for chunk in chunks:
                obj = directions(layer, torch.stack([v for _, v in chunk]), neuron=neuron)
                imgs = visualize(spec, obj, [_item_seed(seed, int(n[:7], 16)) for n, _ in chunk],
                                 size=size, steps=steps, lr=lr, seed=seed, device=device,
                                 on_step=bar.update)
                for (n, _), img in zip(chunk, imgs):
                    atomic_write_bytes(folder / f"{n}.png", _png(to_pil(img)))
    return paths


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


def parse_channels(tokens: Sequence[str]) -> list[int]:
    """["0", "3-5"] -> [0, 3, 4, 5] (order kept, duplicates dropped)."""
    out: list[int] = []
    for tok in tokens:
        for part in str(tok).split(","):
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            try:
                a, b = int(lo), int(hi) if sep else int(lo)
            except ValueError:
                raise SummitError(f"bad channel {part!r}: want N or A-B, e.g. 0-15") from None
            if b < a:
                raise SummitError(f"bad channel range {part!r}: end before start")
            out += range(a, b + 1)
    return list(dict.fromkeys(out))


def graph_channels(run: Run, cls: str | int) -> dict[str, list[int]]:
    """{layer: channels} of every node of a class's attribution graph (``summit.graph``, defaults)."""
    from .graph import class_graph
    g = class_graph(run, cls)
    nodes: dict[str, list[int]] = {}
    for _, d in g.nodes(data=True):
        nodes.setdefault(d["layer"], []).append(int(d["channel"]))
    return {layer: sorted(set(chs)) for layer, chs in nodes.items()}


# ---------------------------------------------------------------------------------------------
# Diversity: several different images per channel (Summit shows four per channel)

DIVERSITY_WEIGHT = 100.0  # Lucid's tutorial objective: channel - 1e2 * diversity
DIVERSITY_FILE = "diversity.json"


def grouped_diversity(layer: str, n: int) -> Objective:
    """``diversity(layer)`` within each run of n consecutive batch items (one run per channel)."""
    div = diversity(layer)

    def fn(a: Acts) -> torch.Tensor:
        t = a[layer]
        return torch.cat([div({layer: t[i:i + n]}) for i in range(0, t.shape[0], n)])
    return Objective(fn, (layer,), f"grouped_diversity({layer}, {n})")


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


def render_diversity_run(run_dir: str | os.PathLike, nodes: dict[str, list[int]], n: int = 4, *,
                         weight: float = DIVERSITY_WEIGHT, size: int = 128, steps: int = 512,
                         lr: float = 0.05, seed: int = 0, batch: int = 32, device: str = "auto",
                         progress: bool = True) -> list[Path]:
    """Render n diversity images per channel of {layer: channels} into
    ``run_dir/featurevis/<layer>/<channel>_d<i>.png``; channels already rendered with the same
    settings (``featurevis/diversity.json``) are skipped, each finished one is kept at once."""
    from .models import load_model
    from .store import Run, atomic_write_bytes, write_json
    run = Run(run_dir)
    for layer, chs in nodes.items():
        run.check_layer(layer)
        check_channels(layer, chs, run.channels[layer])
    spec = load_model(run.meta["model"], run.meta["weights"], layers=run.layers)
    key = {**cache_key(spec, size, steps, lr, seed), "diversity": n, "weight": weight}
    digest = settings_hash(key)
    manifest_path = run.path / "featurevis" / DIVERSITY_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("settings", {})[digest] = key
    done = manifest.setdefault("channels", {})
    out: list[Path] = []
    for layer, chs in nodes.items():
        paths = {c: [diversity_path(run.path, layer, c, i) for i in range(n)] for c in chs}
        todo = [c for c in dict.fromkeys(chs) if done.get(layer, {}).get(str(c)) != digest
                or not all(p.is_file() for p in paths[c])]
        if todo:
            (run.path / "featurevis" / layer).mkdir(parents=True, exist_ok=True)
            before = diversity_counts(run.path, layer)
            for c, imgs in render_diversity(spec, layer, todo, n, weight, size, steps, lr, seed,
                                            batch, device, progress):
                for p, img in zip(paths[c], imgs):
                    atomic_write_bytes(p, _png(img))
                for i in range(n, before.get(c, 0)):  # left over from an earlier, larger n
                    diversity_path(run.path, layer, c, i).unlink()
                done.setdefault(layer, {})[str(c)] = digest
                write_json(manifest, manifest_path)
        out += [p for c in chs for p in paths[c]]
    return out
