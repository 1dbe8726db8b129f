"""The gradient method's targets: how much class graphs change, and what it saves.

Aggregates the dataset twice with the gradient method (``--influence-targets all`` and
``selected``, no dataset examples), each timed against a bare forward over the same images in the
same process, then builds every class's graph (Summit's rule, default settings) from both runs
and reports the node-set Jaccard similarity per class (|A & B| / |A | B|).

    python bench/compare_grad_targets.py [DATA] [--model efficientnet_lite0] [--out runs/grad-targets]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from summit.graph.build import class_graph
from summit.model.models import load_model
from summit.pipeline.aggregator import AggregateConfig, aggregate
from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder, collate
from summit.run.store import Run


def bare_seconds(model: str, data: Path, batch: int) -> float:
    """Seconds of the model's forward alone over the (already decoded) images."""
    spec = load_model(model)
    ds = SafeImageFolder(data, 224, spec.class_names)
    batches = [collate([ds[i] for i in range(b, min(len(ds), b + batch))])["image"] for b in range(0, len(ds), batch)]
    with torch.no_grad():
        spec.model(batches[0])  # warm-up
        t = time.perf_counter()
        for x in batches:
            spec.model(x)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", type=Path, default=BUNDLED_SAMPLE)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("runs/grad-targets"))
    a = ap.parse_args()
    res: dict = {"model": a.model, "data": str(a.data), "seconds": {}}
    for targets in ("selected", "all"):
        cfg = AggregateConfig(model=a.model, influence="grad", influence_targets=targets, examples_k=0,
                              batch_size=a.batch)
        t = time.perf_counter()
        aggregate(cfg, a.data, a.out / targets, overwrite=True, workers=0, progress=False)
        res["seconds"][targets] = round(time.perf_counter() - t, 1)
        res["seconds"][f"bare forward (after {targets})"] = round(bare_seconds(a.model, a.data, a.batch), 2)
    runs = {t: Run(a.out / t) for t in ("selected", "all")}
    jac, sizes = [], []
    for ci in range(len(runs["all"].class_names)):
        nodes = {t: set(class_graph(r, ci).nodes) for t, r in runs.items()}
        union = nodes["all"] | nodes["selected"]
        if union:
            jac.append(len(nodes["all"] & nodes["selected"]) / len(union))
            sizes.append((len(nodes["all"]), len(nodes["selected"])))
    bare = statistics.mean(v for k, v in res["seconds"].items() if k.startswith("bare"))
    res["ratio_to_bare"] = {t: round(bare / res["seconds"][t], 4) for t in ("selected", "all")}
    res["speed-up selected vs all"] = round(res["seconds"]["all"] / res["seconds"]["selected"], 1)
    res["node_jaccard"] = {"classes": len(jac), "mean": round(statistics.mean(jac), 3),
                           "median": round(statistics.median(jac), 3), "min": round(min(jac), 3)}
    res["graph_nodes_all_vs_selected_median"] = [statistics.median(s[0] for s in sizes),
                                                 statistics.median(s[1] for s in sizes)]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
