"""Images/s of every influence mode on a GPU, in under 5 minutes (ready for a lent machine).

    python bench/bench_gpu.py [--device cuda] [--images 256] [--batch 64] [--budget 240]

Per model (SqueezeNet 1.1 real weights, GoogLeNet random weights, EfficientNet-Lite0 real
weights) and mode, the streaming pass (``Aggregator.run``) over the bundled sample decoded once
and repeated (no JPEG decoding, so the figure is the model's and the accumulators' work), timed
after a one-batch warm-up, with ``torch.cuda.synchronize``. Output files are not written.

  bare            model forward only: the reference of each ratio
  summit          `summit aggregate` default: Summit's stride-3 grid (conv models)
  exact           `--influence-positions exact`
  linear          `--bottleneck linear`
  grad_selected   EfficientNet-Lite0, gradient method, `--influence-targets selected`
  grad_all        the same with `--influence-targets all`

Prints one JSON line per (model, mode): img/s, ratio to bare, projected ImageNet hours, peak
GPU memory. Stops starting new measurements once ``--budget`` seconds have passed. ``--device
cpu`` runs the same script on the CPU (a dry run of the script itself).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from summit.model.models import load_model, resolve_device
from summit.pipeline.aggregator import AggregateConfig, Aggregator
from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder, collate

IMAGENET = 1_281_167
PLAN = [("squeezenet1_1", None, ["bare", "summit", "exact", "linear"]),
        ("googlenet", "random", ["bare", "summit", "exact", "linear"]),
        ("efficientnet_lite0", None, ["bare", "grad_selected", "grad_all"])]
OPTIONS = {"summit": {}, "exact": {"influence_positions": "exact"}, "linear": {"bottleneck": "linear"},
           "grad_selected": {"influence_targets": "selected"}, "grad_all": {"influence_targets": "all"}}


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Cached(torch.utils.data.Dataset):
    """The bundled sample decoded once and repeated to n images; otherwise the wrapped dataset
    (classes, fingerprint, model_index), so the aggregator streams it unchanged."""

    def __init__(self, ds: SafeImageFolder, n: int) -> None:
        self.ds, self.n = ds, n
        self.items = [ds[i] for i in range(len(ds))]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):  # noqa: ANN204 (a Sample)
        return self.items[i % len(self.items)]

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.__dict__["ds"], name)


def rate(model: str, weights: str | None, mode: str, data: Cached, batch: int, dev: torch.device) -> dict:
    """img/s and peak memory of one mode over the cached images, after a one-batch warm-up."""
    spec = load_model(model, weights)

    def timed(limit: int) -> float:
        t = time.perf_counter()
        if mode == "bare":
            net = spec.model.to(dev)
            with torch.no_grad():
                for b in torch.utils.data.DataLoader(data, batch_size=batch, collate_fn=collate):
                    net(b["image"].to(dev, non_blocking=True))
                    limit -= len(b["image"])
                    if limit <= 0:
                        break
        else:
            cfg = AggregateConfig(model=model, weights=weights, batch_size=batch, examples_k=8, limit=limit,
                                  **OPTIONS[mode])
            Aggregator(cfg, data, spec, device=str(dev)).run(progress=False)
        sync(dev)
        return time.perf_counter() - t

    timed(batch)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    seconds = timed(len(data))
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {"img_s": len(data) / seconds, "peak_gpu_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--budget", type=float, default=240, help="seconds; no new measurement after it")
    a = ap.parse_args()
    dev = resolve_device(a.device)
    start = time.perf_counter()
    for model, weights, modes in PLAN:
        spec = load_model(model, weights)
        data = Cached(SafeImageFolder(BUNDLED_SAMPLE, 224, spec.class_names), a.images)
        base = None
        for mode in modes:
            if time.perf_counter() - start > a.budget:
                print(f"budget of {a.budget:.0f} s spent: stopped before {model} {mode}", file=sys.stderr)
                return
            r = rate(model, weights, mode, data, a.batch, dev)
            base = base or r["img_s"]
            print(json.dumps({"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                              "model": model, "mode": mode, "img_s": round(r["img_s"], 1),
                              "ratio_to_bare": round(r["img_s"] / base, 3),
                              "imagenet_hours": round(IMAGENET / r["img_s"] / 3600, 2),
                              "peak_gpu_mib": r["peak_gpu_mib"] and round(r["peak_gpu_mib"])}), flush=True)


if __name__ == "__main__":
    main()
