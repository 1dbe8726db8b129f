"""`summit export --format summit-data`: every field and type Summit's UI reads, file names, and
GoogLeNet's layers under Summit's names."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_runner import CliRunner
from PIL import Image

from summit.graph.build import class_graph
from summit.graph.embedding import load_embedding
from summit.graph.matrices import dense
from summit.run.imagenet import imagenet_table
from summit.run.layout import diversity_path, featurevis_path
from summit.run.store import Run

SAMPLE = Path(__file__).resolve().parents[2] / "summit" / "data" / "sample"
# field -> type of every imagenet.json record (Summit's activation-matrices-to-json.ipynb)
FIELDS = {"synset": str, "label": str, "name": str, "target_class": int, "numOfInstances": int,
          "topOneAccCount": int, "topOneAcc": float, "accs": list, "embed": dict, "topChannels": dict}


@pytest.fixture(scope="module")
def export(sample_run: Path, cli: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    run = Path(shutil.copytree(sample_run, tmp_path_factory.mktemp("sd") / "run"))
    featurevis_path(run, "fire9", 0).parent.mkdir(parents=True)
    for ch in (3, 7):  # two rendered channels of fire9 (as `summit render` leaves them), one with 4 diversity images
        Image.new("RGB", (32, 32), (200, 10 * ch, 0)).save(featurevis_path(run, "fire9", ch))
    for k in range(4):
        Image.new("RGB", (32, 32), (0, 60 * k, 0)).save(diversity_path(run, "fire9", 3, k))
    out = run.parent / "export"
    p = cli.run("export", "--run", str(run), "--format", "summit-data", "--out-dir", str(out), "--quiet")
    assert p.returncode == 0, p.stderr
    assert "imagenet.json (19 classes), 19 ag files" in p.stdout and "not written: feature visualization" in p.stdout
    return run, out


def test_imagenet_json_fields_and_types(export: tuple[Path, Path]) -> None:
    run_dir, out = export
    run = Run(run_dir)
    records = json.loads((out / "data" / "imagenet.json").read_text())
    assert len(records) == len(run.class_names) == 19
    preds = pq.read_table(run_dir / "predictions.parquet").to_pylist()
    emb = {(r["class"], r["layer"]): r for r in load_embedding(run)}
    d = dense(run, "mass0.01")
    table = imagenet_table()
    for i, r in enumerate(records):
        assert set(r) == set(FIELDS) and all(isinstance(r[k], t) for k, t in FIELDS.items()), r["synset"]
        index = int(run.class_names[i][:3])  # sample folders are named <ImageNet index>_<name>
        assert (r["target_class"], r["synset"], r["name"], r["label"]) == \
            (index, table[index].wnid, table[index].name, str(index + 1))
        mine = [p for p in preds if p["class"] == i]
        assert r["numOfInstances"] == len(mine) == len(r["accs"]) and all(isinstance(a, str) for a in r["accs"])
        assert [float(a) for a in r["accs"]] == pytest.approx([100 * p["top_prob"][0] for p in mine], rel=1e-3)
        assert r["topOneAccCount"] == sum(p["correct"] for p in mine)
        assert r["topOneAcc"] == pytest.approx(r["topOneAccCount"] / len(mine))
        assert list(r["embed"]) == list(r["topChannels"]) == run.layers
        for layer in run.layers:
            assert set(r["embed"][layer]) == {"x", "y"}
            assert r["embed"][layer]["x"] == pytest.approx(emb[(i, layer)]["x"], abs=1e-4)
            row = d.count[i, d.offsets[layer]:d.offsets[layer] + run.channels[layer]]
            top = r["topChannels"][layer]
            assert all(set(t) == {"c", "i"} and isinstance(t["c"], int) and isinstance(t["i"], int) for t in top)
            assert {t["c"]: t["i"] for t in top} == {int(c): int(row[c]) for c in np.flatnonzero(row)}
            assert [t["i"] for t in top] == sorted((t["i"] for t in top), reverse=True)


def test_ag_files_by_imagenet_index_with_every_layer(export: tuple[Path, Path]) -> None:
    run_dir, out = export
    run = Run(run_dir)
    ag = out / "data" / "ag"
    assert sorted(p.name for p in ag.iterdir()) == sorted(f"ag-{int(n[:3])}.json" for n in run.class_names)
    g = json.loads((ag / "ag-22.json").read_text())
    assert list(g) == run.layers[::-1]  # top layer first, every layer present
    G = class_graph(run, "022_bald_eagle")
    assert sum(len(v) for v in g.values()) == G.number_of_nodes()
    node = g["fire9"][0]
    assert set(node) == {"channel", "count", "layer", "pagerank", "prev_channels", "attr_channels"}
    assert all(isinstance(x["prev_channel"], str) for n in g["fire9"] for x in n["attr_channels"])


def test_images_under_summits_names(export: tuple[Path, Path]) -> None:
    run_dir, out = export
    fv = out / "data" / "feature-vis"
    assert sorted(p.name for p in (fv / "channel").iterdir()) == ["fire9-3-channel.jpg", "fire9-7-channel.jpg"]
    for k in range(4):
        assert [p.name for p in (fv / f"diversity-{k}").iterdir()] == [f"fire9-3-diversity-{k}.jpg"]
    ex = pq.read_table(run_dir / "examples.parquet").to_pylist()
    n = sum(1 for e in ex if (e["layer"], e["channel"]) == ("fire2", 0))
    assert sorted(p.name for p in (fv / "dataset-p").glob("fire2-0-*")) == \
        sorted(f"fire2-0-dataset-p-{r}.jpg" for r in range(n))
    strip = Image.open(run_dir / "examples" / "fire2" / "0.jpg")
    first = Image.open(fv / "dataset-p" / "fire2-0-dataset-p-0.jpg")
    assert first.size == (strip.height, strip.height)
    a = np.asarray(first, dtype=float)
    b = np.asarray(strip.crop((0, 0, strip.height, strip.height)), dtype=float)
    assert np.abs(a - b).mean() < 8  # the strip's first patch, recompressed
    index = json.loads((out / "index.json").read_text())
    assert index["images"]["channel"] == 2 and index["images"]["diversity"] == 4
    assert any("white_wolf" in w for w in index["warnings"])


def test_googlenet_layers_as_mixed(cli: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for wnid, src in (("n02114548", "251_dalmatian"), ("n01614925", "022_bald_eagle")):
        shutil.copytree(SAMPLE / src, data / wnid)
    run = tmp_path / "run"
    p = cli.run("aggregate", str(data), "--model", "googlenet", "--weights", "random", "--layers", "inception3a",
                "inception3b", "--out", str(run), "--examples-k", "2", "--workers", "0", "--quiet")
    assert p.returncode == 0, p.stderr
    out = tmp_path / "export"
    p = cli.run("export", "--run", str(run), "--format", "summit-data", "--out-dir", str(out), "--quiet")
    assert p.returncode == 0, p.stderr
    records = {r["name"]: r for r in json.loads((out / "data" / "imagenet.json").read_text())}
    assert set(records) == {"white_wolf", "bald_eagle"} and records["white_wolf"]["target_class"] == 270
    assert list(records["white_wolf"]["topChannels"]) == ["mixed3a", "mixed3b"]
    g = json.loads((out / "data" / "ag" / "ag-270.json").read_text())
    assert list(g) == ["mixed3b", "mixed3a"] and all(n["layer"] == l for l, ns in g.items() for n in ns)
    assert any(p.name.startswith("mixed3a-") for p in (out / "data" / "feature-vis" / "dataset-p").iterdir())
    warnings = json.loads((out / "index.json").read_text())["warnings"]
    assert len(warnings) == 1 and "draws only InceptionV1's layers" in warnings[0]  # white_wolf is there


def test_refusals_write_nothing(sample_run: Path, cli: CliRunner, tmp_path: Path) -> None:
    p = cli.run("export", "--run", str(sample_run), "--format", "summit-data")
    assert p.returncode == 2 and p.stderr.strip() == "summit: error: export --format summit-data needs --out-dir DIR"
    p = cli.run("export", "--run", str(sample_run), "--format", "json", "--out-dir", str(tmp_path / "x"))
    assert p.returncode == 2 and "export needs --all, --embedding or --format summit-data" in p.stderr
    assert not (tmp_path / "x").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    p = cli.run("export", "--run", str(sample_run), "--format", "summit-data", "--out-dir", str(tmp_path / "busy"))
    assert p.returncode == 2 and "holds files summit did not write" in p.stderr
    assert [f.name for f in (tmp_path / "busy").iterdir()] == ["notes.txt"]
