"""Inline pictures for Jupyter, as Lucid's users work: class graphs (SVG), channel cards and
image explanations (HTML with the images inlined as data URLs, so a saved notebook stands alone).

Importing this module (or ``%load_ext summit.notebook``) registers IPython display formatters:
class graphs (``summit.graph.ClassGraph``) show as SVG, an :class:`~summit.explain.Explanation`
and a run comparison (``summit.graph.RunDiff``, also of a class's correct vs wrong images) as HTML; ``ChannelCard(run, layer, ch)`` shows a unit's feature visualization, dataset examples
and top classes. The data types themselves know nothing of drawing.
"""
from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from .explain.drawing import PALETTE, dictionary, group_map, heatmap
from .explain.result import Explanation
from .graph.build import ClassGraph
from .graph.diff import RunDiff, diff_svg, side_names
from .graph.svg import graph_svg
from .run.store import Run


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


class ChannelCard:
    """One unit of a run: feature visualization, dataset examples, top classes (like the UI's
    channel detail, from the same ``Api.channel_detail``)."""

    def __init__(self, run: Run | str | os.PathLike, layer: str, channel: int) -> None:
        from .serve.api import Api
        from .vis.render import check_channels
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
    m = expl.mistake
    wrong = "" if not m else (
        f"<br><b>misclassified</b>: {html.escape(m['true']['name'])} taken for {html.escape(m['predicted']['name'])} "
        f"({m['predicted']['prob']:.0%}); strongest channels in the true / predicted class's graph: "
        + "; ".join(f"{html.escape(name)} " + " ".join(
            f"{c['channel']}{'T' if c['in']['true'] else ''}{'P' if c['in']['predicted'] else ''}" for c in chans)
            for name, chans in m["layers"].items()))
    parts = [f'<div style="font-family:sans-serif;font-size:12px"><b>{html.escape(expl.input.name)}</b>: '
             f"{classes}<br>Summit: {links}{wrong}<br>{_img(data_url(img), 160, 'input')}"]
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


def diff_html(rd: RunDiff, top: int = 10) -> str:
    """A run comparison as HTML: the sides compared, the ``top`` classes by change (score,
    nodes lost / gained / kept) and the most changed class's figure (diff_svg)."""
    na, nb = side_names(rd)
    rows = "".join(f"<tr><td>{i + 1}</td><td>{html.escape(c.label)}</td><td>{c.score:.3f}</td>"
                   f"<td>{n['lost']} / {n['gained']} / {n['kept']}</td></tr>"
                   for i, c in enumerate(rd.classes[:top]) for n in [c.counts()["nodes"]])
    skipped = f"; {len(rd.without_images)} classes without images of a side's part" if rd.without_images else ""
    return (f'<div style="font-family:sans-serif;font-size:12px"><b>{html.escape(na)} vs {html.escape(nb)}</b>: '
            f"{len(rd.classes)} classes compared{skipped}<table><tr><th></th><th>class</th>"
            f"<th>change</th><th>nodes lost / gained / kept</th></tr>{rows}</table>"
            f"{diff_svg(rd, rd.classes[0].name)}</div>")


def load_ipython_extension(ip: Any) -> None:
    """Show class graphs as SVG and explanations as HTML in this IPython session."""
    formatters = ip.display_formatter.formatters
    formatters["image/svg+xml"].for_type(ClassGraph, graph_svg)
    formatters["text/html"].for_type(Explanation, explanation_html)
    formatters["text/html"].for_type(RunDiff, diff_html)


def _register() -> None:
    """Register the formatters when imported inside IPython (a no-op elsewhere)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        load_ipython_extension(ip)


_register()
