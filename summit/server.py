"""Web UI server: a JSON API over one run directory plus the static single-page app.

``create_app(run_dir)`` builds a Flask app; ``summit serve --run DIR`` runs it in waitress, a
production WSGI server (loopback by default, no ``Server`` banner). Every bad input answers 400
(bad query parameter) or 404 (unknown resource in the path) with a one-line
``{"error": "..."}``, and so do the server's own errors (malformed requests, oversized
headers). Requests whose ``Host`` header names neither the bound address, a loopback name nor
an ``--allow-host`` name are refused with 403 (DNS rebinding). Files are served only from the
run directory and the UI folder ``frontend/`` (``STATIC_DIR``): paths are built from validated layer names and
integers, then resolved and checked for containment.
"""
from __future__ import annotations

import io
import ipaddress
import json
import logging
import os
import re
import socket
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable

import numpy as np
import waitress
from flask import Flask, Response, jsonify, request, send_file
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from werkzeug.exceptions import HTTPException

from .errors import SummitError
from .store import Run


def _frontend_dir() -> Path:
    """The UI files: ``summit/frontend`` in an installed wheel, else the checkout's top-level
    ``frontend/`` (source tree or editable install); independent of the working directory."""
    here = Path(__file__).resolve().parent
    packaged = here / "frontend"
    return packaged if (packaged / "index.html").is_file() else here.parent / "frontend"


STATIC_DIR = _frontend_dir()
GRAPH_PARAMS = ("method", "selection", "mass", "mass_step", "ubiquitous", "exclude", "top_n", "min_count",
                "edges_per_node", "min_edge_count", "keep_dangling", "layers")
INT_MAX = 2**31 - 1
LISTEN_BACKLOG = 1024
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
INFLUENCE_MEMORY_BYTES = 512 * 2**20  # smaller influence tables are served from memory
GRAPH_CACHE_BYTES = 256 * 2**20  # graph JSON kept in memory (LRU), besides the entry limit
MAX_URL_BYTES = 8192  # longer request targets get a JSON 414
MAX_HEADER_BYTES = 256 * 1024  # request line plus headers; beyond it waitress answers a JSON 431
EMBEDDING_DEFAULT = "umap"  # the layout the UI shows first (Summit's)


class ApiError(Exception):
    """A client error with its HTTP status; rendered as ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def _file_inside(path: Path, root: Path) -> Path | None:
    """``path`` resolved (symlinks followed) if it is a file inside ``root``, else None."""
    p = path.resolve()
    return p if p.is_relative_to(root) and p.is_file() else None


def _parse_int(name: str, raw: str, lo: int, hi: int, status: int = 400) -> int:
    """A decimal integer in lo..hi (ASCII digits only: no "+", "_", spaces or exponents)."""
    if not re.fullmatch(r"-?[0-9]{1,12}", raw):
        raise ApiError(status, f"{name} must be an integer, got {raw!r}")
    v = int(raw)
    if not lo <= v <= hi:
        raise ApiError(status, f"{name} must be in {lo}..{hi}, got {v}")
    return v


def host_name(header: str) -> str:
    """The host part of a Host header ("[::1]:5000" -> "::1", "Example.org.:80" -> "example.org")."""
    h = header.strip().lower()
    if h.startswith("["):
        h = h[1:h.find("]")] if "]" in h else h[1:]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    return h.rstrip(".")


class HostCheck:
    """Which Host headers the server answers: loopback names, the bound address, ``--allow-host``
    names, and when bound to every interface also IP literals and this machine's names. A page
    on another domain that rebinds its DNS to this address sends its own name and is refused."""

    def __init__(self, bound: str = "127.0.0.1", allow: Iterable[str] = ()) -> None:
        self.wildcard = bound in WILDCARD_HOSTS
        names = {*LOOPBACK_NAMES, host_name(bound), *(host_name(a) for a in allow)}
        if self.wildcard:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = frozenset(n for n in names if n)

    def __call__(self, header: str) -> bool:
        name = host_name(header)
        if name in self.names:
            return True
        if self.wildcard:
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False


class Memo:
    """Thread-safe LRU memo of ``fn(*key)`` that computes each key once, even when concurrent
    requests ask for it at the same time (they wait for the first one); errors are not kept.
    Bounded by `maxsize` entries and, with `weigh`, by `max_weight` in total."""

    def __init__(self, fn: Callable[..., Any], maxsize: int, weigh: Callable[[Any], int] | None = None,
                 max_weight: int = 0) -> None:
        self.fn = fn
        self.maxsize = maxsize
        self.weigh = weigh
        self.max_weight = max_weight
        self.weight = 0
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._done: OrderedDict[Hashable, Any] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}

    def __call__(self, *key: Hashable) -> Any:
        with self._lock:
            if key in self._done:
                self.hits += 1
                self._done.move_to_end(key)
                return self._done[key]
            pending = self._pending.get(key)
            if pending is None:
                self.misses += 1
                fut: Future = Future()
                self._pending[key] = fut
        if pending is not None:
            return pending.result()
        try:
            value = self.fn(*key)
        except BaseException as e:
            with self._lock:
                del self._pending[key]
            fut.set_exception(e)
            raise
        with self._lock:
            self._done[key] = value
            self.weight += self.weigh(value) if self.weigh else 0
            while len(self._done) > self.maxsize or (self.weigh and self.weight > self.max_weight
                                                     and len(self._done) > 1):
                _, old = self._done.popitem(last=False)
                self.weight -= self.weigh(old) if self.weigh else 0
            del self._pending[key]
        fut.set_result(value)
        return value


class Api:
    """Validated, cached access to one run (shared by all request threads)."""

    def __init__(self, run_dir: str | os.PathLike, cache_size: int = 256) -> None:
        self.run = Run(run_dir)
        self.root = self.run.path.resolve()
        self.max_channels = max(self.run.channels.values())
        self.graph = Memo(self._graph, cache_size, weigh=len, max_weight=GRAPH_CACHE_BYTES)
        self.layer_matrices = Memo(self._layer_matrices, len(self.run.layers))
        self.layer_examples = Memo(self._layer_examples, len(self.run.layers))
        self.embedding = Memo(self._embedding, 3)
        self.similarity_rows = Memo(self._similarity_rows, len(self.run.layers) + 1)
        from .graphcache import GraphCache
        self.stored_graphs = GraphCache(self.run)  # default-settings graphs precomputed by `summit graphs`
        self.default_graph_params = self.graph_params({}, ())

    # --- validation -------------------------------------------------------------------------
    def cls(self, name: str, status: int = 400) -> int:
        """Class index of a name (or index); unknown names list close matches."""
        try:
            return self.run.class_index(name)
        except SummitError as e:
            raise ApiError(status, str(e)) from None

    def layer(self, layer: str, status: int = 404) -> str:
        try:
            return self.run.check_layer(layer)
        except SummitError as e:
            raise ApiError(status, str(e)) from None

    def channel(self, layer: str, raw: str) -> tuple[str, int]:
        """A validated (layer, channel) from path components (404 on anything unknown)."""
        layer = self.layer(layer)
        n = self.run.channels[layer]
        return layer, _parse_int("channel", raw, 0, n - 1, status=404)

    def graph_params(self, args: dict[str, str], extra: tuple[str, ...]) -> tuple:
        """Graph keyword arguments from query parameters, as a hashable cache key."""
        unknown = sorted(set(args) - set(GRAPH_PARAMS) - set(extra))
        if unknown:
            raise ApiError(400, f"unknown parameter(s) {', '.join(unknown)}; "
                                f"valid: {', '.join(extra + GRAPH_PARAMS)}")

        def num(name: str, default: int | None, lo: int, hi: int) -> int | None:
            raw = args.get(name, "")
            return default if raw == "" else _parse_int(name, raw, lo, hi)

        def choice(name: str, valid: tuple[str, ...]) -> str:
            v = args.get(name) or valid[0]
            if v not in valid:
                raise ApiError(400, f"bad {name} {v!r}; valid: {', '.join(valid)}")
            return v

        def fraction(name: str, default: float) -> float:
            raw = args.get(name, "")
            try:
                v = default if raw == "" else float(raw)
            except ValueError:
                v = -1.0
            if not 0 < v <= 1:
                raise ApiError(400, f"bad {name} {raw!r}: need a number in (0, 1]")
            return v

        layers = None
        if args.get("layers"):
            layers = tuple(self.layer(l.strip(), status=400) for l in args["layers"].split(","))
        method = choice("method", ("pagerank", "topn"))
        selection = args.get("selection") or None
        if selection is not None and selection not in self.run.selections:
            raise ApiError(400, f"unknown selection {selection!r}; valid: {', '.join(self.run.selections)}")
        if selection == self.run.check_selection(None):
            selection = None  # named default: the same graph (and the stored one)
        common: tuple = (("method", method), ("selection", selection), ("layers", layers),
                         ("hide_ubiquitous", choice("ubiquitous", ("hide", "show")) == "hide"),
                         ("exclude", tuple(args["exclude"].split(",")) if args.get("exclude") else None))
        pagerank = (("mass", fraction("mass", 0.075)), ("mass_step", fraction("mass_step", 0.005)))
        topn = (("top_n", num("top_n", 10, 1, self.max_channels)),  # checked under either method
                ("min_count", num("min_count", None, 1, INT_MAX)),
                ("edges_per_node", num("edges_per_node", 3, 0, self.max_channels)),
                ("min_edge_count", num("min_edge_count", 1, 1, INT_MAX)),
                ("keep_dangling", choice("keep_dangling", ("0", "1")) == "1"))
        return common + (pagerank if method == "pagerank" else topn)

    # --- cached computations ----------------------------------------------------------------
    def _graph(self, a: int, b: int | None, params: tuple) -> bytes:
        """node-link JSON (UTF-8 bytes) of a class graph (b is None) or of the comparison of a and b."""
        from .graph import class_graph, compare_graph
        from .graphcache import graph_bytes
        stored = self.stored_graphs.get(a) if b is None and params == self.default_graph_params else None
        if stored is not None:
            return stored
        kw: dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params}
        return graph_bytes(class_graph(self.run, a, **kw) if b is None else compare_graph(self.run, a, b, **kw))

    def _embedding(self, method: str) -> list[dict]:
        """Every layer's class layout: the stored one (computed and stored on first use); computed
        without storing when the run directory is read-only."""
        from .embedding import class_embedding, load_embedding
        try:
            return load_embedding(self.run, method)
        except OSError:
            return class_embedding(self.run, method)

    def _layer_matrices(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(count, sum) matrices (n_classes, channels) of one layer."""
        return self.run.activation_matrix(layer, "count"), self.run.activation_matrix(layer, "sum")

    def _layer_examples(self, layer: str) -> dict[int, list[dict]]:
        """Dataset example rows of one layer, per channel, best first."""
        t = self.run.examples(layer)
        out: dict[int, list[dict]] = {}
        if t is None:
            return out
        for row in sorted(t.to_pylist(), key=lambda r: (r["channel"], r["rank"])):
            out.setdefault(row["channel"], []).append(row)
        return out

    # --- files -------------------------------------------------------------------------------
    def examples_file(self, layer: str, channel: int) -> Path | None:
        """The dataset-example strip of a validated unit, if stored inside the run."""
        return _file_inside(self.root / "examples" / layer / f"{channel}.jpg", self.root)

    def featurevis_file(self, layer: str, channel: int) -> Path | None:
        """The rendered feature visualization of a validated unit, if inside the run."""
        from .featurevis_files import featurevis_path
        return _file_inside(Path(featurevis_path(self.root, layer, channel)), self.root)

    def featurevis_channels(self, layer: str) -> list[int]:
        """Channels of a layer with a rendered feature visualization."""
        d = self.root / "featurevis" / layer
        if not d.is_dir():
            return []
        n = self.run.channels[layer]
        chans = (int(p.stem) for p in d.glob("*.png") if re.fullmatch(r"[0-9]{1,9}", p.stem))
        return sorted(c for c in chans if c < n and self.featurevis_file(layer, c))

    # --- responses ---------------------------------------------------------------------------
    def meta(self) -> dict:
        m = self.run.meta
        d = m["dataset"]
        n_img = int(sum(self.run.classes.column("n_images").to_pylist()))
        return {
            "model": m["model"], "weights": m["weights"], "k": m.get("k"),
            "k_influence": m.get("k_influence"), "examples_k": m.get("examples_k"),
            "layers": [{"name": l, "channels": self.run.channels[l]} for l in self.run.layers],
            "pairs": [{k: p.get(k) for k in ("name", "src", "dst", "method", "bottleneck")} for p in m["pairs"]],
            "selections": self.run.selections, "default_selection": self.run.check_selection(None),
            "ubiquitous": (m.get("ubiquitous") or {}).get("channels", []),
            "dataset": {"n_files": d.get("n_files"), "n_images": n_img, "n_skipped": d.get("n_skipped"),
                        "n_classes": len(self.run.class_names)},
            "has_examples": (self.root / "examples.parquet").is_file(),
            "featurevis": {l: self.featurevis_channels(l) for l in self.run.layers},
            "pages": sorted(p.name for p in STATIC_DIR.glob("*.html") if p.name != "index.html"),
        }

    def classes(self) -> list[dict]:
        cols = [c for c in ("class", "name", "n_images", "n_correct", "hist") if c in self.run.classes.column_names]
        rows = self.run.classes.select(cols).to_pylist()
        for r in rows:
            ok = r["n_correct"] is not None and r["n_images"]
            r["accuracy"] = r["n_correct"] / r["n_images"] if ok else None
        return rows

    def layer_units(self, layer: str, top: int = 3) -> dict:
        count, _ = self.layer_matrices(layer)
        fv = set(self.featurevis_channels(layer))
        ex = self.layer_examples(layer)
        total = count.sum(0)
        order = np.argsort(-count, axis=0, kind="stable")[:top]
        names = self.run.class_names
        units = []
        for c in range(count.shape[1]):
            tops = [{"class": int(i), "name": names[i], "count": int(count[i, c])}
                    for i in order[:, c] if count[i, c] > 0]
            units.append({"channel": c, "count": int(total[c]), "top_classes": tops,
                          "has_featurevis": c in fv, "n_examples": len(ex.get(c, ()))})
        return {"layer": layer, "channels": int(count.shape[1]), "units": units}

    def channel_detail(self, layer: str, channel: int, top: int = 10) -> dict:
        count, sums = self.layer_matrices(layer)
        n_img = np.asarray(self.run.classes.column("n_images").to_pylist(), dtype=np.float64)
        col, scol = count[:, channel], sums[:, channel]
        order = [int(i) for i in np.argsort(-col, kind="stable")[:top] if col[i] > 0]
        names = self.run.class_names
        per_class = [{"class": i, "name": names[i], "count": int(col[i]),
                      "fraction": float(col[i] / n_img[i]) if n_img[i] else None,
                      "mean": float(scol[i] / n_img[i]) if n_img[i] else None} for i in order]
        fv = self.featurevis_file(layer, channel) is not None
        ex = self.layer_examples(layer).get(channel, [])
        return {
            "layer": layer, "channel": channel, "id": f"{layer}:{channel}",
            "count": int(col.sum()), "n_images": int(n_img.sum()),
            "mean_activation": float(scol.sum() / n_img.sum()) if n_img.sum() else None,
            "top_classes": per_class, "examples": ex,
            "examples_url": f"/api/examples/{layer}/{channel}.jpg" if ex else None,
            "has_featurevis": fv,
            "featurevis_url": f"/api/featurevis/{layer}/{channel}.png" if fv else None,
        }

    # --- class similarity, feature vis listing, warm-up --------------------------------------
    def _similarity_rows(self, layer: str | None) -> np.ndarray:
        """The embedding's class vectors (A rows of the embedding selection) of one layer, or of
        all layers side by side, scaled to unit length: their dot products are cosine similarities."""
        from .embedding import class_vectors
        m = np.concatenate([class_vectors(self.run, l, None) for l in ([layer] if layer else self.run.layers)],
                           axis=1)
        norm = np.linalg.norm(m, axis=1, keepdims=True)
        return np.divide(m, norm, out=np.zeros_like(m), where=norm > 0)

    def similar(self, cls: int, layer: str | None) -> dict:
        """Cosine similarity of every class's A row to class `cls`'s (in `layer`, None: all)."""
        u = self.similarity_rows(layer)
        return {"class": self.run.class_names[cls], "layer": layer,
                "similarity": np.round(u @ u[cls], 6).tolist()}

    def diversity_file(self, layer: str, channel: int, i: int) -> Path | None:
        """A rendered diversity image of a validated unit, if inside the run."""
        from .featurevis_files import diversity_path
        return _file_inside(diversity_path(self.root, layer, channel, i), self.root)

    def featurevis_listing(self) -> dict:
        """Rendered feature vis and diversity images per layer, and a stamp that changes when
        ``summit render`` adds or replaces images (pages poll it)."""
        from .featurevis_files import diversity_counts
        base = self.root / "featurevis"
        watched = [base, *(base / l for l in self.run.layers), *base.glob("*.json")]
        stamp = max((p.stat().st_mtime_ns for p in watched if p.exists()), default=0)
        return {"featurevis": {l: self.featurevis_channels(l) for l in self.run.layers},
                "diversity": {l: {str(c): n for c, n in diversity_counts(self.root, l).items()
                                  if self.diversity_file(l, c, 0)} for l in self.run.layers},
                "stamp": str(stamp)}

    def warm_up(self) -> threading.Thread:
        """Load what a first page view needs besides the graph tables (loaded by ``create_app``) in
        the background: the stored embedding and the class similarity rows. Errors are left to the
        requests."""
        def work() -> None:
            for step in (lambda: self.embedding(EMBEDDING_DEFAULT), lambda: self.similarity_rows(None)):
                try:
                    step()
                except Exception:  # noqa: BLE001 - the request that needs it reports it
                    pass
        t = threading.Thread(target=work, name="summit-warm-up", daemon=True)
        t.start()
        return t


def _unit_file(p: Path | None, missing: str, mimetype: str, max_age: int) -> Response:
    """A unit's image file (checked to be inside the run), or a 404 saying what is missing."""
    if p is None:
        raise ApiError(404, missing)
    return send_file(p, mimetype=mimetype, max_age=max_age)


def create_app(run_dir: str | os.PathLike, cache_size: int = 256, hosts: HostCheck | None = None) -> Flask:
    """The Flask app serving the run at ``run_dir`` (raises SummitError if it is not a run, or if
    its files are damaged: see ``Run``). `hosts`: accepted Host headers (default: loopback names only)."""
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    api = Api(run_dir, cache_size)
    api.run.preload_influence(INFLUENCE_MEMORY_BYTES)
    from .graph import dense
    dense(api.run)  # one-time set-up (dense matrices) before the first computed graph
    app.extensions["summit"] = api
    host_ok = hosts or HostCheck()
    from .explain_api import blocks_blueprint
    app.register_blueprint(blocks_blueprint(api))

    @app.before_request
    def _check_request() -> None:
        if len(request.environ.get("RAW_URI") or request.full_path) > MAX_URL_BYTES:
            raise ApiError(414, f"request target longer than {MAX_URL_BYTES} bytes")
        host = request.environ.get("HTTP_HOST")  # browsers always send one; other clients may not
        if host is not None and not host_ok(host):
            raise ApiError(403, f"host {host_name(host)!r} is not allowed (DNS rebinding "
                                f"protection); start `summit serve` with --allow-host NAME to accept it")

    @app.errorhandler(ApiError)
    def _api_error(e: ApiError) -> tuple[Response, int]:
        return jsonify(error=_one_line(e.message)), e.status

    @app.errorhandler(SummitError)
    def _summit_error(e: SummitError) -> tuple[Response, int]:
        return jsonify(error=_one_line(str(e))), 400

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> tuple[Response, int]:
        msg = f"not found: {request.path}" if e.code == 404 else (e.description or e.name)
        return jsonify(error=_one_line(msg)), e.code or 500

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return resp

    def graph_json(a: str, b: str | None, extra: tuple[str, ...]) -> Response:
        params = api.graph_params(request.args.to_dict(), extra)
        body = api.graph(api.cls(a), None if b is None else api.cls(b), params)
        return Response(body, mimetype="application/json")

    def required(name: str) -> str:
        v = request.args.get(name, "")
        if not v:
            raise ApiError(400, f"missing parameter {name!r}")
        return v

    @app.get("/")
    def index() -> Response:
        return send_file(STATIC_DIR / "index.html")

    @app.get("/api/meta")
    def meta() -> Response:
        return jsonify(api.meta())

    @app.get("/api/classes")
    def classes() -> Response:
        return jsonify(classes=api.classes())

    @app.get("/api/graph")
    def graph() -> Response:
        return graph_json(required("class"), None, ("class",))

    @app.get("/api/compare")
    def compare() -> Response:
        return graph_json(required("a"), required("b"), ("a", "b"))

    @app.get("/api/embedding")
    def embedding() -> Response:
        from .embedding import EMBEDDING_METHODS
        method = request.args.get("method") or EMBEDDING_DEFAULT
        if method not in EMBEDDING_METHODS:
            raise ApiError(400, f"bad method {method!r}; valid: {', '.join(EMBEDDING_METHODS)}")
        layer = request.args.get("layer") or api.run.layers[-1]
        api.layer(layer, status=400)
        return jsonify(layer=layer, method=method, points=[p for p in api.embedding(method) if p["layer"] == layer])

    @app.get("/api/similar")
    def similar() -> Response:
        layer = request.args.get("layer") or None
        return jsonify(api.similar(api.cls(required("class")),
                                   None if layer is None else api.layer(layer, status=400)))

    @app.get("/api/featurevis")
    def featurevis_listing() -> Response:
        return jsonify(api.featurevis_listing())

    @app.get("/api/diversity/<layer>/<channel>/<i>.png")
    def diversity(layer: str, channel: str, i: str) -> Response:
        layer, ch = api.channel(layer, channel)
        return _unit_file(api.diversity_file(layer, ch, _parse_int("image", i, 0, 15, status=404)),
                          f"no diversity image {i} rendered for {layer}:{ch} "
                          f"(render them with `summit render --run DIR ... --diversity 4`)", "image/png", 60)

    @app.get("/api/layer/<layer>")
    def layer(layer: str) -> Response:
        return jsonify(api.layer_units(api.layer(layer)))

    @app.get("/api/channel/<layer>/<channel>")
    def channel(layer: str, channel: str) -> Response:
        return jsonify(api.channel_detail(*api.channel(layer, channel)))

    @app.get("/api/examples/<layer>/<channel>.jpg")
    def examples(layer: str, channel: str) -> Response:
        layer, ch = api.channel(layer, channel)
        return _unit_file(api.examples_file(layer, ch), f"no dataset examples stored for {layer}:{ch}",
                          "image/jpeg", 3600)

    @app.get("/api/featurevis/<layer>/<channel>.png")
    def featurevis(layer: str, channel: str) -> Response:
        layer, ch = api.channel(layer, channel)
        return _unit_file(api.featurevis_file(layer, ch), f"no feature visualization rendered for {layer}:{ch} "
                                                          f"(render it with `summit render --run DIR`)", "image/png", 60)

    @app.get("/api/export/<name>.json")
    def export(name: str) -> Response:
        from .export import safe_filename
        a = api.cls(name, status=404)
        b = request.args.get("compare") or None
        ib = None if b is None else api.cls(b)
        data = api.graph(a, ib, api.graph_params(request.args.to_dict(), ("compare",)))
        names = api.run.class_names
        stem = f"summit-{names[a]}" + ("" if ib is None else f"-vs-{names[ib]}")
        return send_file(io.BytesIO(data), mimetype="application/json", as_attachment=True,
                         download_name=safe_filename(stem) + ".json")

    return app


class _JsonErrorTask(ErrorTask):
    """waitress's own error responses (malformed request, oversized headers, a crashed response)
    as one-line JSON, like every API error."""

    def execute(self) -> None:
        e = self.request.error
        body = json.dumps({"error": _one_line(f"{e.reason}: {e.body}")}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _JsonErrorChannel(HTTPChannel):
    error_task_class = _JsonErrorTask


class HttpServer:
    """`summit serve`'s production WSGI server: waitress on a listening socket, a fixed pool of
    request threads, a deep listen backlog so bursts queue, no ``Server`` banner, JSON for its
    own errors. Port 0 picks an ephemeral port (see ``server_port``)."""

    def __init__(self, app: Flask, sock: socket.socket, threads: int = 8) -> None:
        self._srv = waitress.create_server(
            app, sockets=[sock], threads=threads, ident="", backlog=LISTEN_BACKLOG,
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
        raise SummitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def make_http_server(app: Flask, host: str = "127.0.0.1", port: int = 5000, threads: int = 8,
                     reuse_port: bool = False) -> HttpServer:
    """The server `summit serve` runs, bound and listening (not yet serving)."""
    return HttpServer(app, listen_socket(host, port, reuse_port), threads)


def _worker(run_dir: str, host: str, port: int, allow_hosts: list[str], threads: int,
            ready: Any, parent: int) -> None:
    """An extra serving process on the shared port; ends with its parent (Linux PDEATHSIG)."""
    import ctypes
    import signal
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the line above
        return
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = create_app(run_dir, hosts=HostCheck(host, allow_hosts))
    app.extensions["summit"].warm_up()
    srv = make_http_server(app, host, port, threads, reuse_port=True)
    ready.set()
    srv.serve_forever()


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 5000,
          allow_hosts: Iterable[str] = (), threads: int = 8, processes: int = 1) -> None:
    """Serve the run until interrupted (blocks). With `processes` > 1, that many processes share
    the port (graphs are computed in Python: processes use several cores, threads do not)."""
    import multiprocessing as mp
    allow = list(allow_hosts)
    app = create_app(run_dir, hosts=HostCheck(host, allow))
    app.extensions["summit"].warm_up()
    from .graphcache import build_in_background
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
        w = ctx.Process(target=_worker, args=(str(run_dir), host, srv.server_port, allow, threads, ready,
                                              os.getpid()), daemon=True)
        w.start()
        workers.append((w, ready))
    for w, ready in workers:
        while not ready.wait(0.5):
            if not w.is_alive():
                raise SummitError(f"a serving process exited with code {w.exitcode}")
    print(f"summit: serving {app.extensions['summit'].root} on http://{host}:{srv.server_port}/ "
          f"({processes} process(es) x {threads} threads; Ctrl-C stops)", flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.shutdown()
        for w, _ in workers:
            w.terminate()
        if builder is not None:
            builder.terminate()
