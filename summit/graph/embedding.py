"""Class embedding: 2-D layouts of the classes from their activation rows, one per layer.

Summit's rule (``method="umap"``, the default): per layer, UMAP of the classes' A rows (Summit's
embedding selection mass0.01) with the cosine metric, 15 neighbours, min_dist 0.1 and a fixed
seed, each layer initialised from the previous layer's layout so that classes move little from
layer to layer. Options: ``pca`` (first two principal components) and ``tsne`` (scikit-learn,
cosine metric, PCA initialisation). Layouts are stored in ``embedding.parquet`` in the run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import SummitError
from ..run.files import write_table
from ..run.store import Run
from .matrices import dense

EMBEDDING_METHODS = ("umap", "pca", "tsne")
EMBEDDING_FILE = "embedding.parquet"
EMBEDDING_SCHEMA = pa.schema([("layer", pa.string()), ("class", pa.int32()), ("name", pa.string()),
                              ("x", pa.float64()), ("y", pa.float64()), ("method", pa.string())])
UMAP_NEIGHBORS, UMAP_MIN_DIST = 15, 0.1


def class_vectors(run: Run, layer: str, selection: str | None) -> np.ndarray:
    """A counts of one layer per class, divided by the class's n_images."""
    d = dense(run, run.check_selection(selection, "embedding"))
    start = d.offsets[run.check_layer(layer)]
    return d.count[:, start:start + run.channels[layer]] / np.maximum(d.n_images, 1)[:, None]


def _flip(y: np.ndarray) -> np.ndarray:
    """Deterministic sign per column: the entry of largest magnitude is positive."""
    signs = np.sign(y[np.abs(y).argmax(0), np.arange(y.shape[1])])
    return y * np.where(signs == 0, 1, signs)


def _pca(x: np.ndarray) -> np.ndarray:
    """PCA scores (U * S of the centered data) from the n x n Gram matrix: n classes << channels."""
    xc = x - x.mean(0)
    w, v = np.linalg.eigh(xc @ xc.T)
    top = np.argsort(w)[::-1][:2]
    out = np.zeros((len(x), 2))
    y = _flip(v[:, top] * np.sqrt(np.clip(w[top], 0.0, None)))
    out[:, :y.shape[1]] = y
    return out


def _umap(x: np.ndarray, init: np.ndarray | None, seed: int) -> np.ndarray:
    """UMAP (cosine) of the rows; rows without any selected channel get a tiny uniform vector so
    that the cosine metric is defined."""
    if len(x) <= 3:
        return _pca(x)
    import umap
    x = x + 1e-9
    start = "spectral" if init is None else (init - init.mean(0)) / max(float(np.abs(init).max()), 1e-12) * 10
    return umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(UMAP_NEIGHBORS, len(x) - 1),
                     min_dist=UMAP_MIN_DIST, random_state=seed, n_jobs=1, init=start).fit_transform(x)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    if len(x) <= 3:
        return _pca(x)
    from sklearn.manifold import TSNE
    return TSNE(2, metric="cosine", init="pca", perplexity=min(30.0, (len(x) - 1) / 3.0),
                random_state=seed).fit_transform(x + 1e-9)


def class_embedding(run: Run, method: str = "umap", layer: str | None = None, selection: str | None = None,
                    seed: int = 0) -> list[dict]:
    """Positions of all classes per layer (rows: layer, class, name, x, y, n_images, method);
    ``layer`` restricts the result to one layer (UMAP still chains from the first layer)."""
    if method not in EMBEDDING_METHODS:
        raise SummitError(f"unknown embedding method {method!r}; valid: {', '.join(EMBEDDING_METHODS)}")
    if layer is not None:
        run.check_layer(layer)
    n_images = dense(run, run.check_selection(selection, "embedding")).n_images
    rows, prev = [], None
    for l in run.layers:
        x = class_vectors(run, l, selection)
        y = {"umap": lambda: _umap(x, prev, seed), "pca": lambda: _pca(x), "tsne": lambda: _tsne(x, seed)}[method]()
        prev = y
        if layer in (None, l):
            rows += [{"layer": l, "class": i, "name": name, "x": float(y[i, 0]), "y": float(y[i, 1]),
                      "n_images": int(n_images[i]), "method": method} for i, name in enumerate(run.class_names)]
        if l == layer:
            break
    return rows


def _run_key(run: Run) -> str:
    """Identifies the run's contents, so that an embedding of an overwritten run is recomputed."""
    return json.dumps([run.meta.get("config"), run.class_names], sort_keys=True)


def write_embedding(run: Run, method: str = "umap") -> Path:
    """Compute every layer's class layout and store them as embedding.parquet in the run."""
    rows = class_embedding(run, method)
    table = pa.Table.from_pylist([{k: r[k] for k in EMBEDDING_SCHEMA.names} for r in rows], schema=EMBEDDING_SCHEMA)
    path = run.path / EMBEDDING_FILE
    write_table(table.replace_schema_metadata({"summit_run": _run_key(run)}), path)
    return path


def load_embedding(run: Run, method: str | None = None, layer: str | None = None) -> list[dict]:
    """Stored layouts (of one layer, or all), computed and stored if missing, stale, from an
    older schema, or made with another method than `method` (None: whichever is stored, else umap)."""
    path = run.path / EMBEDDING_FILE
    t = pq.read_table(path) if path.is_file() else None
    meta = (t.schema.metadata or {}) if t is not None else {}
    stored = t.column("method")[0].as_py() if t is not None and t.num_rows else None
    if t is None or "layer" not in t.column_names or meta.get(b"summit_run", b"").decode() != _run_key(run) or \
            (method is not None and method != stored):
        write_embedding(run, method or "umap")
        t = pq.read_table(path)
    if layer is not None:
        run.check_layer(layer)
        t = t.filter(pc.field("layer") == layer)
    n_images = run.classes.column("n_images").to_numpy()
    return [{**r, "n_images": int(n_images[r["class"]])} for r in t.to_pylist()]
