"""Drawing a class graph (or comparison) as a standalone SVG (kept out of the graph class, as
networkx keeps drawing out of its graphs)."""
from __future__ import annotations

import html

import networkx as nx

MEMBERSHIP_COLORS = {"a": "#4e79a7", "b": "#f28e2c", "both": "#59a14f", None: "#4e79a7"}


def graph_svg(G: nx.DiGraph, width: int = 720, row_height: int = 70) -> str:
    """A class graph (or comparison) as SVG: one row per layer (input at the bottom), node area
    by fraction of the class's images, edge width by influence count."""
    layers: dict[int, list[str]] = {}
    for v, d in G.nodes(data=True):
        layers.setdefault(d["layer_index"], []).append(v)
    rows = sorted(layers, reverse=True)
    height = row_height * max(len(rows), 1) + 40
    pos: dict[str, tuple[float, float]] = {}
    for r, li in enumerate(rows):
        members = sorted(layers[li], key=lambda v: G.nodes[v]["channel"])
        for i, v in enumerate(members):
            pos[v] = (110 + (width - 130) * (i + 0.5) / len(members), 40 + row_height * (r + 0.5))
    g = G.graph
    title = g.get("class_name") or f"{g.get('class_name_a')} vs {g.get('class_name_b')}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">',
           f'<text x="8" y="18" font-size="14" font-weight="bold">{html.escape(str(title))} '
           f'({G.number_of_nodes()} nodes, {G.number_of_edges()} edges)</text>']
    counts = [d.get("count", max(d.get("count_a") or 0, d.get("count_b") or 0)) or 0 for _, _, d in G.edges(data=True)]
    top = max(counts, default=1) or 1
    for (u, v, d), c in zip(G.edges(data=True), counts):
        (x1, y1), (x2, y2) = pos[u], pos[v]
        color = MEMBERSHIP_COLORS.get(d.get("membership"), "#888")
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                   f'stroke-opacity="0.5" stroke-width="{0.5 + 4 * c / top:.2f}"/>')
    for r, li in enumerate(rows):
        name = G.nodes[layers[li][0]]["layer"]
        out.append(f'<text x="8" y="{40 + row_height * (r + 0.5) + 4:.1f}">{html.escape(name)}</text>')
    for v, d in G.nodes(data=True):
        x, y = pos[v]
        frac = d.get("fraction", max(d.get("fraction_a", 0), d.get("fraction_b", 0)))
        color = MEMBERSHIP_COLORS.get(d.get("membership"), "#4e79a7")
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{3 + 12 * frac ** 0.5:.1f}" fill="{color}">'
                   f'<title>{html.escape(v)}</title></circle>'
                   f'<text x="{x:.1f}" y="{y + 24:.1f}" text-anchor="middle">{d["channel"]}</text>')
    out.append("</svg>")
    return "".join(out)
