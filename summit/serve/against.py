"""Run-comparison mode (`summit serve --run A --against B`, docs/UI.md): what changed from run
A to run B, class by class (graph.diff: the union of both runs' class graphs with membership
a | b | both, count_a / count_b, change score 1 - weighted Jaccard of the node shares).

Each class's diff is computed when first asked for (a graph request, or the class list, which
asks for every common class) and kept per (class, graph settings); nothing is computed at
start-up and nothing is written."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..errors import SummitError
from ..graph.diff import ClassDiff, check_comparable, diff_runs
from ..graph.export import to_json
from ..graph.options import GraphOptions
from .api import Api
from .common import Memo


def change(c: ClassDiff) -> dict:
    """A diff's change: score, edge_score and the nodes and edges lost, gained and kept."""
    return {"score": c.score, "edge_score": c.edge_score, "counts": c.counts()}


def diff_graph_json(c: ClassDiff) -> dict:
    """The union graph of one class's diff (node-link JSON as /api/compare: nodes and links carry
    membership, count_a / count_b, fraction_a / fraction_b; ``summit.class`` also n_images_a /
    n_images_b) with ``summit.change`` (:func:`change`)."""
    d = to_json(c.graph)
    d["summit"]["class"].update(n_images_a=c.graph.graph["n_images_a"], n_images_b=c.graph.graph["n_images_b"])
    d["summit"]["change"] = change(c)
    return d


class RunComparison:
    """Run A (``a``, the served run) against run B (``b``, opened as a second Api serving its
    unit files under ``/api/b``): per-class diffs, cached."""

    def __init__(self, a: Api, b: Api, cache_size: int = 256) -> None:
        check_comparable(a.run, b.run)  # refused in one line before anything is served
        self.a, self.b = a, b
        in_a, in_b = set(a.run.class_names), set(b.run.class_names)
        self.common = [n for n in a.run.class_names if n in in_b]
        if not self.common:
            raise SummitError(f"the runs have no class in common ({a.root}: {len(a.run.class_names)} classes, "
                              f"{b.root}: {len(b.run.class_names)} classes)")
        self.only_a = [n for n in a.run.class_names if n not in in_b]
        self.only_b = [n for n in b.run.class_names if n not in in_a]
        self.diffs = Memo(self._diff, cache_size)

    def _diff(self, name: str, params: GraphOptions) -> ClassDiff:
        with self.a.builds.slot():
            return diff_runs(self.a.run, self.b.run, params, classes=[name]).classes[0]

    def cls(self, raw: str) -> str:
        """The name of a class both runs hold (given by name, index, WordNet id or label in run A)."""
        name = self.a.run.class_names[self.a.cls(raw)]
        if name not in self.b.run.class_names:
            raise SummitError(f"class {name!r} is not in run B ({self.b.root})")
        return name

    def info(self) -> dict:
        """Both runs named: path, folder name, model, weights, images, classes."""
        def one(api: Api) -> dict:
            m = api.run.meta
            return {"path": str(api.root), "name": api.root.name, "model": m.get("model"), "weights": m.get("weights"),
                    "n_images": m["dataset"]["n_images"], "n_classes": len(api.run.class_names)}
        return {"a": one(self.a), "b": one(self.b), "only_a": self.only_a, "only_b": self.only_b}

    def graph(self, name: str, params: GraphOptions) -> dict:
        """The union graph of one class (:func:`diff_graph_json`)."""
        return diff_graph_json(self.diffs(name, params))

    def classes(self, params: GraphOptions) -> list[dict]:
        """Every common class with its change (computing the diffs not yet kept), most changed
        first (ties: edge score, then name; as `summit diff`)."""
        rows = []
        for name in self.common:
            c = self.diffs(name, params)
            rows.append({"name": name, "label": c.label, "index_a": c.index_a, "index_b": c.index_b,
                         **change(c)})
        return sorted(rows, key=lambda r: (-r["score"], -r["edge_score"], r["name"]))


def against_blueprint(rc: RunComparison) -> Blueprint:
    """The run comparison's routes: ``/api/against?class=C`` (one class's diff graph) and
    ``/api/against/classes`` (every common class with its change score)."""
    bp = Blueprint("against", __name__)

    @bp.get("/api/against")
    def class_diff() -> Response:
        raw = request.args.get("class", "")
        if not raw:
            raise SummitError("missing parameter 'class'")
        return jsonify(rc.graph(rc.cls(raw), rc.a.graph_params(request.args.to_dict(), ("class",))))

    @bp.get("/api/against/classes")
    def classes() -> Response:
        return jsonify(classes=rc.classes(rc.a.graph_params(request.args.to_dict(), ())), **rc.info())

    return bp
