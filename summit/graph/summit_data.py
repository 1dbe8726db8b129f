"""Summit's own data folder: what Summit's released UI (fredhohman/summit) loads, laid out like
fredhohman/summit-data, so that the UI draws a summit run.

``<out>/data/`` holds (docs/EXPORT.md has the field table):

- ``imagenet.json``: a list of classes with ``synset``, ``label``, ``name``, ``target_class``,
  ``numOfInstances``, ``topOneAcc``, ``topOneAccCount``, ``accs`` (per image, the model's top-1
  probability x100 as a string), ``embed[layer]`` {x, y} (the per-layer UMAP layout) and
  ``topChannels[layer]`` [{c: channel, i: images}] (the class's A row of the embedding selection
  mass0.01, nonzero entries, most images first);
- ``ag/ag-<target_class>.json``: the class's attribution graph (graph.export.to_summit);
- ``feature-vis/channel/<layer>-<ch>-channel.jpg``, ``feature-vis/diversity-<k>/<layer>-<ch>-
  diversity-<k>.jpg`` (k < 4) and ``feature-vis/dataset-p/<layer>-<ch>-dataset-p-<i>.jpg`` (i < 10):
  the run's rendered visualizations and dataset examples, where they exist.

``target_class`` is the class's ImageNet output index when the run maps it (Summit names its
graph files by it), else the run's class index. torchvision GoogLeNet's ``inception3a`` ..
``inception5b`` are written as ``mixed3a`` .. ``mixed5b``, Summit's (Lucid's) names for the same
blocks; other models keep their layer names.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import pyarrow.compute as pc
from PIL import Image
from tqdm import tqdm

from ..errors import SummitError
from ..run.files import write_json
from ..run.imagenet import imagenet_table
from ..run.layout import diversity_path, examples_path, featurevis_path
from ..run.store import Run
from .build import class_graph
from .embedding import load_embedding
from .export import to_summit
from .matrices import dense
from .options import GraphOptions, defaults

SUMMIT_LAYER_NAMES = {"googlenet": {f"inception{b}": f"mixed{b}" for b in
                                    ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")}}
# What Summit's UI hard-codes (its layerChannelCounts, Lucid's InceptionV1) and the class it opens on.
SUMMIT_UI_LAYERS = {"mixed3a": 256, "mixed3b": 480, "mixed4a": 508, "mixed4b": 512, "mixed4c": 512,
                    "mixed4d": 528, "mixed4e": 832, "mixed5a": 832, "mixed5b": 1024}
SUMMIT_UI_START = "white_wolf"
DIVERSITY_IMAGES = 4
DATASET_EXAMPLES = 10
JPEG_QUALITY = 90


@dataclass
class SummitData:
    """What an export wrote: files per kind, what is missing and why, and the Summit UI caveats."""

    classes: int = 0
    graphs: int = 0
    empty_graphs: list[str] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=lambda: {"channel": 0, "diversity": 0, "dataset-p": 0})
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"classes": self.classes, "graphs": self.graphs, "empty_graphs": self.empty_graphs,
                "images": self.images, "missing": self.missing, "warnings": self.warnings}


def summit_layer_names(run: Run) -> dict[str, str]:
    """Run layer -> the name this export writes (Summit's for GoogLeNet, else unchanged)."""
    names = SUMMIT_LAYER_NAMES.get(run.meta.get("model"), {})
    return {l: names.get(l, l) for l in run.layers}


def target_classes(run: Run) -> list[int]:
    """Per run class, the index Summit names its ag file by: the ImageNet output index the run maps
    the class to, else the run's class index; two classes sharing one index are refused."""
    mapped = run.classes.column("model_index").to_pylist() if "model_index" in run.classes.column_names \
        else [None] * len(run.class_names)  # a run written before model_index
    out = [i if m is None else m for i, m in enumerate(mapped)]
    seen: dict[int, int] = {}
    for i, t in enumerate(out):
        if t in seen:
            raise SummitError(f"classes {run.class_names[seen[t]]!r} and {run.class_names[i]!r} both map to "
                              f"index {t}; Summit names its graph files ag-<index>.json by it")
        seen[t] = i
    return out


def _summit_name(run: Run, i: int, target: int) -> str:
    """Summit's class name (lowercase, underscores): the ImageNet table's for an ImageNet class."""
    if run.class_wnids[i] is not None:
        return imagenet_table()[target].name
    return "_".join(run.class_labels[i].lower().split())


def _synset(run: Run, i: int) -> str:
    """The class's id in Summit's UI (its DOM ids): the WordNet id, else c<run index>."""
    return run.class_wnids[i] or f"c{i}"


def _accuracies(run: Run) -> tuple[list[list[str]], list[int | None]]:
    """Per class: each image's top-1 probability x100 as a string (Summit's ``accs``, in dataset
    order) and the number of images the model gets right (None when outputs do not map)."""
    accs: list[list[str]] = [[] for _ in run.class_names]
    p = run.predictions()
    if p is None:
        raise SummitError(f"{run.path} has no predictions.parquet (written by summit aggregate since schema "
                          "version 3); re-run aggregate to export Summit's data")
    top1 = pc.list_element(p.column("top_prob"), 0).to_numpy(zero_copy_only=False).astype(np.float64)
    for c, v in zip(p.column("class").to_pylist(), (100 * top1).tolist()):
        accs[c].append(f"{v:.4g}")
    return accs, run.classes.column("n_correct").to_pylist()


def imagenet_json(run: Run, names: dict[str, str], targets: list[int]) -> list[dict]:
    """Summit's ``imagenet.json`` records of every class of the run (see the module docstring)."""
    accs, correct = _accuracies(run)
    emb: dict[int, dict[str, dict]] = {}
    for r in load_embedding(run, "umap"):
        emb.setdefault(r["class"], {})[names[r["layer"]]] = {"x": round(r["x"], 4), "y": round(r["y"], 4)}
    d = dense(run, run.check_selection(None, "embedding"))
    out = []
    for i in range(len(run.class_names)):
        top = {}
        for l in run.layers:
            row = d.count[i, d.offsets[l]:d.offsets[l] + run.channels[l]]
            nz = np.flatnonzero(row)
            order = nz[np.lexsort((nz, -row[nz]))]
            top[names[l]] = [{"c": int(c), "i": int(row[c])} for c in order]
        n = len(accs[i])
        out.append({"synset": _synset(run, i), "label": str(targets[i] + 1), "name": _summit_name(run, i, targets[i]),
                    "target_class": targets[i], "numOfInstances": n,
                    "topOneAccCount": correct[i], "topOneAcc": None if correct[i] is None else correct[i] / max(n, 1),
                    "accs": accs[i], "embed": emb.get(i, {}), "topChannels": top})
    return out


def _save_jpeg(img: Image.Image, path: Path) -> None:
    img.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY)


def _write_images(run: Run, names: dict[str, str], data: Path, report: SummitData, progress: bool) -> None:
    """Feature visualizations, diversity images and dataset examples under Summit's names."""
    fv = data / "feature-vis"
    dirs = {k: fv / k for k in ["channel", "dataset-p"] + [f"diversity-{k}" for k in range(DIVERSITY_IMAGES)]}
    for p in dirs.values():
        p.mkdir(parents=True, exist_ok=True)
    ex = run.examples()
    ranks: dict[tuple[str, int], int] = {}
    if ex is not None:
        for l, c in zip(ex.column("layer").to_pylist(), ex.column("channel").to_pylist()):
            ranks[(l, c)] = ranks.get((l, c), 0) + 1
    no_vis = no_div = short = 0
    total = sum(run.channels.values())
    with tqdm(total=total, desc="summit-data: images", unit="ch", disable=not progress) as bar:
        for layer in run.layers:
            s = names[layer]
            for ch in range(run.channels[layer]):
                bar.update()
                vis = featurevis_path(run.path, layer, ch)
                if vis.is_file():
                    _save_jpeg(Image.open(vis), dirs["channel"] / f"{s}-{ch}-channel.jpg")
                    report.images["channel"] += 1
                else:
                    no_vis += 1
                found = 0
                for k in range(DIVERSITY_IMAGES):
                    div = diversity_path(run.path, layer, ch, k)
                    if div.is_file():
                        _save_jpeg(Image.open(div), dirs[f"diversity-{k}"] / f"{s}-{ch}-diversity-{k}.jpg")
                        found += 1
                report.images["diversity"] += found
                no_div += found < DIVERSITY_IMAGES
                n = min(ranks.get((layer, ch), 0), DATASET_EXAMPLES)
                strip = examples_path(run.path, layer, ch)
                if n and strip.is_file():
                    with Image.open(strip) as img:
                        side = img.height  # a strip of square patches, best first
                        for r in range(n):
                            _save_jpeg(img.crop((r * side, 0, (r + 1) * side, side)),
                                       dirs["dataset-p"] / f"{s}-{ch}-dataset-p-{r}.jpg")
                    report.images["dataset-p"] += n
                short += n < DATASET_EXAMPLES
    if no_vis:
        report.missing.append(f"feature visualization: {no_vis} of {total} channels not rendered "
                              "(summit render --run R --layer L --all)")
    if no_div:
        report.missing.append(f"diversity: {no_div} of {total} channels have fewer than {DIVERSITY_IMAGES} "
                              f"(summit render --diversity {DIVERSITY_IMAGES})")
    if short:
        report.missing.append(f"dataset examples: {short} of {total} channels have fewer than {DATASET_EXAMPLES} "
                              f"(the run kept {run.meta.get('examples_k', 'its')} per channel; Summit shows "
                              f"{DATASET_EXAMPLES}: summit aggregate --examples-k {DATASET_EXAMPLES})")


def _ui_warnings(run: Run, names: dict[str, str], records: list[dict]) -> list[str]:
    """Where Summit's released UI, which hard-codes Lucid's InceptionV1, will not show this export."""
    out = []
    written = {names[l]: run.channels[l] for l in run.layers}
    if set(written) != set(SUMMIT_UI_LAYERS):
        out.append(f"Summit's UI draws only InceptionV1's layers {', '.join(SUMMIT_UI_LAYERS)}; "
                   f"this export has {', '.join(written)}")
    else:
        for l, c in written.items():
            if c != SUMMIT_UI_LAYERS[l]:
                out.append(f"Summit's UI assumes {SUMMIT_UI_LAYERS[l]} channels in {l}, this model has {c}: its "
                           f"class similarity fails for {l} in classes that use channels >= {SUMMIT_UI_LAYERS[l]}")
    if not any(r["name"] == SUMMIT_UI_START for r in records):
        out.append(f"Summit's UI opens on class {SUMMIT_UI_START} (ImageNet 270), which this run lacks; "
                   "it shows nothing until its start class is changed")
    return out


def _class_graphs(run: Run, options: GraphOptions | None) -> Iterator[nx.DiGraph]:
    """Every class's graph: read from the stored default graphs (graphs.parquet) when they are
    fresh and the options are the defaults, else built."""
    from .cache import GraphCache, is_fresh
    cache = GraphCache(run) if (options is None or options == defaults().normalized()) and is_fresh(run) else None
    for i in range(len(run.class_names)):
        body = cache.get(i) if cache is not None else None
        yield nx.node_link_graph(json.loads(body), edges="links") if body is not None else class_graph(run, i, options)


def write_summit_data(run: Run, out: Path, options: GraphOptions | None = None,
                      progress: bool = True) -> SummitData:
    """Write ``out/data/`` (see the module docstring) plus ``out/index.json`` (this report). ``out``
    is meant to be a staging folder that replaces the final one when complete (run.files.replacing),
    so files are written plainly, not one by one atomically."""
    names = summit_layer_names(run)
    targets = target_classes(run)
    report = SummitData()
    data = out / "data"
    (data / "ag").mkdir(parents=True, exist_ok=True)
    records = imagenet_json(run, names, targets)
    (data / "imagenet.json").write_text(json.dumps(records, separators=(",", ":")), encoding="utf-8")
    report.classes = len(records)
    for i, G in enumerate(tqdm(_class_graphs(run, options), total=len(run.class_names), desc="summit-data: graphs",
                                unit="class", disable=not progress)):
        if G.number_of_nodes() == 0:
            report.empty_graphs.append(run.class_names[i])
        (data / "ag" / f"ag-{targets[i]}.json").write_text(
            json.dumps(to_summit(G, layers=run.layers, names=names), separators=(",", ":")), encoding="utf-8")
        report.graphs += 1
    _write_images(run, names, data, report, progress)
    report.warnings = _ui_warnings(run, names, records)
    write_json({"run": str(run.path.resolve()), "model": run.meta.get("model"), "format": "summit-data",
                "layers": names, "settings": (options or defaults()).as_dict(),
                **report.as_dict()}, out / "index.json")
    return report
