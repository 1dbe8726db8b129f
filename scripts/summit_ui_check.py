"""Open Summit's own released UI on a `summit export --format summit-data` folder, in headless
Chromium, and report what it drew (not a test: it needs a copy of Summit's built site, which
this project does not ship).

    git clone -b gh-pages https://github.com/fredhohman/summit /tmp/summit-site
    summit export --run R --format summit-data --out-dir /tmp/sd
    python scripts/summit_ui_check.py --site /tmp/summit-site --data /tmp/sd [--shot summit-ui.png]

Summit's bundle fetches its data from raw.githubusercontent.com/fredhohman/summit-data; this
script serves the site and the export from one local server (127.0.0.1) and rewrites that base
URL in dist/bundle.js as it serves it. Requests off the machine (fonts, analytics) are aborted.
Reports page errors, console errors, data requests that failed (by kind: a missing image is
expected where nothing was rendered), the class it opened, and the attribution graph's nodes
per layer as drawn. Exits 1 on a page error or when no graph node is drawn.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
import threading
from collections import Counter
from pathlib import Path

SUMMIT_DATA_URL = "https://raw.githubusercontent.com/fredhohman/summit-data/master/"
CHROMIUM = "/usr/bin/chromium"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Summit's site at /, the export at /summit-data/, the bundle's data URL rewritten."""

    def __init__(self, *args, site: Path, data: Path, **kw) -> None:
        self.site, self.data = site, data
        super().__init__(*args, directory=str(site), **kw)

    def translate_path(self, path: str) -> str:
        if path.startswith("/summit-data/"):
            rel = path[len("/summit-data/"):].split("?")[0]
            return str(self.data / rel)
        return super().translate_path(path)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/dist/bundle.js":
            body = (self.site / "dist" / "bundle.js").read_text(encoding="utf-8")
            body = body.replace(SUMMIT_DATA_URL, "/summit-data/").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


def check(site: Path, data: Path, shot: Path | None, wait_ms: int) -> dict:
    from playwright.sync_api import sync_playwright
    handler = functools.partial(_Handler, site=site, data=data)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    errors: list[str] = []
    console: list[str] = []
    failed: Counter = Counter()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else None,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)

            def on_response(r) -> None:
                if r.url.startswith(base + "/summit-data/") and r.status >= 400:
                    kind = r.url.split("/summit-data/data/")[-1].split("/")
                    failed[kind[1] if kind[0] == "feature-vis" else kind[0]] += 1
            page.on("response", on_response)
            page.goto(base + "/index.html")
            page.wait_for_timeout(wait_ms)
            drawn = page.evaluate("""() => {
                const per = {};
                document.querySelectorAll('image.fv-ch').forEach(n => {
                    const layer = n.id.split('-')[0]; per[layer] = (per[layer] || 0) + 1; });
                return {nodes: per, edges: document.querySelectorAll('path[class*="dag-edge"]').length, classes: document.querySelectorAll('.class-bar').length,
                        embedding_points: document.querySelectorAll('.embedding-point').length,
                        title: (document.querySelector('#class-title, .class-title') || {}).textContent || null};
            }""")
            if shot:
                page.screenshot(path=str(shot))  # the app; the page below it is Summit's article
            browser.close()
    finally:
        httpd.shutdown()
    local = [m for m in console if "ERR_FAILED" not in m]  # aborted requests off the machine say net::ERR_FAILED
    return {"page_errors": errors, "console_errors": local, "aborted_external": len(console) - len(local),
            "failed_data_requests": dict(failed),
            **drawn, "ok": not errors and not local and sum(drawn["nodes"].values()) > 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", type=Path, required=True, help="Summit's built site (its gh-pages branch)")
    ap.add_argument("--data", type=Path, required=True, help="an export --format summit-data folder")
    ap.add_argument("--shot", type=Path, default=None, help="screenshot file (PNG)")
    ap.add_argument("--wait-ms", type=int, default=6000, help="time given to the page to draw (default 6000)")
    a = ap.parse_args()
    for need in (a.site / "dist" / "bundle.js", a.data / "data" / "imagenet.json"):
        if not need.is_file():
            print(f"summit_ui_check: {need} is missing", file=sys.stderr)
            return 2
    report = check(a.site, a.data, a.shot, a.wait_ms)
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
