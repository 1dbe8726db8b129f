"""Cost of the correct/wrong split (docs/MISTAKES.md): the streaming pass with and without
``--split-correct`` as ratios to the bare model forward of the same round, the writing of the
run (with the split: its two parts' tables too), the accumulators' memory, and the time of a
class's graphs per part and of its correct-vs-wrong diff against one all-images graph.

    python bench/bench_mistakes.py [--model squeezenet1_1] [--images 160] [--rounds 5]

The images are the bundled sample repeated (bench_pipeline.replicate), so a class's correct and
wrong images are the sample's; every round times bare, unsplit and split once each in a rotating
order (bench_pipeline's method).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from bench_pipeline import cpu_seconds, replicate

from summit.graph.build import class_graph
from summit.graph.diff import mistakes_diff
from summit.model.models import load_model
from summit.pipeline.aggregator import AggregateConfig, Aggregator
from summit.pipeline.data import SafeImageFolder, collate
from summit.run.store import Run

VARIANTS = ("bare", "unsplit", "split")


def tensor_bytes(x: Any) -> int:
    """Bytes of every tensor and array in a nested state (dicts, lists, tuples)."""
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, np.ndarray):
        return x.nbytes
    if isinstance(x, dict):
        return sum(tensor_bytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(tensor_bytes(v) for v in x)
    return 0


def _median_ms(times: list[float]) -> float:
    return round(statistics.median(times) * 1000, 1)


def graph_times(run_dir: Path, rounds: int) -> dict:
    """Median ms per class (classes with both correct and wrong images) of the all-images graph,
    each part's graph and the correct-vs-wrong diff, on a freshly opened run per round."""
    out: dict[str, list[float]] = {"all": [], "correct": [], "wrong": [], "mistakes_diff": []}
    for _ in range(rounds):
        run = Run(run_dir)
        n, hits = run.classes.column("n_images").to_numpy(), run.classes.column("n_correct").fill_null(0).to_numpy()
        mixed = [i for i in range(len(n)) if 0 < hits[i] < n[i]]
        for what, fn in (("all", lambda c: class_graph(run, c)), ("correct", lambda c: class_graph(run, c, images="correct")),
                         ("wrong", lambda c: class_graph(run, c, images="wrong")),
                         ("mistakes_diff", lambda c: mistakes_diff(run, c))):
            for c in mixed:
                t = time.perf_counter()
                fn(c)
                out[what].append(time.perf_counter() - t)
    res = {k: _median_ms(v) for k, v in out.items()}
    res["classes"] = len(mixed)
    res["diff_over_graph"] = round(res["mistakes_diff"] / res["all"], 2)
    return res


def dense_mib(model: str, weights: str | None, n_classes: int) -> dict:
    """The accumulators' MiB right after set-up (the dense per-class matrices; the sparse
    influence counters start empty and grow with the data) for a dataset of ``n_classes``
    folders, without and with the split."""
    from summit.pipeline.data import BUNDLED_SAMPLE
    src = next(BUNDLED_SAMPLE.rglob("*.jpg"))
    spec = load_model(model, weights)
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(n_classes):
            d = Path(tmp) / f"c{c:04d}"
            d.mkdir()
            (d / "x.jpg").symlink_to(src)
        ds = SafeImageFolder(Path(tmp), 224, spec.class_names)
        return {("split" if split else "unsplit"): round(tensor_bytes(Aggregator(
            AggregateConfig(model=model, weights=weights, split_correct=split), ds, spec).state()) / 2**20, 1)
            for split in (False, True)}


def measure(model: str, n: int, batch: int, workers: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = replicate(n, Path(tmp) / "data")
        spec = load_model(model, None)
        ds = SafeImageFolder(data, 224, spec.class_names)
        batches = [collate([ds[i] for i in range(b, min(n, b + batch))])["image"] for b in range(0, n, batch)]
        templates = {split: Aggregator(AggregateConfig(model=model, batch_size=batch, split_correct=split), ds, spec)
                     for split in (False, True)}

        def bare() -> None:
            with torch.no_grad():
                for x in batches:
                    spec.model(x)

        done: dict[bool, Aggregator] = {}

        def streaming(split: bool) -> Callable[[], None]:
            agg = copy.deepcopy(templates[split])
            done[split] = agg
            return lambda: agg.run(workers=workers, progress=False)

        make = {"bare": lambda: bare, "unsplit": lambda: streaming(False), "split": lambda: streaming(True)}
        bare()  # warm-up
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
        write: dict[bool, list[float]] = {False: [], True: []}
        for r in range(rounds):
            for v in VARIANTS[r % 3:] + VARIANTS[:r % 3]:
                fn = make[v]()
                t, c = time.perf_counter(), cpu_seconds()
                fn()
                rates[v].append(n / (time.perf_counter() - t))
                cpu[v].append(n / (cpu_seconds() - c))
            for split in (False, True):
                out = Path(tmp) / f"run-{r}-{split}"
                t = time.perf_counter()
                done[split].write(out, progress=False)
                write[split].append(time.perf_counter() - t)
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{v} {rates[v][-1]:.1f}" for v in VARIANTS) + " img/s",
                  file=sys.stderr, flush=True)
        pass_s = {v: n / statistics.median(rates[v]) for v in VARIANTS}
        res: dict = {
            "model": model, "weights": spec.weights, "images": n, "batch": batch, "workers": workers,
            "threads": torch.get_num_threads(), "rounds": rounds,
            "bare_img_s_median": round(statistics.median(rates["bare"]), 1),
            "ratio_to_bare": {v: {"median": round(statistics.median([a / b for a, b in zip(rates[v], rates["bare"])]), 3),
                                  "cpu_time_median": round(statistics.median([a / b for a, b in zip(cpu[v], cpu["bare"])]), 3)}
                              for v in ("unsplit", "split")},
            "write_s_median": {("split" if s else "unsplit"): round(statistics.median(w), 3) for s, w in write.items()},
            "accumulator_mib": {("split" if s else "unsplit"): round(tensor_bytes(done[s].state()) / 2**20, 1)
                                for s in (False, True)},
        }
        total = {s: pass_s[s] + res["write_s_median"][s] for s in ("unsplit", "split")}
        res["split_cost_pct_of_pass_and_write"] = round(100 * (total["split"] / total["unsplit"] - 1), 1)
        res["graphs_ms_per_class"] = graph_times(Path(tmp) / f"run-{rounds - 1}-True", rounds)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="squeezenet1_1", help="a model with offline weights (default squeezenet1_1)")
    ap.add_argument("--images", type=int, default=160, help="images per variant and round (default 160)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dense-classes", type=int, default=1000,
                    help="also the accumulators' set-up MiB for this many classes (0: skip)")
    ap.add_argument("--dense-model", default="googlenet", help="model of that estimate (random weights)")
    a = ap.parse_args()
    res = measure(a.model, a.images, a.batch, a.workers, a.rounds)
    if a.dense_classes:
        res[f"dense_accumulator_mib_{a.dense_model}_{a.dense_classes}_classes"] = dense_mib(
            a.dense_model, "random", a.dense_classes)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
