"""Cold start of the web UI in a real headless Chromium on a (large) run.

Starts the app as `summit serve` does (its own process, empty caches, the background warm-up
started) and opens the page as soon as the port answers, or with --after-warmup once the
warm-up has finished (a user opening the page a few seconds after starting the server);
--drop-embedding deletes a stored embedding.parquet first, so that it is computed. The page is
opened in a fresh browser context; the bench reads the page's own performance marks:
milliseconds from navigation start until the first attribution graph is drawn
(``summit:graph``) and until the class embedding is drawn (``summit:embedding``), plus the time
of each API response (Resource Timing). Each trial uses a new server process and a new browser
context. Nothing leaves the machine.

    python bench/bench_graph.py --out /tmp/synth1000          # the 1000-class synthetic run
    python bench/bench_ui.py --run /tmp/synth1000 [--trials 3] [--after-warmup] [--drop-embedding]
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import statistics
import time
from pathlib import Path

from summit.server import create_app, make_http_server
from summit.store import Run

HOST = "127.0.0.1"

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
MARKS = ("summit:graph", "summit:embedding")


def _serve(run_dir: Path, conn: mp.connection.Connection, after_warmup: bool) -> None:
    """Server process as `summit serve` runs it; reports its port and, if it waited for it, how
    long the warm-up took."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(run_dir)
    t = time.perf_counter()
    warm = app.extensions["summit"].warm_up()
    srv = make_http_server(app, HOST, 0)
    if after_warmup:
        warm.join()
    conn.send((srv.server_port, time.perf_counter() - t if after_warmup else None))
    srv.serve_forever()


def trial(browser, run_dir: Path, cls: str, drop_embedding: bool, after_warmup: bool) -> dict:
    if drop_embedding:
        (run_dir / "embedding.parquet").unlink(missing_ok=True)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(run_dir, child, after_warmup), daemon=True)
    proc.start()
    try:
        if not parent.poll(300):
            raise RuntimeError("server process did not start")
        port, warm_s = parent.recv()
        base = f"http://{HOST}:{port}"
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        page.goto(f"{base}/#class={cls}" if cls else f"{base}/")
        page.wait_for_function(f"() => {json.dumps(MARKS)}.every(m => performance.getEntriesByName(m).length)",
                               timeout=120_000)
        out = page.evaluate("""(marks) => {
            const r = {};
            for (const m of marks) r[m] = performance.getEntriesByName(m)[0].startTime;
            for (const e of performance.getEntriesByType('resource')) {
                const u = new URL(e.name);
                if (u.pathname.startsWith('/api/')) r[u.pathname] = e.responseEnd - e.startTime;
            }
            return r;
        }""", list(MARKS))
        page.context.close()
        return out if warm_s is None else {**out, "warm_up": warm_s * 1000}
    finally:
        proc.terminate()
        proc.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="run directory (e.g. bench_graph.py --out)")
    p.add_argument("--class", dest="cls", default=None, help="class to open (default: the page's choice)")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--drop-embedding", action="store_true", help="delete embedding.parquet before each trial")
    p.add_argument("--after-warmup", action="store_true", help="open the page once the warm-up is done")
    a = p.parse_args()
    from playwright.sync_api import sync_playwright
    cls = a.cls or ""
    Run(a.run)  # fail early on a bad directory
    print(f"{a.trials} cold starts, {'after' if a.after_warmup else 'during'} the warm-up, embedding "
          f"{'computed' if a.drop_embedding else 'stored (if present)'}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        results = [trial(browser, a.run, cls, a.drop_embedding, a.after_warmup) for _ in range(a.trials)]
        browser.close()
    for r in results:
        print(json.dumps({k: round(v) for k, v in r.items()}))
    for m in (*MARKS, "warm_up"):
        v = [r[m] for r in results if m in r]
        if not v:
            continue
        print(f"{m}: median {statistics.median(v):.0f} ms (min {min(v):.0f}, max {max(v):.0f}) over {len(v)} cold starts")


if __name__ == "__main__":
    main()
