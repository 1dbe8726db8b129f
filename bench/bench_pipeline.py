"""Throughput of the aggregation pipeline as ratios to the bare model forward, measured so that
a noisy (shared) machine cannot fake them; peak RSS at two dataset sizes.

    python bench/bench_pipeline.py [--model squeezenet1_1] [--weights random] [--images 512]
                                   [--rounds 5] [--variants bare loader full] [--sizes 256 1024]

Variants, all over the same images (the bundled sample repeated via symlinks):

  bare          model forward on already decoded batches: the reference
  loader        data loader (decode in worker processes) + forward
  activations   the streaming pass with influence off and no dataset examples
  no_influence  the streaming pass with influence off (activations + examples)
  full          the streaming pass as `summit aggregate` runs it (Summit's stages on Summit's
                stride-3 grid, `--influence-positions summit`)
  full_exact    the same with our exact maxima over every position (`--influence-positions exact`)
  summit_port   the peer (GoogLeNet only): data loader + forward + Summit's influence as a user
                would port it to PyTorch (bench/summit_port.py: depthwise stride-3 convolutions,
                max, top 5, dense counts); no activation matrices or examples

Every round times each variant once, in an order that rotates from round to round, and divides
its rate by the bare rate of the same round; the bench prints each ratio's median and spread
(min..max) over rounds, so load that comes and goes hits all variants alike. no_influence does
the bare forward plus more work: a median ratio above 1 is a measurement error and is flagged.
Each ratio is also given in CPU time (this process and its loader workers; ``cpu_time_median``):
less sensitive to other processes, but blind to idle waits and to parallelism across cores.
ImageNet (1.28M images) wall time is projected from the median rates.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from summit_port import SummitPort

from summit.model.models import load_model
from summit.pipeline.aggregator import AggregateConfig, Aggregator
from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder, collate

IMAGENET = 1_281_167
VARIANTS = ["bare", "loader", "activations", "no_influence", "full", "full_exact", "summit_port"]


def replicate(n: int, root: Path) -> Path:
    """An ImageFolder of n images: the bundled sample's files symlinked repeatedly."""
    files = sorted(p for p in BUNDLED_SAMPLE.rglob("*.jpg"))
    for i in range(n):
        src = files[i % len(files)]
        d = root / src.parent.name
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:07d}_{src.name}").symlink_to(src)
    return root


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (loader workers): unlike wall time,
    barely changed by other processes on the machine."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def measure(model: str, weights: str | None, n: int, batch: int, workers: int, rounds: int,
            variants: list[str]) -> dict:
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

        def port() -> None:
            peer = SummitPort(spec.model.net, len(spec.class_names))
            for b in loader:
                peer.update(b["image"], b["label"])
            peer.close()

        templates: dict[tuple, Aggregator] = {}

        def pipeline(influence: str, examples_k: int = 8, positions: str = "summit") -> Callable[[], None]:
            """A fresh copy of a set-up aggregator (probe, receptive fields): only the
            streaming pass is timed."""
            key = (influence, examples_k, positions)
            if key not in templates:
                cfg = AggregateConfig(model=model, weights=weights, batch_size=batch, influence=influence,
                                      examples_k=examples_k, influence_positions=positions)
                templates[key] = Aggregator(cfg, ds, spec)
            agg = copy.deepcopy(templates[key])
            return lambda: agg.run(workers=workers, progress=False)

        make = {"bare": lambda: bare, "loader": lambda: loader_fwd,
                "activations": lambda: pipeline("off", 0), "no_influence": lambda: pipeline("off"),
                "full": lambda: pipeline("auto"), "full_exact": lambda: pipeline("auto", positions="exact"),
                "summit_port": lambda: port}
        bare()  # warm-up
        rates: dict[str, list[float]] = {v: [] for v in variants}
        cpu_rates: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(rounds):
            for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                fn = make[v]()
                t, c = time.perf_counter(), cpu_seconds()
                fn()
                rates[v].append(n / (time.perf_counter() - t))
                cpu_rates[v].append(n / (cpu_seconds() - c))
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{v} {rates[v][-1]:.1f}" for v in variants) + " img/s",
                  file=sys.stderr, flush=True)
    res: dict = {"model": model, "weights": spec.weights, "images": n, "batch": batch, "workers": workers,
                 "threads": torch.get_num_threads(), "rounds": rounds,
                 "bare_img_s_median": statistics.median(rates["bare"]), "ratio_to_bare": {}}
    for v in variants:
        if v == "bare":
            continue
        ratios = [a / b for a, b in zip(rates[v], rates["bare"])]
        cpu = [a / b for a, b in zip(cpu_rates[v], cpu_rates["bare"])]
        res["ratio_to_bare"][v] = {"median": round(statistics.median(ratios), 3),
                                   "cpu_time_median": round(statistics.median(cpu), 3),
                                   "min": round(min(ratios), 3), "max": round(max(ratios), 3),
                                   "rounds_above_1": sum(r > 1 for r in ratios)}
    flags = []
    ni = res["ratio_to_bare"].get("no_influence")
    if ni and ni["median"] > 1:
        flags.append(f"MEASUREMENT ERROR: no_influence runs at {ni['median']}x the bare forward "
                     "(it does the same forward plus more work); the machine's load changed under the bench")
    res["flags"] = flags
    res["imagenet_hours"] = {v: round(IMAGENET / statistics.median(rates[v]) / 3600, 1) for v in variants}
    return res


def peak_rss_child(model: str, weights: str | None, n: int, batch: int) -> None:
    """Run one full aggregation in this (fresh) process and print its peak RSS in MiB."""
    from summit.pipeline.aggregator import aggregate
    with tempfile.TemporaryDirectory() as tmp:
        data = replicate(n, Path(tmp) / "data")
        aggregate(AggregateConfig(model=model, weights=weights, batch_size=batch), data, Path(tmp) / "run",
                  progress=False)
    print(json.dumps({"images": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="squeezenet1_1")
    ap.add_argument("--weights", default=None, help="e.g. random for googlenet offline")
    ap.add_argument("--images", type=int, default=512,
                    help="images per variant and round (default 512: fewer, and the loader workers' start-up weighs)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", nargs="+", default=None, choices=VARIANTS,
                    help="default: all (summit_port for googlenet only)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[256, 1024], help="dataset sizes for peak RSS")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rss_child is not None:
        peak_rss_child(a.model, a.weights, a.rss_child, a.batch)
        return
    googlenet = a.model.startswith("googlenet")
    chosen = a.variants or [v for v in VARIANTS if googlenet or v != "summit_port"]
    if "summit_port" in chosen and not googlenet:
        ap.error("the summit_port peer is written for googlenet (Summit's model)")
    variants = ["bare"] + [v for v in chosen if v != "bare"]
    res = measure(a.model, a.weights, a.images, a.batch, a.workers, a.rounds, variants)
    print(json.dumps(res, indent=1))
    for flag in res["flags"]:
        print(flag, file=sys.stderr)
    for n in a.sizes:
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--batch", str(a.batch),
                              *(["--weights", a.weights] if a.weights else []), "--rss-child", str(n)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
