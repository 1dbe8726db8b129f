"""Full-size rehearsal (not a test): ImageNet's shape end to end on this machine.

1000 WordNet-id class folders of generated JPEGs (every image distinct, torchvision FakeData)
go through GoogLeNet (random weights, all nine inception blocks, influence on) with torchrun on
2 ranks, then every class's graph (`summit graphs`), Summit's data folder (`summit export
--format summit-data`) and the web UI with 1000 classes (time to the first graph node in
headless Chromium, bench/bench_ui.py). Each stage runs as its own process tree; reported per
stage: wall seconds, peak RSS of the whole tree (sampled every 0.2 s), disk of what it wrote.

    python bench/rehearsal_imagenet.py --root /tmp/rehearsal [--per-class 2] [--image-size 224]

Writes <root>/report.json and prints it. Run it alone: it takes the whole machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent.parent
PY = sys.executable
SUMMIT = [PY, "-m", "summit"]


def du(path: Path) -> int:
    """Bytes of the files under path."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def stage(name: str, cmd: list[str], wrote: Path | None, env: dict | None = None) -> dict:
    """Run one stage as a process tree; wall time, peak tree RSS, disk written, its last line."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=HERE, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    root, peak = psutil.Process(p.pid), 0
    while p.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(q.memory_info().rss for q in procs if q.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    out = p.stdout.read()
    if p.returncode:
        sys.exit(f"{name} failed ({p.returncode}):\n{out[-3000:]}")
    lines = [l for l in out.splitlines() if l.strip() and "\r" not in l and "%|" not in l]
    row = {"stage": name, "wall_s": round(time.perf_counter() - t, 1), "peak_rss_mib": round(peak / 2**20),
           "disk_mib": round(du(wrote) / 2**20, 1) if wrote else None, "said": [l[:300] for l in lines[-3:]]}
    print(json.dumps(row), flush=True)
    return row


def make_dataset(root: Path, per_class: int, size: int) -> int:
    """1000 folders named by WordNet id, `per_class` distinct generated JPEGs each."""
    from torchvision.datasets import FakeData

    from summit.run.imagenet import imagenet_table
    fake = FakeData(size=1000 * per_class, image_size=(3, size, size), num_classes=1000, random_offset=7)
    for c, row in enumerate(imagenet_table()):
        d = root / row.wnid
        d.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            fake[c * per_class + j][0].save(d / f"{row.wnid}_{j}.JPEG", quality=90)
    return 1000 * per_class


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=2, help="images per class (default 2)")
    ap.add_argument("--image-size", type=int, default=224, help="generated image side (default 224)")
    ap.add_argument("--ranks", type=int, default=2)
    a = ap.parse_args()
    if a.root.exists():
        shutil.rmtree(a.root)
    data, run, export = a.root / "imagenet-train", a.root / "run", a.root / "summit-data"
    rows = []
    t = time.perf_counter()
    n = make_dataset(data, a.per_class, a.image_size)
    rows.append({"stage": "generate dataset", "wall_s": round(time.perf_counter() - t, 1), "images": n,
                 "disk_mib": round(du(data) / 2**20, 1)})
    print(json.dumps(rows[-1]), flush=True)
    threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // a.ranks))}
    rows.append(stage(f"aggregate (torchrun, {a.ranks} ranks)",
                      [PY, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={a.ranks}", "-m",
                       "summit", "aggregate", str(data), "--model", "googlenet", "--weights", "random",
                       "--out", str(run), "--examples-k", "10", "--workers", "1", "--quiet"], run, threads))
    rows.append(stage("graphs (1000 classes)", [*SUMMIT, "graphs", "--run", str(run), "--quiet"],
                      run / "graphs.parquet"))
    rows.append(stage("export summit-data", [*SUMMIT, "export", "--run", str(run), "--format", "summit-data",
                                             "--out-dir", str(export), "--quiet"], export))
    rows.append(stage("UI first graph (cold server, 1 trial)",
                      [PY, "bench/bench_ui.py", "--run", str(run), "--trials", "1"], None))
    report = {"images": n, "classes": 1000, "model": "googlenet (random weights)", "ranks": a.ranks,
              "image_size": a.image_size, "cpus": os.cpu_count(), "stages": rows}
    (a.root / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
