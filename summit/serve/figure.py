"""Paper figures from the command line, drawn by the web UI's own code in headless Chromium.

``render_figure(run_dir, cls, out)`` serves the run on an ephemeral loopback port (in a thread),
opens the page for the class in figure mode with Playwright, and writes what the page's figure
export returns (``window.summit.figure``: the function behind the SVG and PNG download buttons),
so a file made here equals the browser's download for the same settings.
"""
from __future__ import annotations

import base64
import logging
import os
import threading
from pathlib import Path
from typing import Sequence
from urllib.parse import urlencode

from ..errors import SummitError, reason

SYSTEM_CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
TIMEOUT_MS = 120_000


def _hash_params(params: Sequence[str]) -> dict[str, str]:
    """["top_n=5", ...] -> {"top_n": "5", ...} (the page validates the values like a URL hash)."""
    out = {}
    for p in params:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise SummitError(f"--param wants KEY=VALUE (as in the page's URL hash), got {p!r}")
        out[key] = value
    return out


def render_figure(run_dir: str | os.PathLike, cls: str, out: str | os.PathLike, *, compare: str | None = None,
                  scale: float = 2.0, hash_params: Sequence[str] = (), chromium: str | None = None) -> Path:
    """Write the figure of class `cls` (compared with `compare`) as .svg or .png (PNG at `scale`
    pixels per SVG unit); returns the path."""
    from ..run.files import atomic_write_bytes
    from .app import create_app
    from .http import make_http_server
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise SummitError(f"figure --out must end in .svg or .png, got {out.name!r}")
    if not 0 < scale <= 8:
        raise SummitError(f"figure --scale must be in (0, 8], got {scale}")
    app = create_app(run_dir)
    run = app.extensions["summit"].run
    params = {**_hash_params(hash_params), "class": run.class_names[run.class_index(cls)], "figure": "1"}
    if compare is not None:
        params["compare"] = run.class_names[run.class_index(compare)]
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SummitError("summit figure needs Playwright: pip install 'summit[figure]'") from None
    exe = chromium or (SYSTEM_CHROMIUM if Path(SYSTEM_CHROMIUM).is_file() else None)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request log lines
    srv = make_http_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"http://127.0.0.1:{srv.server_port}/#{urlencode(params)}")
                page.wait_for_function("() => window.summit && (window.summit.graphReady() || window.summit.error())",
                                       timeout=TIMEOUT_MS)
                err = page.evaluate("() => window.summit.error()") or "; ".join(errors)
                if err:
                    raise SummitError(f"the page could not draw the figure: {err}")
                data = page.evaluate("(o) => window.summit.figure(o)", {"format": fmt, "scale": scale})
            finally:
                browser.close()
    except PlaywrightError as e:
        raise SummitError(f"headless Chromium failed: {reason(e)}") from None
    finally:
        srv.shutdown()
        thread.join()
    body = base64.b64decode(data.split(",", 1)[1]) if fmt == "png" else data.encode()
    atomic_write_bytes(out, body)
    return out
