"""Throughput of the aggregation pipeline as a ratio to the bare model forward, and peak RSS.

    python bench/bench_pipeline.py [--model squeezenet1_1] [--images 256] [--sizes 256 1024]

All figures come from this one process on this machine: the bare forward (model only, on
already decoded batches), the same data loader + forward, and the full pipeline with and
without influence. Peak RSS is measured in fresh subprocesses on two dataset sizes (the
bundled sample repeated via symlinks) to show memory does not grow with the dataset.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from summit.aggregate import AggregateConfig, Aggregator
from summit.data import BUNDLED_SAMPLE, SafeImageFolder, collate
from summit.models import load_model


def replicate(n: int, root: Path) -> Path:
    """An ImageFolder of n images: the bundled sample's files symlinked repeatedly."""
    files = sorted(p for p in BUNDLED_SAMPLE.rglob("*.jpg"))
    for i in range(n):
        src = files[i % len(files)]
        d = root / src.parent.name
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:07d}_{src.name}").symlink_to(src)
    return root


def timed(fn, n_images: int) -> float:
    t = time.perf_counter()
    fn()
    return n_images / (time.perf_counter() - t)


def throughput(model: str, weights: str | None, n: int, batch: int, workers: int, influence: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = replicate(n, Path(tmp) / "data")
        spec = load_model(model, weights)
        ds = SafeImageFolder(data, 224, spec.class_names)
        batches = [collate([ds[i] for i in range(b, min(n, b + batch))])["image"] for b in range(0, n, batch)]
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, collate_fn=collate, num_workers=workers)

        def bare() -> None:
            with torch.no_grad():
                for x in batches:
                    spec.model(x)

        def loader_fwd() -> None:
            with torch.no_grad():
                for b in loader:
                    spec.model(b["image"])

        def pipeline(infl: str, examples_k: int = 8):
            """The streaming pass only (set-up such as the receptive-field probe is excluded)."""
            cfg = AggregateConfig(model=model, weights=weights, batch_size=batch, influence=infl,
                                  examples_k=examples_k)
            agg = Aggregator(cfg, ds, spec)
            return lambda: agg.run(workers=workers, progress=False)

        bare()  # warm-up
        res = {"model": model, "weights": spec.weights, "images": n, "batch": batch, "threads": torch.get_num_threads(),
               "bare_forward_img_s": timed(bare, n), "loader_forward_img_s": timed(loader_fwd, n),
               "activations_only_img_s": timed(pipeline("off", 0), n),
               "pipeline_no_influence_img_s": timed(pipeline("off"), n),
               "pipeline_img_s": timed(pipeline(influence), n)}
        res["ratio_pipeline_vs_bare"] = res["pipeline_img_s"] / res["bare_forward_img_s"]
        res["ratio_pipeline_vs_loader_forward"] = res["pipeline_img_s"] / res["loader_forward_img_s"]
        res["ratio_no_influence_vs_bare"] = res["pipeline_no_influence_img_s"] / res["bare_forward_img_s"]
        res["examples_slowdown"] = 1 - res["pipeline_no_influence_img_s"] / res["activations_only_img_s"]
        return res


def peak_rss_child(model: str, weights: str | None, n: int, batch: int) -> None:
    """Run one full aggregation in this (fresh) process and print its peak RSS in MiB."""
    from summit.aggregate import aggregate
    with tempfile.TemporaryDirectory() as tmp:
        data = replicate(n, Path(tmp) / "data")
        aggregate(AggregateConfig(model=model, weights=weights, batch_size=batch), data, Path(tmp) / "run", progress=False)
    print(json.dumps({"images": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="squeezenet1_1")
    ap.add_argument("--weights", default=None, help="e.g. random for googlenet offline")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--influence", default="auto")
    ap.add_argument("--sizes", type=int, nargs=2, default=[256, 1024], help="dataset sizes for peak RSS")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rss_child is not None:
        peak_rss_child(a.model, a.weights, a.rss_child, a.batch)
        return
    print(json.dumps(throughput(a.model, a.weights, a.images, a.batch, a.workers, a.influence), indent=1))
    for n in a.sizes:
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--batch", str(a.batch),
                              *(["--weights", a.weights] if a.weights else []), "--rss-child", str(n)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
