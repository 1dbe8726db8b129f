"""Web UI server: a JSON API over one run directory plus the static single-page app.

``create_app(run_dir)`` builds a Flask app; ``summit serve --run DIR`` runs it (loopback by
default). Every bad input answers 400 (bad query parameter) or 404 (unknown resource in the
path) with a one-line ``{"error": "..."}``. Files are served only from the run directory and
the UI folder ``frontend/`` (``STATIC_DIR``): paths are built from validated layer names and
integers, then resolved and checked for containment.
"""
from __future__ import annotations

import inspect
import io
import os
import re
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Hashable

import numpy as np
from flask import Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from .models import SummitError
from .store import Run


def _frontend_dir() -> Path:
    """The UI files: ``summit/frontend`` in an installed wheel, else the checkout's top-level
    ``frontend/`` (source tree or editable install); independent of the working directory."""
    here = Path(__file__).resolve().parent
    packaged = here / "frontend"
    return packaged if (packaged / "index.html").is_file() else here.parent / "frontend"


STATIC_DIR = _frontend_dir()
GRAPH_PARAMS = ("top_n", "min_count", "edges_per_node", "min_edge_count", "keep_dangling", "layers")
INT_MAX = 2**31 - 1
LISTEN_BACKLOG = 1024


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


class Memo:
    """Thread-safe LRU memo of ``fn(*key)`` that computes each key once, even when concurrent
    requests ask for it at the same time (they wait for the first one); errors are not kept."""

    def __init__(self, fn: Callable[..., Any], maxsize: int) -> None:
        self.fn = fn
        self.maxsize = maxsize
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
            if len(self._done) > self.maxsize:
                self._done.popitem(last=False)
            del self._pending[key]
        fut.set_result(value)
        return value


class Api:
    """Validated, cached access to one run (shared by all request threads)."""

    def __init__(self, run_dir: str | os.PathLike, cache_size: int = 256) -> None:
        self.run = Run(run_dir)
        self.root = self.run.path.resolve()
        self.max_channels = max(self.run.channels.values())
        self.graph = Memo(self._graph, cache_size)
        self.layer_matrices = Memo(self._layer_matrices, len(self.run.layers))
        self.layer_examples = Memo(self._layer_examples, len(self.run.layers))
        self.embedding = Memo(self._embedding, 2 * len(self.run.layers) + 2)
        self.similarity_rows = Memo(self._similarity_rows, len(self.run.layers) + 1)
        # cleared while warm_up loads the run's tables: computations that read them wait instead
        # of loading them a second time in parallel
        self.dense_ready = threading.Event()
        self.dense_ready.set()

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

        layers = None
        if args.get("layers"):
            layers = tuple(self.layer(l.strip(), status=400) for l in args["layers"].split(","))
        return (("top_n", num("top_n", 10, 1, self.max_channels)),
                ("min_count", num("min_count", None, 1, INT_MAX)),
                ("edges_per_node", num("edges_per_node", 3, 0, self.max_channels)),
                ("min_edge_count", num("min_edge_count", 1, 1, INT_MAX)),
                ("keep_dangling", bool(num("keep_dangling", 0, 0, 1))),
                ("layers", layers))

    # --- cached computations ----------------------------------------------------------------
    def _graph(self, a: int, b: int | None, params: tuple) -> dict:
        """node-link JSON of a class graph (b is None) or of the comparison of a and b."""
        from .graph import class_graph, compare_graph, to_json
        self.dense_ready.wait()
        kw: dict[str, Any] = {k: (list(v) if k == "layers" and v is not None else v) for k, v in params}
        G = class_graph(self.run, a, **kw) if b is None else compare_graph(self.run, a, b, **kw)
        return to_json(G)

    def _embedding(self, layer: str | None = None, method: str | None = None) -> dict:
        """Class embedding: the stored one (computed and stored on first use; computed without
        storing when the run directory is read-only), or one layer's / one method's layout."""
        from .graph import class_embedding, load_embedding
        self.dense_ready.wait()
        kw = {k: v for k, v in (("layer", layer), ("method", method)) if v is not None}
        if kw:
            rows = class_embedding(self.run, **kw)
        else:
            try:
                rows = load_embedding(self.run)
            except OSError:
                rows = class_embedding(self.run)
        used = method or next((r["method"] for r in rows if r.get("method")), None) or \
            inspect.signature(class_embedding).parameters["method"].default
        return {"points": rows, "layer": layer, "method": used}

    def _layer_matrices(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(count, sum) matrices (n_classes, channels) of one layer."""
        self.dense_ready.wait()
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
        from .featurevis import featurevis_path
        return _file_inside(Path(featurevis_path(self.root, layer, channel)), self.root)

    def featurevis_channels(self, layer: str) -> list[int]:
        """Channels of a layer with a rendered feature visualization."""
        d = self.root / "featurevis" / layer
        if not d.is_dir():
            return []
        n = self.run.channels[layer]
        chans = (int(p.stem) for p in d.glob("*.png") if p.stem.isdigit())
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
            "pairs": [{k: p.get(k) for k in ("name", "src", "dst", "method")} for p in m["pairs"]],
            "dataset": {"n_files": d.get("n_files"), "n_images": n_img, "n_skipped": d.get("n_skipped"),
                        "n_classes": len(self.run.class_names)},
            "has_examples": (self.root / "examples.parquet").is_file(),
            "featurevis": {l: self.featurevis_channels(l) for l in self.run.layers},
            "pages": sorted(p.name for p in STATIC_DIR.glob("*.html") if p.name != "index.html"),
        }

    def classes(self) -> list[dict]:
        rows = self.run.classes.select(["class", "name", "n_images", "n_correct"]).to_pylist()
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
        """A count rows (classes x channels) of one layer, or of all layers side by side, scaled
        to unit length: their dot products are cosine similarities."""
        m = np.concatenate([self.layer_matrices(l)[0] for l in ([layer] if layer else self.run.layers)],
                           axis=1).astype(np.float64)
        norm = np.linalg.norm(m, axis=1, keepdims=True)
        return np.divide(m, norm, out=np.zeros_like(m), where=norm > 0)

    def similar(self, cls: int, layer: str | None) -> dict:
        """Cosine similarity of every class's A row to class `cls`'s (in `layer`, None: all)."""
        u = self.similarity_rows(layer)
        return {"class": self.run.class_names[cls], "layer": layer,
                "similarity": np.round(u @ u[cls], 6).tolist()}

    def diversity_file(self, layer: str, channel: int, i: int) -> Path | None:
        """A rendered diversity image of a validated unit, if inside the run."""
        from .featurevis import diversity_path
        return _file_inside(diversity_path(self.root, layer, channel, i), self.root)

    def featurevis_listing(self) -> dict:
        """Rendered feature vis and diversity images per layer, and a stamp that changes when
        ``summit render`` adds or replaces images (pages poll it)."""
        from .featurevis import diversity_counts
        base = self.root / "featurevis"
        watched = [base, *(base / l for l in self.run.layers), *base.glob("*.json")]
        stamp = max((p.stat().st_mtime_ns for p in watched if p.exists()), default=0)
        return {"featurevis": {l: self.featurevis_channels(l) for l in self.run.layers},
                "diversity": {l: {str(c): n for c, n in diversity_counts(self.root, l).items()
                                  if self.diversity_file(l, c, 0)} for l in self.run.layers},
                "stamp": str(stamp)}

    def warm_up(self) -> threading.Thread:
        """Load what a first page view needs in the background: the graph module and the run's
        tables (requests wait for them, see ``dense_ready``), then the stored embedding and the
        class similarity rows. Errors are left to the requests."""
        def work() -> None:
            from .graph import class_graph
            try:
                class_graph(self.run, 0)
            except Exception:  # noqa: BLE001 - the first graph request reports it
                pass
            finally:
                self.dense_ready.set()
            for step in (lambda: self.embedding(None, None), lambda: self.similarity_rows(None)):
                try:
                    step()
                except Exception:  # noqa: BLE001 - the request that needs it reports it
                    pass
        self.dense_ready.clear()
        t = threading.Thread(target=work, name="summit-warm-up", daemon=True)
        t.start()
        return t


def create_app(run_dir: str | os.PathLike, cache_size: int = 256) -> Flask:
    """The Flask app serving the run at ``run_dir`` (raises SummitError if it is not a run)."""
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    api = Api(run_dir, cache_size)
    app.extensions["summit"] = api

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

    def graph_json(a: str, b: str | None, extra: tuple[str, ...]) -> dict:
        params = api.graph_params(request.args.to_dict(), extra)
        return api.graph(api.cls(a), None if b is None else api.cls(b), params)

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
        return jsonify(graph_json(required("class"), None, ("class",)))

    @app.get("/api/compare")
    def compare() -> Response:
        return jsonify(graph_json(required("a"), required("b"), ("a", "b")))

    @app.get("/api/embedding")
    def embedding() -> Response:
        layer = request.args.get("layer") or None
        return jsonify(api.embedding(None if layer is None else api.layer(layer, status=400),
                                     request.args.get("method") or None))

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
        p = api.diversity_file(layer, ch, _parse_int("image", i, 0, 15, status=404))
        if p is None:
            raise ApiError(404, f"no diversity image {i} rendered for {layer}:{ch} "
                                f"(render them with `summit render --run DIR ... --diversity 4`)")
        return send_file(p, mimetype="image/png", max_age=60)

    @app.get("/api/layer/<layer>")
    def layer(layer: str) -> Response:
        return jsonify(api.layer_units(api.layer(layer)))

    @app.get("/api/channel/<layer>/<channel>")
    def channel(layer: str, channel: str) -> Response:
        return jsonify(api.channel_detail(*api.channel(layer, channel)))

    @app.get("/api/examples/<layer>/<channel>.jpg")
    def examples(layer: str, channel: str) -> Response:
        layer, ch = api.channel(layer, channel)
        p = api.examples_file(layer, ch)
        if p is None:
            raise ApiError(404, f"no dataset examples stored for {layer}:{ch}")
        return send_file(p, mimetype="image/jpeg", max_age=3600)

    @app.get("/api/featurevis/<layer>/<channel>.png")
    def featurevis(layer: str, channel: str) -> Response:
        layer, ch = api.channel(layer, channel)
        p = api.featurevis_file(layer, ch)
        if p is None:
            raise ApiError(404, f"no feature visualization rendered for {layer}:{ch} "
                                f"(render it with `summit render --run DIR`)")
        return send_file(p, mimetype="image/png", max_age=60)

    @app.get("/api/export/<name>.json")
    def export(name: str) -> Response:
        from .graph import safe_filename
        a = api.cls(name, status=404)
        b = request.args.get("compare") or None
        ib = None if b is None else api.cls(b)
        data = api.graph(a, ib, api.graph_params(request.args.to_dict(), ("compare",)))
        names = api.run.class_names
        stem = f"summit-{names[a]}" + ("" if ib is None else f"-vs-{names[ib]}")
        body = io.BytesIO(app.json.dumps(data, indent=1).encode())
        return send_file(body, mimetype="application/json", as_attachment=True,
                         download_name=safe_filename(stem) + ".json")

    return app


def make_http_server(app: Flask, host: str = "127.0.0.1", port: int = 5000) -> BaseWSGIServer:
    """Threaded werkzeug server for ``app`` (port 0: an ephemeral one, see ``.server_port``) with a
    deep listen backlog, so a burst of connections queues instead of waiting out SYN retries."""
    srv = make_server(host, port, app, threaded=True)
    srv.socket.listen(LISTEN_BACKLOG)
    return srv


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 5000) -> None:
    """Serve the run until interrupted (blocks)."""
    app = create_app(run_dir)
    app.extensions["summit"].warm_up()
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: the UI has no authentication; anyone who can reach "
              f"this address can read the run")
    srv = make_http_server(app, host, port)
    print(f"summit: serving {app.extensions['summit'].root} on http://{host}:{srv.server_port}/ (Ctrl-C stops)")
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
