"""A misclassified image: which of its strongest channels belong to the true class's graph, the
predicted class's graph and the true class's wrong-images graph, and which way they push.

Our feature (neither Summit nor the Building Blocks article has it; docs/BLOCKS.md). An image
is *misclassified* when it has a true class t (its class folder, a run class that is one of the
model's outputs, output m_t) and the model's top-1 output p = argmax_i logit_i is not m_t.

Per explained layer (activations a, shape (C, H, W)) the image's n strongest channels are listed,
n = max(k, MISTAKE_CHANNELS), by spatial max ``peak[c] = max_(y, x) a[c, y, x]`` (the first k are
the layer's ``active`` channels, the rule that counts A[class, channel]). Each carries:

- membership: whether node ``layer:c`` is in the true class's default graph, the predicted
  class's (only when p is a run class), the best run class's (the run class with the highest
  logit, when it is neither t nor p's run class) and t's graph of its misclassified images
  (``class_graph(run, t, images="wrong")``; null when the run has no correct/wrong split or t no
  wrong images); null where that graph does not exist, with the reason in ``missing``;
- attribution to the true and to the predicted logit, activation x gradient summed over
  positions: ``attr_j[c] = sum_(y, x) a[c, y, x] * d logit_j / d a[c, y, x]`` (the layer's
  ``channel_attr`` row of class j, shape (C,)). A channel with attr_p > attr_t pulls the image
  toward the wrong class more than toward its own.
"""
from __future__ import annotations

from .result import LayerExplanation, rounded, strongest

MISTAKE_CHANNELS = 10  # strongest channels listed per layer (at least the run's k)
GraphNodes = tuple[int, dict[str, list[int]]]  # (number of nodes, {layer: channels}) of a class graph


def true_entry(classes: list[dict], true: int | None) -> int | None:
    """Index into the explained `classes` of the true run class when the image is misclassified
    (the true class is a model output that is not the top-1); None otherwise."""
    k = next((i for i, c in enumerate(classes) if true is not None and c["run_class"] == true), None)
    return None if k is None or classes[k]["rank"] == 1 else k


def _graph(cls: int, name: str, images: str, nodes: int) -> dict:
    return {"class": cls, "name": name, "images": images, "nodes": nodes}


def mistake_json(classes: list[dict], k_true: int, links: list[dict],
                 layers: dict[str, LayerExplanation], k: int, wrong: GraphNodes | str) -> dict:
    """The ``mistake`` object of an explanation (module docstring). `classes` are the explained
    classes (the top-1 first, the true one at `k_true`), `links` the explanation's class-graph
    links (nodes of the chosen layers), `wrong` the true class's wrong-images graph or why not."""
    t, p = classes[k_true], classes[0]
    link_of = {l["class"]: l for l in links}
    best_link = next((l for l in links if "predicted" in l["roles"]), None)
    graphs: dict[str, dict | None] = {"true": None, "predicted": None, "best": None, "wrong": None}
    nodes: dict[str, dict[str, list[int]]] = {}
    missing: dict[str, str] = {}
    for role, link in (("true", link_of[t["run_class"]]),
                       ("predicted", None if p["run_class"] is None else link_of[p["run_class"]])):
        if link is not None:
            graphs[role] = _graph(link["class"], link["name"], "all", link["graph_nodes"])
            nodes[role] = link["nodes"]
    if p["run_class"] is None:
        missing["predicted"] = f"the model's top output {p['name']} is not a class of this run: it has no class graph"
    best = None
    if best_link is None or best_link["class"] in (t["run_class"], p["run_class"]):
        missing["best"] = ("the predicted class is the run class the model ranks highest" if p["run_class"] is not None
                           else "the run class the model ranks highest is the true class")
    else:
        best = {"class": best_link["class"], "name": best_link["name"], "model_rank": best_link["model_rank"]}
        graphs["best"] = _graph(best_link["class"], best_link["name"], "all", best_link["graph_nodes"])
        nodes["best"] = best_link["nodes"]
    if isinstance(wrong, str):
        missing["wrong"] = wrong
    else:
        graphs["wrong"] = _graph(t["run_class"], t["run_name"], "wrong", wrong[0])
        nodes["wrong"] = wrong[1]
    n = max(k, MISTAKE_CHANNELS)
    per_layer = {}
    for name, layer in layers.items():
        attr = layer.channel_attr  # (K, C)
        members = {role: set(ns.get(name, [])) for role, ns in nodes.items()}
        per_layer[name] = [
            {"channel": c, "value": rounded(v), "active": i < k,
             "in": {role: (c in members[role]) if role in members else None for role in graphs},
             "attr": {"true": rounded(attr[k_true, c]), "predicted": rounded(attr[0, c])}}
            for i, (c, v) in enumerate(strongest(layer.acts, n))]
    return {"true": {"class": t["run_class"], "name": t["run_name"], "output": t["index"], "label": t["name"],
                     "rank": t["rank"], "prob": t["prob"]},
            "predicted": {"output": p["index"], "name": p["name"], "prob": p["prob"], "run_class": p["run_class"],
                          "run_name": p["run_name"]},
            "best": best, "graphs": graphs, "missing": missing, "channels": n, "layers": per_layer}
