"""State files never run code: crafted pickles, object arrays and foreign paths are refused
with one line, and a state round-trips exactly."""
from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import CliRunner

from summit.errors import SummitError
from summit.pipeline.statefile import read_state, write_state

SMALL = ["--limit", "24", "--batch-size", "8", "--layers", "fire2", "fire3", "--workers", "0", "--quiet"]


class _Marker:
    """Unpickling this writes a file: the proof that a loader ran the file's code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pwned"))


def _crafted_pickle(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"key": {}, "position": 0, "x": _Marker(marker)}, buf)
    return buf.getvalue()


def test_round_trip_keeps_types_and_values(tmp_path: Path) -> None:
    state = {"key": {"model": "m", "masses": [0.01, 0.03], "limit": None}, "position": 3,
             "skipped": [(4, "truncated"), (9, "not an image")], "t": torch.arange(6, dtype=torch.int32).view(2, 3),
             "f": torch.tensor([1.5, -float("inf")]), "a": np.array([2**62, -1], dtype=np.int64),
             "nested": {"runs": [("x/stage0/run-000001", 2)], "ok": True, "n": np.int64(7)}}
    write_state(tmp_path / "s.npz", state)
    back = read_state(tmp_path / "s.npz")
    assert back["skipped"] == [(4, "truncated"), (9, "not an image")] and back["key"] == state["key"]
    assert torch.equal(back["t"], state["t"]) and back["t"].dtype == torch.int32
    assert torch.equal(back["f"], state["f"]) and np.array_equal(back["a"], state["a"])
    assert back["nested"] == {"runs": [("x/stage0/run-000001", 2)], "ok": True, "n": 7}


@pytest.mark.parametrize("kind", ["torch pickle", "raw pickle", "object array", "no tree", "garbage"])
def test_crafted_files_are_refused_without_running_code(tmp_path: Path, kind: str) -> None:
    marker, f = tmp_path / "marker", tmp_path / "s.npz"
    if kind == "torch pickle":
        f.write_bytes(_crafted_pickle(marker))
    elif kind == "raw pickle":
        f.write_bytes(pickle.dumps(_Marker(marker)))
    elif kind == "object array":
        with zipfile.ZipFile(f, "w") as z:  # an .npy member holding a pickled object array
            buf = io.BytesIO()
            np.save(buf, np.array([_Marker(marker)], dtype=object), allow_pickle=True)
            z.writestr("summit_state.npy", buf.getvalue())
    elif kind == "no tree":
        np.savez(f, a0=np.zeros(3))
    else:
        f.write_bytes(b"\x00" * 64)
    with pytest.raises(SummitError, match="not a summit state file") as e:
        read_state(f)
    assert "\n" not in str(e.value) and not marker.exists()


def test_resume_and_merge_never_unpickle(cli: CliRunner, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint-0of1.npz").write_bytes(_crafted_pickle(marker))
    p = cli.run("aggregate", "--out", str(out), "--resume", *SMALL)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "not a summit state file" in p.stderr
    (out / "checkpoint-0of1.npz").unlink()
    (out / "checkpoint-0of1.pt").write_bytes(_crafted_pickle(marker))  # an older summit's name and format
    p = cli.run("aggregate", "--out", str(out), "--resume", *SMALL)
    assert p.returncode == 2 and "a pickle, which summit does not load" in p.stderr
    shard = tmp_path / "s0"
    assert cli.run("aggregate", "--out", str(shard), "--shard", "0/2", *SMALL).returncode == 0
    assert cli.run("aggregate", "--out", str(tmp_path / "s1"), "--shard", "1/2", *SMALL).returncode == 0
    good = (shard / "shard.npz").read_bytes()
    (shard / "shard.npz").write_bytes(_crafted_pickle(marker))
    p = cli.run("merge", str(shard), str(tmp_path / "s1"), "--out", str(tmp_path / "m"))
    assert p.returncode == 2 and "not a summit state file" in p.stderr
    (shard / "shard.npz").unlink()
    (shard / "shard.pt").write_bytes(_crafted_pickle(marker))
    p = cli.run("merge", str(shard), str(tmp_path / "s1"), "--out", str(tmp_path / "m"))
    assert p.returncode == 2 and "a pickle, which summit does not load" in p.stderr
    assert not marker.exists() and not (tmp_path / "m").exists()
    # --overwrite removes an old pickle checkpoint (unread) and starts again
    p = cli.run("aggregate", "--out", str(out), "--overwrite", *SMALL)
    assert p.returncode == 0, p.stderr
    assert not (out / "checkpoint-0of1.pt").exists() and not marker.exists()
    (shard / "shard.pt").unlink()
    (shard / "shard.npz").write_bytes(good)


def test_a_state_cannot_name_files_outside_its_spill_folder(cli: CliRunner, tmp_path: Path) -> None:
    victim = tmp_path / "victim.keys"
    victim.write_bytes(b"\x01" * 8)
    s0, s1 = tmp_path / "s0", tmp_path / "s1"
    for i, d in enumerate((s0, s1)):
        p = cli.run("aggregate", "--out", str(d), "--shard", f"{i}/2", *SMALL)
        assert p.returncode == 0, p.stderr
    state = read_state(s0 / "shard.npz")
    stage = next(iter(state["infl"]))
    for bad in (str(tmp_path / "victim"), "../../victim", "/etc/passwd"):
        state["infl"][stage] = {**state["infl"][stage], "runs": [(bad, 0)]}
        write_state(s0 / "shard.npz", state)
        p = cli.run("merge", str(s0), str(s1), "--out", str(tmp_path / "m"))
        assert p.returncode == 2 and "not one of its own" in p.stderr, p.stderr
    assert victim.read_bytes() == b"\x01" * 8 and not (tmp_path / "m").exists()
    shutil.rmtree(s0)
