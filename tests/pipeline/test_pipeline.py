"""The streaming pipeline: correctness against a direct recomputation, Parquet round trip,
resume after kill -9, shard merge and torchrun (2 gloo ranks) equivalence."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from summit.model.hooks import Taps
from summit.model.models import load_model
from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder
from summit.pipeline.statefile import read_state
from summit.run.store import Run

SMALL = ["--layers", "fire2", "fire3", "fire4", "--limit", "48", "--batch-size", "8",
         "--examples-k", "2", "--workers", "0", "--quiet"]
SPILL = ["--influence-memory", "300"]  # far below the run's distinct counts: many runs on disk


# Byte-identical runs need the same per-process thread count (float kernels may reduce in another
# order), so every run of this module is pinned to one thread, whatever earlier tests did to this process.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def summit(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "summit", *args], capture_output=True, text=True, timeout=600,
                       env=ENV)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def tree_bytes(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    summit("aggregate", "--out", str(out), *SMALL)
    return out


def summit_mass_channels(maxima: np.ndarray, tau: float) -> list[int]:
    """Summit's loop, written as in its notebook: normalise, sort, add channels while mass < tau."""
    share = maxima / maxima.sum()
    order = sorted(range(len(share)), key=lambda c: -share[c])
    chosen, mass = [], 0.0
    while mass < tau:
        chosen.append(order[len(chosen)])
        mass += share[chosen[-1]]
    return chosen


def test_activation_matrix_matches_direct_forward(sample_run: Path) -> None:
    run = Run(sample_run)
    spec = load_model("squeezenet1_1")
    ds = SafeImageFolder(BUNDLED_SAMPLE, 224, spec.class_names)
    k = run.meta["k"]
    assert run.selections == ["mass0.01", "mass0.03", f"top{k}"]
    counts = {(sel, l): np.zeros((len(ds.classes), run.channels[l]), np.int64)
              for sel in run.selections for l in run.layers}
    sums = {l: np.zeros((len(ds.classes), run.channels[l])) for l in run.layers}
    hist = np.zeros((len(ds.classes), 10), np.int64)
    paths = [spec.layers[l] for l in run.layers]
    with Taps(spec.model.net, outputs=paths) as taps, torch.no_grad():
        for i in range(len(ds)):
            s = ds[i]
            p = spec.model(s.image[None]).softmax(1).max().item()
            hist[s.label, min(int(p * 10), 9)] += 1
            for l in run.layers:
                m = taps.out[spec.layers[l]][0].amax((1, 2)).double().numpy()
                counts[(f"top{k}", l)][s.label, np.argsort(-m, kind="stable")[:k]] += 1
                for tau in (0.01, 0.03):
                    counts[(f"mass{tau:g}", l)][s.label, summit_mass_channels(m, tau)] += 1
                sums[l][s.label] += m
    n_images = run.classes.column("n_images").to_numpy()
    for (sel, l), want in counts.items():
        got = run.activation_matrix(l, "count", sel)
        if sel.startswith("top"):
            assert (got.sum(1) == k * n_images).all()
        assert np.abs(got - want).sum() <= 2, (sel, l)  # float ties may order differently in batches
    for l in run.layers:
        np.testing.assert_allclose(run.activation_matrix(l, "sum"), sums[l], rtol=1e-4, atol=1e-3)
    got_hist = np.array(run.classes.column("hist").to_pylist())
    assert (got_hist.sum(1) == n_images).all() and np.abs(got_hist - hist).sum() <= 2


def test_parquet_tables_round_trip(sample_run: Path) -> None:
    meta = json.loads((sample_run / "run.json").read_text())
    act = pq.read_table(sample_run / "activations.parquet").to_pandas()
    infl = pq.read_table(sample_run / "influence.parquet")
    classes = pq.read_table(sample_run / "classes.parquet").to_pandas()
    assert list(act.columns) == ["selection", "layer", "class", "channel", "count", "sum"]
    assert infl.schema.names == ["layer_pair", "class", "src", "dst", "count"]
    assert len(act) == sum(l["channels"] for l in meta["layers"]) * len(classes) * len(meta["selections"])
    assert set(act.selection) == set(meta["selections"])
    assert classes["n_images"].sum() == meta["dataset"]["n_images"] == 80
    assert (classes["n_correct"] <= classes["n_images"]).all() and classes["n_correct"].sum() > 40
    infl = infl.to_pandas()
    assert (infl["count"] > 0).all()
    kk = meta["k_influence"]
    assert {st["pair"] for st in meta["stages"]} == {p["name"] for p in meta["pairs"]}
    assert set(infl.layer_pair) == {st["name"] for st in meta["stages"]}
    for st in meta["stages"]:  # each image adds k sources to every destination of the stage
        dst_ch = sum(b - a for a, b in st["dst_ranges"])
        per_class = infl[infl.layer_pair == st["name"]].groupby("class")["count"].sum()
        want = classes.set_index("class")["n_images"] * min(kk, st["src_channels"]) * dst_ch
        assert per_class.reindex(want.index, fill_value=0).equals(want), st["name"]
        rows = infl[infl.layer_pair == st["name"]]
        assert rows.src.max() < st["src_channels"] and rows.dst.max() < st["dst_channels"]
    assert (infl["class"].diff().fillna(0) >= 0).all()  # sorted by class for pushdown
    ex = pq.read_table(sample_run / "examples.parquet").to_pandas()
    assert len(ex) == sum(l["channels"] for l in meta["layers"]) * meta["examples_k"]
    assert (sample_run / "examples" / "fire3" / "0.jpg").is_file()


def test_resume_after_kill_is_byte_identical(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "summit", "aggregate", "--out", str(out), "--checkpoint-every", "8", *SMALL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    ckpt = out / "checkpoint-0of1.npz"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (out / "run.json").exists(), "run was not interrupted mid-way"
    position = read_state(ckpt)["position"]
    assert 0 < position < 6
    refused = summit("aggregate", "--out", str(out), *SMALL, check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    summit("aggregate", "--out", str(out), "--resume", *SMALL)
    assert not ckpt.exists()
    assert tree_bytes(out) == tree_bytes(reference)


def test_shards_merge_to_single_process_result(reference: Path, tmp_path: Path) -> None:
    for i in range(3):
        summit("aggregate", "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/3", *SMALL)
    incomplete = summit("merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "bad"),
                        check=False)
    assert incomplete.returncode == 2 and "cover" in incomplete.stderr
    summit("merge", *(str(tmp_path / f"s{i}") for i in (2, 0, 1)), "--out", str(tmp_path / "merged"), "--quiet")
    assert tree_bytes(tmp_path / "merged") == tree_bytes(reference)


def test_torchrun_two_gloo_ranks_equal_single_process(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--standalone", "-m", "summit", "aggregate", "--out", str(out),
                        "--device", "cpu", *SMALL, *SPILL], capture_output=True, text=True, timeout=600, env=ENV)
    assert p.returncode == 0, p.stderr[-3000:]
    assert tree_bytes(out) == tree_bytes(reference)  # rank 0 read rank 1's spilled runs; all removed


def test_spilled_influence_resumes_and_merges_byte_identical(reference: Path, tmp_path: Path) -> None:
    """Influence counts spilled to disk as sorted runs (tiny memory budget): a run killed and
    resumed, and two shards merged, equal the in-memory reference byte for byte."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "summit", "aggregate", "--out", str(out), "--checkpoint-every", "8",
           *SMALL, *SPILL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    ckpt = out / "checkpoint-0of1.npz"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not (
            ckpt.exists() and read_state(ckpt)["position"] >= 3):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list((out / ".spill-0of1").rglob("run-*.keys")), "nothing was spilled before the kill"
    summit("aggregate", "--out", str(out), "--resume", *SMALL, *SPILL)
    assert tree_bytes(out) == tree_bytes(reference)
    for i in range(2):
        summit("aggregate", "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2", *SMALL, *SPILL)
        assert list((tmp_path / f"s{i}" / f".spill-{i}of2").rglob("run-*.keys"))
    (tmp_path / "s1").rename(tmp_path / "moved")  # a shard's runs travel with its folder
    summit("merge", str(tmp_path / "moved"), str(tmp_path / "s0"), "--out", str(tmp_path / "merged"), "--quiet")
    assert tree_bytes(tmp_path / "merged") == tree_bytes(reference)


def test_cli_errors_are_one_line(tmp_path: Path, reference: Path) -> None:
    cases = [
        (["aggregate", "--model", "googlenett", "--out", str(tmp_path / "a")],  # never the checkout's runs/
         "unknown model 'googlenett'; close matches: googlenet"),
        (["aggregate", "--layers", "fire99", "--out", str(tmp_path / "b")],
         "unknown layer 'fire99' for squeezenet1_1; valid: fire2"),
        (["aggregate", str(tmp_path / "nope"), "--out", str(tmp_path / "c")], "dataset directory not found"),
        (["aggregate", "--out", str(reference), *SMALL], "already holds a run"),
        (["aggregate", "--out", str(reference), "--resume", *SMALL], "finished run; nothing to resume"),
        (["info", "--run", str(tmp_path)], "not a summit run directory"),
    ]
    for args, msg in cases:
        p = summit(*args, check=False)
        assert p.returncode == 2, args
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, p.stderr)
