"""Inputs as researchers have them: ImageNet's validation layout, WebDataset shards and Hugging
Face datasets (save_to_disk, Parquet) give runs identical, table for table, to the ImageFolder of
the same images; each resumes after kill -9 and shards like ImageFolder; bad records are skipped,
counted and listed; ambiguous or unusable inputs are refused in one line."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from cli_runner import CliRunner

from summit.errors import SummitError
from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder
from summit.pipeline.sources import ImageNetVal, WebDatasetSource, detect_format, open_source
from summit.pipeline.statefile import read_state

SMALL = ["--layers", "fire2", "fire3", "--limit", "24", "--batch-size", "8", "--examples-k", "0",
         "--workers", "0", "--quiet"]
TABLES = ("activations.parquet", "influence.parquet", "classes.parquet")
REF = SafeImageFolder(BUNDLED_SAMPLE)


def jpeg(i: int) -> bytes:
    return (BUNDLED_SAMPLE / REF.files[i][0]).read_bytes()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_record(tar: tarfile.TarFile, key: str, image: bytes, cls: bytes) -> None:
    """One WebDataset record: ``key.jpg`` and ``key.cls``."""
    add(tar, f"{key}.jpg", image)
    add(tar, f"{key}.cls", cls)


def write_shards(d: Path, label=lambda lab: REF.classes[lab], n_shards: int = 3) -> str:
    """The sample, in ImageFolder order, as WebDataset shards d/shard-00000{0..n-1}.tar."""
    d.mkdir(parents=True, exist_ok=True)
    per = -(-len(REF) // n_shards)
    for s in range(n_shards):
        with tarfile.open(d / f"shard-{s:06d}.tar", "w") as tar:
            for i in range(s * per, min(len(REF), (s + 1) * per)):
                add_record(tar, f"{i:06d}", jpeg(i), str(label(REF.files[i][1])).encode())
    return str(d / f"shard-{{000000..{n_shards - 1:06d}}}.tar")


def hf_dataset(n: int | None = None):
    import datasets
    n = len(REF) if n is None else n
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": jpeg(i), "path": None} for i in range(n)], "label": [REF.files[i][1] for i in range(n)]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=REF.classes)}))


def write_val(d: Path, token=lambda lab: REF.classes[lab]) -> Path:
    """The sample as one folder ILSVRC2012_val_<n>.JPEG plus LOC_val_solution.csv beside it."""
    (d / "val").mkdir(parents=True)
    with open(d / "LOC_val_solution.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "PredictionString"])
        for i, (_, lab) in enumerate(REF.files):
            (d / "val" / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(jpeg(i))
            w.writerow([f"ILSVRC2012_val_{i + 1:08d}", f"{token(lab)} 1 2 30 40"])
    return d / "val"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """DATA of each format, all holding the sample in the same order."""
    d = tmp_path_factory.mktemp("inputs")
    ds = hf_dataset()
    ds.save_to_disk(str(d / "hf_disk"))
    ds.to_parquet(str(d / "sample.parquet"))
    return {"imagefolder": str(BUNDLED_SAMPLE), "webdataset": write_shards(d / "wds"),
            "hf": str(d / "hf_disk"), "parquet": str(d / "sample.parquet"), "imagenet-val": str(write_val(d / "inet"))}


@pytest.fixture(scope="module")
def reference(cli: CliRunner, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    p = cli.run("aggregate", str(BUNDLED_SAMPLE), "--out", str(out), *SMALL)
    assert p.returncode == 0, p.stderr
    return out


def same_tables(a: Path, b: Path, names: tuple[str, ...] = TABLES, drop: tuple[str, ...] = ()) -> None:
    for t in names:
        ta, tb = pq.read_table(a / t), pq.read_table(b / t)
        if t == "classes.parquet" and drop:
            ta, tb = ta.drop(list(drop)), tb.drop(list(drop))
        assert ta.equals(tb), t


@pytest.mark.parametrize("fmt", ["webdataset", "hf", "parquet", "imagenet-val"])
def test_format_gives_the_imagefolder_run(fmt: str, inputs: dict, reference: Path, cli: CliRunner,
                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = cli.run("aggregate", inputs[fmt], "--out", str(out), *SMALL)
    assert p.returncode == 0, p.stderr
    same_tables(out, reference)
    meta = json.loads((out / "run.json").read_text())["dataset"]
    assert meta["format"] == ("hf" if fmt == "parquet" else fmt) and meta["n_skipped"] == 0


@pytest.mark.parametrize("fmt", ["webdataset", "hf", "imagenet-val"])
def test_format_resumes_and_shards_exactly(fmt: str, inputs: dict, reference: Path, cli: CliRunner,
                                           tmp_path: Path) -> None:
    out = tmp_path / "run"
    pid = cli.start("aggregate", inputs[fmt], "--out", str(out), "--checkpoint-every", "8", *SMALL)
    ckpt = out / "checkpoint-0of1.npz"
    deadline = time.time() + 300
    while not ckpt.exists():
        assert time.time() < deadline, "no checkpoint was written"
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    cli.wait(pid)
    assert not (out / "run.json").exists() and 0 < read_state(ckpt)["position"] < 3
    p = cli.run("aggregate", inputs[fmt], "--out", str(out), "--resume", *SMALL)
    assert p.returncode == 0, p.stderr
    same_tables(out, reference)
    for i in range(2):
        p = cli.run("aggregate", inputs[fmt], "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2", *SMALL)
        assert p.returncode == 0, p.stderr
    p = cli.run("merge", str(tmp_path / "s1"), str(tmp_path / "s0"), "--out", str(tmp_path / "merged"), "--quiet")
    assert p.returncode == 0, p.stderr  # merge reopens the source that run.json names
    same_tables(tmp_path / "merged", reference)


def test_integer_labels_name_classes_by_number(reference: Path, cli: CliRunner, tmp_path: Path) -> None:
    """cls holding ImageNet output indices: classes "22", "99", ... that map to the same outputs."""
    pattern = write_shards(tmp_path / "wds", label=lambda lab: int(REF.classes[lab].split("_")[0]), n_shards=2)
    ds = open_source(pattern)
    assert ds.classes[:3] == ["22", "99", "129"]
    out = tmp_path / "run"
    p = cli.run("aggregate", pattern, "--format", "webdataset", "--out", str(out), *SMALL)
    assert p.returncode == 0, p.stderr
    same_tables(out, reference, drop=("name",))


def test_detect_format(inputs: dict, tmp_path: Path) -> None:
    assert detect_format(None) == "imagefolder"
    assert detect_format(inputs["imagefolder"]) == "imagefolder"
    assert detect_format(inputs["webdataset"]) == "webdataset"
    assert detect_format(str(Path(inputs["webdataset"]).parent)) == "webdataset"  # a folder of .tar
    assert detect_format(str(Path(inputs["webdataset"]).parent / "shard-000000.tar")) == "webdataset"
    assert detect_format(inputs["hf"]) == detect_format(inputs["parquet"]) == "hf"
    assert detect_format(inputs["imagenet-val"]) == "imagenet-val"
    tv = tmp_path / "imagenet"  # torchvision's ImageNet root: root/val/<wnid>/ is the ImageFolder
    (tv / "val" / "n01440764").mkdir(parents=True)
    (tv / "val" / "n01440764" / "a.JPEG").write_bytes(jpeg(0))
    (tv / "meta.bin").write_bytes(b"")
    ds = open_source(tv)
    assert ds.root == tv / "val" and ds.classes == ["n01440764"]


def test_unknown_format_is_refused_with_the_choices(cli: CliRunner, tmp_path: Path) -> None:
    p = cli.run("aggregate", str(BUNDLED_SAMPLE), "--format", "tfrecord", "--out", str(tmp_path / "r"), *SMALL)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "summit: error: unknown dataset format 'tfrecord'; valid: imagefolder, imagenet-val, webdataset, hf"]


def test_bad_webdataset_records_are_skipped_and_listed(cli: CliRunner, tmp_path: Path) -> None:
    d = tmp_path / "wds"
    d.mkdir()
    with tarfile.open(d / "a.tar", "w") as tar:
        add_record(tar, "good1", jpeg(0), REF.classes[0].encode())
        add(tar, "nolabel.jpg", jpeg(1))
        add(tar, "noimage.cls", REF.classes[0].encode())
        add_record(tar, "broken", jpeg(1)[:500], REF.classes[0].encode())
        add_record(tar, "good2", jpeg(2), REF.classes[1].encode())
    with tarfile.open(d / "b.tar", "w") as tar:
        add_record(tar, "good3", jpeg(3), REF.classes[1].encode())
        add_record(tar, "cut", jpeg(4), REF.classes[1].encode())
    whole = (d / "b.tar").read_bytes()
    (d / "b.tar").write_bytes(whole[:512 * 4 + len(jpeg(3)) + 2000])  # breaks off inside cut.jpg
    ds = WebDatasetSource(str(d))
    assert [n for n, _ in ds.files] == ["a.tar/good1", "a.tar/nolabel", "a.tar/noimage", "a.tar/broken",
                                        "a.tar/good2", "b.tar/good3", "b.tar/cut"]
    assert ds.classes == REF.classes[:2]
    reasons = {ds.name(s.index): s.error for s in (ds[i] for i in range(len(ds))) if s.error}
    assert reasons["a.tar/nolabel"] == "no label in the record (no cls)"
    assert reasons["a.tar/noimage"] == "no image in the record (keys: cls)"
    assert reasons["a.tar/broken"].startswith("corrupt")
    assert reasons["b.tar/cut"] == "truncated: the image breaks off at the end of the shard"
    assert set(reasons) == {"a.tar/nolabel", "a.tar/noimage", "a.tar/broken", "b.tar/cut"}
    out = tmp_path / "run"
    p = cli.run("aggregate", str(d / "{a,b}.tar"), "--out", str(out), *SMALL)
    assert p.returncode == 0, p.stderr
    meta = json.loads((out / "run.json").read_text())["dataset"]
    assert meta["n_images"] == 3 and meta["n_skipped"] == 4
    assert {s["path"]: s["reason"] for s in meta["skipped"]} == reasons


def test_tar_cut_inside_a_header_keeps_what_came_before(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        for i in range(3):
            add_record(tar, f"{i}", jpeg(i), b"7")
    with tarfile.open(tmp_path / "a.tar") as tar:
        cut = tar.getmember("2.cls").offset + 100
    (tmp_path / "a.tar").write_bytes((tmp_path / "a.tar").read_bytes()[:cut])  # breaks off inside a header
    ds = WebDatasetSource(str(tmp_path / "a.tar"))
    assert len(ds) == 3 and ds.classes == ["7"]
    assert [ds[i].error for i in range(3)] == [None, None, "no label in the record (no cls)"]
    assert ds.unreadable == [("a.tar", "truncated tar: no end-of-archive marker after 3 record(s)")]


def test_parquet_without_image_column_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    import pyarrow as pa
    pq.write_table(pa.table({"path": ["a.jpg"], "label": [1]}), tmp_path / "x.parquet")
    p = cli.run("aggregate", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "r"), *SMALL)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["summit: error: no image column in x.parquet (columns: path, label)"]


def test_hf_columns_chosen_or_refused_with_choices(tmp_path: Path) -> None:
    import datasets
    cell = [{"bytes": jpeg(i), "path": None} for i in range(4)]
    ds = datasets.Dataset.from_dict(
        {"image": cell, "thumb": cell, "label": [0, 0, 1, 1], "label2": [0, 1, 0, 1]},
        features=datasets.Features({"image": datasets.Image(), "thumb": datasets.Image(),
                                    "label": datasets.ClassLabel(names=REF.classes),
                                    "label2": datasets.ClassLabel(names=["x", "y"])}))
    ds.save_to_disk(str(tmp_path / "two"))
    with pytest.raises(SummitError, match="several image columns in two: image, thumb; choose one with --image-column"):
        open_source(tmp_path / "two")
    with pytest.raises(SummitError, match="several label columns in two: label, label2"):
        open_source(tmp_path / "two", image_column="thumb")
    src = open_source(tmp_path / "two", image_column="thumb", label_column="label2")
    assert src.classes == ["x", "y"] and [lab for _, lab in src.files] == [0, 1, 0, 1] and src[0].error is None
    plain = tmp_path / "plain.parquet"  # no HF metadata: a {bytes, path} struct and integer labels
    import pyarrow as pa
    pq.write_table(pa.table({"img": [{"bytes": jpeg(i), "path": None} for i in range(3)], "label": [5, 3, None]}),
                   plain, row_group_size=2)
    src = open_source(plain)
    assert src.classes == ["3", "5"] and src[1].error is None and src[2].error == "no label"


def test_imagenet_val_label_mismatch_is_listed(cli: CliRunner, tmp_path: Path) -> None:
    val = tmp_path / "val"
    val.mkdir()
    for i in range(4):
        (val / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(jpeg(i))
    (val / "ILSVRC2012_val_00000009.JPEG").write_bytes(jpeg(5))  # no ground-truth row
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n01751748 1 2 3 4\n"
        "ILSVRC2012_val_00000002,n01751748 1 2 3 4 n01751748 5 6 7 8\n"
        "ILSVRC2012_val_00000003,\n"                                 # no class
        "ILSVRC2012_val_00000004,n09428293 1 2 3 4\n"
        "ILSVRC2012_val_00000004,n01440764 1 2 3 4\n"                # conflicting rows
        "ILSVRC2012_val_00000007,n01440764 1 2 3 4\n")               # no image
    ds = ImageNetVal(val)
    assert ds.classes == ["n01440764", "n01751748"]
    reasons = {ds.name(i): ds[i].error for i in range(len(ds)) if ds[i].error}
    assert reasons == {
        "ILSVRC2012_val_00000003.JPEG": "LOC_val_solution.csv line 4: no class",
        "ILSVRC2012_val_00000004.JPEG": "LOC_val_solution.csv line 6: conflicting classes n09428293 and n01440764",
        "ILSVRC2012_val_00000007": "listed in LOC_val_solution.csv but no image file",
        "ILSVRC2012_val_00000009.JPEG": "no label in LOC_val_solution.csv"}
    out = tmp_path / "run"
    p = cli.run("aggregate", str(val), "--out", str(out), *SMALL)
    assert p.returncode == 0, p.stderr
    meta = json.loads((out / "run.json").read_text())["dataset"]
    assert meta["n_images"] == 2 and {s["path"]: s["reason"] for s in meta["skipped"]} == reasons
    (tmp_path / "LOC_val_solution.csv").rename(tmp_path / "gt.csv")
    with pytest.raises(SummitError, match="no ground-truth file for .*LOC_val_solution.csv"):
        ImageNetVal(val)
    assert len(open_source(val, labels=tmp_path / "gt.csv")) == len(ds)  # --labels FILE
    with pytest.raises(SummitError, match="^--labels applies to another format, not webdataset$"):
        open_source(val, format="webdataset", labels=tmp_path / "gt.csv")
    (tmp_path / "gt.csv").write_text("id,label\n")
    with pytest.raises(SummitError, match="not a LOC_val_solution.csv"):
        open_source(val, labels=tmp_path / "gt.csv")


def test_torchrun_ranks_read_webdataset_like_imagefolder(inputs: dict, reference: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    out = tmp_path / "dist"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                        "-m", "summit", "aggregate", inputs["webdataset"], "--out", str(out), "--device", "cpu",
                        *SMALL], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    same_tables(out, reference)


def test_sources_travel_to_loader_workers(inputs: dict) -> None:
    """DataLoader workers get a pickled copy: Parquet handles reopen, items read the same."""
    import pickle
    for data in (inputs["parquet"], inputs["hf"], inputs["webdataset"]):
        src = open_source(data)
        copy = pickle.loads(pickle.dumps(src))
        for i in (0, 9, len(src) - 1):
            a, b = src[i], copy[i]
            assert a.error is None and torch.equal(a.image, b.image) and a.label == b.label == REF.files[i][1]


def test_imagenet_val_devkit_ground_truth(tmp_path: Path) -> None:
    """ILSVRC2012_validation_ground_truth.txt: 1-based ILSVRC2012 ids, wnids from meta.mat (leaves only)."""
    import numpy as np
    from scipy.io import savemat
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    synsets = np.array([(1, "n01751748", "sea snake", 0), (2, "n01440764", "tench", 0),
                        (1001, "n00001740", "entity", 5)], dtype=fields)
    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    savemat(str(data / "meta.mat"), {"synsets": synsets})
    val = tmp_path / "val"
    val.mkdir()
    for i in range(5):
        (val / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(jpeg(i))
    gt = data / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("2\n1\n1001\n2\nx\n")
    ds = open_source(val, labels=gt)
    assert ds.format == "imagenet-val" and ds.classes == ["n01440764", "n01751748"]
    assert [lab for _, lab in ds.files] == [0, 1, -1, 0, -1]
    assert [ds[i].error for i in range(5)] == [
        None, None, "ILSVRC2012_validation_ground_truth.txt line 3: unknown ILSVRC2012 id 1001", None,
        "ILSVRC2012_validation_ground_truth.txt line 5: not an ILSVRC2012 id: 'x'"]
    (data / "meta.mat").unlink()
    with pytest.raises(SummitError, match="needs the devkit's meta.mat beside it"):
        open_source(val, labels=gt)
