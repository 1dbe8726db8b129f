"""Every graph setting and its default, in one place.

``DEFAULTS`` is the one source of the defaults: the graph builder, the CLI's options, the server's
query parsing, the stored default graphs (``summit graphs``: their freshness key) and the UI (sent
in ``/api/meta``) all read it when they run, so changing it changes all of them together.

Summit's rule is ``method="pagerank"`` with ``mass`` 0.075 raised by ``mass_step`` 0.005 (see
build.py); ``method="topn"`` and its fields are our option.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import SummitError
from ..run.store import Run
from .matrices import dense

METHODS = ("pagerank", "topn")
PAGERANK_ALPHA = 0.85
PAGERANK_FIELDS = ("mass", "mass_step")
TOPN_FIELDS = ("top_n", "min_count", "edges_per_node", "min_edge_count", "keep_dangling")


@dataclass(frozen=True)
class GraphOptions:
    """Settings of a class graph (hashable: a cache key). ``selection`` None is the run's graph
    selection (mass0.03 where counted); ``layers`` None is every layer; ``exclude`` lists
    "layer:channel" ids left out besides the ubiquitous ones (``hide_ubiquitous``)."""

    method: str = "pagerank"
    selection: str | None = None
    layers: tuple[str, ...] | None = None
    hide_ubiquitous: bool = True
    exclude: tuple[str, ...] = ()
    mass: float = 0.075
    mass_step: float = 0.005
    top_n: int = 10
    min_count: int | None = None
    edges_per_node: int = 3
    min_edge_count: int = 1
    keep_dangling: bool = False

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "exclude", tuple(self.exclude or ()))
        if self.method not in METHODS:
            raise SummitError(f"unknown graph method {self.method!r}; valid: {', '.join(METHODS)}")
        if not 0 < self.mass <= 1 or not 0 < self.mass_step <= 1:
            raise SummitError(f"mass and mass_step must be in (0, 1], got {self.mass} and {self.mass_step}")
        if self.top_n < 1:
            raise SummitError(f"top_n must be >= 1, got {self.top_n}")
        if self.min_count is not None and self.min_count < 1:
            raise SummitError(f"min_count must be >= 1, got {self.min_count}")
        if self.edges_per_node < 0:
            raise SummitError(f"edges_per_node must be >= 0, got {self.edges_per_node}")
        if self.min_edge_count < 1:
            raise SummitError(f"min_edge_count must be >= 1, got {self.min_edge_count}")

    def replace(self, **changes: Any) -> GraphOptions:
        """A copy with some settings changed (unknown names refused with the valid ones)."""
        unknown = sorted(set(changes) - set(names()))
        if unknown:
            raise SummitError(f"unknown graph option(s) {', '.join(unknown)}; valid: {', '.join(names())}")
        return replace(self, **changes)

    def normalized(self) -> GraphOptions:
        """The same graph with the other method's settings at their defaults (one cache key per graph)."""
        unused = TOPN_FIELDS if self.method == "pagerank" else PAGERANK_FIELDS
        return replace(self, **{f: getattr(DEFAULTS, f) for f in unused})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


DEFAULTS = GraphOptions()


def names() -> list[str]:
    """The settings' names, in declaration order."""
    return [f.name for f in fields(GraphOptions)]


def defaults() -> GraphOptions:
    """The graph defaults in force (``DEFAULTS``, read at call time)."""
    return DEFAULTS


def graph_options(options: GraphOptions | None = None, **changes: Any) -> GraphOptions:
    """``options`` (default: the defaults in force) with ``changes`` applied."""
    return (options or defaults()).replace(**changes)


@dataclass
class Resolved:
    """GraphOptions checked against one run: the selection named, the layers in run order and the
    excluded channels (ubiquitous + explicit) listed."""

    method: str
    selection: str
    layers: list[str]
    hide_ubiquitous: bool
    exclude: list[str]
    mass: float
    mass_step: float
    top_n: int
    min_count: int | None
    edges_per_node: int
    min_edge_count: int
    keep_dangling: bool
    excluded: list[str] = field(default_factory=list)  # resolved: ubiquitous + explicit

    def settings(self, final_mass: float | None = None) -> dict[str, Any]:
        """The settings a graph records (``graph["settings"]``; docs/GRAPH.md)."""
        s: dict[str, Any] = {"method": self.method, "selection": self.selection, "layers": self.layers,
                             "hide_ubiquitous": self.hide_ubiquitous, "excluded": self.excluded}
        if self.method == "pagerank":
            return {**s, "mass_start": self.mass, "mass_step": self.mass_step, "mass": final_mass,
                    "alpha": PAGERANK_ALPHA}
        return {**s, "top_n": self.top_n, "min_count": self.min_count, "edges_per_node": self.edges_per_node,
                "min_edge_count": self.min_edge_count, "keep_dangling": self.keep_dangling}


def parse_exclude(run: Run, items: list[str] | tuple[str, ...]) -> list[str]:
    """Validated "layer:channel" ids of a run."""
    out = []
    for it in items:
        layer, _, ch = str(it).partition(":")
        run.check_layer(layer)
        if not ch.isascii() or not ch.isdigit() or int(ch) >= run.channels[layer]:
            raise SummitError(f"bad channel in --exclude {it!r}: need layer:channel with channel "
                              f"0..{run.channels[layer] - 1}")
        out.append(f"{layer}:{int(ch)}")
    return out


def resolve(run: Run, o: GraphOptions) -> Resolved:
    """``o`` checked against ``run``, with the selection's ubiquitous channels listed as excluded
    when ``o.hide_ubiquitous``."""
    if o.layers is None:
        chosen = list(run.layers)
    else:
        wanted = {run.check_layer(l) for l in o.layers}
        chosen = [l for l in run.layers if l in wanted]
        if not chosen:
            raise SummitError(f"no layers chosen; valid: {', '.join(run.layers)}")
    explicit = parse_exclude(run, o.exclude)
    selection = run.check_selection(o.selection)
    found = dense(run, selection).ubiquitous if o.hide_ubiquitous else []
    return Resolved(o.method, selection, chosen, o.hide_ubiquitous, explicit, o.mass,
                    o.mass_step, o.top_n, o.min_count, o.edges_per_node, o.min_edge_count, o.keep_dangling,
                    list(dict.fromkeys(found + explicit)))
