"""Benchmark one image's explorer data (Building Blocks) against a bare forward of the model.

One explanation = forward with the layers kept for gradients, one backward per explained class
(top 3, plus the true class when it is not among them), NMF groups per layer and the
group-to-next-layer attribution, the links to the class graphs, and the JSON document. Timed
on the CPU for SqueezeNet 1.1 (offline weights) at 224 px, median of --reps after a warm-up:

    python bench/bench_explain.py                      # makes a 16-image run in a temp folder
    python bench/bench_explain.py --run runs/sample --layers fire5 fire7 fire9
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torchvision.transforms.functional import to_tensor

from summit.explain.explainer import Explainer
from summit.explain.groups import factorize


def median_s(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="run directory (default: aggregate 16 sample images)")
    ap.add_argument("--image", default="099_goose/imagenet_15_99_orig.jpg", help="dataset path of the image")
    ap.add_argument("--layers", nargs="+", default=None, help="layers (default: the explainer's three)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.run is None:
        from summit.pipeline.aggregator import AggregateConfig, aggregate
        a.run = str(Path(tempfile.mkdtemp()) / "sample")
        aggregate(AggregateConfig(model="squeezenet1_1", batch_size=8, limit=16), None, a.run, workers=0,
                  progress=False)
    ex = Explainer(a.run)
    inp = ex.input(a.image)
    x = to_tensor(inp.image)[None]
    expl = ex.explain(inp, a.layers)
    layers = list(expl.layers)

    def bare() -> None:
        with torch.no_grad():
            ex.spec.model(x)

    forward_s = median_s(bare, a.reps)
    explain_s = median_s(lambda: ex.explain(inp, layers), a.reps)
    json_s = median_s(expl.to_json, a.reps)
    nmf_s = median_s(lambda: [factorize(expl.layers[l].acts, 6) for l in layers], a.reps)
    shapes = ", ".join(f"{l} {tuple(expl.layers[l].acts.shape)}" for l in layers)
    print(f"squeezenet1_1 224 px, {torch.get_num_threads()} threads; layers {shapes}; "
          f"{len(expl.classes)} classes explained")
    print(f"bare forward          {forward_s * 1e3:8.1f} ms")
    print(f"explain (no JSON)     {explain_s * 1e3:8.1f} ms = {explain_s / forward_s:5.1f}x forward"
          f"   (NMF of the layers {nmf_s * 1e3:.0f} ms)")
    total = explain_s + json_s
    print(f"explain + to_json     {total * 1e3:8.1f} ms = {total / forward_s:5.1f}x forward   target < 2000 ms")


if __name__ == "__main__":
    main()
