"""Web UI server: a JSON API over one run directory plus the static single-page app.

``create_app(run_dir)`` builds the Flask app (routes here, answers from api.Api and, for the
Building Blocks explorer, blocks.py; a class's correct and wrong images: mistakes.py); http.py
runs it in waitress. Every bad input answers 400 (bad query parameter) or 404 (unknown
resource in the path) with a one-line ``{"error": "..."}``, and so do the server's own errors
(malformed requests, oversized headers). Requests whose ``Host`` header names neither the
bound address, a loopback name nor an ``--allow-host`` name are refused with 403 (DNS
rebinding). Files are served only from the run directory and the UI folder ``frontend/``
(``STATIC_DIR``): paths are built from validated layer names and integers, then resolved and
checked for containment.
"""
from __future__ import annotations

import io
import os

from flask import Blueprint, Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from ..errors import SummitError, one_line
from ..graph.embedding import EMBEDDING_METHODS
from ..graph.export import safe_filename
from ..graph.matrices import dense
from .against import RunComparison, against_blueprint
from .api import EMBEDDING_DEFAULT, Api
from .blocks import blocks_blueprint
from .common import STATIC_DIR, HostCheck, parse_int, unit_file
from .mistakes import Mistakes, mistakes_blueprint

INFLUENCE_MEMORY_BYTES = 512 * 2**20  # smaller influence tables are served from memory
MAX_URL_BYTES = 8192  # longer request targets get a JSON 414


def units_blueprint(api: Api, name: str) -> Blueprint:
    """One run's unit routes (feature vis listing, diversity, layer, channel, dataset examples,
    feature vis), mounted at ``api.url_prefix``."""
    bp = Blueprint(name, __name__, url_prefix=api.url_prefix)

    @bp.get("/featurevis")
    def featurevis_listing() -> Response:
        return jsonify(api.featurevis_listing())

    @bp.get("/diversity/<layer>/<channel>/<i>.png")
    def diversity(layer: str, channel: str, i: str) -> Response:
        layer, ch = api.channel(layer, channel)
        return unit_file(api.diversity_file(layer, ch, parse_int("image", i, 0, 15, status=404)),
                          f"no diversity image {i} rendered for {layer}:{ch} "
                          f"(render them with `summit render --run DIR ... --diversity 4`)", "image/png", 60)

    @bp.get("/layer/<layer>")
    def layer(layer: str) -> Response:
        return jsonify(api.layer_units(api.layer(layer)))

    @bp.get("/channel/<layer>/<channel>")
    def channel(layer: str, channel: str) -> Response:
        return jsonify(api.channel_detail(*api.channel(layer, channel)))

    @bp.get("/examples/<layer>/<channel>.jpg")
    def examples(layer: str, channel: str) -> Response:
        layer, ch = api.channel(layer, channel)
        return unit_file(api.examples_file(layer, ch), f"no dataset examples stored for {layer}:{ch}",
                          "image/jpeg", 3600)

    @bp.get("/featurevis/<layer>/<channel>.png")
    def featurevis(layer: str, channel: str) -> Response:
        layer, ch = api.channel(layer, channel)
        return unit_file(api.featurevis_file(layer, ch), f"no feature visualization rendered for {layer}:{ch} "
                                                          f"(render it with `summit render --run DIR`)", "image/png", 60)

    return bp


def create_app(run_dir: str | os.PathLike, cache_size: int = 256, hosts: HostCheck | None = None,
               warm: bool = False, against: str | os.PathLike | None = None) -> Flask:
    """The Flask app serving the run at ``run_dir`` (raises SummitError if it is not a run, or if
    its files are damaged: see ``Run``). `hosts`: accepted Host headers (default: loopback names only).
    `warm`: load the model for Building Blocks in a background thread now (`summit serve` does), so
    the first explanation does not wait for it. `against`: a second run compared with this one
    (run-comparison mode, against.py; refused in one line unless the runs are comparable); its
    unit files are served under ``/api/b``."""
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    api = Api(run_dir, cache_size)
    rc = None if against is None else RunComparison(api, Api(against, cache_size, url_prefix="/api/b"), cache_size)
    api.run.preload_influence(INFLUENCE_MEMORY_BYTES)
    dense(api.run)  # one-time set-up (dense matrices) before the first computed graph
    app.extensions["summit"] = api
    host_ok = hosts or HostCheck()
    app.register_blueprint(blocks_blueprint(api, warm))
    app.register_blueprint(units_blueprint(api, "units"))
    mistakes = app.extensions["summit_mistakes"] = Mistakes(api, cache_size)
    app.register_blueprint(mistakes_blueprint(mistakes))
    if rc is not None:
        app.extensions["summit_against"] = rc
        app.register_blueprint(units_blueprint(rc.b, "units_b"))
        app.register_blueprint(against_blueprint(rc))

    @app.before_request
    def _check_request() -> None:
        if len(request.environ.get("RAW_URI") or request.full_path) > MAX_URL_BYTES:
            raise SummitError(f"request target longer than {MAX_URL_BYTES} bytes", status=414)
        host = request.environ.get("HTTP_HOST")  # browsers always send one; other clients may not
        if host is not None and not host_ok(host):
            raise SummitError(f"host {host[:200]!r} is not allowed (DNS rebinding "
                                f"protection); start `summit serve` with --allow-host NAME to accept it", status=403)

    @app.errorhandler(SummitError)
    def _summit_error(e: SummitError) -> tuple[Response, int]:
        return jsonify(error=one_line(e)), e.status

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> tuple[Response, int]:
        msg = f"not found: {request.path}" if e.code == 404 else (e.description or e.name)
        return jsonify(error=one_line(msg)), e.code or 500

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return resp

    def required(name: str) -> str:
        v = request.args.get(name, "")
        if not v:
            raise SummitError(f"missing parameter {name!r}")
        return v

    @app.get("/")
    def index() -> Response:
        return send_file(STATIC_DIR / "index.html")

    @app.get("/api/meta")
    def meta() -> Response:
        return jsonify({**api.meta(), "against": None if rc is None else rc.info()})

    @app.get("/api/classes")
    def classes() -> Response:
        return jsonify(classes=api.classes())

    @app.get("/api/graph")
    def graph() -> Response:  # images=correct|wrong: the graph of the class's correct or wrong images (mistakes.py)
        params = api.graph_params(request.args.to_dict(), ("class", "images"))
        body = mistakes.graph(api.cls(required("class")), request.args.get("images"), params)
        return Response(body, mimetype="application/json")

    @app.get("/api/compare")
    def compare() -> Response:
        params = api.graph_params(request.args.to_dict(), ("a", "b"))
        body = api.graph(api.cls(required("a")), api.cls(required("b")), params)
        return Response(body, mimetype="application/json")

    @app.get("/api/embedding")
    def embedding() -> Response:
        method = request.args.get("method") or EMBEDDING_DEFAULT
        if method not in EMBEDDING_METHODS:
            raise SummitError(f"bad method {method!r}; valid: {', '.join(EMBEDDING_METHODS)}")
        layer = request.args.get("layer") or api.run.layers[-1]
        api.layer(layer, status=400)
        return jsonify(layer=layer, method=method, points=[p for p in api.embedding(method) if p["layer"] == layer])

    @app.get("/api/similar")
    def similar() -> Response:
        layer = request.args.get("layer") or None
        return jsonify(api.similar(api.cls(required("class")),
                                   None if layer is None else api.layer(layer, status=400)))

    @app.get("/api/export/<name>.json")
    def export(name: str) -> Response:
        a = api.cls(name, status=404)
        b = request.args.get("compare") or None
        ib = None if b is None else api.cls(b)
        params = api.graph_params(request.args.to_dict(), ("compare", "images"))
        images = mistakes.part(a, request.args.get("images"))
        if ib is not None and images != "all":
            raise SummitError("images is for one class's graph, not a comparison")
        data = api.graph(a, ib, params) if ib is not None else mistakes.graph(a, images, params)
        names = api.run.class_names
        stem = f"summit-{names[a]}" + ("" if ib is None else f"-vs-{names[ib]}") + \
            ("" if images == "all" else f"-{images}")
        return send_file(io.BytesIO(data), mimetype="application/json", as_attachment=True,
                         download_name=safe_filename(stem) + ".json")

    return app
