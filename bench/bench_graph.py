"""Benchmark class-graph building on a synthetic 1000-class GoogLeNet-sized run.

Synthesizes a run directory with the schema of summit.aggregate.Aggregator.write (9 inception
layers, 50 images per class, top-k=5 activation counts, sparse influence with ``--fanin``
distinct sources per destination channel, class, and layer pair), then times opening the run,
the first graph (loads the dense activation matrices), the median per-class graph build (with
and without the server's JSON encoding), and with ``--store`` the stored graphs of every class
(``summit graphs``: build time, and the time to answer one class from them).

    python bench/bench_graph.py [--classes 1000] [--fanin 15] [--out DIR] [--reuse] [--store]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from summit.graph.build import class_graph, compare_graph
from summit.graph.embedding import class_embedding
from summit.run.files import write_json, write_table
from summit.run.store import ACTIVATION_SCHEMA, CLASS_SCHEMA, SCHEMA_VERSION, Run, array_rows, write_influence

LAYERS = {"inception3a": 256, "inception3b": 480, "inception4a": 512, "inception4b": 512, "inception4c": 512,
          "inception4d": 528, "inception4e": 832, "inception5a": 832, "inception5b": 1024}
K = 5


def synthesize(out: Path, n_classes: int, n_images: int, fanin: int, seed: int = 0) -> None:
    """Write run.json, classes, activations and influence tables of a plausible run."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{i:03d}_class_{i}" for i in range(n_classes)]
    write_table(pa.table({"class": np.arange(n_classes, dtype=np.int32), "name": names,
                          "wnid": [None] * n_classes, "label": names,
                          "model_index": np.arange(n_classes, dtype=np.int32),
                          "n_images": np.full(n_classes, n_images, dtype=np.int64),
                          "n_correct": rng.integers(0, n_images + 1, n_classes),
                          "hist": [rng.multinomial(n_images, [0.1] * 10) for _ in range(n_classes)]},
                         schema=CLASS_SCHEMA),
                out / "classes.parquet")
    # per class and layer, a Zipf-like preference over a class-specific channel order
    prob = {}
    cols: dict[str, list] = {k: [] for k in ACTIVATION_SCHEMA.names}
    for layer, c in LAYERS.items():
        w = 1.0 / np.arange(1, c + 1) ** 1.1
        p = np.stack([w[rng.permutation(c)] for _ in range(n_classes)])
        prob[layer] = p / p.sum(1, keepdims=True)
        count = np.minimum(rng.multinomial(K * n_images, prob[layer]), n_images)
        base = rng.gamma(2.0, 1.0, c)
        cols["selection"].append(np.full(n_classes * c, "mass0.03", dtype=object))
        cols["layer"].append(np.full(n_classes * c, layer, dtype=object))
        cols["class"].append(np.repeat(np.arange(n_classes, dtype=np.int32), c))
        cols["channel"].append(np.tile(np.arange(c, dtype=np.int32), n_classes))
        cols["count"].append(count.reshape(-1))
        cols["sum"].append((n_images * base + count * 2.0 * base).reshape(-1))
    write_table(pa.table({k: np.concatenate(v) for k, v in cols.items()}, schema=ACTIVATION_SCHEMA),
                out / "activations.parquet", row_group_size=1 << 20)
    layers = list(LAYERS)
    parts = []
    for src, dst in zip(layers, layers[1:]):
        cin, cout = LAYERS[src], LAYERS[dst]
        cls_l, src_l, dst_l, cnt_l = [], [], [], []
        for ci in range(n_classes):
            s = rng.choice(cin, size=cout * fanin, p=prob[src][ci])
            key = np.unique(np.repeat(np.arange(cout, dtype=np.int64), fanin) * cin + s)
            cls_l.append(np.full(len(key), ci, dtype=np.int32))
            src_l.append((key % cin).astype(np.int32))
            dst_l.append((key // cin).astype(np.int32))
            cnt_l.append(np.minimum(rng.geometric(0.15, len(key)), n_images))
        parts.append((f"{src}->{dst}", array_rows(np.concatenate(cls_l), np.concatenate(src_l),
                                                  np.concatenate(dst_l), np.concatenate(cnt_l))))
    write_influence(out / "influence.parquet", parts, n_classes)
    write_json({"schema_version": SCHEMA_VERSION, "partial": False, "shard": None, "model": "googlenet",
                "weights": "synthetic", "k": K, "k_influence": K, "examples_k": 0, "image_size": 224,
                "config": {"model": "googlenet", "synthetic": True, "classes": n_classes, "fanin": fanin,
                           "seed": seed},
                "layers": [{"name": l, "module": l, "channels": c} for l, c in LAYERS.items()],
                "pairs": [{"name": f"{s}->{d}", "src": s, "dst": d, "method": "conv", "routes": 1}
                          for s, d in zip(layers, layers[1:])],
                "influence_method": ["conv"], "selections": ["mass0.03"],
                "dataset": {"root": None, "n_files": n_classes * n_images, "n_images": n_classes * n_images,
                            "n_skipped": 0, "skipped": []}}, out / "run.json")


def _ms(f) -> float:
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    from summit.graph.cache import GraphCache, graph_bytes, store_graphs  # (kept apart from the synthesis imports)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--images", type=int, default=50, help="images per class (default 50, ImageNet val)")
    ap.add_argument("--fanin", type=int, default=15, help="distinct sources per destination (default 15)")
    ap.add_argument("--out", type=Path, default=None, help="keep the synthetic run here")
    ap.add_argument("--reuse", action="store_true", help="use an existing --out run as is")
    ap.add_argument("--store", action="store_true", help="also time `summit graphs` (every class) and a stored answer")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = a.out or Path(tmp) / "run"
        if not (a.reuse and (out / "run.json").is_file()):
            t = time.perf_counter()
            synthesize(out, a.classes, a.images, a.fanin)
            print(f"synthesized {out} in {time.perf_counter() - t:.1f}s")
        sizes = {p.name: p.stat().st_size / 2**20 for p in out.glob("*.parquet")}
        print("files: " + ", ".join(f"{n} {s:.1f} MiB" for n, s in sorted(sizes.items())))
        t = time.perf_counter()
        run = Run(out)
        open_ms = (time.perf_counter() - t) * 1000
        first_ms = _ms(lambda: class_graph(run, 0))
        classes = np.random.default_rng(1).choice(np.arange(1, len(run.class_names)), 20, replace=False)
        per_class, as_json, rows, sizes_g = [], [], [], []
        for c in classes.tolist():
            t = time.perf_counter()
            G = class_graph(run, c)
            per_class.append((time.perf_counter() - t) * 1000)
            as_json.append(per_class[-1] + _ms(lambda G=G: graph_bytes(G)))
            sizes_g.append((G.number_of_nodes(), G.number_of_edges()))
            rows.append(run.influence(c).num_rows)
        read_ms = statistics.median(_ms(lambda c=c: run.influence(c)) for c in classes.tolist())
        cmp_ms = statistics.median(_ms(lambda c=c: compare_graph(run, c, (c + 1) % len(run.class_names)))
                                   for c in classes[:10].tolist())
        emb_ms = _ms(lambda: class_embedding(run, "pca"))  # every layer
        print(f"open Run: {open_ms:.1f} ms; first graph (loads dense activations): {first_ms:.0f} ms")
        print(f"class_graph median over 20 classes: {statistics.median(per_class):.1f} ms "
              f"(min {min(per_class):.1f}, max {max(per_class):.1f}); of which run.influence(class) "
              f"median {read_ms:.1f} ms for {int(statistics.median(rows))} rows")
        print(f"graph size (default settings) median: {statistics.median(n for n, _ in sizes_g)} nodes, "
              f"{statistics.median(e for _, e in sizes_g)} edges")
        print(f"class_graph + server JSON median: {statistics.median(as_json):.1f} ms "
              f"(p90 {np.percentile(as_json, 90):.1f})")
        print(f"compare_graph median over 10 pairs: {cmp_ms:.1f} ms; class_embedding pca (all layers): {emb_ms:.0f} ms")
        if a.store:
            t = time.perf_counter()
            store_graphs(run, progress=False)
            build_s = time.perf_counter() - t
            stored = GraphCache(run)
            stored.get(0)  # reads the file
            get_ms = statistics.median(_ms(lambda c=c: stored.get(c)) for c in classes.tolist())
            print(f"stored graphs (summit graphs) of {len(run.class_names)} classes: built in {build_s:.1f} s "
                  f"({build_s * 1000 / len(run.class_names):.1f} ms per class); one stored answer "
                  f"{get_ms * 1000:.1f} us median")


if __name__ == "__main__":
    main()
