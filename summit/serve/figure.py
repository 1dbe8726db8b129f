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
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence
from urllib.parse import urlencode

from ..errors import SummitError, reason
from ..graph.build import class_images
from ..graph.options import METHODS
from ..run.store import IMAGE_VIEWS
from .api import DECIMAL

if TYPE_CHECKING:
    from ..run.store import Run

SYSTEM_CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
TIMEOUT_MS = 120_000


def _hash_values(run: Run) -> dict[str, Callable[[str], bool]]:
    """Each URL-hash setting the page reads (frontend/state.js readHash) and the values it takes
    as given (the page clamps or ignores others silently, so the CLI refuses them)."""
    def integer(lo: int, hi: int) -> Callable[[str], bool]:
        return lambda v: re.fullmatch(r"[0-9]{1,10}", v) is not None and lo <= int(v) <= hi

    def one_of(*values: str) -> Callable[[str], bool]:
        return lambda v: v in values

    def unit(v: str) -> bool:
        layer, _, ch = v.partition(":")
        return layer in run.channels and integer(0, run.channels[layer] - 1)(ch)

    return {"method": one_of(*METHODS), "top_n": integer(1, 30), "edges_per_node": integer(0, 10),
            "mass": lambda v: DECIMAL.fullmatch(v) is not None and 0 < float(v) <= 0.5,
            "selection": one_of(*run.selections), "ubiquitous": one_of("show", "hide"),
            "hide_le": integer(0, 10**9), "layer": one_of(*run.layers), "slayer": one_of(*run.layers),
            "csort": one_of("similarity", "accuracy", "count", "name"), "tab": one_of("graph", "units"),
            "usort": one_of("count", "channel"), "active": one_of("0", "1"), "unit": unit}


def _hash_params(params: Sequence[str], run: Run) -> dict[str, str]:
    """["top_n=5", ...] -> {"top_n": "5", ...}, each key and value checked as the page reads them."""
    valid = _hash_values(run)
    out = {}
    for p in params:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise SummitError(f"--param wants KEY=VALUE (as in the page's URL hash), got {p!r}")
        if key not in valid:
            raise SummitError(f"unknown --param {key!r}; valid: {', '.join(valid)} (class and compare: "
                              "--class, --compare)")
        if not valid[key](value):
            raise SummitError(f"bad --param {key}={value!r}: not a value the page takes")
        out[key] = value
    return out


def render_figure(run_dir: str | os.PathLike, cls: str, out: str | os.PathLike, *, compare: str | None = None,
                  scale: float = 2.0, hash_params: Sequence[str] = (), chromium: str | None = None,
                  images: str = "all") -> Path:
    """Write the figure of class `cls` (compared with `compare`) as .svg or .png (PNG at `scale`
    pixels per SVG unit), of its ``images`` (IMAGE_VIEWS: a part of its images, or its correct
    images' graph against its mistakes'); returns the path."""
    from ..run.files import output_file, write_output
    from .app import create_app
    from .http import make_http_server
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise SummitError(f"figure --out must end in .svg or .png, got {out.name!r}")
    output_file(out)  # refused before any work
    if not 0 < scale <= 8:
        raise SummitError(f"figure --scale must be in (0, 8], got {scale}")
    app = create_app(run_dir)
    run = app.extensions["summit"].run
    params = {**_hash_params(hash_params, run), "figure": "1"}
    n_images = run.classes.column("n_images").to_pylist()
    for key, name in (("class", cls), ("compare", compare)):
        if name is None:
            continue
        ci = run.class_index(name)
        if not n_images[ci]:
            raise SummitError(f"class {run.class_names[ci]} has no images in this run: its graph is empty")
        params[key] = run.class_names[ci]
    if images not in IMAGE_VIEWS:
        raise SummitError(f"unknown images {images!r}; valid: {', '.join(IMAGE_VIEWS)}")
    if images != "all":
        if compare is not None:
            raise SummitError("figure --images draws one class's images; drop --compare")
        for part in ("correct", "wrong") if images == "correct-vs-wrong" else (images,):
            class_images(run, run.class_index(cls), part)  # no split, no such images: one line, before Chromium
        params["images"] = images
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
    return write_output(out, body)
