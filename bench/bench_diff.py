"""Benchmark the run comparison (summit.graph.diff): time per class of ``diff_runs`` and its ratio
to one ``class_graph`` build (a class diff builds two graphs, one per run, and looks up both runs'
counts), plus the channel-role comparison (every layer, every common class) once per diff.

Two real runs (e.g. the bundled sample and a perturbed checkpoint, see tests/graph/test_diff.py):

    python bench/bench_diff.py --run-a runs/sample --run-b runs/perturbed

Two synthetic runs of bench_graph.py's GoogLeNet-sized shape (seeds 0 and 1: same layers and
classes, other counts), e.g. 1000 classes:

    python bench/bench_diff.py --synthetic 1000 [--sample 20]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from summit.graph.build import class_graph
from summit.graph.diff import channel_roles, diff_runs
from summit.graph.matrices import dense
from summit.run.store import Run


def _s(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def measure(a: Run, b: Run, sample: int) -> None:
    """Print per-class diff and graph times over ``sample`` classes (all when fewer)."""
    n = len(a.class_names)
    classes = sorted(np.random.default_rng(0).choice(n, min(sample, n), replace=False).tolist())
    first = _s(lambda: diff_runs(a, b, classes=classes[:1]))  # loads both runs' dense matrices
    per = [_s(lambda c=c: diff_runs(a, b, classes=[c], roles=False)) for c in classes]  # as the UI asks
    graph = [_s(lambda c=c: class_graph(a, c)) for c in classes]
    pairs = list(zip(range(n), range(n)))
    roles = _s(lambda: channel_roles(a, b, dense(a), dense(b), pairs, a.layers))
    whole = _s(lambda: diff_runs(a, b)) if n <= 100 else None
    print(f"{n} classes, {len(a.layers)} layers, {sum(a.channels.values())} channels; first diff (loads the "
          f"dense matrices): {first:.2f} s")
    print(f"diff_runs per class (without channel roles, as `serve --against` and /api/mistakes ask), median over "
          f"{len(classes)} classes: {statistics.median(per) * 1000:.0f} ms "
          f"(min {min(per) * 1000:.0f}, max {max(per) * 1000:.0f}); class_graph median "
          f"{statistics.median(graph) * 1000:.0f} ms; ratio {statistics.median(per) / statistics.median(graph):.2f}x")
    print(f"channel roles (every layer, {n} classes; once per `summit diff`): {roles * 1000:.0f} ms")
    if whole is not None:
        print(f"whole diff ({n} classes): {whole:.2f} s = {whole / n * 1000:.0f} ms per class")
    else:
        print(f"whole diff ({n} classes), estimated: {roles + n * statistics.median(per):.0f} s (roles once + "
              "per-class median x classes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-a", type=Path, default=None)
    ap.add_argument("--run-b", type=Path, default=None)
    ap.add_argument("--synthetic", type=int, default=None, metavar="CLASSES",
                    help="synthesize two bench_graph.py runs of this many classes instead")
    ap.add_argument("--images", type=int, default=50, help="synthetic: images per class (default 50)")
    ap.add_argument("--sample", type=int, default=20, help="classes timed one by one (default 20)")
    a = ap.parse_args()
    if a.synthetic:
        import bench_graph
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            for seed in (0, 1):
                bench_graph.synthesize(Path(tmp) / f"run{seed}", a.synthetic, a.images, 15, seed=seed)
            print(f"synthesized two runs in {time.perf_counter() - t:.1f}s")
            measure(Run(Path(tmp) / "run0"), Run(Path(tmp) / "run1"), a.sample)
        return
    if not (a.run_a and a.run_b):
        ap.error("give --run-a and --run-b, or --synthetic CLASSES")
    measure(Run(a.run_a), Run(a.run_b), a.sample)


if __name__ == "__main__":
    main()
