"""`aggregate --split-correct`: A, sums, histograms and I counted apart for each class's correctly
and wrongly classified images (docs/MISTAKES.md), checked against a brute force over the images
predictions.parquet marks, against the run without the split, and under resume, shards + merge
and torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from cli_runner import CliRunner

from summit.errors import SummitError
from summit.model.hooks import Taps
from summit.model.models import load_model
from summit.pipeline.activations import FIXED_POINT
from summit.pipeline.aggregator import AggregateConfig, Aggregator, aggregate, merge
from summit.pipeline.data import collate
from summit.pipeline.sources import open_source
from summit.run.layout import SPLIT_PARTS, split_dir
from summit.run.selection import mass_select, top_select
from summit.run.store import Run

# 40 files: classes 0-9 of the bundled sample, with all-correct, all-wrong and mixed classes
CFG = AggregateConfig(model="squeezenet1_1", layers=["fire2", "fire3"], batch_size=8, examples_k=1, limit=40,
                      split_correct=False)
SPLIT = replace(CFG, split_correct=True)
TABLES = ("classes.parquet", "activations.parquet", "influence.parquet")


def tree_bytes(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def run_bytes(d: Path) -> dict[str, bytes]:
    """Every file but run.json (whose config records the split)."""
    return {k: v for k, v in tree_bytes(d).items() if k != "run.json"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mistakes")
    aggregate(CFG, None, d / "plain", progress=False, workers=0)
    aggregate(SPLIT, None, d / "split", progress=False, workers=0)
    return {"plain": d / "plain", "split": d / "split"}


def test_split_counts_equal_a_brute_force_over_the_images(runs: dict[str, Path]) -> None:
    """Per image (the pass's own batches, so the floats are the same), its selections, spatial
    maxima and top-1 probability are added to its class's correct or wrong part as
    predictions.parquet marks it; the split tables hold exactly those counts."""
    run = Run(runs["split"])
    pred = pq.read_table(runs["split"] / "predictions.parquet").to_pandas()
    wrong = dict(zip(pred["image"], ~pred["correct"].astype(bool)))
    assert 0 < sum(wrong.values()) < len(wrong)
    spec = load_model(CFG.model)
    ds = open_source(None, CFG.image_size, spec.class_names)
    n_cls = len(run.class_names)
    want = {(part, sel, l): np.zeros((n_cls, run.channels[l]), np.int64)
            for part in SPLIT_PARTS for sel in run.selections for l in run.layers}
    sums = {(part, l): np.zeros((n_cls, run.channels[l]), np.int64) for part in SPLIT_PARTS for l in run.layers}
    n_images = {part: np.zeros(n_cls, np.int64) for part in SPLIT_PARTS}
    hist = {part: np.zeros((n_cls, 10), np.int64) for part in SPLIT_PARTS}
    with Taps(spec.model.net, outputs=[spec.layers[l] for l in run.layers]) as taps, torch.no_grad():
        for b in range(0, CFG.limit, CFG.batch_size):
            batch = collate([ds[i] for i in range(b, b + CFG.batch_size)])
            top1 = spec.model(batch["image"]).float().softmax(1).max(1).values
            for r, (i, c) in enumerate(zip(batch["index"].tolist(), batch["label"].tolist())):
                part = "wrong" if wrong[i] else "correct"
                n_images[part][c] += 1
                hist[part][c, min(int(top1[r].item() * 10), 9)] += 1
                for l in run.layers:
                    m = taps.out[spec.layers[l]][r:r + 1].flatten(2).amax(2).float()
                    sums[(part, l)][c] += (m[0].double() * FIXED_POINT).round().long().numpy()
                    for sel in run.selections:
                        chosen = top_select(m, int(sel[3:])) if sel.startswith("top") else \
                            mass_select(m, float(sel[4:]))
                        want[(part, sel, l)][c] += chosen[0].numpy()
    for part in SPLIT_PARTS:
        view = run.images(part)
        assert view.classes.column("n_images").to_pylist() == n_images[part].tolist()
        assert np.array(view.classes.column("hist").to_pylist()).tolist() == hist[part].tolist()
        for (p, sel, l), counts in want.items():
            if p == part:
                assert np.array_equal(view.activation_matrix(l, "count", sel), counts), (part, sel, l)
        for l in run.layers:
            assert np.array_equal(view.activation_matrix(l, "sum") * FIXED_POINT, sums[(part, l)]), (part, l)


def test_split_influence_counts_every_image_of_its_part(runs: dict[str, Path]) -> None:
    """Each image adds min(k, sources) sources to every destination of every stage: per class and
    stage, a part's counts sum to its images times that."""
    run = Run(runs["split"])
    k = run.meta["k_influence"]
    for part in SPLIT_PARTS:
        view = run.images(part)
        infl = pq.read_table(split_dir(run.path, part) / "influence.parquet").to_pandas()
        n = view.classes.column("n_images").to_numpy()
        for st in run.stages:
            per_class = infl[infl.layer_pair == st["name"]].groupby("class")["count"].sum()
            got = per_class.reindex(range(len(n)), fill_value=0).to_numpy()
            width = sum(b - a for a, b in st["dst_ranges"])
            assert np.array_equal(got, n * min(k, st["src_channels"]) * width), (part, st["name"])


def test_all_images_tables_are_the_plain_runs_and_the_sum_of_the_parts(runs: dict[str, Path]) -> None:
    plain, split = run_bytes(runs["plain"]), run_bytes(runs["split"])
    assert {k: v for k, v in split.items() if not k.startswith("split/")} == plain
    assert sorted(k for k in split if k.startswith("split/")) == [f"split/{p}/{t}" for p in SPLIT_PARTS
                                                                  for t in sorted(TABLES)]
    tables = {p: {t: pq.read_table(split_dir(runs["split"], p) / t).to_pandas() for t in TABLES} for p in SPLIT_PARTS}
    whole = {t: pq.read_table(runs["split"] / t).to_pandas() for t in TABLES}
    key = ["selection", "layer", "class", "channel"]
    a = tables["correct"]["activations.parquet"].set_index(key)
    b = tables["wrong"]["activations.parquet"].set_index(key)
    w = whole["activations.parquet"].set_index(key)
    assert (a["count"] + b["count"]).equals(w["count"])
    np.testing.assert_allclose(a["sum"] + b["sum"], w["sum"], rtol=0, atol=2 / FIXED_POINT)
    key = ["layer_pair", "class", "src", "dst"]
    both = pd.concat([tables[p]["influence.parquet"] for p in SPLIT_PARTS]).groupby(key)["count"].sum()
    assert both.equals(whole["influence.parquet"].set_index(key)["count"].sort_index())
    wc = tables["correct"]["classes.parquet"]
    assert wc["n_images"].tolist() == whole["classes.parquet"]["n_correct"].tolist()
    meta = {n: json.loads((runs[n] / "run.json").read_text()) for n in ("plain", "split")}
    assert meta["plain"]["split_correct"] is False and "split_correct" not in meta["plain"]["config"]
    assert meta["split"]["split_correct"] is True and meta["split"]["config"]["split_correct"] is True


def interrupted(out: Path, cfg: AggregateConfig, batches: int) -> Path:
    """A pass stopped after its first `batches` batches, its checkpoint where `aggregate` looks."""
    spec = load_model(cfg.model, cfg.weights, cfg.layers)
    agg = Aggregator(cfg, open_source(None, cfg.image_size, spec.class_names), spec)
    n, agg.n = agg.n, batches * cfg.batch_size
    agg.run(progress=False)
    agg.n = n
    out.mkdir(parents=True)
    ckpt = out / "checkpoint-0of1.npz"
    agg.save_state(ckpt)
    return ckpt


@pytest.mark.parametrize("name, cfg", [("split", SPLIT), ("plain", CFG)])
def test_resume_is_byte_identical(runs: dict[str, Path], tmp_path: Path, name: str, cfg: AggregateConfig) -> None:
    out = tmp_path / "run"
    interrupted(out, cfg, 2)
    rep = aggregate(cfg, None, out, resume=True, progress=False, workers=0)
    assert rep["resumed_images"] == 16 and rep["images_this_run"] == 24
    assert tree_bytes(out) == tree_bytes(runs[name])


@pytest.mark.parametrize("saved, resumed", [(SPLIT, CFG), (CFG, SPLIT)])
def test_resume_with_the_other_split_setting_is_refused(saved: AggregateConfig, resumed: AggregateConfig,
                                                        tmp_path: Path) -> None:
    ckpt = interrupted(tmp_path / "run", saved, 1)
    with pytest.raises(SummitError, match=r"different settings \(split_correct\)"):
        aggregate(resumed, None, tmp_path / "run", resume=True, progress=False, workers=0)
    assert ckpt.exists() and not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize("name, cfg", [("split", SPLIT), ("plain", CFG)])
def test_shards_merge_byte_identical(runs: dict[str, Path], tmp_path: Path, name: str, cfg: AggregateConfig) -> None:
    """Also shards without the split (whose key, like an older summit's, does not name it)."""
    for i in range(2):
        aggregate(cfg, None, tmp_path / f"s{i}", shard=(i, 2), progress=False, workers=0)
    merge([tmp_path / "s1", tmp_path / "s0"], tmp_path / "merged", progress=False)
    assert tree_bytes(tmp_path / "merged") == tree_bytes(runs[name])


def test_split_is_on_by_default(cli: CliRunner, small_run: Path, tmp_path: Path) -> None:
    """`summit aggregate` splits unless told --no-split-correct (conftest's small_run: the defaults)."""
    assert json.loads((small_run / "run.json").read_text())["split_correct"] is True
    assert Run(small_run).images("wrong").part == "wrong"
    out = tmp_path / "run"
    p = cli.run("aggregate", "--out", str(out), "--no-split-correct", "--layers", "fire2", "fire3", "--limit", "8",
                "--batch-size", "8", "--examples-k", "0", "--workers", "0", "--quiet")
    assert p.returncode == 0, p.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["split_correct"] is False and "split_correct" not in meta["config"] and not (out / "split").exists()


def test_torchrun_two_ranks_equal_one_process(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # byte-identical floats need equal thread counts
    args = ["aggregate", "--split-correct", "--layers", "fire2", "fire3", "--limit", "40", "--batch-size", "8",
            "--examples-k", "1", "--workers", "0", "--quiet", "--device", "cpu", "--influence-memory", "300"]
    one = subprocess.run([sys.executable, "-m", "summit", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                          "-m", "summit", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "one" / "split" / "wrong" / "influence.parquet").is_file()
    assert tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "one")


def test_split_part_of_another_run_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil
    d = Path(shutil.copytree(runs["split"], tmp_path / "run"))
    shutil.copy(d / "split" / "correct" / "classes.parquet", d / "split" / "wrong" / "classes.parquet")
    run = Run(d)
    run.images("correct")
    with pytest.raises(SummitError, match="does not fit the run's classes"):
        run.images("wrong")
    assert run.images("correct") is run.images("correct")  # a part is opened once per run
    (d / "split" / "correct" / "influence.parquet").unlink()
    with pytest.raises(SummitError, match="influence.parquet: missing"):
        Run(d).images("correct")
