"""predictions.parquet: every image's run class and the model's top-5 outputs, from the pass."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from summit.model.models import load_model
from summit.model.pixels import image_transform
from summit.pipeline.data import BUNDLED_SAMPLE, open_rgb
from summit.run.store import Run


def test_predictions_match_an_independent_forward(sample_run: Path) -> None:
    run = Run(sample_run)
    t = run.predictions()
    assert t is not None and t.equals(pq.read_table(sample_run / "predictions.parquet"))
    rows = t.to_pylist()
    n_images = run.classes.column("n_images").to_pylist()
    assert len(rows) == sum(n_images) == run.meta["dataset"]["n_images"]
    assert [r["image"] for r in rows] == sorted(r["image"] for r in rows)
    spec = load_model(run.meta["model"], run.meta["weights"])
    names = run.class_names
    picked = rows[::9]  # 9 images of several classes
    x = torch.stack([image_transform(run.meta["image_size"])(open_rgb(BUNDLED_SAMPLE / r["path"])) for r in picked])
    with torch.no_grad():
        p, i = spec.model(x).softmax(1).topk(5, dim=1)
    for r, pi, ii in zip(picked, p.numpy(), i.numpy()):
        assert names[r["class"]] == Path(r["path"]).parent.name
        assert r["top"] == ii.tolist() and np.allclose(r["top_prob"], pi, atol=1e-5)
        assert r["top_prob"] == sorted(r["top_prob"], reverse=True)


def test_predictions_agree_with_the_class_counts(sample_run: Path) -> None:
    run = Run(sample_run)
    rows = run.predictions().to_pylist()
    model_index = run.classes.column("model_index").to_pylist()
    for c, (n, n_correct) in enumerate(zip(run.classes.column("n_images").to_pylist(),
                                           run.classes.column("n_correct").to_pylist())):
        mine = [r for r in rows if r["class"] == c]
        assert len(mine) == n
        assert sum(r["correct"] for r in mine) == n_correct
        assert all(r["correct"] == (r["top"][0] == model_index[c]) for r in mine)
    hist = np.zeros((len(run.class_names), 10), dtype=int)
    for r in rows:
        hist[r["class"], min(9, int(r["top_prob"][0] * 10))] += 1
    assert hist.tolist() == run.classes.column("hist").to_pylist()
