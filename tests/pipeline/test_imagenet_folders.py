"""ImageNet's train layout (class folders named by WordNet id) for a subset of the classes maps
every folder to its model output: accuracy is counted, labels are readable, and the run is the
same as one of the same images in index_name folders (the bundled sample's layout)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runner import CliRunner

from summit.pipeline.data import BUNDLED_SAMPLE
from summit.run.imagenet import imagenet_table
from summit.run.store import Run

SUBSET = ["022_bald_eagle", "099_goose", "251_dalmatian", "609_jeep", "949_strawberry"]
ARGS = ["--layers", "fire2", "fire3", "--batch-size", "8", "--examples-k", "0", "--workers", "0", "--quiet"]


def copy_sample(root: Path, folder_name) -> Path:
    """The SUBSET classes of the bundled sample, 3 images each, in folders named folder_name(index_name)."""
    for c in SUBSET:
        (root / folder_name(c)).mkdir(parents=True)
        for f in sorted((BUNDLED_SAMPLE / c).glob("*.jpg"))[:3]:
            shutil.copy(f, root / folder_name(c) / f.name)
    return root


def wnid(index_name: str) -> str:
    return imagenet_table()[int(index_name.split("_")[0])].wnid


@pytest.fixture(scope="module")
def runs(cli: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("imagenet")
    out = {}
    for kind, name in (("wnid", wnid), ("index_name", lambda c: c)):
        data = copy_sample(d / f"data-{kind}", name)
        out[kind] = d / kind
        p = cli.run("aggregate", str(data), "--out", str(out[kind]), *ARGS)
        assert p.returncode == 0, p.stderr
    return out


def test_wnid_folders_map_to_model_outputs(runs: dict[str, Path]) -> None:
    rows = pq.read_table(runs["wnid"] / "classes.parquet").to_pylist()
    assert [r["name"] for r in rows] == [wnid(c) for c in SUBSET]
    for r, c in zip(rows, SUBSET):
        assert r["model_index"] == int(c.split("_")[0]) and r["wnid"] == r["name"]
        assert r["label"] == c.split("_", 1)[1].replace("_", " ")
        assert r["n_correct"] is not None and 0 <= r["n_correct"] <= r["n_images"] == 3
    assert sum(r["n_correct"] for r in rows) > 0  # the sample's images are mostly classified right


def test_index_name_folders_get_wnid_and_label(runs: dict[str, Path]) -> None:
    rows = pq.read_table(runs["index_name"] / "classes.parquet").to_pylist()
    assert [(r["name"], r["wnid"], r["label"]) for r in rows] == \
        [(c, wnid(c), c.split("_", 1)[1].replace("_", " ")) for c in SUBSET]


def test_same_images_give_the_same_tables_whatever_the_folder_names(runs: dict[str, Path]) -> None:
    for table in ("activations.parquet", "influence.parquet"):
        assert pq.read_table(runs["wnid"] / table).equals(pq.read_table(runs["index_name"] / table)), table
    keep = ["class", "wnid", "label", "model_index", "n_images", "n_correct", "hist"]
    assert pq.read_table(runs["wnid"] / "classes.parquet").select(keep).equals(
        pq.read_table(runs["index_name"] / "classes.parquet").select(keep))


def test_graph_by_wnid_and_by_label(cli: CliRunner, runs: dict[str, Path], tmp_path: Path) -> None:
    run = Run(runs["wnid"])
    assert run.class_index("n01855672") == run.class_index("goose") == run.class_index("GOOSE") == 1
    assert run.class_index("bald_eagle") == run.class_index("022_bald_eagle") == 0
    docs = []
    for cls in ("n01855672", "goose"):
        p = cli.run("graph", "--run", str(runs["wnid"]), "--class", cls, "--out", str(tmp_path / f"{cls}.json"))
        assert p.returncode == 0, p.stderr
        docs.append(json.loads((tmp_path / f"{cls}.json").read_text()))
    assert docs[0] == docs[1]
    meta = docs[0]["summit"]["class"]
    assert (meta["name"], meta["wnid"], meta["label"], meta["index"]) == ("n01855672", "n01855672", "goose", 1)
    p = cli.run("graph", "--run", str(runs["wnid"]), "--class", "gose", "--out", str(tmp_path / "x.json"))
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "close matches: goose" in p.stderr, p.stderr
