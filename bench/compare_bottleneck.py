"""How much Summit's bottleneck rule and our linear composition disagree, on the same images.

Aggregates the dataset twice (``--bottleneck summit`` and ``--bottleneck linear``, influence only:
no dataset examples) and reports, per layer pair, the mean Jaccard similarity of each output
channel's top-k inputs (k = k_influence) over all classes: Summit's inputs are its full-graph
edges (max-min composition of the two counted stages), ours the k most counted inputs.

    python bench/compare_bottleneck.py [DATA] [--model squeezenet1_1] [--out runs/bottleneck]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from summit.graph.edges import class_edges
from summit.pipeline.aggregator import AggregateConfig, aggregate
from summit.run.store import Run


def top_inputs(run: Run, ci: int, k: int) -> dict[tuple[int, int], set[int]]:
    """{(pair index, output channel): its k strongest inputs} of one class's full graph."""
    e = class_edges(run, ci).full
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for p, s, d, w in zip(e.pair.tolist(), e.src.tolist(), e.dst.tolist(), e.weight.tolist()):
        out.setdefault((p, d), []).append((-w, s))
    return {key: {s for _, s in sorted(v)[:k]} for key, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=None)
    ap.add_argument("--model", default="squeezenet1_1")
    ap.add_argument("--out", type=Path, default=Path("runs/bottleneck"))
    a = ap.parse_args()
    runs = {}
    for rule in ("summit", "linear"):
        out = a.out / rule
        if not (out / "run.json").is_file():
            aggregate(AggregateConfig(model=a.model, bottleneck=rule, examples_k=0), a.data, out)
        runs[rule] = Run(out)
    s, lin = runs["summit"], runs["linear"]
    k = int(s.meta["k_influence"])
    per_pair: dict[str, list[float]] = {}
    for ci in range(len(s.class_names)):
        if not s.classes.column("n_images")[ci].as_py():
            continue
        ts, tl = top_inputs(s, ci, k), top_inputs(lin, ci, k)
        for key in set(ts) | set(tl):
            a_, b_ = ts.get(key, set()), tl.get(key, set())
            per_pair.setdefault(s.pairs[key[0]], []).append(len(a_ & b_) / len(a_ | b_) if a_ | b_ else 1.0)
    print(f"top-{k} inputs per output channel, Summit's rule vs linear composition "
          f"({len(s.class_names)} classes, {a.model}):")
    for pair, js in per_pair.items():
        print(f"  {pair}: mean Jaccard {statistics.mean(js):.3f} (median {statistics.median(js):.3f}, "
              f"identical sets {np.mean(np.array(js) == 1.0):.1%}, n={len(js)})")
    allj = [j for js in per_pair.values() for j in js]
    print(f"  all pairs: mean Jaccard {statistics.mean(allj):.3f}")


if __name__ == "__main__":
    main()
