"""Class embedding: one layout per layer (UMAP as Summit, PCA, t-SNE), stored and reloaded."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from summit.cli import main
from summit.graph.embedding import EMBEDDING_METHODS, class_embedding, load_embedding, write_embedding
from summit.model.models import SummitError
from summit.run.store import Run


@pytest.fixture
def run(sample_run: Path, tmp_path: Path) -> Run:
    dest = tmp_path / "run"
    dest.mkdir()
    for name in ("run.json", "classes.parquet", "activations.parquet", "influence.parquet"):
        shutil.copy(sample_run / name, dest / name)
    return Run(dest)


def test_every_method_gives_one_layout_per_layer(run):
    n = len(run.class_names)
    layouts = {m: class_embedding(run, m) for m in EMBEDDING_METHODS}
    for method, rows in layouts.items():
        assert [r["layer"] for r in rows] == [l for l in run.layers for _ in range(n)]
        assert all(math.isfinite(r["x"]) and math.isfinite(r["y"]) and r["method"] == method for r in rows)
        for l in run.layers:
            pts = {(round(r["x"], 6), round(r["y"], 6)) for r in rows if r["layer"] == l}
            assert len(pts) > 1, (method, l)
    one = class_embedding(run, "umap", layer="fire3")
    assert {r["layer"] for r in one} == {"fire3"} and len(one) == n
    # the layer's layout is the same whether asked alone or with all layers (chained init, fixed seed)
    all_rows = [r for r in layouts["umap"] if r["layer"] == "fire3"]
    assert [r["x"] for r in one] == pytest.approx([r["x"] for r in all_rows])


def test_pca_equals_svd_of_the_embedding_selection(run, sample_run):
    t = pq.read_table(sample_run / "activations.parquet").to_pandas()
    t = t[(t.selection == "mass0.01") & (t.layer == "fire7")].sort_values(["class", "channel"])
    x = t["count"].to_numpy(float).reshape(len(run.class_names), -1)
    x /= run.classes.column("n_images").to_numpy()[:, None]
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    pca = np.array([[r["x"], r["y"]] for r in class_embedding(run, "pca", layer="fire7")])
    np.testing.assert_allclose(np.abs(pca), np.abs(u[:, :2] * s[:2]), atol=1e-9)


def test_store_and_reload(run):
    path = write_embedding(run, "pca")
    t = pq.read_table(path)
    assert t.column_names == ["layer", "class", "name", "x", "y", "method"]
    assert t.num_rows == len(run.class_names) * len(run.layers)
    mtime = path.stat().st_mtime_ns
    stored = load_embedding(run, layer="fire9")
    assert path.stat().st_mtime_ns == mtime and {r["method"] for r in stored} == {"pca"}
    assert [r["n_images"] for r in stored] == run.classes.column("n_images").to_pylist()
    assert load_embedding(run, "tsne")[0]["method"] == "tsne"
    with pytest.raises(SummitError, match="valid: umap, pca, tsne"):
        class_embedding(run, "mds")
    with pytest.raises(SummitError, match="unknown layer"):
        load_embedding(run, layer="fire99")
    assert main(["export", "--run", str(run.path), "--embedding", "--embedding-method", "pca"]) == 0
    assert set(pq.read_table(path).column("method").to_pylist()) == {"pca"}
