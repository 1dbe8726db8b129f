"""A lost torchrun rank or a killed --shard resumes with the same command plus --resume, byte-identical
to an uninterrupted run, and WORLD_SIZE without torchrun is refused in one line. Kill points are
real kill -9s of real processes (torchrun with 2 gloo ranks on the CPU; shards through the CLI)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from cli_runner import ROOT, CliRunner
from test_aggregate import SMALL, fresh_file, kill_when, ok, refused, tree_bytes

from summit.pipeline.statefile import read_state

RANKS = [*SMALL, "--limit", "40", "--checkpoint-every", "8"]  # 5 batches: 3 for rank 0, 2 for rank 1
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(out: Path, *extra: str) -> subprocess.Popen:
    """`torchrun --standalone --nproc-per-node 2 -m summit aggregate` on RANKS (stderr captured)."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "summit", "aggregate", "--out", str(out), "--device", "cpu", *RANKS, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


def finished(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=600)
    return p.returncode, err


def rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of torchrun's worker with LOCAL_RANK=rank (a child of the launcher)."""
    deadline = time.time() + 300
    while time.time() < deadline:
        for d in Path("/proc").iterdir():
            try:
                ppid = (d / "stat").read_text().rsplit(")", 1)[1].split()[1]
                if d.name.isdigit() and ppid == str(launcher.pid) and \
                        f"LOCAL_RANK={rank}".encode() in (d / "environ").read_bytes().split(b"\0"):
                    return int(d.name)
            except (OSError, IndexError):
                pass
        time.sleep(0.01)
    raise AssertionError(f"torchrun never started rank {rank}")


def kill_rank1_when(out: Path, ready: Callable[[], bool], *extra: str, freeze_rank0: bool = False) -> None:
    """kill -9 torchrun's rank 1 as soon as ready() holds; torchrun then stops rank 0 and fails.
    freeze_rank0: rank 0 is stopped at that moment and killed with rank 1 (where it was, not
    wherever torchrun's stop would find it)."""
    launcher = torchrun(out, *extra)
    pids = [rank_pid(launcher, r) for r in (0, 1)]
    deadline = time.time() + 300
    while not ready():
        assert time.time() < deadline and launcher.poll() is None, "the kill point was never reached"
        time.sleep(0.002)
    if freeze_rank0:
        os.kill(pids[0], signal.SIGSTOP)
    os.kill(pids[1], signal.SIGKILL)
    if freeze_rank0:
        os.kill(pids[0], signal.SIGKILL)
    assert finished(launcher)[0] != 0


def ranks_ok(out: Path, *extra: str) -> None:
    rc, err = finished(torchrun(out, *extra))
    assert rc == 0, err[-3000:]


def ranks_refused(out: Path, message: str, *extra: str) -> None:
    """Every rank refuses with the same one summit line (torchrun then adds its own failure report)."""
    rc, err = finished(torchrun(out, *extra))
    lines = [l for l in err.splitlines() if l.startswith("summit: error: ")]
    assert rc != 0 and len(lines) == 2 and all(message in l for l in lines), err[-3000:]
    assert str(ROOT / "summit") not in err, err[-3000:]  # no traceback through summit's code


def checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("checkpoint-*"))


@pytest.fixture(scope="module")
def reference(cli: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """run: RANKS in one process; s0, s1: its two --shard i/2."""
    d = tmp_path_factory.mktemp("ranks")
    ok(cli.run("aggregate", "--out", str(d / "run"), *RANKS))
    for i in range(2):
        ok(cli.run("aggregate", "--out", str(d / f"s{i}"), "--shard", f"{i}/2", *RANKS))
    return {name: d / name for name in ("run", "s0", "s1")}


def test_rank_killed_mid_pass_resumes_byte_identical(reference: dict[str, Path], tmp_path: Path) -> None:
    """The same torchrun command with --resume (as for one process); influence counts spilled to
    disk, so the checkpoints name runs of each rank's .spill-<r>of2 folder."""
    out = tmp_path / "run"
    spill = ["--influence-memory", "300"]
    kill_rank1_when(out, lambda: len(checkpoints(out)) == 2, *spill)
    assert checkpoints(out) == ["checkpoint-0of2.npz", "checkpoint-1of2.npz"] and not (out / "run.json").exists()
    assert [read_state(out / c)["split"] for c in checkpoints(out)] == [[0, 2], [1, 2]]
    assert list((out / ".spill-1of2").rglob("run-*.keys"))
    ranks_refused(out, "has a checkpoint of an interrupted run; pass --resume", *spill)
    ranks_ok(out, "--resume", *spill)
    assert tree_bytes(out) == tree_bytes(reference["run"]) and checkpoints(out) == []
    ranks_refused(out, "holds a finished run; nothing to resume", "--resume", *spill)


def test_rank_killed_before_its_first_checkpoint_over_old_run_resumes(reference: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """`--overwrite` over an old run: rank 1 dies before its first checkpoint, rank 0 has one. Both
    ranks see an interrupted run (not rank 1 a finished one): rank 0 resumes, rank 1 starts again."""
    out = Path(shutil.copytree(reference["s0"], tmp_path / "run"))  # any earlier run
    every = ["--checkpoint-every", "24"]  # rank 0 after its 3 batches, rank 1 (2 batches) never
    kill_rank1_when(out, lambda: (out / "checkpoint-0of2.npz").exists(), "--overwrite", *every)
    assert checkpoints(out) == ["checkpoint-0of2.npz"] and (out / "run.json").exists()
    ranks_ok(out, "--resume", *every)
    assert tree_bytes(out) == tree_bytes(reference["run"]) and checkpoints(out) == []


def test_rank_killed_while_results_are_written_resumes(reference: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    since = time.time()
    kill_rank1_when(out, fresh_file(tmp_path, "classes.parquet", since), freeze_rank0=True)  # rank 0 writes
    assert len(checkpoints(out)) == 2 and not (out / "run.json").exists()
    ranks_ok(out, "--resume")
    assert tree_bytes(out) == tree_bytes(reference["run"]) and checkpoints(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the killed run's staging folder is gone


@pytest.mark.parametrize("point", ["first checkpoint", "shard.npz staged"])
def test_killed_shard_resumes_byte_identical(cli: CliRunner, reference: dict[str, Path], tmp_path: Path,
                                             point: str) -> None:
    """--shard 0/2 killed as its first checkpoint appears, or with its shard.npz staged before its
    run.json is written and renamed: --resume continues the same shard."""
    out = tmp_path / "s0"
    for _ in range(20):  # the staged kill point lasts milliseconds: try again where the shard was faster
        shutil.rmtree(out, ignore_errors=True)
        since = time.time()
        ready = (lambda: (out / "checkpoint-0of2.npz").exists()) if point == "first checkpoint" else \
            fresh_file(tmp_path, "shard.npz", since)
        kill_when(cli, cli.start("aggregate", "--out", str(out), "--shard", "0/2", *RANKS), ready)
        if not (out / "run.json").exists():
            break
    assert checkpoints(out) == ["checkpoint-0of2.npz"] and not (out / "run.json").exists()
    ok(cli.run("aggregate", "--out", str(out), "--shard", "0/2", "--resume", *RANKS))
    assert checkpoints(out) == []
    state = "shard.npz"  # names its spilled runs by their path, so it differs between folders
    assert {k: v for k, v in tree_bytes(out).items() if k != state} == \
        {k: v for k, v in tree_bytes(reference["s0"]).items() if k != state}
    ok(cli.run("merge", str(out), str(reference["s1"]), "--out", str(tmp_path / "merged"), "--quiet"))
    assert tree_bytes(tmp_path / "merged") == tree_bytes(reference["run"])


def test_world_size_without_torchrun_is_one_line(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "run"
    bare = {"RANK": None, "LOCAL_RANK": None, "MASTER_ADDR": None, "MASTER_PORT": None}
    refused(cli.run("aggregate", "--out", str(out), *RANKS, env={**bare, "WORLD_SIZE": "2"}),
            "WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT not set: start distributed runs with `torchrun")
    refused(cli.run("aggregate", "--out", str(out), *RANKS, env={**bare, "WORLD_SIZE": "two"}),
            "WORLD_SIZE='two' is not a whole number")
    refused(cli.run("aggregate", "--out", str(out), *RANKS, env={**bare, "RANK": "1"}),
            "RANK=1 with WORLD_SIZE=1: need 0 <= RANK < WORLD_SIZE")
    refused(cli.run("aggregate", "--out", str(out), *RANKS, env={**bare, "LOCAL_RANK": "gpu0"}),
            "LOCAL_RANK='gpu0' is not a whole number")  # was a ValueError traceback
    assert not out.exists()
