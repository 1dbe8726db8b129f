"""Inline pictures for Jupyter, as Lucid's users work: class graphs (SVG), channel cards and
image explanations (HTML with the images inlined as data URLs, so a saved notebook stands alone).

Class graphs returned by ``summit.graph`` display through ``ClassGraph._repr_svg_``, an
:class:`~summit.explain.Explanation` through ``_repr_html_``; ``ChannelCard(run, layer, ch)``
shows a unit's feature visualization, dataset examples and top classes.
"""
from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
from PIL import Image

from .drawing import PALETTE, dictionary, group_map, heatmap
from .store import Run

if TYPE_CHECKING:
    from .explain import Explanation

MEMBERSHIP_COLORS = {"a": "#4e79a7", "b": "#f28e2c", "both": "#59a14f", None: "#4e79a7"}


def data_url(img: Image.Image | str | os.PathLike, fmt: str = "PNG") -> str:
    """An image (or image file) as a data: URL."""
    if not isinstance(img, Image.Image):
        data = Path(img).read_bytes()
        mime = "image/jpeg" if str(img).lower().endswith((".jpg", ".jpeg")) else "image/png"
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _img(src: str, width: int, title: str = "") -> str:
    return (f'<img src="{src}" width="{width}" title="{html.escape(title)}" '
            f'style="image-rendering:auto;margin:2px">')


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
    counts = [d.get("count", d.get("count_a", 0)) or 0 for _, _, d in G.edges(data=True)]
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


class ChannelCard:
    """One unit of a run: feature visualization, dataset examples, top classes (like the UI's
    channel detail, from the same ``Api.channel_detail``)."""

    def __init__(self, run: Run | str | os.PathLike, layer: str, channel: int) -> None:
        from .featurevis import check_channels
        from .server import Api
        self.api = Api(run.path if isinstance(run, Run) else run)
        self.api.run.check_layer(layer)
        check_channels(layer, [channel], self.api.run.channels[layer])
        self.layer, self.channel = layer, channel
        self.detail = self.api.channel_detail(layer, channel)

    def _repr_html_(self) -> str:
        d = self.detail
        parts = [f'<div style="font-family:sans-serif;font-size:12px;border:1px solid #ccc;padding:6px;'
                 f'display:inline-block"><b>{html.escape(d["id"])}</b> top-k in {d["count"]} of '
                 f'{d["n_images"]} images; mean activation {d["mean_activation"] or 0:.3g}<br>']
        fv = self.api.featurevis_file(self.layer, self.channel)
        if fv is not None:
            parts.append(_img(data_url(fv), 128, "feature visualization"))
        ex = self.api.examples_file(self.layer, self.channel)
        if ex is not None:
            parts.append(_img(data_url(ex), 512, "dataset examples"))
        rows = "".join(f"<tr><td>{html.escape(c['name'])}</td><td>{c['count']}</td>"
                       f"<td>{(c['fraction'] or 0):.0%}</td></tr>" for c in d["top_classes"])
        parts.append(f"<table><tr><th>class</th><th>count</th><th>of its images</th></tr>{rows}</table></div>")
        return "".join(parts)


def explanation_html(expl: Explanation) -> str:
    """An explanation as HTML: classes, Summit links, and per layer the attribution heat map of
    each explained class, the neuron groups and the semantic dictionary."""
    img = expl.input.image
    classes = " · ".join(f"{html.escape(c['name'])} {c['prob']:.0%}" + (" (true)" if c["role"] == "true" else "")
                         for c in expl.classes)
    links = "; ".join(f"{'/'.join(l['roles'])}: {html.escape(l['name'])} ({l['graph_nodes']} graph nodes)"
                      for l in expl.links) or "no class graph (the prediction is not a class of the run)"
    parts = [f'<div style="font-family:sans-serif;font-size:12px"><b>{html.escape(expl.input.name)}</b>: '
             f"{classes}<br>Summit: {links}<br>{_img(data_url(img), 160, 'input')}"]
    for name, layer in expl.layers.items():
        active = ", ".join(f"{c}" + ("*" if any(c in l["nodes"].get(name, []) for l in expl.links) else "")
                           for c, _ in layer.active)
        parts.append(f"<div><b>{html.escape(name)}</b> active channels {active} "
                     f"(* in a linked class graph) · groups error {layer.groups.error:.2f}<br>")
        for k, s in enumerate(layer.spatial):
            parts.append(_img(data_url(heatmap(img, s)), 120, f"attribution to {expl.classes[k]['name']}"))
        parts.append(_img(data_url(group_map(img, layer.groups.maps)), 120, "neuron groups"))
        parts.append(_img(data_url(dictionary(expl.run.path, layer, cell_px=16)), 160, "semantic dictionary"))
        swatches = "".join(f'<span style="background:{PALETTE[g % len(PALETTE)]};padding:0 6px;margin:1px">'
                           f"{g}: {' '.join(f'{v:+.2g}' for v in layer.group_attr[g])}</span>"
                           for g in range(layer.groups.n))
        parts.append(f"<br>groups → classes: {swatches}</div>")
    parts.append("</div>")
    return "".join(parts)
