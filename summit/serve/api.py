"""The query service behind the UI: validated, cached answers about one run (classes, graphs,
units, embedding, similarity, feature-vis listings), shared by all request threads."""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from ..errors import SummitError
from ..graph.cache import GraphCache
from ..graph.options import METHODS, GraphOptions, defaults
from ..run.files import file_inside
from ..run.layout import (
    diversity_counts,
    diversity_path,
    examples_path,
    featurevis_path,
)
from ..run.store import HIST_BINS, Run, hist_bin
from .common import INT_MAX, STATIC_DIR, BuildGate, Memo, nbytes, parse_int

DECIMAL = re.compile(r"(?:[0-9]{1,12}(?:\.[0-9]{0,17})?|\.[0-9]{1,17})(?:[eE][-+]?[0-9]{1,3})?")  # 0.075, .5, 1., 5e-2
GRAPH_PARAMS = ("method", "selection", "mass", "mass_step", "ubiquitous", "exclude", "top_n", "min_count",
                "edges_per_node", "min_edge_count", "keep_dangling", "layers")
GRAPH_CACHE_BYTES = 256 * 2**20  # graph JSON kept in memory (LRU), besides the entry limit
INPUTS_CACHE_BYTES = 256 * 2**20  # per-class build inputs (full graphs, PageRank vectors) kept (LRU)
BUILD_QUEUE = 64  # graph build work that may wait for the running build (per process), in re-cuts; more: 503
COLD_COST = 16  # a class without its full graph in memory costs as many re-cuts (its edges; measured: 216 / 13 ms)
EMBEDDING_DEFAULT = "umap"  # the layout the UI shows first (Summit's)


class Api:
    """Validated, cached access to one run (shared by all request threads)."""

    def __init__(self, run_dir: str | os.PathLike, cache_size: int = 256, build_queue: int = BUILD_QUEUE,
                 url_prefix: str = "/api") -> None:
        self.run = Run(run_dir)
        self.url_prefix = url_prefix  # where the app serves this run's unit files (channel_detail's URLs)
        self.root = self.run.path.resolve()
        self.max_channels = max(self.run.channels.values())
        self.graph = Memo(self._graph, cache_size, weigh=len, max_weight=GRAPH_CACHE_BYTES)
        # what a graph build reads that depends only on the class and the PageRank settings (build.class_graph's recall)
        self.graph_inputs = Memo(None, 4 * cache_size, weigh=nbytes, max_weight=INPUTS_CACHE_BYTES)
        self.builds = BuildGate(queue=build_queue)  # computed graphs: one at a time, a bounded queue
        self.layer_matrices = Memo(self._layer_matrices, len(self.run.layers))
        self.layer_examples = Memo(self._layer_examples, len(self.run.layers))
        self.embedding = Memo(self._embedding, 3)
        self.similarity_rows = Memo(self._similarity_rows, len(self.run.layers) + 1)
        self.correct_hist = Memo(self._correct_hist, 1)  # read predictions.parquet once, not per page view
        self.stored_graphs = GraphCache(self.run)  # default-settings graphs precomputed by `summit graphs`
        self.default_graph_params = self.graph_params({}, ())

    # --- validation -------------------------------------------------------------------------
    def cls(self, name: str, status: int = 400) -> int:
        """Class index of a name (or index); unknown names list close matches."""
        try:
            return self.run.class_index(name)
        except SummitError as e:
            raise SummitError(str(e), status=status) from None

    def layer(self, layer: str, status: int = 404) -> str:
        try:
            return self.run.check_layer(layer)
        except SummitError as e:
            raise SummitError(str(e), status=status) from None

    def channel(self, layer: str, raw: str) -> tuple[str, int]:
        """A validated (layer, channel) from path components (404 on anything unknown)."""
        layer = self.layer(layer)
        n = self.run.channels[layer]
        return layer, parse_int("channel", raw, 0, n - 1, status=404)

    def graph_params(self, args: dict[str, str], extra: tuple[str, ...]) -> GraphOptions:
        """Graph options from query parameters (absent ones: the defaults in force), normalized so
        that one graph has one cache key."""
        unknown = sorted(set(args) - set(GRAPH_PARAMS) - set(extra))
        if unknown:
            raise SummitError(f"unknown parameter(s) {', '.join(unknown)}; "
                              f"valid: {', '.join(extra + GRAPH_PARAMS)}")
        d = defaults()

        def num(name: str, default: int | None, lo: int, hi: int) -> int | None:
            raw = args.get(name, "")
            return default if raw == "" else parse_int(name, raw, lo, hi)

        def choice(name: str, valid: tuple[str, ...], default: str) -> str:
            v = args.get(name) or default
            if v not in valid:
                raise SummitError(f"bad {name} {v!r}; valid: {', '.join(valid)}")
            return v

        def fraction(name: str, default: float) -> float:
            raw = args.get(name, "")
            # ASCII decimal only, as parse_int: float() would also take " 1", "0.5\n", "١" or "１"
            v = default if raw == "" else float(raw) if DECIMAL.fullmatch(raw) else -1.0
            if not 0 < v <= 1:
                raise SummitError(f"bad {name} {raw!r}: need a number in (0, 1]")
            return v

        layers = d.layers
        if args.get("layers"):
            layers = tuple(self.layer(l.strip(), status=400) for l in args["layers"].split(","))
        selection = args.get("selection") or d.selection
        if selection is not None and selection not in self.run.selections:
            raise SummitError(f"unknown selection {selection!r}; valid: {', '.join(self.run.selections)}")
        if selection == self.run.check_selection(None):
            selection = None  # named default: the same graph (and the stored one)
        return d.replace(
            method=choice("method", METHODS, d.method), selection=selection, layers=layers,
            hide_ubiquitous=choice("ubiquitous", ("hide", "show"), "hide" if d.hide_ubiquitous else "show") == "hide",
            exclude=tuple(args["exclude"].split(",")) if args.get("exclude") else d.exclude,
            mass=fraction("mass", d.mass), mass_step=fraction("mass_step", d.mass_step),
            top_n=num("top_n", d.top_n, 1, self.max_channels),  # checked under either method
            min_count=num("min_count", d.min_count, 1, INT_MAX),
            edges_per_node=num("edges_per_node", d.edges_per_node, 0, self.max_channels),
            min_edge_count=num("min_edge_count", d.min_edge_count, 1, INT_MAX),
            keep_dangling=choice("keep_dangling", ("0", "1"), "1" if d.keep_dangling else "0") == "1",
        ).normalized()

    # --- cached computations ----------------------------------------------------------------
    def _graph(self, a: int, b: int | None, params: GraphOptions, images: str = "all") -> bytes:
        """node-link JSON (UTF-8 bytes) of a class graph (b is None; of the class's ``images``
        part, mistakes.py) or of the comparison of a and b: the stored one (all images, default
        settings), else built when ``builds`` has room for its cost (503 when its queue is full)."""
        from ..graph.build import class_graph, compare_graph
        from ..graph.cache import graph_bytes
        stored = self.stored_graphs.get(a) if b is None and images == "all" and params == self.default_graph_params \
            else None
        if stored is not None:
            return stored
        recall = self.graph_inputs.get
        part = () if images == "all" else (images,)  # a part's build inputs are kept under keys led by its name
        cost = sum(1 + COLD_COST * ((*part, "edges", c) not in self.graph_inputs)
                   for c in ((a,) if b is None else (a, b)))
        with self.builds.slot(cost):
            G = class_graph(self.run, a, params, recall, images=images) if b is None \
                else compare_graph(self.run, a, b, params, recall)
            return graph_bytes(G)

    def _embedding(self, method: str) -> list[dict]:
        """Every layer's class layout: the stored one (computed and stored on first use); computed
        without storing when the run directory is read-only."""
        from ..graph.embedding import class_embedding, load_embedding
        try:
            return load_embedding(self.run, method)
        except OSError:
            return class_embedding(self.run, method)

    def _layer_matrices(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(count, sum) matrices (n_classes, channels) of one layer."""
        return self.run.activation_matrix(layer, "count"), self.run.activation_matrix(layer, "sum")

    def _layer_examples(self, layer: str) -> dict[int, list[dict]]:
        """Dataset example rows of one layer, per channel, best first."""
        t = self.run.examples(layer)
        out: dict[int, list[dict]] = {}
        if t is None:
            return out
        for row in sorted(t.to_pylist(), key=lambda r: (r["channel"], r["rank"])):
            out.setdefault(row["channel"], []).append(row)
        return out

    # --- files -------------------------------------------------------------------------------
    def examples_file(self, layer: str, channel: int) -> Path | None:
        """The dataset-example strip of a validated unit, if stored inside the run."""
        return file_inside(examples_path(self.root, layer, channel), self.root)

    def featurevis_file(self, layer: str, channel: int) -> Path | None:
        """The rendered feature visualization of a validated unit, if inside the run."""
        return file_inside(Path(featurevis_path(self.root, layer, channel)), self.root)

    def featurevis_channels(self, layer: str) -> list[int]:
        """Channels of a layer with a rendered feature visualization."""
        d = self.root / "featurevis" / layer
        if not d.is_dir():
            return []
        n = self.run.channels[layer]
        chans = (int(p.stem) for p in d.glob("*.png") if re.fullmatch(r"[0-9]{1,9}", p.stem))
        return sorted(c for c in chans if c < n and self.featurevis_file(layer, c))

    # --- responses ---------------------------------------------------------------------------
    def meta(self) -> dict:
        m = self.run.meta
        d = m["dataset"]
        n_img = int(sum(self.run.classes.column("n_images").to_pylist()))
        return {
            "model": m["model"], "weights": m["weights"], "k": m.get("k"),
            "k_influence": m.get("k_influence"), "examples_k": m.get("examples_k"),
            "layers": [{"name": l, "channels": self.run.channels[l]} for l in self.run.layers],
            "pairs": [{k: p.get(k) for k in ("name", "src", "dst", "method", "bottleneck")} for p in m["pairs"]],
            "selections": self.run.selections, "default_selection": self.run.check_selection(None),
            "ubiquitous": (m.get("ubiquitous") or {}).get("channels", []),
            "dataset": {"n_files": d.get("n_files"), "n_images": n_img, "n_skipped": d.get("n_skipped"),
                        "n_classes": len(self.run.class_names)},
            "has_examples": (self.root / "examples.parquet").is_file(),
            "featurevis": {l: self.featurevis_channels(l) for l in self.run.layers},
            "pages": sorted(p.name for p in STATIC_DIR.glob("*.html") if p.name != "index.html"),
            "graph_defaults": defaults().as_dict(), "graph_methods": list(METHODS),
            "split_correct": bool(m.get("split_correct")),  # graphs of a class's correct / wrong images (mistakes.py)
        }

    def classes(self) -> list[dict]:
        cols = [c for c in ("class", "name", "wnid", "label", "n_images", "n_correct", "hist")
                if c in self.run.classes.column_names]
        rows = self.run.classes.select(cols).to_pylist()
        correct = self.correct_hist()
        for r in rows:
            ok = r["n_correct"] is not None and r["n_images"]
            r["accuracy"] = r["n_correct"] / r["n_images"] if ok else None
            r["hist_correct"] = None if correct is None or r["n_correct"] is None else correct[r["class"]].tolist()
        return rows

    def _correct_hist(self) -> np.ndarray | None:
        """(n_classes, HIST_BINS) top-1 probability histogram of each class's correctly classified
        images (predictions.parquet; None for runs without it). With ``hist`` it splits the
        class's histogram into correct and mistaken images."""
        t = self.run.predictions()
        if t is None:
            return None
        top1 = pc.list_element(t.column("top_prob"), 0).to_numpy(zero_copy_only=False).astype(np.float64)
        ok = t.column("correct").fill_null(False).to_numpy(zero_copy_only=False)
        bins = hist_bin(top1)
        out = np.zeros((len(self.run.class_names), HIST_BINS), dtype=np.int64)
        np.add.at(out, (t.column("class").to_numpy()[ok], bins[ok]), 1)
        return out

    def layer_units(self, layer: str, top: int = 3) -> dict:
        count, _ = self.layer_matrices(layer)
        fv = set(self.featurevis_channels(layer))
        ex = self.layer_examples(layer)
        total = count.sum(0)
        order = np.argsort(-count, axis=0, kind="stable")[:top]
        names = self.run.class_names
        units = []
        for c in range(count.shape[1]):
            tops = [{"class": int(i), "name": names[i], "count": int(count[i, c])}
                    for i in order[:, c] if count[i, c] > 0]
            units.append({"channel": c, "count": int(total[c]), "top_classes": tops,
                          "has_featurevis": c in fv, "n_examples": len(ex.get(c, ()))})
        return {"layer": layer, "channels": int(count.shape[1]), "units": units}

    def channel_detail(self, layer: str, channel: int, top: int = 10) -> dict:
        count, sums = self.layer_matrices(layer)
        n_img = np.asarray(self.run.classes.column("n_images").to_pylist(), dtype=np.float64)
        col, scol = count[:, channel], sums[:, channel]
        order = [int(i) for i in np.argsort(-col, kind="stable")[:top] if col[i] > 0]
        names = self.run.class_names
        per_class = [{"class": i, "name": names[i], "count": int(col[i]),
                      "fraction": float(col[i] / n_img[i]) if n_img[i] else None,
                      "mean": float(scol[i] / n_img[i]) if n_img[i] else None} for i in order]
        fv = self.featurevis_file(layer, channel) is not None
        ex = self.layer_examples(layer).get(channel, [])
        return {
            "layer": layer, "channel": channel, "id": f"{layer}:{channel}",
            "count": int(col.sum()), "n_images": int(n_img.sum()),
            "mean_activation": float(scol.sum() / n_img.sum()) if n_img.sum() else None,
            "top_classes": per_class, "examples": ex,
            "examples_url": f"{self.url_prefix}/examples/{layer}/{channel}.jpg" if ex else None,
            "has_featurevis": fv,
            "featurevis_url": f"{self.url_prefix}/featurevis/{layer}/{channel}.png" if fv else None,
        }

    # --- class similarity, feature vis listing, warm-up --------------------------------------
    def _similarity_rows(self, layer: str | None) -> np.ndarray:
        """The embedding's class vectors (A rows of the embedding selection) of one layer, or of
        all layers side by side, scaled to unit length: their dot products are cosine similarities."""
        from ..graph.embedding import class_vectors
        m = np.concatenate([class_vectors(self.run, l, None) for l in ([layer] if layer else self.run.layers)],
                           axis=1)
        norm = np.linalg.norm(m, axis=1, keepdims=True)
        return np.divide(m, norm, out=np.zeros_like(m), where=norm > 0)

    def similar(self, cls: int, layer: str | None) -> dict:
        """Cosine similarity of every class's A row to class `cls`'s (in `layer`, None: all)."""
        u = self.similarity_rows(layer)
        return {"class": self.run.class_names[cls], "layer": layer,
                "similarity": np.round(u @ u[cls], 6).tolist()}

    def diversity_file(self, layer: str, channel: int, i: int) -> Path | None:
        """A rendered diversity image of a validated unit, if inside the run."""
        return file_inside(diversity_path(self.root, layer, channel, i), self.root)

    def featurevis_listing(self) -> dict:
        """Rendered feature vis and diversity images per layer, and a stamp that changes when
        ``summit render`` adds or replaces images (pages poll it)."""
        base = self.root / "featurevis"
        watched = [base, *(base / l for l in self.run.layers), *base.glob("*.json")]
        stamp = max((p.stat().st_mtime_ns for p in watched if p.exists()), default=0)
        return {"featurevis": {l: self.featurevis_channels(l) for l in self.run.layers},
                "diversity": {l: {str(c): n for c, n in diversity_counts(self.root, l).items()
                                  if self.diversity_file(l, c, 0)} for l in self.run.layers},
                "stamp": str(stamp)}

    def warm_up(self) -> threading.Thread:
        """Load what a first page view needs besides the graph tables (loaded by ``create_app``) in
        the background: the stored embedding and the class similarity rows. Errors are left to the
        requests."""
        def work() -> None:
            for step in (lambda: self.embedding(EMBEDDING_DEFAULT), lambda: self.similarity_rows(None)):
                try:
                    step()
                except Exception:  # noqa: BLE001 - the request that needs it reports it
                    pass
        t = threading.Thread(target=work, name="summit-warm-up", daemon=True)
        t.start()
        return t
