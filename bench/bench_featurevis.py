"""Benchmark feature visualization: seconds per batch of channels (default 32 at 128 px, 512 steps).

Runs SqueezeNet 1.1 (offline weights) on the CPU and, when available, on the GPU. Prints the
time of one bare forward+backward of the whole model on the same batch as the reference, and
extrapolates to the full --target-steps when run with fewer --steps:

    python bench/bench_featurevis.py --steps 32
"""
from __future__ import annotations

import argparse
import time

import torch

from summit.model.models import ModelSpec, load_model
from summit.vis import render as fv


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def forward_backward_s(spec: ModelSpec, batch: int, size: int, dev: torch.device, reps: int = 5) -> float:
    """Median seconds of one forward+backward (to the input) of the whole model."""
    model = spec.model.to(dev)
    x = torch.rand(batch, 3, size, size, device=dev, requires_grad=True)
    times = []
    for i in range(reps + 1):
        _sync(dev)
        t = time.perf_counter()
        model(x).sum().backward(inputs=[x])
        _sync(dev)
        if i:  # first one is warm-up
            times.append(time.perf_counter() - t)
    spec.model.to("cpu")
    return sorted(times)[len(times) // 2]


def render_s(spec: ModelSpec, layer: str, batch: int, size: int, steps: int, dev: torch.device) -> float:
    """Seconds for one optimization of `batch` channels."""
    fv.render(spec, layer, list(range(batch)), size=size, steps=2, batch=batch, device=str(dev),
              progress=False)  # warm-up
    _sync(dev)
    t = time.perf_counter()
    fv.render(spec, layer, list(range(batch)), size=size, steps=steps, batch=batch, device=str(dev),
              progress=False)
    _sync(dev)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=512, help="steps actually run (fewer: extrapolate)")
    ap.add_argument("--target-steps", type=int, default=512, help="steps to extrapolate to")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--layer", default="fire5")
    ap.add_argument("--cpu-only", action="store_true")
    a = ap.parse_args()
    spec = load_model("squeezenet1_1")
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not a.cpu_only:
        devices.append(torch.device("cuda"))
    print(f"squeezenet1_1 {a.layer}: {a.batch} channels, {a.size} px, {a.steps} steps "
          f"(extrapolated to {a.target_steps}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    for dev in devices:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        fb = forward_backward_s(spec, a.batch, a.size, dev)
        total = render_s(spec, a.layer, a.batch, a.size, a.steps, dev)
        step = total / max(a.steps, 1)
        print(f"{name}: forward+backward (whole model, batch {a.batch}) {fb * 1e3:.1f} ms | "
              f"render {step * 1e3:.1f} ms/step = {step / fb:.2f}x forward+backward | "
              f"{total:.1f} s for {a.steps} steps -> {step * a.target_steps:.1f} s per batch of "
              f"{a.batch} at {a.target_steps} steps")


if __name__ == "__main__":
    main()
