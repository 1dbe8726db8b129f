"""Graph export: node-link JSON, Summit's own ag-<class>.json shape, GraphML, GEXF and DOT.

``to_summit`` writes the shape of Summit's published graphs (fredhohman/summit-data,
``data/ag/ag-<class>.json``): per layer, top layer first, a list of nodes with ``channel``,
``count``, ``layer``, ``pagerank``, ``prev_channels`` [{prev_channel: int, inf}] (in-graph inputs)
and ``attr_channels`` [{prev_channel: str, inf}] (top raw inputs; the published files store these
channel ids as strings, and so do we).
"""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import SummitError
from ..run.files import json_bytes, write_output
from .formats import FORMATS

GRAPH_SCHEMA_VERSION = 2


def _class_info(g: dict, suffix: str = "") -> dict:
    info = {k: g.get(f"{k2}{suffix}") for k, k2 in (("index", "class_index"), ("name", "class_name"),
                                                    ("wnid", "class_wnid"), ("label", "class_label"),
                                                    ("n_images", "n_images"), ("n_correct", "n_correct"))}
    if info["label"] is None:  # a graph stored before labels: the name is the label
        info["label"] = info["name"]
    return info


def _summit_meta(G: nx.DiGraph) -> dict:
    g = G.graph
    meta = {"schema": "summit-graph", "schema_version": GRAPH_SCHEMA_VERSION, "doc": "docs/GRAPH.md",
            "kind": g.get("kind"), "model": g.get("model"), "weights": g.get("weights"), "k": g.get("k"),
            "settings": g.get("settings")}
    if g.get("kind") == "compare":
        return {**meta, "class": _class_info(g, "_a"), "class_b": _class_info(g, "_b")}
    return {**meta, "class": _class_info(g)}


def to_json(G: nx.DiGraph) -> dict:
    """node-link dict (edges under "links") plus a "summit" key; nx.node_link_graph(d, edges="links")
    gives the graph back."""
    return {**nx.node_link_data(G, edges="links"), "summit": _summit_meta(G)}


def _title(G: nx.DiGraph) -> str:
    g = G.graph
    names = g.get("class_label") or g.get("class_name") or \
        f"{g.get('class_label_a') or g.get('class_name_a')} vs {g.get('class_label_b') or g.get('class_name_b')}"
    return f"{g.get('model')} {names}"


def _flat(G: nx.DiGraph) -> nx.DiGraph:
    """Copy with attributes GraphML/GEXF can store: dicts and lists as JSON, None dropped."""
    def flat(attrs: dict) -> dict:
        return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in attrs.items() if v is not None}
    H = nx.DiGraph()
    H.graph = flat(G.graph)
    H.graph["name"] = _title(G)
    H.add_nodes_from((v, flat(a)) for v, a in G.nodes(data=True))
    H.add_edges_from((u, v, flat(a)) for u, v, a in G.edges(data=True))
    return H


def to_summit(G: nx.DiGraph, layers: list[str] | None = None,
              names: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """A class graph in Summit's published ag-<class>.json shape (see the module docstring).
    ``layers`` (bottom first): also write these layers when they have no node (Summit's UI reads
    every layer); ``names``: layer names to write instead of the run's."""
    if G.graph.get("kind") != "class":
        raise SummitError("the summit format holds one class's graph, not a comparison")
    names = names or {}
    order = list(layers or [])
    nodes: dict[str, list[dict]] = {l: [] for l in order}
    for v, a in sorted(G.nodes(data=True), key=lambda n: n[1]["layer_index"]):
        if a["layer"] not in nodes:
            order.append(a["layer"])
        nodes.setdefault(a["layer"], []).append({
            "channel": a["channel"], "count": a["count"], "layer": names.get(a["layer"], a["layer"]),
            "pagerank": a.get("pagerank"),
            "prev_channels": sorted(({"prev_channel": G.nodes[u]["channel"], "inf": e["count"]}
                                     for u, _, e in G.in_edges(v, data=True)),
                                    key=lambda x: (-x["inf"], x["prev_channel"])),  # most images first
            "attr_channels": [{"prev_channel": str(x["channel"]), "inf": x["count"]} for x in a["attr_channels"]]})
    return {names.get(l, l): nodes[l] for l in reversed(order)}


def _dot_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        v = json.dumps(v)
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={_dot_value(json.dumps(v) if isinstance(v, (dict, list)) else v)}"
                     for k, v in attrs.items())


def to_dot(G: nx.DiGraph) -> str:
    """Graphviz DOT text: one rank per layer, summit metadata as a JSON comment."""
    lines = [f"// summit: {json.dumps(_summit_meta(G), sort_keys=True)}",
             f"digraph {_dot_value(_title(G))} {{", "  rankdir=TB;", "  node [shape=box];"]
    layers: dict[str, list[str]] = {}
    for v, attrs in G.nodes(data=True):
        layers.setdefault(attrs["layer"], []).append(v)
        lines.append(f"  {_dot_value(v)} [{_dot_attrs({'label': v, **attrs})}];")
    for members in layers.values():
        lines.append("  { rank=same; " + " ".join(_dot_value(v) + ";" for v in members) + " }")
    for u, v, attrs in G.edges(data=True):
        lines.append(f"  {_dot_value(u)} -> {_dot_value(v)} [{_dot_attrs(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _empty_reason(G: nx.DiGraph) -> str:
    g = G.graph
    if g.get("kind") == "compare":
        return f"graph comparing {g.get('class_name_a')!r} and {g.get('class_name_b')!r} is empty"
    if not g.get("n_images"):
        return f"graph of class {g.get('class_name')!r} is empty: the class has no images in this run"
    return (f"graph of class {g.get('class_name')!r} is empty: no channel or edge passes the thresholds "
            f"{json.dumps(g.get('settings'), sort_keys=True)}")


def safe_filename(name: str) -> str:
    """A class name reduced to [A-Za-z0-9._-] (export prefixes the class index, so it stays unique)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"


def write_graph(G: nx.DiGraph, path: str | os.PathLike, fmt: str = "json") -> Path:
    """Write a graph as json | summit | graphml | gexf | dot; an empty graph is an error, not an empty file."""
    if fmt not in FORMATS:
        raise SummitError(f"unknown graph format {fmt!r}; valid: {', '.join(FORMATS)}")
    if G.number_of_nodes() == 0:
        raise SummitError(_empty_reason(G))
    if fmt == "json":
        data = json_bytes(to_json(G))
    elif fmt == "summit":  # keep Summit's key order: top layer first, node fields as published
        data = json_bytes(to_summit(G), sort_keys=False)
    elif fmt == "dot":
        data = to_dot(G).encode()
    else:
        buf = io.BytesIO()
        (nx.write_graphml if fmt == "graphml" else nx.write_gexf)(_flat(G), buf)
        data = buf.getvalue()
    return write_output(path, data)
