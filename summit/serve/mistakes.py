"""A class's correctly and wrongly classified images in the UI (docs/MISTAKES.md, docs/UI.md):
the graph of one part of its images (``/api/graph?class=C&images=correct|wrong``, through
``Mistakes.graph``), the difference of its correct images' graph (A) and its mistakes' graph
(B) (``/api/mistakes?class=C``: graph.diff.mistakes_diff in /api/against's shape) and the model
outputs its mistakes were predicted as (``/api/mistaken-for?class=C``).

Part graphs are kept with the class graphs (``Api.graph``, the part in the key); diffs are kept
per (class, graph settings). Both are built under the server's ``BuildGate``; a run aggregated
without ``--split-correct``, or a class without images of a part, is refused in one line
(build.class_images) before any build."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..errors import SummitError
from ..graph.build import class_images, mistaken_for
from ..graph.diff import mistakes_diff
from ..graph.options import GraphOptions
from .against import diff_graph_json
from .api import COLD_COST, Api
from .common import Memo

MISTAKEN_FOR_TOP = 5  # model outputs listed per class (as `summit graph --images wrong`)


class Mistakes:
    """The correct / wrong views of the served run's classes (``api``), cached."""

    def __init__(self, api: Api, cache_size: int = 256) -> None:
        self.api = api
        self.diffs = Memo(self._diff, cache_size)
        self.mistaken = Memo(self._mistaken_for, 4 * cache_size)

    def part(self, ci: int, raw: str | None) -> str:
        """The part named by an ``images`` parameter (absent or "": all), checked for class ``ci``."""
        images = raw or "all"
        class_images(self.api.run, ci, images)  # unknown part, no split, no such images: one line
        return images

    def graph(self, ci: int, raw_images: str | None, params: GraphOptions) -> bytes:
        """node-link JSON of class ``ci``'s graph of its ``images`` part; all images: the key
        (and bytes) of ``Api.graph`` as without the parameter."""
        images = self.part(ci, raw_images)
        return self.api.graph(ci, None, params) if images == "all" else self.api.graph(ci, None, params, images)

    def _diff(self, ci: int, params: GraphOptions) -> dict:
        """The union of class ``ci``'s graphs of its correct images (membership a) and of its
        mistakes (b) (diff_graph_json: both parts' counts, n_images_a / n_images_b, change score
        and counts lost / gained / kept), with ``summit.images`` naming the sides and
        ``summit.mistaken_for`` (build.mistaken_for's list, as in :meth:`mistaken_for`)."""
        run, inputs = self.api.run, self.api.graph_inputs
        for part in ("correct", "wrong"):
            class_images(run, ci, part)  # refused before taking a build slot
        cost = sum(1 + COLD_COST * ((part, "edges", ci) not in inputs) for part in ("correct", "wrong"))
        with self.api.builds.slot(cost):  # both parts' graphs, from the inputs their own graphs left
            c = mistakes_diff(run, ci, params, recall=inputs.get)
        d = diff_graph_json(c)
        d["summit"]["images"] = {"a": "correct", "b": "wrong"}
        d["summit"]["mistaken_for"] = self.mistaken(ci)
        return d

    def _mistaken_for(self, ci: int) -> list[dict]:
        names = self.api.run.class_names
        return [{**m, "name": None if m["class"] is None else names[m["class"]]}
                for m in mistaken_for(self.api.run, ci, MISTAKEN_FOR_TOP)]

    def mistaken_for(self, ci: int) -> dict:
        """What class ``ci``'s misclassified images were predicted as (build.mistaken_for; each
        entry's ``name``: the run class of that output, or None) and the class's image counts."""
        run = self.api.run
        n, hits = (run.classes.column(k)[ci].as_py() for k in ("n_images", "n_correct"))
        return {"class": run.class_names[ci], "label": run.class_labels[ci], "n_images": n, "n_correct": hits,
                "n_wrong": None if hits is None else n - hits, "mistaken_for": self.mistaken(ci)}


def mistakes_blueprint(m: Mistakes) -> Blueprint:
    """``/api/mistakes?class=C`` (+ graph parameters): the correct-vs-wrong diff graph;
    ``/api/mistaken-for?class=C``: what the class's mistakes were predicted as."""
    bp = Blueprint("mistakes", __name__)

    def cls() -> int:
        raw = request.args.get("class", "")
        if not raw:
            raise SummitError("missing parameter 'class'")
        return m.api.cls(raw)

    @bp.get("/api/mistakes")
    def diff() -> Response:
        params = m.api.graph_params(request.args.to_dict(), ("class",))
        return jsonify(m.diffs(cls(), params))

    @bp.get("/api/mistaken-for")
    def listed() -> Response:
        unknown = sorted(set(request.args) - {"class"})
        if unknown:
            raise SummitError(f"unknown parameter(s) {', '.join(unknown)}; valid: class")
        return jsonify(m.mistaken_for(cls()))

    return bp
