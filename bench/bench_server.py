"""Load test of `summit serve` on loopback: bursts of concurrent requests for different graphs.

Starts the real server (`summit serve`, waitress) in its own process on 127.0.0.1 and measures,
in the same run:

* start: seconds from starting the process to its first answer and to its first class graph;
  when the run's stored graphs (graphs.parquet, `summit graphs`) are missing or stale, the
  server builds them in the background: the bench waits until they are stored (build time);
* single: one default-settings graph request at a time, each for a class not asked before
  (median latency; answered from the stored graphs);
* graphs: N concurrent requests for default graphs (Summit's rule; a different class each,
  classes asked again when the run has fewer than N), reported as p50/p99/max and p99 as a ratio
  to the single request;
* on demand: N distinct non-default settings (mass_step=0.006 and, for runs with fewer classes
  than N, other masses: computed per request), single (cold, then the same classes with another
  mass step: a re-cut) and burst, then the burst again with another mass step (re-cuts where
  the first burst built the class);
* compare: N concurrent requests for different class comparisons, single and burst;
* every burst counts 503s (the server's full build queue, answered with Retry-After) apart
  from errors, and gives the latency of the answered (200) requests too;
* mix: the UI's mix (graphs, /api/classes, /api/channel), cold then warm.

Nothing leaves the machine; no test asserts a time.

    python bench/bench_server.py --run runs/sample            # 200 requests per burst
    python bench/bench_server.py --run DIR --drop-stored      # delete graphs.parquet first
    python bench/bench_server.py                              # builds the bundled sample first
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from summit.graph.cache import RECHECK_SECONDS, is_fresh
from summit.run.layout import GRAPHS_FILE
from summit.run.store import Run

HOST = "127.0.0.1"


def different_graphs(run: Run, n: int, seed: int, compare: bool = False, query: str = "",
                     vary_mass: bool = True) -> list[str]:
    """n distinct graph (or comparison) URLs, shuffled: one class (pair) each, with `query`
    settings added; runs with fewer classes than n also vary the mass (then not the defaults),
    or without `vary_mass` ask for classes again (then not distinct)."""
    classes = range(len(run.class_names))
    firsts = list(itertools.permutations(classes, 2) if compare else ((c,) for c in classes))
    if not vary_mass:
        firsts = list(itertools.islice(itertools.cycle(firsts), n))
    masses = [""] + [f"&mass={0.08 + i * 0.005:g}" for i in range(150 if vary_mass else 0)]
    urls = []
    for mass, cls in itertools.islice(itertools.product(masses, firsts), n * 4):
        q = f"a={cls[0]}&b={cls[1]}" if compare else f"class={cls[0]}"
        urls.append(f"/api/{'compare' if compare else 'graph'}?{q}{query}{mass}")
    random.Random(seed).shuffle(urls)
    if len(urls) < n:
        raise SystemExit(f"the run has too few classes for {n} different graphs")
    return urls[:n]


def ui_mix(run: Run, n: int, seed: int) -> list[str]:
    """Half graphs (several classes and top_n), a quarter each of /api/classes and /api/channel."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = i % 4
        if r in (0, 1):
            out.append(f"/api/graph?class={rng.randrange(len(run.class_names))}&top_n={rng.choice((5, 10, 15))}")
        elif r == 2:
            out.append("/api/classes")
        else:
            layer = rng.choice(run.layers)
            out.append(f"/api/channel/{layer}/{rng.randrange(run.channels[layer])}")
    rng.shuffle(out)
    return out


def fetch(base: str, path: str, start: threading.Event | None = None) -> tuple[float, int | None, str | None]:
    """(seconds, HTTP status or None, error or None) of one GET; waits for the common start signal first."""
    if start is not None:
        start.wait()
    t = time.perf_counter()
    status: int | None = None
    try:
        with urllib.request.urlopen(base + path, timeout=120) as r:
            r.read()
            status = r.status
            err = None if r.status == 200 else f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        status, err = e.code, f"HTTP {e.code}: {e.read()[:200].decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as e:
        err = f"{type(e).__name__}: {e}"
    return time.perf_counter() - t, status, err


def stats(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000
    if not len(a):
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max())}


def burst(base: str, paths: list[str]) -> dict:
    """All requests at once (one thread each); latency of all answers and of the 200s, 503s
    (a full build queue: the server's refusal, with Retry-After) apart from other errors."""
    start = threading.Event()
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        futures = [pool.submit(fetch, base, p, start) for p in paths]
        t0 = time.perf_counter()
        start.set()
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    errors = [f"{p}: {e}" for p, (_, st, e) in zip(paths, results, strict=True) if e and st != 503]
    busy = [s for s, st, _ in results if st == 503]
    return {"errors": len(errors), "error_samples": errors[:5], "busy_503": len(busy), "wall_s": wall,
            "requests_per_s": len(paths) / wall, **stats([s for s, _, _ in results]),
            "ok": stats([s for s, st, _ in results if st == 200]),
            "busy_p99_ms": stats(busy)["p99_ms"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, serve_args: list[str]) -> tuple[subprocess.Popen, str]:
    """`summit serve` in its own process; returns it and its base URL once it answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "summit", "serve", "--run", str(run_dir), "--port", str(port),
                             *serve_args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://{HOST}:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"summit serve exited: {proc.stderr.read() if proc.stderr else ''}")
        if fetch(base, "/api/meta")[2] is None:
            return proc, base
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("summit serve did not answer within 300 s")


def singles_ms(base: str, urls: list[str]) -> float:
    """Median latency (ms) of the requests sent one at a time."""
    single = [fetch(base, u) for u in urls]
    if any(e for _, _, e in single):
        raise RuntimeError(f"single requests failed: {[e for _, _, e in single if e][:3]}")
    return float(np.median([s for s, _, _ in single]) * 1000)


def bench(run_dir: Path, n: int, seed: int, singles: int, serve_args: list[str]) -> dict:
    run = Run(run_dir)
    stored_at_start = is_fresh(run)
    if not stored_at_start and not os.access(run_dir, os.W_OK):
        raise SystemExit(f"{run_dir} is read-only and has no fresh {GRAPHS_FILE}: run `summit graphs` "
                         "on a writable copy")
    graphs = different_graphs(run, n + singles + 1, seed, vary_mass=False)
    first_url, single_urls, burst_urls = graphs[0], graphs[1:singles + 1], graphs[singles + 1:]
    demand = different_graphs(run, n + singles, seed + 2, query="&mass_step=0.006")
    compares = different_graphs(run, n + singles, seed, compare=True)
    t0 = time.perf_counter()
    proc, base = start_server(run_dir, serve_args)
    try:
        rep: dict = {"requests": n, "stored_at_start": stored_at_start, "ready_s": time.perf_counter() - t0}
        _, _, err = fetch(base, first_url)
        if err:
            raise RuntimeError(f"first graph request failed: {err}")
        rep["first_graph_s"] = time.perf_counter() - t0
        while not is_fresh(run):  # the server stores the default graphs in the background
            if time.perf_counter() - t0 > 3600:
                raise RuntimeError("the stored graphs were not built within an hour")
            time.sleep(0.5)
        rep["stored_s"] = time.perf_counter() - t0
        time.sleep(RECHECK_SECONDS + 0.5)  # every serving process has looked again
        rep["single_ms"] = single_ms = singles_ms(base, single_urls)
        rep["graphs"] = burst(base, burst_urls)
        rep["demand_single_ms"] = singles_ms(base, demand[:singles])
        rep["demand_single_recut_ms"] = singles_ms(base, [u.replace("0.006", "0.007") for u in demand[:singles]])
        rep["demand"] = burst(base, demand[singles:])
        rep["demand_again"] = burst(base, [u.replace("0.006", "0.008") for u in demand[singles:]])
        rep["compare_single_ms"] = singles_ms(base, compares[:singles])
        rep["compare"] = burst(base, compares[singles:])
        rep["mix_cold"] = burst(base, ui_mix(run, n, seed + 1))
        rep["mix_warm"] = burst(base, ui_mix(run, n, seed + 1))
    finally:
        proc.terminate()
        proc.wait()
    for k in ("graphs", "mix_cold", "mix_warm"):
        rep[k]["p99_over_single"] = rep[k]["p99_ms"] / single_ms
    for k in ("demand", "demand_again"):
        rep[k]["p99_over_single"] = rep[k]["p99_ms"] / rep["demand_single_ms"]
    rep["compare"]["p99_over_single"] = rep["compare"]["p99_ms"] / rep["compare_single_ms"]
    return rep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=None, help="run directory (default: build the bundled sample)")
    p.add_argument("-n", "--requests", type=int, default=200, help="requests per burst (all concurrent)")
    p.add_argument("--singles", type=int, default=9, help="one-at-a-time requests for the reference latency")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve-args", default="", help="extra `summit serve` options, e.g. '--processes 1'")
    p.add_argument("--drop-stored", action="store_true",
                   help=f"delete the run's {GRAPHS_FILE} first (the server then builds it in the background)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args()
    if not 1 <= a.requests <= 1000 or not 1 <= a.singles <= 100:
        p.error("keep the load bounded: 1..1000 requests, 1..100 single requests")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = a.run
        if run_dir is None:
            from summit.pipeline.aggregator import AggregateConfig, aggregate
            run_dir = Path(tmp) / "sample"
            aggregate(AggregateConfig(model="squeezenet1_1"), None, run_dir, progress=False)
        if a.drop_stored:
            (run_dir / GRAPHS_FILE).unlink(missing_ok=True)
        rep = bench(run_dir, a.requests, a.seed, a.singles, a.serve_args.split())
    if a.json:
        print(json.dumps(rep, indent=1))
        return
    print(f"summit serve {a.serve_args} on {HOST} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}): "
          f"answers after {rep['ready_s']:.1f} s, first graph after {rep['first_graph_s']:.1f} s; stored graphs "
          f"{'fresh at start' if rep['stored_at_start'] else 'built in the background'}, ready after "
          f"{rep['stored_s']:.1f} s")
    print(f"single graph request {rep['single_ms']:.1f} ms (default settings, stored), "
          f"{rep['demand_single_ms']:.1f} ms (other settings, computed), {rep['demand_single_recut_ms']:.1f} ms "
          f"(the same classes, another mass step), compare {rep['compare_single_ms']:.1f} ms; medians of {a.singles}")
    for k, what in (("graphs", "stored default graphs"), ("demand", "different, computed"),
                    ("demand_again", "the same, another step"),
                    ("compare", "different comparisons"), ("mix_cold", "UI mix, cold"),
                    ("mix_warm", "UI mix, warm")):
        r = rep[k]
        print(f"{a.requests} concurrent, {what:<22}: p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
              f"max {r['max_ms']:7.1f} ms  p99/single {r['p99_over_single']:5.1f}x  "
              f"{r['requests_per_s']:5.0f} req/s  {r['errors']} errors  {r['busy_503']} busy (503, p99 "
              f"{r['busy_p99_ms']:.1f} ms)  answered p99 {r['ok']['p99_ms']:.1f} ms")
        for e in r["error_samples"]:
            print(f"  error: {e}")


if __name__ == "__main__":
    main()
