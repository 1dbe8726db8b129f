"""Dataset examples: the top-activating images of every channel, kept while streaming.

Per layer a fixed-size table (channels x K) of (value, image index, argmax position) is
updated per batch, so memory is bounded whatever the dataset size. Ties break towards the
lower dataset index, which makes shard merges exact. After the pass the receptive-field
patch around each argmax is cropped from the (re-read) image and saved as one JPEG strip
per channel: ``examples/<layer>/<channel>.jpg`` (K patches side by side, best first). An image
that cannot be read again, or whose file changed since the pass (deleted, replaced), leaves its
patches white and without an examples.parquet row, and is added to ``dataset.unreadable``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from tqdm import tqdm

from ..run.files import write_table

PATCH_PX = 64


class ExamplesAccumulator:
    """Top-K (value, image index, class label, position) per channel of each layer."""

    FIELDS = ("value", "index", "label", "pos")

    def __init__(self, channels: dict[str, int], k: int = 8) -> None:
        self.k = k
        self.top = {l: {"value": torch.full((c, k), -float("inf")),
                        **{f: torch.full((c, k), -1, dtype=torch.long) for f in self.FIELDS[1:]}}
                    for l, c in channels.items()}
        self.shape: dict[str, tuple[int, int]] = {}

    def _merge(self, layer: str, new: dict[str, torch.Tensor]) -> None:
        t = {f: torch.cat([self.top[layer][f], new[f]], 1) for f in self.FIELDS}
        i = t["index"]
        o1 = torch.sort(torch.where(i < 0, torch.iinfo(torch.long).max, i), dim=1, stable=True).indices
        t = {f: v.gather(1, o1) for f, v in t.items()}
        o2 = torch.sort(t["value"], dim=1, descending=True, stable=True).indices[:, : self.k]
        self.top[layer] = {f: v.gather(1, o2) for f, v in t.items()}

    def update(self, layer: str, maxval: torch.Tensor, argmax: torch.Tensor, hw: tuple[int, int],
               indices: torch.Tensor, labels: torch.Tensor) -> None:
        """maxval/argmax: (N, C) spatial max and flat argmax; indices, labels: (N,)."""
        self.shape[layer] = hw
        c = maxval.shape[1]
        self._merge(layer, {"value": maxval.t().contiguous(), "index": indices.view(1, -1).expand(c, -1),
                            "label": labels.view(1, -1).expand(c, -1), "pos": argmax.t().contiguous()})

    def state(self) -> dict:
        return {"top": self.top, "shape": self.shape}

    def load(self, state: dict) -> None:
        self.top, self.shape = state["top"], dict(state["shape"])

    def merge(self, state: dict) -> None:
        self.shape.update(state["shape"])
        for l in self.top:
            self._merge(l, state["top"][l])


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
                   size: int, progress: bool = True) -> None:
    """Crop patches for every stored example and write examples.parquet plus JPEG strips.

    Images are read again as the pass read them (``dataset[i]``); one that fails now or that
    ``dataset.changed(i)`` reports is left out (white patches) and appended to ``dataset.unreadable``."""
    rows: dict[str, list] = {k: [] for k in ("layer", "channel", "rank", "value", "image", "class",
                                             "y", "x", "x0", "y0", "x1", "y1")}
    needed = sorted({i for t in acc.top.values() for i in t["index"].flatten().tolist() if i >= 0})
    cache: dict[int, torch.Tensor] = {}
    for i in tqdm(needed, desc="examples: reading images", unit="img", disable=not progress):
        sample = dataset[i]
        why = sample.error or dataset.changed(i)
        if why is None:
            cache[i] = sample.image
        else:
            dataset.unreadable.append((dataset.name(i), f"read again for the example strips: {why}; "
                                                        "its patches are left blank"))
    for layer, top in tqdm(acc.top.items(), desc="examples: cropping", unit="layer", disable=not progress):
        out_dir = run_dir / "examples" / layer
        os.makedirs(out_dir, exist_ok=True)
        h, w = acc.shape.get(layer, (1, 1))
        side = min(size, rf[layer])
        for ch in range(top["value"].shape[0]):
            strip = Image.new("RGB", (PATCH_PX * acc.k, PATCH_PX), (255, 255, 255))
            for r in range(acc.k):
                idx = int(top["index"][ch, r])
                if idx not in cache:  # no example (-1) or an image gone since the pass
                    continue
                pos = int(top["pos"][ch, r])
                y, x = divmod(pos, w)
                cy, cx = (y + 0.5) * size / h, (x + 0.5) * size / w
                x0 = int(round(min(max(cx - side / 2, 0), size - side)))
                y0 = int(round(min(max(cy - side / 2, 0), size - side)))
                patch = cache[idx][:, y0:y0 + side, x0:x0 + side]
                img = Image.fromarray((patch.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
                strip.paste(img.resize((PATCH_PX, PATCH_PX), Image.BILINEAR), (r * PATCH_PX, 0))
                for key, val in zip(rows, (layer, ch, r, float(top["value"][ch, r]), dataset.name(idx),
                                           int(top["label"][ch, r]), y, x, x0, y0, x0 + side, y0 + side)):
                    rows[key].append(val)
            strip.save(out_dir / f"{ch}.jpg", quality=90)
    types = {"layer": pa.string(), "channel": pa.int32(), "rank": pa.int32(), "value": pa.float32(),
             "image": pa.string(), "class": pa.int32(), "y": pa.int32(), "x": pa.int32(),
             "x0": pa.int32(), "y0": pa.int32(), "x1": pa.int32(), "y1": pa.int32()}
    write_table(pa.table({k: pa.array(v, types[k]) for k, v in rows.items()}), run_dir / "examples.parquet")
