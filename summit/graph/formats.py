"""The graph file formats (kept apart from the exporters, so the CLI lists them without loading
networkx): node-link JSON, Summit's ag-<class>.json shape, GraphML, GEXF, DOT."""
from __future__ import annotations

FORMATS = ("json", "summit", "graphml", "gexf", "dot")
