"""GraphOptions: every graph setting and its default in one frozen, hashable value."""
from __future__ import annotations

import pytest

from summit.errors import SummitError
from summit.graph import options
from summit.graph.options import DEFAULTS, GraphOptions, graph_options


def test_defaults_are_summits_rule() -> None:
    assert (DEFAULTS.method, DEFAULTS.mass, DEFAULTS.mass_step, DEFAULTS.hide_ubiquitous) == \
        ("pagerank", 0.075, 0.005, True)
    assert options.PAGERANK_ALPHA == 0.85


@pytest.mark.parametrize("change, message", [
    ({"method": "louvain"}, "unknown graph method 'louvain'; valid: pagerank, topn"),
    ({"mass": 0}, "mass and mass_step must be in (0, 1]"),
    ({"mass_step": 1.5}, "mass and mass_step must be in (0, 1]"),
    ({"top_n": 0}, "top_n must be >= 1"),
    ({"min_count": 0}, "min_count must be >= 1"),
    ({"edges_per_node": -1}, "edges_per_node must be >= 0"),
    ({"min_edge_count": 0}, "min_edge_count must be >= 1"),
    ({"colour": "red"}, "unknown graph option(s) colour; valid: method, selection, layers"),
])
def test_bad_settings_are_refused_in_one_line(change: dict, message: str) -> None:
    with pytest.raises(SummitError) as e:
        graph_options(**change)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_hashable_and_normalized_per_method() -> None:
    a = graph_options(layers=["fire8", "fire9"], exclude=["fire9:1"], top_n=4)
    assert a.layers == ("fire8", "fire9") and a.exclude == ("fire9:1",)
    assert a.normalized() == graph_options(layers=("fire8", "fire9"), exclude=("fire9:1",))  # top_n unused
    t = graph_options(method="topn", mass=0.2, top_n=4).normalized()
    assert t.mass == DEFAULTS.mass and t.top_n == 4
    assert len({a.normalized(), graph_options(layers=["fire8", "fire9"], exclude=["fire9:1"]).normalized()}) == 1
    assert GraphOptions().as_dict()["exclude"] == [] and isinstance(hash(DEFAULTS), int)


def test_defaults_are_read_when_used(monkeypatch) -> None:
    monkeypatch.setattr(options, "DEFAULTS", DEFAULTS.replace(edges_per_node=7))
    assert graph_options().edges_per_node == 7 and options.defaults().edges_per_node == 7
