"""Cold start of the web UI in a real headless Chromium on a (large) run.

Starts the app as `summit serve` does (its own process, empty caches, the background warm-up
started where the server has one) and opens the page as soon as the port answers, or with
--after-warmup once the warm-up has finished (a user opening the page a few seconds after
starting the server); --drop-embedding deletes a stored embedding.parquet first, so that it is
computed. Each trial uses a new server process and a new browser context. The page is watched
from before its first byte (a MutationObserver added as an init script): milliseconds from
navigation start until the first attribution graph node and the first embedding point are in
the document; plus the time of each API response (Resource Timing). The same measurement works
for any version of the UI, so --baseline SRC (a checkout of another version, e.g. `git archive
main | tar -x -C /tmp/old`) alternates its trials with this checkout's and reports the ratio;
the machine's load then weighs on both alike. Nothing leaves the machine.

    python bench/bench_graph.py --out /tmp/synth1000          # the 1000-class synthetic run
    python bench/bench_ui.py --run /tmp/synth1000 [--trials 3] [--after-warmup] [--baseline /tmp/old]
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import statistics
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
HERE = str(Path(__file__).resolve().parent.parent)
WATCH = """
window.__bench = {};
new MutationObserver(() => {
  const b = window.__bench;
  if (!b.graph && document.querySelector('#graph svg g.node')) b.graph = performance.now();
  if (!b.embedding && document.querySelector('#embedding circle')) b.embedding = performance.now();
}).observe(document, {childList: true, subtree: true});
"""
EVENTS = ("graph", "embedding")


def _serve(src: str, run_dir: Path, conn: mp.connection.Connection, after_warmup: bool) -> None:
    """Server process of the summit in `src`, run as `summit serve` runs it; reports its port and,
    if it waited for it, how long the warm-up took."""
    sys.path.insert(0, src)
    from summit.serve.app import create_app
    from summit.serve.http import make_http_server
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(run_dir)
    t = time.perf_counter()
    warm_up = getattr(app.extensions["summit"], "warm_up", None)   # older servers have none
    warm = warm_up() if warm_up else None
    srv = make_http_server(app, HOST, 0)
    if after_warmup and warm:
        warm.join()
    conn.send((srv.server_port, time.perf_counter() - t if after_warmup and warm else None))
    srv.serve_forever()


def trial(browser, src: str, run_dir: Path, drop_embedding: bool, after_warmup: bool) -> dict:
    if drop_embedding:
        (run_dir / "embedding.parquet").unlink(missing_ok=True)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(src, run_dir, child, after_warmup), daemon=True)
    proc.start()
    try:
        if not parent.poll(300):
            raise RuntimeError("server process did not start")
        port, warm_s = parent.recv()
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        page.add_init_script(WATCH)
        page.goto(f"http://{HOST}:{port}/")
        page.wait_for_function(f"() => {json.dumps(EVENTS)}.every(e => window.__bench[e])", timeout=120_000)
        out = page.evaluate("""(events) => {
            const r = {};
            for (const e of events) r[e] = window.__bench[e];
            for (const e of performance.getEntriesByType('resource')) {
                const u = new URL(e.name);
                if (u.pathname.startsWith('/api/')) r[u.pathname] = e.responseEnd - e.startTime;
            }
            return r;
        }""", list(EVENTS))
        page.context.close()
        return out if warm_s is None else {**out, "warm_up": warm_s * 1000}
    finally:
        proc.terminate()
        proc.join()


def report(name: str, results: list[dict]) -> dict[str, float]:
    for r in results:
        print(f"  {name}: " + json.dumps({k: round(v) for k, v in r.items()}))
    med = {}
    for m in (*EVENTS, "warm_up"):
        v = [r[m] for r in results if m in r]
        if v:
            med[m] = statistics.median(v)
            print(f"{name} {m}: median {med[m]:.0f} ms (min {min(v):.0f}, max {max(v):.0f}) over {len(v)} cold starts")
    return med


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="run directory (e.g. bench_graph.py --out)")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--drop-embedding", action="store_true", help="delete embedding.parquet before each trial")
    p.add_argument("--after-warmup", action="store_true", help="open the page once the warm-up is done")
    p.add_argument("--baseline", default=None, metavar="SRC", help="another checkout to alternate with")
    a = p.parse_args()
    if not (a.run / "run.json").is_file():
        raise SystemExit(f"bench_ui: not a run directory: {a.run}")
    from playwright.sync_api import sync_playwright
    print(f"{a.trials} cold starts, {'after' if a.after_warmup else 'during'} the warm-up, embedding "
          f"{'computed' if a.drop_embedding else 'stored (if present)'}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    srcs = {"this": HERE, **({"baseline": a.baseline} if a.baseline else {})}
    results: dict[str, list[dict]] = {k: [] for k in srcs}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(a.trials):
            for name, src in srcs.items():
                results[name].append(trial(browser, src, a.run, a.drop_embedding, a.after_warmup))
        browser.close()
    med = {name: report(name, r) for name, r in results.items()}
    if a.baseline:
        for e in EVENTS:
            print(f"{e}: this / baseline = {med['this'][e] / med['baseline'][e]:.2f}")


if __name__ == "__main__":
    main()
