"""Dataset examples: the top-activating images of every channel, kept while streaming.

Per layer a fixed-size table (channels x K) of (value, image index, argmax position) is
updated per batch, so memory is bounded whatever the dataset size. Ties break towards the
lower dataset index, which makes shard merges exact. After the pass the receptive-field
patch around each argmax is cropped from the (re-read) image and saved as one JPEG strip
per channel: ``examples/<layer>/<channel>.jpg`` (K patches side by side, best first).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from tqdm import tqdm

from .store import write_table

PATCH_PX = 64


class ExamplesAccumulator:
    """Top-K (value, image index, position) per channel of each layer."""

    def __init__(self, channels: dict[str, int], k: int = 8) -> None:
        self.k = k
        self.value = {l: torch.full((c, k), -float("inf")) for l, c in channels.items()}
        self.index = {l: torch.full((c, k), -1, dtype=torch.long) for l, c in channels.items()}
        self.pos = {l: torch.full((c, k), -1, dtype=torch.long) for l, c in channels.items()}
        self.shape: dict[str, tuple[int, int]] = {}

    def _merge(self, layer: str, v: torch.Tensor, i: torch.Tensor, p: torch.Tensor) -> None:
        v = torch.cat([self.value[layer], v], 1)
        i = torch.cat([self.index[layer], i], 1)
        p = torch.cat([self.pos[layer], p], 1)
        o1 = torch.sort(torch.where(i < 0, torch.iinfo(torch.long).max, i), dim=1, stable=True).indices
        v, i, p = v.gather(1, o1), i.gather(1, o1), p.gather(1, o1)
        o2 = torch.sort(v, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.value[layer], self.index[layer], self.pos[layer] = v.gather(1, o2), i.gather(1, o2), p.gather(1, o2)

    def update(self, layer: str, maxval: torch.Tensor, argmax: torch.Tensor, hw: tuple[int, int],
               indices: torch.Tensor) -> None:
        """maxval/argmax: (N, C) spatial max and flat argmax; indices: (N,) dataset indices."""
        self.shape[layer] = hw
        c = maxval.shape[1]
        self._merge(layer, maxval.t().contiguous(), indices.view(1, -1).expand(c, -1), argmax.t().contiguous())

    def state(self) -> dict:
        return {"value": self.value, "index": self.index, "pos": self.pos, "shape": self.shape}

    def load(self, state: dict) -> None:
        self.value, self.index, self.pos = state["value"], state["index"], state["pos"]
        self.shape = dict(state["shape"])

    def merge(self, state: dict) -> None:
        self.shape.update(state["shape"])
        for l in self.value:
            self._merge(l, state["value"][l], state["index"][l], state["pos"][l])


def receptive_field(model: torch.nn.Module, module: torch.nn.Module, size: int) -> int:
    """Side (input pixels) of the receptive field of a centre unit, measured by backprop."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).requires_grad_()
    out: dict[str, torch.Tensor] = {}
    h = module.register_forward_hook(lambda _m, _i, o: out.__setitem__("y", o))
    try:
        with torch.enable_grad():
            model(x)
            y = out["y"]
            y[0, :, y.shape[2] // 2, y.shape[3] // 2].abs().sum().backward()
    finally:
        h.remove()
    nz = x.grad[0].abs().sum(0).nonzero()
    if len(nz) == 0:
        return size
    return int(max(nz[:, 0].max() - nz[:, 0].min(), nz[:, 1].max() - nz[:, 1].min()) + 1)


def write_examples(acc: ExamplesAccumulator, dataset, run_dir: Path, rf: dict[str, int],
                   size: int, class_of: list[int], progress: bool = True) -> None:
    """Crop patches for every stored example and write examples.parquet plus JPEG strips."""
    from .data import image_transform
    tf = image_transform(size)
    rows: dict[str, list] = {k: [] for k in ("layer", "channel", "rank", "value", "image", "class",
                                             "y", "x", "x0", "y0", "x1", "y1")}
    needed = sorted({int(i) for l in acc.index for i in acc.index[l].flatten().tolist() if i >= 0})
    cache: dict[int, torch.Tensor] = {}
    for i in tqdm(needed, desc="examples: reading images", unit="img", disable=not progress):
        cache[i] = tf(dataset.load_pil(i))
    for layer in tqdm(acc.value, desc="examples: cropping", unit="layer", disable=not progress):
        out_dir = run_dir / "examples" / layer
        os.makedirs(out_dir, exist_ok=True)
        h, w = acc.shape.get(layer, (1, 1))
        side = min(size, rf[layer])
        for ch in range(acc.value[layer].shape[0]):
            strip = Image.new("RGB", (PATCH_PX * acc.k, PATCH_PX), (255, 255, 255))
            for r in range(acc.k):
                idx = int(acc.index[layer][ch, r])
                if idx < 0:
                    continue
                pos = int(acc.pos[layer][ch, r])
                y, x = divmod(pos, w)
                cy, cx = (y + 0.5) * size / h, (x + 0.5) * size / w
                x0 = int(round(min(max(cx - side / 2, 0), size - side)))
                y0 = int(round(min(max(cy - side / 2, 0), size - side)))
                patch = cache[idx][:, y0:y0 + side, x0:x0 + side]
                img = Image.fromarray((patch.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
                strip.paste(img.resize((PATCH_PX, PATCH_PX), Image.BILINEAR), (r * PATCH_PX, 0))
                for key, val in zip(rows, (layer, ch, r, float(acc.value[layer][ch, r]),
                                           str(dataset.files[idx][0]) if hasattr(dataset, "files") else str(idx),
                                           class_of[idx], y, x, x0, y0, x0 + side, y0 + side)):
                    rows[key].append(val)
            strip.save(out_dir / f"{ch}.jpg", quality=90)
    types = {"layer": pa.string(), "channel": pa.int32(), "rank": pa.int32(), "value": pa.float32(),
             "image": pa.string(), "class": pa.int32(), "y": pa.int32(), "x": pa.int32(),
             "x0": pa.int32(), "y0": pa.int32(), "x1": pa.int32(), "y1": pa.int32()}
    write_table(pa.table({k: pa.array(v, types[k]) for k, v in rows.items()}), run_dir / "examples.parquet")
