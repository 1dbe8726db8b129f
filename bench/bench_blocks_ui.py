"""Cold start of Building Blocks in a real headless Chromium: a new `summit serve` process per
trial (it loads the model in the background as it starts), the page opened --after seconds
after the server says it is serving (0: at once), then milliseconds from navigation start until
the first explanation is drawn (``body[data-loaded]``), and from the server's start.

    python bench/bench_blocks_ui.py --run runs/sample [--trials 3] [--after 0]
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def trial(browser, run: str, after: float) -> tuple[float, float]:
    """(ms from navigation, ms from the server's start) to the first drawn explanation."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    t0 = time.perf_counter()
    srv = subprocess.Popen([sys.executable, "-m", "summit", "serve", "--run", run, "--port", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert srv.stdout is not None and "serving" in srv.stdout.readline()
        time.sleep(after)
        page = browser.new_context().new_page()
        page.set_default_timeout(120_000)
        page.goto(f"http://127.0.0.1:{port}/blocks.html")
        page.wait_for_selector("body[data-loaded]")
        nav = page.evaluate("() => performance.now()")
        total = (time.perf_counter() - t0) * 1000
        page.context.close()
        return nav, total
    finally:
        srv.terminate()
        srv.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--after", type=float, default=0.0, help="seconds between 'serving' and opening the page")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        rows = [trial(browser, a.run, a.after) for _ in range(a.trials)]
        browser.close()
    for nav, total in rows:
        print(f"  first explanation {nav:.0f} ms after navigation, {total:.0f} ms after the server started")
    print(f"median over {a.trials}: {statistics.median(r[0] for r in rows):.0f} ms after navigation "
          f"(page opened {a.after:g} s after 'serving'), {statistics.median(r[1] for r in rows):.0f} ms after start")


if __name__ == "__main__":
    main()
