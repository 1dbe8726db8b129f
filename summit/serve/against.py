"""Run-comparison mode (`summit serve --run A --against B`, docs/UI.md): what changed from run
A to run B, class by class (graph.diff: the union of both runs' class graphs with membership
a | b | both, count_a / count_b, change score 1 - weighted Jaccard of the node shares).

Each class's diff is computed when first asked for (a graph request, or the class list) and
kept per (class, graph settings); nothing is computed at start-up and nothing is written. The
class list of a graph rule is filled by one background thread, one class at a time (each under
the run's build gate, so graph requests interleave): a request waits up to LIST_WAIT_S for it
and answers with the classes done so far and how many are ``pending`` (the page asks again);
the change rows of the last LIST_RULES rules are kept, apart from the diffs' LRU memo."""
from __future__ import annotations

import threading
from collections import OrderedDict

from flask import Blueprint, Response, jsonify, request

from ..errors import SummitError
from ..graph.diff import ClassDiff, check_comparable, diff_runs
from ..graph.export import to_json
from ..graph.options import GraphOptions
from .api import Api
from .common import Memo

LIST_WAIT_S = 2.0  # seconds a class-list request waits for the classes still being compared
LIST_RULES = 8  # graph rules whose class lists (change rows) are kept


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
        self.lists: OrderedDict[GraphOptions, dict[str, dict]] = OrderedDict()  # rule -> class name -> row
        self.fillers: dict[GraphOptions, threading.Thread] = {}
        self._lock = threading.Lock()

    def _diff(self, name: str, params: GraphOptions) -> ClassDiff:
        with self.a.builds.slot():
            return diff_runs(self.a.run, self.b.run, params, classes=[name], roles=False,
                             recalls=(self.a.graph_inputs.get, self.b.graph_inputs.get)).classes[0]

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

    def _fill(self, params: GraphOptions, rows: dict[str, dict]) -> None:
        """Compute the change row of every common class not in ``rows`` (background thread)."""
        try:
            for name in self.common:
                if name not in rows:
                    c = self.diffs(name, params)
                    row = {"name": name, "label": c.label, "index_a": c.index_a, "index_b": c.index_b,
                           **change(c)}
                    with self._lock:
                        rows[name] = row
        finally:
            with self._lock:
                self.fillers.pop(params, None)

    def classes(self, params: GraphOptions, wait: float | None = None) -> tuple[list[dict], int]:
        """The common classes compared so far under ``params`` with their change, most changed
        first (ties: edge score, then name; as `summit diff`), and how many are pending: the
        rest are computed in the background (started here), waited for up to ``wait`` seconds
        (default LIST_WAIT_S)."""
        with self._lock:
            rows = self.lists.setdefault(params, {})
            self.lists.move_to_end(params)
            while len(self.lists) > LIST_RULES:
                self.lists.popitem(last=False)
            filler = self.fillers.get(params)
            if filler is None and len(rows) < len(self.common):
                filler = self.fillers[params] = threading.Thread(target=self._fill, args=(params, rows), daemon=True,
                                                                 name="summit-against-classes")
                filler.start()
        if filler is not None:
            filler.join(LIST_WAIT_S if wait is None else wait)
        with self._lock:
            done = list(rows.values())
        return sorted(done, key=lambda r: (-r["score"], -r["edge_score"], r["name"])), len(self.common) - len(done)


def against_blueprint(rc: RunComparison) -> Blueprint:
    """The run comparison's routes: ``/api/against?class=C`` (one class's diff graph) and
    ``/api/against/classes`` (the common classes compared so far with their change scores, and
    how many are ``pending``)."""
    bp = Blueprint("against", __name__)

    @bp.get("/api/against")
    def class_diff() -> Response:
        raw = request.args.get("class", "")
        if not raw:
            raise SummitError("missing parameter 'class'")
        return jsonify(rc.graph(rc.cls(raw), rc.a.graph_params(request.args.to_dict(), ("class",))))

    @bp.get("/api/against/classes")
    def classes() -> Response:
        rows, pending = rc.classes(rc.a.graph_params(request.args.to_dict(), ()))
        return jsonify(classes=rows, pending=pending, **rc.info())

    return bp
