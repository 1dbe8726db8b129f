"""Every graph setting and its default, in one place (light: the CLI builds its options from it
without loading the graph code).

``DEFAULTS`` is the one source of the defaults: the graph builder, the CLI's options, the server's
query parsing, the stored default graphs (``summit graphs``: their freshness key) and the UI (sent
in ``/api/meta``) all read it when they run, so changing it changes all of them together.

Summit's rule is ``method="pagerank"`` with ``mass`` 0.075 raised by ``mass_step`` 0.005 (see
build.py); ``method="topn"`` and its fields are our option.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import SummitError

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
