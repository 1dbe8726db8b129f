"""Running the app: ``summit serve``'s production WSGI server (waitress), its worker processes
sharing one port, and waitress's own errors answered as one-line JSON."""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from typing import Any, Callable, Iterable

import waitress
from flask import Flask
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from ..errors import SummitError, one_line, reason
from ..graph.cache import build_in_background
from .api import BUILD_QUEUE
from .app import create_app
from .common import LOOPBACK_NAMES, BuildGate, HostCheck

LISTEN_BACKLOG = 1024
MAX_HEADER_BYTES = 256 * 1024  # request line plus headers; beyond it waitress answers a JSON 431
RETRY_AFTER_SECONDS = 2  # sent with a 503 (full graph build queue)


class _JsonErrorTask(ErrorTask):
    """waitress's own error responses (malformed request, oversized headers, a crashed response)
    as one-line JSON, like every API error."""

    def execute(self) -> None:
        e = self.request.error
        body = json.dumps({"error": one_line(f"{e.reason}: {e.body}")}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _JsonErrorChannel(HTTPChannel):
    error_task_class = _JsonErrorTask


def _retry_after(app: Flask) -> Callable:
    """The app as a WSGI callable whose 503 answers (a full graph build queue) carry Retry-After."""
    def wsgi(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            if status.startswith("503"):
                headers = [*headers, ("Retry-After", str(RETRY_AFTER_SECONDS))]
            return start_response(status, headers, exc_info)
        return app(environ, start)
    return wsgi


class HttpServer:
    """`summit serve`'s production WSGI server: waitress on a listening socket, a fixed pool of
    request threads, a deep listen backlog so bursts queue, no ``Server`` banner, JSON for its
    own errors. Port 0 picks an ephemeral port (see ``server_port``).

    Besides `threads`, one thread per graph build the app lets run or wait (``Api.builds``; each
    costs at least one queue unit): builds waiting their turn hold those, not the request threads,
    and a burst beyond the build queue reaches the app (and its 503) at once instead of waiting
    behind it in waitress's queue."""

    def __init__(self, app: Flask, sock: socket.socket, threads: int = 8) -> None:
        api = app.extensions.get("summit")
        self.threads = threads + (api.builds.running + api.builds.queue if api is not None else 0)
        self._srv = waitress.create_server(
            _retry_after(app), sockets=[sock], threads=self.threads, ident="", backlog=LISTEN_BACKLOG,
            connection_limit=LISTEN_BACKLOG, max_request_header_size=MAX_HEADER_BYTES,
            asyncore_loop_timeout=0.2)
        self._srv.channel_class = _JsonErrorChannel
        self._stop, self._running, self._done = threading.Event(), threading.Event(), threading.Event()
        self.server_address: tuple = sock.getsockname()
        self.server_port: int = self.server_address[1]

    def serve_forever(self) -> None:
        """Serve until `shutdown` (from another thread) or Ctrl-C; then close the sockets."""
        from waitress import wasyncore
        self._running.set()
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=0.2, map=self._srv._map, count=1)
        finally:
            self._close()
            self._done.set()

    def shutdown(self) -> None:
        """Stop serving and wait until the serving loop has closed the sockets."""
        self._stop.set()
        if self._running.is_set():
            self._done.wait()
        else:
            self._close()

    def _close(self) -> None:
        from waitress import wasyncore
        self._srv.task_dispatcher.shutdown()
        wasyncore.close_all(self._srv._map)


def listen_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket listening on host:port (SO_REUSEPORT lets several processes share it)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        raise SummitError(f"cannot listen on {host}:{port}: {reason(e)}") from None
    return sock


def make_http_server(app: Flask, host: str = "127.0.0.1", port: int = 5000, threads: int = 8,
                     reuse_port: bool = False) -> HttpServer:
    """The server `summit serve` runs, bound and listening (not yet serving)."""
    return HttpServer(app, listen_socket(host, port, reuse_port), threads)


def _app(run_dir: str | os.PathLike, host: str, allow_hosts: list[str], build_queue: int,
         against: str | os.PathLike | None) -> Flask:
    """The app a serving process runs (its background loads started: graphs' inputs and the
    Building Blocks model)."""
    app = create_app(run_dir, hosts=HostCheck(host, allow_hosts), warm=True, against=against)
    api = app.extensions["summit"]
    api.builds = BuildGate(queue=build_queue)
    api.warm_up()
    return app


def _worker(run_dir: str, host: str, port: int, allow_hosts: list[str], threads: int, build_queue: int,
            against: str | None, ready: Any, parent: int) -> None:
    """An extra serving process on the shared port; ends with its parent (Linux PDEATHSIG)."""
    import ctypes
    import signal
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the line above
        return
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    srv = make_http_server(_app(run_dir, host, allow_hosts, build_queue, against), host, port, threads,
                           reuse_port=True)
    ready.set()
    srv.serve_forever()


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 5000,
          allow_hosts: Iterable[str] = (), threads: int = 8, processes: int = 1,
          build_queue: int = BUILD_QUEUE, against: str | os.PathLike | None = None) -> None:
    """Serve the run until interrupted (blocks); with `against`, compared with that run
    (run-comparison mode: create_app). With `processes` > 1, that many processes share
    the port (graphs are computed in Python: processes use several cores, threads do not). Each
    process builds one graph at a time with at most `build_queue` units of work waiting (a re-cut
    costs 1, a class whose full graph is not in memory ``api.COLD_COST`` more); beyond, it answers 503
    with Retry-After."""
    import multiprocessing as mp
    allow = list(allow_hosts)
    app = _app(run_dir, host, allow, build_queue, against)
    builder = build_in_background(app.extensions["summit"].run)  # default graphs, served once stored
    srv = make_http_server(app, host, port, threads, reuse_port=processes > 1)
    if host not in LOOPBACK_NAMES:
        print(f"summit: warning: serving on {host}: the UI has no authentication; anyone who can reach "
              f"this address can read the run", file=sys.stderr)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # bursts queue by design
    ctx = mp.get_context("spawn")
    workers = []
    for _ in range(processes - 1):
        ready = ctx.Event()
        w = ctx.Process(target=_worker, args=(str(run_dir), host, srv.server_port, allow, threads, build_queue,
                                              None if against is None else str(against), ready, os.getpid()), daemon=True)
        w.start()
        workers.append((w, ready))
    for w, ready in workers:
        while not ready.wait(0.5):
            if not w.is_alive():
                raise SummitError(f"a serving process exited with code {w.exitcode}")
    vs = "" if against is None else f" against {app.extensions['summit_against'].b.root}"
    print(f"summit: serving {app.extensions['summit'].root}{vs} on http://{host}:{srv.server_port}/ "
          f"({processes} process(es) x {threads} threads; Ctrl-C stops)", flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.shutdown()
        for w, _ in workers:
            w.terminate()
        if builder is not None:
            builder.terminate()
