"""`summit aggregate` from a read-only, system-wide install, run without a writable HOME: the
numba kernel has nowhere to cache and is compiled in the process instead (issue 21, item 4).
The folders are really read-only: a read-only bind mount in a private mount namespace when the
tests run as root (who ignores file modes), file modes otherwise."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from summit.pipeline.data import BUNDLED_SAMPLE

ROOT = Path(__file__).resolve().parents[2]


def read_only(dirs: list[Path], cmd: list[str]) -> list[str]:
    """cmd run with dirs read-only."""
    if os.geteuid() != 0:
        for d in dirs:
            for p in [d, *d.rglob("*")]:
                p.chmod(p.stat().st_mode & ~0o222)
        return cmd
    mounts = " && ".join(f"mount --bind {d} {d} && mount -o remount,bind,ro {d}" for d in dirs)
    return ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]


def test_aggregate_from_a_read_only_install_without_home(tmp_path: Path) -> None:
    pkg, home, out = tmp_path / "site", tmp_path / "home", tmp_path / "run"
    shutil.copytree(ROOT / "summit", pkg / "summit", ignore=shutil.ignore_patterns("__pycache__"))
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(PYTHONPATH=str(pkg), HOME=str(home), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "summit", "aggregate", str(BUNDLED_SAMPLE), "--model", "squeezenet1_1",
           "--layers", "fire2", "fire3", "--limit", "8", "--batch-size", "8", "--out", str(out), "--quiet"]
    p = subprocess.run(read_only([pkg, home], cmd), cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    where = subprocess.run([sys.executable, "-c", "import summit; print(summit.__file__)"], cwd=home, env=env,
                           capture_output=True, text=True).stdout.strip()
    assert where == str(pkg / "summit" / "__init__.py")  # the read-only copy ran, not the checkout
    assert (out / "influence.parquet").is_file()
    written = [p for p in [*pkg.rglob("*"), *home.rglob("*")] if "__pycache__" in p.parts or p.parent == home]
    assert written == []
