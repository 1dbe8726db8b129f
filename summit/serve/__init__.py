"""The web UI's server: the query service (api), routes (app), the Building Blocks endpoints
(blocks), run-comparison mode (against), a class's correct and wrong images (mistakes), what
they share (common), waitress (http) and paper figures drawn by the UI (figure).
"""
from __future__ import annotations

from ..lazy import exports

_HOMES = {
    "Api": "api",
    "RunComparison": "against",
    "Mistakes": "mistakes",
    "create_app": "app",
    "serve": "http", "make_http_server": "http",
    "HostCheck": "common", "Memo": "common",
    "render_figure": "figure",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = exports(__name__, _HOMES)
