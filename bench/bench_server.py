"""Load test of `summit serve` on loopback: a bounded burst of concurrent API requests.

Starts the real app (the threaded werkzeug server `summit serve` runs) in its own process on
127.0.0.1 at an ephemeral port, fires N requests at once from a thread pool (a mix of /api/graph
for different classes and settings, /api/classes and /api/channel), and reports the error count
and latency percentiles, overall and per endpoint. Round 1 meets empty caches; later rounds
repeat the same requests warm. Nothing leaves the machine.

    python bench/bench_server.py --run runs/sample            # 200 requests, 200 at a time
    python bench/bench_server.py                              # builds the bundled sample first
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import multiprocessing.connection
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from summit.server import create_app, make_http_server
from summit.store import Run

HOST = "127.0.0.1"


def request_mix(run: Run, n: int, seed: int) -> list[tuple[str, str]]:
    """(kind, path) of n requests: half graphs (several classes and top_n), a quarter each of
    /api/classes and /api/channel on random units."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = i % 4
        if r in (0, 1):
            cls = rng.choice(run.class_names)
            out.append(("graph", f"/api/graph?class={cls}&top_n={rng.choice((5, 10, 15))}&edges_per_node=3"))
        elif r == 2:
            out.append(("classes", "/api/classes"))
        else:
            layer = rng.choice(run.layers)
            out.append(("channel", f"/api/channel/{layer}/{rng.randrange(run.channels[layer])}"))
    rng.shuffle(out)
    return out


def fetch(base: str, path: str, start: threading.Event) -> tuple[float, str | None]:
    """(seconds, error or None) of one GET; waits for the common start signal first."""
    start.wait()
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(base + path, timeout=60) as r:
            r.read()
            err = None if r.status == 200 else f"HTTP {r.status}"
    except (urllib.error.URLError, OSError) as e:
        err = f"{type(e).__name__}: {e}"
    return time.perf_counter() - t, err


def stats(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max())}


def _serve(run_dir: Path, conn: mp.connection.Connection) -> None:
    """Server process: the real app on an ephemeral loopback port, reported back through conn."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request log lines
    srv = make_http_server(create_app(run_dir), HOST, 0)
    conn.send(srv.server_port)
    srv.serve_forever()


def burst(base: str, mix: list[tuple[str, str]], concurrency: int) -> dict:
    """Fire all requests of mix with `concurrency` in flight; latency and error report."""
    start = threading.Event()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(fetch, base, path, start) for _, path in mix]
        t0 = time.perf_counter()
        start.set()
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    errors = [f"{path}: {err}" for (_, path), (_, err) in zip(mix, results, strict=True) if err]
    by_kind: dict[str, list[float]] = {}
    for (kind, _), (sec, _) in zip(mix, results, strict=True):
        by_kind.setdefault(kind, []).append(sec)
    return {"errors": len(errors), "error_samples": errors[:5], "wall_s": wall,
            "requests_per_s": len(mix) / wall, **stats([s for s, _ in results]),
            "by_endpoint": {k: stats(v) for k, v in sorted(by_kind.items())}}


def bench(run_dir: Path, n: int, concurrency: int, rounds: int, seed: int) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(run_dir, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(120):
            raise RuntimeError("server process did not start")
        base = f"http://{HOST}:{parent.recv()}"
        mix = request_mix(Run(run_dir), n, seed)
        reps = [burst(base, mix, concurrency) for _ in range(rounds)]
    finally:
        proc.terminate()
        proc.join()
    return {"requests": n, "concurrency": concurrency, "rounds": reps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=None, help="run directory (default: build the bundled sample)")
    p.add_argument("-n", "--requests", type=int, default=200)
    p.add_argument("-c", "--concurrency", type=int, default=200, help="requests in flight at once")
    p.add_argument("--rounds", type=int, default=2, help="bursts; the first one meets cold caches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args()
    if not 1 <= a.concurrency <= 1000 or not 1 <= a.requests <= 100_000 or not 1 <= a.rounds <= 20:
        p.error("keep the load bounded: 1..1000 concurrent, 1..100000 requests, 1..20 rounds")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = a.run
        if run_dir is None:
            from summit.aggregate import AggregateConfig, aggregate
            run_dir = Path(tmp) / "sample"
            aggregate(AggregateConfig(model="squeezenet1_1"), None, run_dir, progress=False)
        rep = bench(run_dir, a.requests, a.concurrency, a.rounds, a.seed)
    if a.json:
        print(json.dumps(rep, indent=1))
        return
    print(f"{rep['requests']} requests per round, {rep['concurrency']} concurrent, on {HOST}")
    for i, r in enumerate(rep["rounds"], 1):
        print(f"round {i} ({'cold' if i == 1 else 'warm'}): {r['errors']} errors, {r['wall_s']:.2f}s wall "
              f"({r['requests_per_s']:.0f} req/s)")
        print(f"  all       p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms")
        for k, s in r["by_endpoint"].items():
            print(f"  {k:<9} p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms"
                  f"  (n={s['n']})")
        for e in r["error_samples"]:
            print(f"  error: {e}")


if __name__ == "__main__":
    main()
