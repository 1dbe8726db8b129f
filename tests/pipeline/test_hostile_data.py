"""Hostile permissions and names, as a normal user (issue 21, item 5): `summit aggregate` runs in a
subprocess as user nobody when the tests run as root (root reads any file whatever its mode).
A class folder or file that cannot be read is skipped, counted and listed with its reason; a
dataset root that cannot be listed and entered is refused in one line with nothing written;
names that are not valid UTF-8 are listed as unusable with their bytes escaped (run.json stays
strict UTF-8 JSON); an image deleted or replaced between the pass and the example strips leaves
its patches blank, is listed, and the run completes."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import cli_runner
import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_runner import CliRunner, Result
from PIL import Image

from summit.errors import SummitError
from summit.pipeline.aggregator import AggregateConfig, Aggregator
from summit.pipeline.data import BAD_NAME, SafeImageFolder
from summit.pipeline.sources import open_source

NOBODY = 65534
JPEG = next((Path(__file__).resolve().parents[2] / "summit/data/sample/022_bald_eagle").glob("*.jpg")).read_bytes()
ARGS = ("--model", "squeezenet1_1", "--layers", "fire2", "fire3", "--batch-size", "8", "--examples-k", "2",
        "--quiet")


def _closed_ancestors(paths: list[str]) -> dict[Path, set[str]]:
    """The topmost folder others cannot enter on the way to each path, with the entries needed in it."""
    closed: dict[Path, set[str]] = {}
    for p in map(Path, paths):
        p = p.resolve()
        for d in reversed(p.parents):
            if not d.stat().st_mode & 0o001:
                closed.setdefault(d, set()).add(p.relative_to(d).parts[0])
                break
    return closed


def as_nobody(cmd: list[str], stage: Path) -> list[str]:
    """cmd run as user nobody (root only). Folders nobody cannot enter on the way to the interpreter
    and the checkout (e.g. a 0700 /root holding pyenv) are shown to it in a private mount namespace:
    a tmpfs over the folder holding bind mounts of only the entries needed."""
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to run the CLI as nobody"
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    closed = _closed_ancestors([os.path.realpath(sys.executable), sys.prefix, sys.base_prefix,
                                str(cli_runner.ROOT)])
    if not closed:
        return drop
    steps = ["mount --make-rprivate /"]
    for n, (d, names) in enumerate(sorted(closed.items())):
        (stage / str(n)).mkdir(parents=True)
        steps += [f"mount --bind '{d}' '{stage / str(n)}'", f"mount -t tmpfs -o mode=755 tmpfs '{d}'"]
        for name in sorted(names):
            make = "mkdir" if (d / name).is_dir() else "touch"
            steps += [f"{make} '{d / name}'", f"mount --bind '{stage / str(n) / name}' '{d / name}'"]
    return ["unshare", "--mount", "sh", "-c", " && ".join(steps) + ' && exec "$@"', "sh", *drop]


class NobodyRunner(CliRunner):
    """tests.cli_runner's helper process, started as nobody when the tests run as root."""

    def __init__(self, home: Path, stage: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(cli_runner.ROOT), "OMP_NUM_THREADS": "1", "HOME": str(home),
               "TMPDIR": str(home)}
        cmd = [sys.executable, cli_runner.__file__]
        self.proc = subprocess.Popen(as_nobody(cmd, stage) if os.geteuid() == 0 else cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=home)


@pytest.fixture(scope="module")
def nobody() -> Iterator[tuple[NobodyRunner, Path]]:
    """(runner, base): base is a folder nobody can reach; base/out is writable by it. Not under
    pytest's tmp_path: pytest sessions run in parallel reset its root to mode 0700."""
    base = Path(tempfile.mkdtemp(prefix="summit-hostile-"))
    home, out = base / "home", base / "out"
    home.mkdir()
    out.mkdir()
    if os.geteuid() == 0:
        for p in (base, *base.parents):
            if not p.stat().st_mode & 0o001:
                p.chmod(p.stat().st_mode | 0o005)  # let nobody reach the data
        for p in (home, out):
            os.chown(p, NOBODY, NOBODY)
    runner = NobodyRunner(home, base / "stage")
    try:
        yield runner, base
    finally:
        runner.close()
        for d, dirs, _ in os.walk(base):  # open up what the tests closed, so that a normal user can delete it
            for x in dirs:
                if not os.path.islink(os.path.join(d, x)):
                    os.chmod(os.path.join(d, x), 0o755)
        shutil.rmtree(base)


def dataset(root: Path) -> Path:
    """root/a_ok/{x0,x1}.jpg and root/b/{x0,x1}.jpg, readable by all."""
    for c in ("a_ok", "b"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            (root / c / f"x{i}.jpg").write_bytes(JPEG)
    return root


def aggregate_as_nobody(nobody: tuple[NobodyRunner, Path], name: str,
                        setup: Callable[[Path], Path | None]) -> tuple[Result, Path]:
    """`summit aggregate` of a fresh dataset changed by setup (which may return another DATA path)."""
    runner, base = nobody
    root = dataset(base / name)
    data = setup(root) or root
    out = base / "out" / name
    res = runner.run("aggregate", os.fsdecode(data), *ARGS, "--out", str(out))
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res, out


def run_json(out: Path) -> dict:
    """run.json read as strict UTF-8 JSON (no lone surrogates in the escapes)."""
    meta = json.loads((out / "run.json").read_bytes().decode("utf-8"))
    json.dumps(meta, ensure_ascii=False).encode("utf-8")
    return meta


MODES = {  # (what, mode) -> (images used, skipped {path: reason}, unreadable {path: reason})
    ("class", 0o000): (2, {}, {"b": "unreadable: permission denied"}),
    ("class", 0o111): (2, {}, {"b": "unreadable: permission denied"}),
    ("class", 0o444): (2, {"b/x0.jpg": "unreadable: permission denied", "b/x1.jpg": "unreadable: permission denied"},
                       {}),
    ("file", 0o000): (3, {"b/x0.jpg": "unreadable: permission denied"}, {}),
    ("file", 0o111): (3, {"b/x0.jpg": "unreadable: permission denied"}, {}),
    ("file", 0o444): (4, {}, {}),
}


@pytest.mark.parametrize("what,mode", list(MODES), ids=[f"{w}-{m:03o}" for w, m in MODES])
def test_unreadable_class_folders_and_files_are_skipped_counted_and_listed(
        nobody: tuple[NobodyRunner, Path], what: str, mode: int) -> None:
    target = {"class": Path("b"), "file": Path("b/x0.jpg")}[what]
    res, out = aggregate_as_nobody(nobody, f"{what}{mode:03o}", lambda r: (r / target).chmod(mode))
    assert res.returncode == 0, res.stderr[-3000:]
    images, skipped, unreadable = MODES[what, mode]
    d = run_json(out)["dataset"]
    assert (d["n_images"], d["n_skipped"]) == (images, len(skipped))
    assert {s["path"]: s["reason"] for s in d["skipped"]} == skipped
    assert {u["path"]: u["reason"] for u in d["unreadable"]} == unreadable


def _closed_link(root: Path) -> None:
    """A class entry that is a link into a folder nobody may enter."""
    secret = root.parent / f"{root.name}-secret"
    (secret / "c").mkdir(parents=True)
    (secret / "c" / "y.jpg").write_bytes(JPEG)
    secret.chmod(0o000)
    (root / "c").symlink_to(secret / "c")


def test_class_link_into_a_closed_folder_is_listed(nobody: tuple[NobodyRunner, Path]) -> None:
    res, out = aggregate_as_nobody(nobody, "closed-link", _closed_link)
    assert res.returncode == 0, res.stderr[-3000:]
    d = run_json(out)["dataset"]
    assert d["n_images"] == 4
    assert d["unreadable"] == [{"path": "c", "reason": "unreadable: permission denied"}]


def _closed_parent(root: Path) -> Path:
    """The dataset moved into a folder nobody may enter."""
    closed = root.parent / f"{root.name}-closed"
    closed.mkdir()
    moved = Path(shutil.move(root, closed / "data"))
    closed.chmod(0o000)
    return moved


@pytest.mark.parametrize("mode", [0o000, 0o111, 0o444, "parent"], ids=["000", "111", "444", "parent"])
def test_unreadable_dataset_root_is_refused_in_one_line(nobody: tuple[NobodyRunner, Path], mode: int | str) -> None:
    name = f"root{mode:03o}" if isinstance(mode, int) else "root-parent"
    setup = _closed_parent if mode == "parent" else lambda r: r.chmod(mode)  # type: ignore[arg-type]
    res, out = aggregate_as_nobody(nobody, name, setup)
    assert res.returncode == 2
    want = "cannot reach dataset directory" if mode == "parent" else "cannot list dataset directory"
    assert res.stderr.startswith(f"summit: error: {want} ") and "permission denied" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not out.exists()


def _bad_names(root: Path) -> None:
    def bad(name: bytes) -> str:  # how Python names it: the undecodable bytes as surrogates
        return os.fsdecode(name)
    (root / "b" / bad(b"bad\xff.jpg")).write_bytes(JPEG)  # a file
    (root / bad(b"caf\xe9")).mkdir()  # a class folder (Latin-1 "cafe")
    (root / bad(b"caf\xe9") / "y.jpg").write_bytes(JPEG)
    (root / "b" / bad(b"sub\xfe")).mkdir()  # a folder inside a class
    (root / "b" / bad(b"sub\xfe") / "z.jpg").write_bytes(JPEG)


def test_names_that_are_not_utf8_are_listed_escaped(nobody: tuple[NobodyRunner, Path]) -> None:
    res, out = aggregate_as_nobody(nobody, "names", _bad_names)
    assert res.returncode == 0, res.stderr[-3000:]
    d = run_json(out)["dataset"]
    assert d["n_images"] == 4 and d["n_skipped"] == 0
    assert {u["path"]: u["reason"].split(" (")[0] for u in d["unreadable"]} == {
        "b/bad\\xff.jpg": "a name that is not valid UTF-8",
        "b/sub\\xfe": "a folder name that is not valid UTF-8",
        "caf\\xe9": "a folder name that is not valid UTF-8"}
    assert pq.read_table(out / "classes.parquet").column("name").to_pylist() == ["a_ok", "b"]
    assert "b/bad\\xff.jpg: a name that is not valid UTF-8" in res.stderr  # the warning


def test_dataset_path_that_is_not_utf8_is_refused(nobody: tuple[NobodyRunner, Path]) -> None:
    def move(root: Path) -> Path:
        return Path(shutil.move(root, os.fsdecode(os.fsencode(root) + b"\xff")))
    res, out = aggregate_as_nobody(nobody, "root-name", move)
    assert res.returncode == 2
    assert res.stderr.startswith("summit: error: the dataset path ") and "root-name\\xff is not valid UTF-8" \
        in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_images_changed_between_the_pass_and_the_strips(tmp_path: Path) -> None:
    """The library API (pass, then write) with the dataset changed in between: a deleted image, one
    replaced by text, one by a smaller image. Their patches stay blank; the run completes."""
    root = dataset(tmp_path / "data")
    rgb = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "b" / "x2.png")
    ds = SafeImageFolder(root, 64)
    agg = Aggregator(AggregateConfig(layers=["fire2", "fire3"], batch_size=8, image_size=64, examples_k=5), ds)
    agg.run(progress=False)
    (root / "a_ok" / "x0.jpg").unlink()
    (root / "a_ok" / "x1.jpg").write_text("not an image any more\n")
    Image.fromarray(rgb[::2, ::2]).save(root / "b" / "x2.png")
    out = tmp_path / "run"
    agg.write(out, progress=False)
    d = run_json(out)["dataset"]
    changed = {u["path"]: u["reason"] for u in d["unreadable"]}
    assert set(changed) == {"a_ok/x0.jpg", "a_ok/x1.jpg", "b/x2.png"}
    assert changed["a_ok/x0.jpg"].startswith("read again for the example strips: unreadable: dangling")
    assert changed["a_ok/x1.jpg"].startswith("read again for the example strips: not an image")
    assert changed["b/x2.png"] == ("read again for the example strips: changed since the pass (size or "
                                   "modification time); its patches are left blank")
    assert d["n_images"] == 5 and d["n_skipped"] == 0  # the pass used them
    ex = pq.read_table(out / "examples.parquet").to_pylist()
    assert {r["image"] for r in ex} == {"b/x0.jpg", "b/x1.jpg"}
    kept = {r["rank"] for r in ex if (r["layer"], r["channel"]) == ("fire3", 0)}
    strip = np.asarray(Image.open(out / "examples" / "fire3" / "0.jpg"))
    assert len(kept) == 2 and strip.shape == (64, 64 * 5, 3)
    for r in set(range(5)) - kept:  # the three changed images: white patches
        assert (strip[:, 64 * r:64 * (r + 1)] > 240).all()


def test_other_formats_list_names_that_are_not_utf8(tmp_path: Path) -> None:
    """imagenet-val: a file with such a name is listed, not used; WebDataset: a shard with such a
    name in a folder is listed, a member with such a key is used under its escaped name."""
    val = tmp_path / "val"
    val.mkdir()
    (val / "ILSVRC2012_val_00000001.JPEG").write_bytes(JPEG)
    (val / os.fsdecode(b"ILSVRC2012_val_\xff.JPEG")).write_bytes(JPEG)
    (val / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01614925 1 2 3 4\n")
    ds = open_source(val)
    assert [n for n, _ in ds.files] == ["ILSVRC2012_val_00000001.JPEG"] and len(ds.fingerprint()) == 64
    assert ds.unreadable == [("ILSVRC2012_val_\\xff.JPEG", BAD_NAME)]
    gt = Path(shutil.copy(val / "LOC_val_solution.csv", tmp_path / os.fsdecode(b"gt\xff.csv")))
    with pytest.raises(SummitError, match=r"^the ground-truth path .*gt\\xff.csv is not valid UTF-8: rename it$"):
        open_source(val, labels=gt)
    shards = tmp_path / "shards"
    shards.mkdir()
    for name, key in (("a.tar", os.fsdecode(b"k\xff")), (os.fsdecode(b"b\xfe.tar"), "k")):
        with tarfile.open(shards / name, "w", format=tarfile.GNU_FORMAT) as tar:
            for ext, data in (("jpg", JPEG), ("cls", b"22")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    ds = open_source(shards)
    assert ds.unreadable == [("b\\xfe.tar", BAD_NAME)] and len(ds.fingerprint()) == 64
    assert [ds.name(i) for i in range(len(ds))] == ["a.tar/k\\xff"] and ds[0].error is None
