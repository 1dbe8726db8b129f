"""Replacing output is crash-safe (kill -9 while `aggregate --overwrite`, `merge` into an existing
run and `export --all` over an existing folder write), shards carry their identity, and a
dataset without a usable image or with unreadable folders is reported in one line."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

import pytest
from cli_runner import CliRunner, Result

from summit.pipeline.data import BUNDLED_SAMPLE
from summit.pipeline.statefile import read_state, write_state

SMALL = ["--layers", "fire2", "fire3", "--limit", "24", "--batch-size", "8", "--examples-k", "1",
         "--workers", "0", "--quiet"]


def tree_bytes(d: Path) -> dict[str, bytes]:
    """Every file of a directory (checkpoints aside: they belong to the next run)."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.startswith("checkpoint-")}


def ok(p: Result) -> Result:
    assert p.returncode == 0, p.stderr
    return p


def refused(p: Result, message: str) -> None:
    """Exit 2 with exactly one line, `summit: error: ...` containing message."""
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("summit: error: ") and message in lines[0], p.stderr


def temporaries(parent: Path) -> list[str]:
    return sorted(str(p.relative_to(parent)) for p in parent.rglob("*summit-tmp*"))


def kill_when(cli: CliRunner, pid: int, ready: Callable[[], bool], timeout: float = 300) -> Result:
    """kill -9 the case as soon as ready() holds (polled every 2 ms); its result after death."""
    deadline = time.time() + timeout
    while not ready():
        assert time.time() < deadline, "the kill point was never reached"
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    return cli.wait(pid)


def fresh_file(root: Path, name: str, since: float) -> Callable[[], bool]:
    """True once a file called `name` written after `since` exists anywhere under root (also in
    hidden temporary folders): the command has started writing its results."""
    def ready() -> bool:
        for p in root.rglob(name):
            try:
                if p.stat().st_mtime >= since:
                    return True
            except FileNotFoundError:
                pass
        return False
    return ready


@pytest.fixture(scope="module")
def runs(cli: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """new: the SMALL run; old: another run (k=3, 16 images); s0/s1: SMALL as 2 shards."""
    d = tmp_path_factory.mktemp("runs")
    ok(cli.run("aggregate", "--out", str(d / "new"), *SMALL))
    ok(cli.run("aggregate", "--out", str(d / "old"), *SMALL, "-k", "3", "--limit", "16"))
    for i in range(2):
        ok(cli.run("aggregate", "--out", str(d / f"s{i}"), "--shard", f"{i}/2", *SMALL))
    return {name: d / name for name in ("new", "old", "s0", "s1")}


def test_kill_during_overwrite_leaves_old_or_new_run(cli: CliRunner, runs: dict[str, Path], tmp_path: Path) -> None:
    old, new = tree_bytes(runs["old"]), tree_bytes(runs["new"])
    out = tmp_path / "parent" / "run"
    shutil.copytree(runs["old"], out)
    # killed while streaming: the old run stays complete and readable
    pid = cli.start("aggregate", "--out", str(out), "--overwrite", "--checkpoint-every", "8", *SMALL)
    kill_when(cli, pid, lambda: (out / "checkpoint-0of1.npz").exists())
    assert tree_bytes(out) == old
    ok(cli.run("info", "--run", str(out)))
    # killed while writing the results: old or new, never a mix
    since = time.time()
    pid = cli.start("aggregate", "--out", str(out), "--overwrite", *SMALL)
    assert kill_when(cli, pid, fresh_file(out.parent, "classes.parquet", since)).returncode == -signal.SIGKILL
    assert tree_bytes(out) in (old, new)
    ok(cli.run("info", "--run", str(out)))
    left = temporaries(out.parent)
    # the next successful run replaces it and removes what the killed ones left
    ok(cli.run("aggregate", "--out", str(out), "--overwrite", *SMALL))
    assert tree_bytes(out) == new and temporaries(out.parent) == [], left


def test_resumed_finished_pass_reports_no_speed(cli: CliRunner, runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    since = time.time()
    pid = cli.start("aggregate", "--out", str(out), "--checkpoint-every", "8", *SMALL)
    kill_when(cli, pid, fresh_file(tmp_path, "classes.parquet", since))  # pass finished, checkpoint at its end
    assert read_state(out / "checkpoint-0of1.npz")["position"] == 3
    p = ok(cli.run("aggregate", "--out", str(out), "--resume", *SMALL))
    assert "no new images" in p.stdout and "24 from the checkpoint" in p.stdout and "img/s" not in p.stdout
    assert tree_bytes(out) == tree_bytes(runs["new"])


def test_merge_into_existing_run_needs_overwrite_and_is_crash_safe(cli: CliRunner, runs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    old, new = tree_bytes(runs["old"]), tree_bytes(runs["new"])
    out = tmp_path / "parent" / "merged"
    shutil.copytree(runs["old"], out)
    shards = [str(runs["s0"]), str(runs["s1"])]
    refused(cli.run("merge", *shards, "--out", str(out)), "already holds a run; pass --overwrite")
    since = time.time()
    pid = cli.start("merge", *shards, "--out", str(out), "--overwrite", "--quiet")
    kill_when(cli, pid, fresh_file(out.parent, "classes.parquet", since))
    assert tree_bytes(out) in (old, new)
    ok(cli.run("merge", *shards, "--out", str(out), "--overwrite", "--quiet"))
    assert tree_bytes(out) == new and temporaries(out.parent) == []


def test_export_all_over_existing_folder_is_crash_safe(cli: CliRunner, runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "parent" / "graphs"
    ok(cli.run("export", "--run", str(runs["new"]), "--all", "--out-dir", str(out), "--method", "topn", "--top-n", "3"))
    old = tree_bytes(out)
    since = time.time()
    pid = cli.start("export", "--run", str(runs["new"]), "--all", "--out-dir", str(out), "--method", "topn", "--top-n", "6",
                    "--format", "graphml")
    kill_when(cli, pid, fresh_file(out.parent, "*.graphml", since))
    assert tree_bytes(out) == old
    ok(cli.run("export", "--run", str(runs["new"]), "--all", "--out-dir", str(out), "--method", "topn", "--top-n", "6",
               "--format", "graphml"))
    index = json.loads((out / "index.json").read_text())
    assert index["settings"]["top_n"] == 6 and sorted(p.name for p in out.iterdir()) == sorted(
        ["index.json"] + [g["file"] for g in index["graphs"]])
    assert temporaries(out.parent) == []
    (out / "notes.txt").write_text("mine")
    refused(cli.run("export", "--run", str(runs["new"]), "--all", "--out-dir", str(out)),
            "holds files summit did not write (e.g. notes.txt)")


def test_output_folders_with_foreign_files_are_not_replaced(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    refused(cli.run("aggregate", "--out", str(tmp_path / "mine"), "--overwrite", *SMALL),
            "holds files summit did not write (e.g. thesis.tex)")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"


def test_run_with_derived_outputs_can_be_overwritten(cli: CliRunner, runs: dict[str, Path], tmp_path: Path) -> None:
    """What other commands write into a run (the demo's exports, explorer, DeepDream) is summit's."""
    out = Path(shutil.copytree(runs["new"], tmp_path / "run"))
    for sub in ("graphs", "ag", "blocks", "dream"):
        (out / sub).mkdir()
        (out / sub / "x.json").write_text("{}")
    ok(cli.run("aggregate", "--out", str(out), "--overwrite", *SMALL))
    assert not (out / "ag").exists() and (out / "run.json").is_file()


def test_shard_states_carry_their_identity(cli: CliRunner, runs: dict[str, Path], tmp_path: Path) -> None:
    s0, s1 = (tmp_path / "s0", tmp_path / "s1")
    shutil.copytree(runs["s0"], s0)
    shutil.copytree(runs["s1"], s1)
    state = s1 / "shard.npz"
    good = state.read_bytes()
    shutil.copy(s0 / "shard.npz", state)  # shard 0's state in shard 1's folder
    refused(cli.run("merge", str(s0), str(s1), "--out", str(tmp_path / "m")), "is shard 0/2 but its run.json says 1/2")
    old_format = read_state(s0 / "shard.npz")
    del old_format["split"]
    write_state(state, old_format)
    refused(cli.run("merge", str(s0), str(s1), "--out", str(tmp_path / "m")), "does not say which shard it is")
    state.write_bytes(good[: len(good) // 2])
    refused(cli.run("merge", str(s0), str(s1), "--out", str(tmp_path / "m")), "shard.npz: not a summit state file")
    state.write_bytes(good)
    refused(cli.run("merge", str(s0), str(s1), "--out", str(s0)), "overlaps the shard")
    refused(cli.run("merge", str(s0), str(s0), str(s1), "--out", str(tmp_path / "m")), "listed twice")
    shutil.rmtree(s1)
    shutil.copytree(s0, s1)  # the whole folder of shard 0 twice
    refused(cli.run("merge", str(s0), str(s1), "--out", str(tmp_path / "m")), "do not cover 0..N-1 exactly once")
    assert not (tmp_path / "m").exists()


def test_shards_of_different_datasets_are_refused(cli: CliRunner, runs: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(BUNDLED_SAMPLE, data)
    next((data / "990_buckeye").glob("*.jpg")).unlink()  # beyond --limit: same images, other dataset
    ok(cli.run("aggregate", str(data), "--out", str(tmp_path / "other1"), "--shard", "1/2", *SMALL))
    refused(cli.run("merge", str(runs["s0"]), str(tmp_path / "other1"), "--out", str(tmp_path / "m")),
            "made from different datasets")


def test_resume_shard_over_single_process_checkpoint_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "run"
    pid = cli.start("aggregate", "--out", str(out), "--checkpoint-every", "8", *SMALL)
    kill_when(cli, pid, lambda: (out / "checkpoint-0of1.npz").exists())
    refused(cli.run("aggregate", "--out", str(out), "--shard", "0/2", "--resume", *SMALL),
            "holds the checkpoint of a run split differently (checkpoint-0of1.npz), not 2 shards/ranks")
    refused(cli.run("aggregate", "--out", str(out), "--shard", "0/2", *SMALL), "split differently")
    ckpt = out / "checkpoint-0of1.npz"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    refused(cli.run("aggregate", "--out", str(out), "--resume", *SMALL), "checkpoint-0of1.npz: not a summit state file")


def test_no_usable_image_is_one_line_and_writes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        (tmp_path / "data" / c / "x.jpg").write_text("not a jpeg")
        (tmp_path / "data" / c / "y.png").write_bytes(b"")
    refused(cli.run("aggregate", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *SMALL),
            "no usable image in")
    assert not (tmp_path / "run" / "run.json").exists() and temporaries(tmp_path) == []
    for f in (tmp_path / "data").rglob("*.*"):
        f.unlink()
    refused(cli.run("aggregate", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *SMALL),
            "no image files in the 2 class folder(s)")


def test_unreadable_folder_is_reported_in_run_and_output(cli: CliRunner, tmp_path: Path) -> None:
    """A folder too deep to list (any user, even root, gets ENAMETOOLONG) inside a class."""
    data = tmp_path / "data"
    shutil.copytree(BUNDLED_SAMPLE / "022_bald_eagle", data / "022_bald_eagle")
    fd = os.open(data / "022_bald_eagle", os.O_RDONLY)
    for _ in range(20):  # 20 x 250 characters: longer than PATH_MAX
        os.mkdir("d" * 250, dir_fd=fd)
        new = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
    os.close(fd)
    p = ok(cli.run("aggregate", str(data), "--out", str(tmp_path / "run"), *SMALL))
    warning = [l for l in p.stderr.splitlines() if l.startswith("summit: warning: skipped 022_bald_eagle/ddd")]
    assert len(warning) == 1 and warning[0].endswith("unreadable: File name too long"), p.stderr
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [u["reason"] for u in meta["dataset"]["unreadable"]] == ["unreadable: File name too long"]
    assert "unreadable: File name too long" in ok(cli.run("info", "--run", str(tmp_path / "run"))).stdout
