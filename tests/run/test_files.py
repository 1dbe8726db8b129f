"""Output paths named by the user (`graph --out`, `figure --out`, `diff --json`): a symlink is written
through (its target replaced, the link kept), a device or stream is written to, never replaced by a
regular file, and paths that cannot be written are refused in one line before any work. Temporary
files of killed writers are cleaned by the next command that looks at the file."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cli_runner import CliRunner

from summit.run.files import STAGING


def _graph(cli: CliRunner, run: Path, out: str | Path, *extra: str):
    return cli.run("graph", "--run", str(run), "--class", "0", "--out", str(out), *extra, timeout=120)


def test_symlink_to_a_file_is_written_through(small_run: Path, cli: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    p = _graph(cli, small_run, link)
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)  # was replaced by a regular file
    assert json.loads(target.read_text())["graph"]["class_index"] == 0


def test_stdout_through_proc(small_run: Path, cli: CliRunner, tmp_path: Path) -> None:
    """A link to /proc/self/fd/1 (what /dev/stdout is) puts the graph alone on stdout, e.g. for jq;
    the summary line goes to stderr. (/dev/stdout itself is not used here: the code this replaced
    would have replaced it by a regular file.)"""
    link = tmp_path / "fd1.json"
    link.symlink_to("/proc/self/fd/1")
    p = _graph(cli, small_run, link)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["graph"]["class_index"] == 0, p.stdout[:200]
    assert "nodes" in p.stderr
    assert link.is_symlink()


def _char_device(tmp_path: Path) -> Path:
    """A character device to write to: a private null device where we may create one, else /dev/null."""
    dev = tmp_path / "null"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        return dev
    except PermissionError:
        return Path("/dev/null")


def test_character_device_and_fifo_are_written_to_not_replaced(small_run: Path, cli: CliRunner,
                                                                tmp_path: Path) -> None:
    dev = _char_device(tmp_path)
    p = _graph(cli, small_run, dev)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISCHR(dev.stat().st_mode), "the device was replaced by a regular file"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    p = _graph(cli, small_run, fifo, "--format", "dot")
    reader.join(60)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode) and got and got[0].startswith(b"// summit:"), got


@pytest.mark.parametrize("out, message", [
    ("/proc/summit-test.json", "output /proc/summit-test.json: no such device or stream"),
    ("{tmp}/missing/g.json", "folder {tmp}/missing does not exist"),
    ("{tmp}", "is a directory; give a file name"),
    ("", "the output path is empty"),
])
def test_unwritable_outputs_are_refused_in_one_line(out: str, message: str, small_run: Path, cli: CliRunner,
                                                    tmp_path: Path) -> None:
    p = _graph(cli, small_run, out.format(tmp=tmp_path))
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1 and message.format(tmp=tmp_path) in lines[0], p.stderr[-1500:]
    assert not Path("/proc/summit-test.json").exists()


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_graphs_cleans_what_a_killed_graphs_left(run_copy: Path, cli: CliRunner) -> None:
    """`graphs --force` killed before its rename leaves its temporary file; the next `graphs` (even
    one that finds the cache up to date) removes it, and leaves a live writer's alone."""
    assert cli.run("graphs", "--run", str(run_copy), "--quiet").returncode == 0
    host = socket.gethostname()
    dead = run_copy / f".graphs.parquet{STAGING}{_dead_pid()}@{host}~abc"
    live = run_copy / f".graphs.parquet{STAGING}{os.getpid()}@{host}~def"
    for f in (dead, live):
        f.write_bytes(b"PAR1 half written")
    p = cli.run("graphs", "--run", str(run_copy), "--quiet")
    assert p.returncode == 0 and "up to date" in p.stdout, p.stderr
    assert not dead.exists() and live.exists()
