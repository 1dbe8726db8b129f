"""HTTP side of the Building Blocks explorer: the ``/api/explain...`` endpoints and the page.

Registered by ``app.create_app``. Images are addressed as ``image=<dataset path>`` (relative
to the dataset root recorded in run.json, checked to stay inside it) or ``upload=<id>`` (an
upload stored under ``<run>/blocks/uploads``). Besides the run directory the server reads only
files of the run's dataset folder, and writes only into ``<run>/blocks/`` (uploads and
rendered directions). Errors answer ``{"error": ...}`` with 400 (bad parameter), 404 (unknown
image or resource), 413 (file or image too large), 415 (not an accepted image type).
"""
from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request, send_file, send_from_directory

from ..errors import SummitError
from ..run.files import file_inside
from .common import STATIC_DIR, Memo, parse_int

if TYPE_CHECKING:
    from ..explain.explainer import Explainer, Explanation
    from ..explain.images import ImageInput
    from .api import Api

PAGE_FILES = ("blocks.html", "blocks.js", "vendor/d3.v7.min.js", "vendor/d3.LICENSE")
RENDER_KINDS = ("positions", "groups")
HEX16 = re.compile(r"[0-9a-f]{16}")


class BlocksApi:
    """Validated, cached access to explanations of one run (shared by request threads)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.run = api.run
        self._explainer: Explainer | None = None
        self._loading = threading.Lock()
        self.explanation = Memo(self._explain, 8)
        self.json = Memo(lambda *key: self.explanation(*key).to_json(), 32)
        self.mistakes = Memo(self._mistakes, 1)  # predictions.parquet read once

    @property
    def explainer(self) -> Explainer:
        with self._loading:  # once: a request during the background load waits for it
            if self._explainer is None:
                from ..explain.explainer import Explainer
                self._explainer = Explainer(self.run)
        return self._explainer

    def warm(self) -> threading.Thread:
        """Load the model in a background thread (the first explanation then skips it)."""
        t = threading.Thread(target=lambda: self.explainer, name="summit-blocks-warm", daemon=True)
        t.start()
        return t

    # --- parameters ----------------------------------------------------------------------------
    def image_key(self, args: dict[str, str]) -> tuple[str, str]:
        """("dataset", path) or ("upload", id) from exactly one of image= / upload=."""
        given = [k for k in ("image", "upload") if args.get(k)]
        if len(given) != 1:
            raise SummitError("give exactly one of image=<dataset path> or upload=<id>")
        return ("dataset" if given[0] == "image" else "upload", args[given[0]])

    def image(self, key: tuple[str, str]) -> ImageInput:
        from ..explain.images import dataset_image, upload_image
        return dataset_image(self.run, key[1]) if key[0] == "dataset" else upload_image(self.run, key[1])

    def layers(self, raw: str | None) -> tuple[str, ...] | None:
        if not raw:
            return None
        return tuple(self.api.layer(l.strip(), status=400) for l in raw.split(","))

    def number(self, args: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
        raw = args.get(name, "")
        return default if raw == "" else parse_int(name, raw, lo, hi)

    def optional_number(self, args: dict[str, str], name: str, lo: int, hi: int) -> int | None:
        raw = args.get(name, "")
        return None if raw == "" else parse_int(name, raw, lo, hi)

    def settings(self, args: dict[str, str]) -> tuple:
        from ..explain.explainer import GRID, TOP_CLASSES
        from ..explain.groups import DEFAULT_GROUPS, MAX_GROUPS
        return (self.image_key(args), self.layers(args.get("layers")),
                self.number(args, "groups", DEFAULT_GROUPS, 1, MAX_GROUPS),
                self.number(args, "top", TOP_CLASSES, 1, 10), self.number(args, "grid", GRID, 1, 64))

    # --- computations ----------------------------------------------------------------------------
    def _mistakes(self) -> list[dict]:
        from ..explain.images import mistake_images
        return mistake_images(self.run)

    def _explain(self, key: tuple[str, str], layers: tuple[str, ...] | None, groups: int, top: int,
                 grid: int) -> Explanation:
        return self.explainer.explain(self.image(key), layers, groups=groups, top=top, grid=grid)

    def render(self, args: dict[str, str], run_it: bool) -> dict[str, Any]:
        """URLs of the rendered position / group images of one layer (None: not rendered yet);
        with run_it, render the missing ones first (one batch, cached)."""
        from ..explain.explainer import VIS
        kind = args.get("kind", "")
        if kind not in RENDER_KINDS:
            raise SummitError(f"kind must be one of {', '.join(RENDER_KINDS)}, got {kind!r}")
        layer = self.api.layer(args.get("layer", ""), status=400)
        size = self.number(args, "size", VIS["size"], 16, 256)
        steps = self.number(args, "steps", VIS["steps"], 1, 2048)
        image, layers, groups, top, grid = self.settings({k: v for k, v in args.items()
                                                          if k not in ("kind", "size", "steps", "layer")})
        expl = self.explanation(image, layers or (layer,), groups, top, grid)
        ex = self.explainer
        try:
            paths = (ex.render if run_it else ex.vis_paths)(expl, layer, kind, size=size, steps=steps)
        except SummitError as e:  # a request's own mistake (400), unless refused for the run's files (403)
            raise SummitError(str(e), status=403 if e.status == 403 else 400) from None
        urls = [f"/api/explain/vis/{p.parent.parent.name}/{layer}/{p.stem}.png" if p.is_file() else None
                for p in paths]
        return {"layer": layer, "kind": kind, "size": size, "steps": steps, "urls": urls}

    def vis_file(self, digest: str, layer: str, vid: str) -> Path:
        layer = self.api.layer(layer)
        if not HEX16.fullmatch(digest) or not HEX16.fullmatch(vid):
            raise SummitError("bad render id", status=404)
        p = file_inside(self.explainer.cache_dir / digest / layer / f"{vid}.png", self.api.root)
        if p is None:
            raise SummitError(f"no rendered image {digest}/{layer}/{vid}", status=404)
        return p


def blocks_blueprint(api: Api, warm: bool = False) -> Blueprint:
    """Routes of the explorer page and its JSON API; `warm`: load the model in the background now."""
    bp = Blueprint("blocks", __name__)
    blocks = BlocksApi(api)
    if warm:
        blocks.warm()

    def args() -> dict[str, str]:
        return request.args.to_dict()

    @bp.get("/blocks.html")
    @bp.get("/blocks.js")
    @bp.get("/vendor/<name>")
    def page(name: str | None = None) -> Response:
        rel = request.path.lstrip("/")
        if rel not in PAGE_FILES:
            raise SummitError(f"not found: {request.path}", status=404)
        root = STATIC_DIR
        if not (root / rel).is_file():
            raise SummitError(f"explorer page not installed ({root / rel} is missing)", status=404)
        return send_from_directory(root, rel, max_age=60)

    @bp.get("/api/explain")
    def explain() -> Response:
        return jsonify(blocks.json(*blocks.settings(args())))

    @bp.get("/api/explain/input.png")
    def input_png() -> Response:
        buf = io.BytesIO()
        blocks.image(blocks.image_key(args())).image.save(buf, format="PNG")
        buf.seek(0)
        return send_file(buf, mimetype="image/png", max_age=60)

    @bp.get("/api/explain/images")
    def images() -> Response:
        from ..explain.images import dataset_listing, example_images
        a = args()
        if a.get("source") == "examples":
            return jsonify(images=example_images(api.run))
        if a.get("source") == "mistakes":
            return jsonify(images=blocks.mistakes())
        return jsonify(images=dataset_listing(api.run, api.run.class_names[api.cls(a.get("class", ""))]))

    @bp.post("/api/explain/upload")
    def upload() -> tuple[Response, int]:
        from ..explain.images import MAX_FILE_BYTES, store_upload
        request.max_content_length = MAX_FILE_BYTES + 2**16  # multipart overhead
        if request.content_length is not None and request.content_length > request.max_content_length:
            raise SummitError(f"upload is {request.content_length} bytes; the limit is {MAX_FILE_BYTES}", status=413)
        f = request.files.get("file")
        if f is None:
            raise SummitError("upload an image as the multipart form field 'file'")
        uid = store_upload(api.run, f.read(MAX_FILE_BYTES + 1))
        return jsonify(upload=uid, url=f"/blocks.html?upload={uid}"), 201

    @bp.get("/api/explain/layer")
    def layer_attribution() -> Response:
        from ..explain.explainer import GRID
        a = args()
        key = blocks.image_key(a)
        src = api.layer(a.get("src", ""), status=400)
        dst = api.layer(a.get("dst", ""), status=400)
        names = ("y0", "y1", "x0", "x1")
        box = None
        if any(a.get(k) for k in names):  # checked against the layer's size by layer_target
            y0, y1, x0, x1 = (parse_int(k, a.get(k, ""), 0, 65536) for k in names)
            box = (y0, y1, x0, x1)
        channel = blocks.optional_number(a, "channel", 0, api.run.channels[dst] - 1)
        grid = blocks.number(a, "grid", GRID, 1, 64)
        return jsonify(blocks.explainer.layer_attribution(blocks.image(key), src, dst, channel, box, grid))

    @bp.get("/api/explain/render")
    def rendered() -> Response:
        return jsonify(blocks.render(args(), run_it=False))

    @bp.post("/api/explain/render")
    def render() -> Response:
        return jsonify(blocks.render(args(), run_it=True))

    @bp.get("/api/explain/vis/<digest>/<layer>/<vid>.png")
    def vis(digest: str, layer: str, vid: str) -> Response:
        return send_file(blocks.vis_file(digest, layer, vid), mimetype="image/png", max_age=3600)

    return bp
