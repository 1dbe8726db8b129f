"""Run `python -m summit ARGS` cases as separate processes without paying the interpreter's
start-up (importing torch takes seconds) for each one.

This file runs as a helper process that imports summit and its libraries once, runs no torch
operation itself, and forks one child per case. The child redirects stdin/stdout/stderr, sets
its environment and working directory, and runs the ``summit`` module as ``__main__`` exactly
like ``python -m summit`` (an uncaught exception prints its traceback and exits 1). The test
side (:class:`CliRunner`) talks to it with JSON lines and gets each child's pid, so a test can
kill -9 a case at a chosen moment.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """What a finished case left: exit status (negative: killed by that signal) and output."""

    returncode: int
    stdout: str
    stderr: str


class CliRunner:
    """Test side: start/wait CLI cases in the helper process (one per test session)."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the CLI runner process died")
        return json.loads(line)

    def start(self, *args: str, env: dict[str, str | None] | None = None, cwd: str | os.PathLike = ROOT) -> int:
        """Start `python -m summit *args`; returns its pid."""
        return self._ask({"op": "start", "argv": list(args), "env": env or {}, "cwd": str(cwd)})["pid"]

    def wait(self, pid: int, timeout: float = 600) -> Result:
        r = self._ask({"op": "wait", "pid": pid, "timeout": timeout})
        return Result(r["rc"], r["stdout"], r["stderr"])

    def run(self, *args: str, env: dict[str, str | None] | None = None, timeout: float = 600) -> Result:
        return self.wait(self.start(*args, env=env), timeout)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)


def _child(argv: list[str], env: dict[str, str | None], cwd: str, out: str, err: str) -> None:
    """Forked child: become `python -m summit *argv` and exit with its status."""
    import runpy
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    os.chdir(cwd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    sys.argv = [os.path.join(str(ROOT), "summit"), *argv]
    code = 1
    try:
        runpy.run_module("summit", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve() -> None:
    """Helper process: preload, then answer start/wait requests from stdin."""
    import flask  # noqa: F401  (preloaded for the children)
    import networkx  # noqa: F401
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    import waitress  # noqa: F401

    import summit.cli  # noqa: F401
    import summit.graph.build  # noqa: F401
    import summit.pipeline.aggregator  # noqa: F401
    import summit.serve.app  # noqa: F401
    import summit.vis.render  # noqa: F401
    tmp = tempfile.mkdtemp(prefix="summit-cli-")
    reply = sys.stdout
    files: dict[int, tuple[str, str]] = {}
    for n, line in enumerate(sys.stdin):
        msg = json.loads(line)
        if msg["op"] == "start":
            out, err = os.path.join(tmp, f"{n}.out"), os.path.join(tmp, f"{n}.err")
            reply.flush()
            pid = os.fork()
            if pid == 0:
                _child(msg["argv"], msg["env"], msg["cwd"], out, err)
            files[pid] = (out, err)
            reply.write(json.dumps({"pid": pid}) + "\n")
        else:
            pid = msg["pid"]
            deadline = time.time() + msg["timeout"]
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.time() > deadline:
                    os.kill(pid, 9)
                    _, status = os.waitpid(pid, 0)
                    break
                time.sleep(0.02)
            out, err = files.pop(pid)
            reply.write(json.dumps({"rc": os.waitstatus_to_exitcode(status), "stdout": Path(out).read_text(),
                                    "stderr": Path(err).read_text()}) + "\n")
        reply.flush()



if __name__ == "__main__":
    _serve()
