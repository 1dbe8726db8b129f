"""Command line: `summit aggregate | merge | info` (and graph, export, render, serve, explain, figure)."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn, Sequence

from .errors import SummitError, error_line

if TYPE_CHECKING:
    from .graph.options import GraphOptions
    from .run.store import Run


class _Parser(argparse.ArgumentParser):
    """argparse with the house error format: one line, ``summit: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, error_line(f"{message} (see `{self.prog} --help`)") + "\n")


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: a decimal integer in lo..hi."""
    def parse(s: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", s.strip()):
            raise argparse.ArgumentTypeError(f"want an integer in {lo}..{hi}, got {s!r}")
        v = int(s)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def _float_in(lo: float, hi: float) -> Callable[[str], float]:
    """argparse type: a finite number in (lo, hi]."""
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"want a number, got {s!r}") from None
        if not (math.isfinite(v) and lo < v <= hi):
            raise argparse.ArgumentTypeError(f"must be > {lo:g} and <= {hi:g}, got {s}")
        return v
    parse.__name__ = "number"
    return parse


def _image_parts(s: str) -> tuple[str, str]:
    """argparse type: ``A:B`` (or one part for both) of Run.images' parts."""
    from .run.store import IMAGE_PARTS
    parts = s.split(":")
    if not 1 <= len(parts) <= 2 or any(p not in IMAGE_PARTS for p in parts):
        raise argparse.ArgumentTypeError(f"want A:B or one part, each of {', '.join(IMAGE_PARTS)} "
                                         f"(e.g. correct:wrong), got {s!r}")
    return parts[0], parts[-1]


def _parse_shard(s: str) -> tuple[int, int]:
    m = re.fullmatch(r"([0-9]+)/([0-9]+)", s.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"want i/N, e.g. 0/4, got {s!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if not 0 <= i < n <= 100_000:
        raise argparse.ArgumentTypeError(f"need 0 <= i < N <= 100000, got {s}")
    return i, n


def parse_channels(tokens: Sequence[str], layer: str, n_channels: int) -> list[int]:
    """["0", "3-5"] -> [0, 3, 4, 5] (order kept, duplicates dropped); each in 0..n_channels-1 of `layer`."""
    from .vis.render import check_channels
    out: list[int] = []
    for tok in tokens:
        for part in str(tok).split(","):
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            try:
                a, b = int(lo), int(hi) if sep else int(lo)
            except ValueError:
                raise SummitError(f"bad channel {part!r}: want N or A-B, e.g. 0-15") from None
            if b < a:
                raise SummitError(f"bad channel range {part!r}: end before start")
            check_channels(layer, (a, b), n_channels)  # before the range is built
            out += range(a, b + 1)
    return list(dict.fromkeys(out))


WARN_LINES = 10  # warning lines about dataset entries; the rest are in run.json


def _warn_dataset(rep: dict) -> None:
    """Unreadable folders and classes without a usable image: one warning line each."""
    for path, reason in rep["unreadable"][:WARN_LINES]:
        print(f"summit: warning: skipped {path}: {reason}", file=sys.stderr)
    if len(rep["unreadable"]) > WARN_LINES:
        print(f"summit: warning: ... and {len(rep['unreadable']) - WARN_LINES} more entries not used "
              "(run.json dataset.unreadable; `summit info --run`)", file=sys.stderr)
    if rep["empty_classes"]:
        names = rep["empty_classes"]
        print(f"summit: warning: {len(names)} class(es) without a usable image: {', '.join(names[:10])}"
              + (" ..." if len(names) > 10 else ""), file=sys.stderr)


def _cmd_aggregate(a: argparse.Namespace) -> int:
    from .pipeline.aggregator import AggregateConfig, aggregate
    cfg = AggregateConfig(model=a.model, weights=a.weights, layers=a.layers, masses=a.mass, k=a.k,
                          k_influence=a.k_influence, bottleneck=a.bottleneck,
                          influence_positions=a.influence_positions, influence_targets=a.influence_targets,
                          exclude=a.exclude.split(",") if a.exclude else [], examples_k=a.examples_k, influence=a.influence,
                          batch_size=a.batch_size, image_size=a.image_size, limit=a.limit,
                          split_correct=a.split_correct)
    rep = aggregate(cfg, a.data, a.out, resume=a.resume, overwrite=a.overwrite, shard=a.shard,
                    checkpoint_every=a.checkpoint_every, workers=a.workers, device=a.device,
                    progress=not a.quiet,
                    source={"format": a.format, "labels": a.labels, "image_column": a.image_column,
                            "label_column": a.label_column},
                    **({"influence_memory": a.influence_memory} if a.influence_memory else {}))
    if os.environ.get("RANK", "0") == "0":
        _warn_dataset(rep)
        speed = f"{rep['images_per_s']:.1f} img/s" if rep["images_this_run"] else "no new images"
        resumed = f", {rep['resumed_images']} from the checkpoint" if rep["resumed_images"] else ""
        print(f"{rep['images']} images ({rep['skipped']} skipped{resumed}) in {rep['seconds']:.1f}s "
              f"= {speed} -> {rep['out']}")
    return 0


def _cmd_merge(a: argparse.Namespace) -> int:
    from .pipeline.aggregator import merge
    rep = merge(a.shards, a.out, progress=not a.quiet, overwrite=a.overwrite)
    _warn_dataset(rep)
    print(f"merged {len(a.shards)} shards: {rep['images']} images ({rep['skipped']} skipped) -> {rep['out']}")
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    if a.models:
        from .model.models import available_models
        print("\n".join(available_models()))
        return 0
    if a.layers:
        from .model.models import load_model
        spec = load_model(a.layers, "random")
        for name, path in spec.layers.items():
            print(f"{name}\t{path}")
        return 0
    if not a.run:
        raise SummitError("info needs --run DIR, --models or --layers MODEL")
    from .run.store import Run
    run = Run(a.run)
    m = run.meta
    print(json.dumps({k: m.get(k) for k in ("model", "weights", "selections", "k_influence", "influence_method")}))
    print(f"layers: {', '.join(f'{l}({c})' for l, c in run.channels.items())}")
    print(f"pairs: {', '.join(p['name'] + ':' + p['method'] for p in m['pairs'])}")
    ubi = m.get("ubiquitous") or {}
    names = ", ".join(f"{u['layer']}:{u['channel']}" for u in ubi.get("channels", []))
    print(f"ubiquitous channels ({ubi.get('selection')}): {names or 'none'}")
    d = m["dataset"]
    print(f"dataset: {d['root']} files={d['n_files']} images={d['n_images']} skipped={d['n_skipped']}")
    for s in d["skipped"] + d.get("unreadable", []):
        print(f"  skipped {s['path']}: {s['reason']}")
    print(f"classes ({len(run.class_names)}): " + ", ".join(
        n if l == n else f"{l} ({n})" for n, l in zip(run.class_names, run.class_labels)))
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from .serve.http import serve
    serve(a.run, host=a.host, port=a.port, allow_hosts=a.allow_host, threads=a.threads, processes=a.processes,
          against=a.against, **({} if a.build_queue is None else {"build_queue": a.build_queue}))
    return 0


def _graph_options(a: argparse.Namespace) -> GraphOptions:
    """The graph settings of `graph` / `export` (their defaults come from graph.options.DEFAULTS)."""
    from .graph.options import graph_options
    return graph_options(method=a.method, selection=a.selection, layers=a.graph_layers,
                         hide_ubiquitous=a.hide_ubiquitous, exclude=a.exclude.split(",") if a.exclude else (),
                         mass=a.mass, mass_step=a.mass_step, top_n=a.top_n, min_count=a.min_count,
                         edges_per_node=a.edges_per_node, min_edge_count=a.min_edge_count,
                         keep_dangling=a.keep_dangling).normalized()


def _cmd_graph(a: argparse.Namespace) -> int:
    import shlex

    from .graph.build import class_graph, mistaken_for
    from .graph.export import write_graph
    from .run.files import is_stdout, output_file
    from .run.store import Run
    output_file(a.out)  # refused before any work
    run = Run(a.run)
    G = class_graph(run, a.cls, _graph_options(a), images=a.images)
    path = write_graph(G, a.out, a.format)
    shown = sys.stderr if is_stdout(path) else sys.stdout  # the graph alone on stdout, e.g. for jq
    part = "" if a.images == "all" else f" ({a.images} images)"
    print(f"{G.graph['class_name']}{part}: {G.number_of_nodes()} nodes, {G.number_of_edges()} edges -> {path}",
          file=shown)
    for m in mistaken_for(run, G.graph["class_index"]) if a.images == "wrong" else ():
        name = None if m["class"] is None else run.class_names[m["class"]]
        how = "not a class of this run" if name is None else \
            f"summit graph --run {shlex.quote(a.run)} --class {shlex.quote(name)} --out {shlex.quote(name + '.json')}"
        print(f"  mistaken for {m['label']} ({m['images']} of its images): {how}", file=shown)
    return 0


def _cmd_graphs(a: argparse.Namespace) -> int:
    import time

    from .graph.cache import is_fresh, store_graphs
    from .run.files import remove_stale_of
    from .run.layout import GRAPHS_FILE
    from .run.store import Run
    run = Run(a.run)
    remove_stale_of(run.path / GRAPHS_FILE)  # a killed `graphs` leaves its temporary file
    if is_fresh(run) and not a.force:
        print(f"{run.path / 'graphs.parquet'} is up to date ({len(run.class_names)} class graphs)")
        return 0
    t = time.perf_counter()
    path = store_graphs(run, progress=not a.quiet)
    print(f"{len(run.class_names)} class graphs (default settings) -> {path} in {time.perf_counter() - t:.1f}s")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .graph.embedding import write_embedding
    from .run.files import check_replaceable, output_dir, replacing
    from .run.store import Run
    if a.embedding:
        run = Run(a.run)
        print(f"{a.embedding_method} embedding of {len(run.class_names)} classes, {len(run.layers)} layers -> "
              f"{write_embedding(run, a.embedding_method)}")
        return 0
    if not a.all and a.format != "summit-data":
        raise SummitError("export needs --all, --embedding or --format summit-data")
    if not a.out_dir:
        raise SummitError(f"export {'--format summit-data' if a.format == 'summit-data' else '--all'} "
                          "needs --out-dir DIR")
    final = output_dir(a.out_dir)
    check_replaceable(final, _is_export_file)
    run = Run(a.run)
    if a.format == "summit-data":
        if a.images != "all":
            raise SummitError("--format summit-data writes the graphs of all images; for one part use --all "
                              f"--images {a.images}")
        return _export_summit_data(a, run, final)
    run.images(a.images)  # a run without the split: refused before anything is written
    with replacing(final) as out:  # built aside, swapped in when complete
        written, skipped = _export_all(a, run, out)
    part = "" if a.images == "all" else f" of {a.images} images"
    print(f"{len(written)} graphs{part} -> {a.out_dir} (index.json); {len(skipped)} classes skipped "
          f"({'empty graph' if a.images == 'all' else f'no {a.images} images or empty graph'})"
          + "".join(f"\n  skipped {s['name']} ({s['n_images']} images)" for s in skipped))
    return 0


def _export_summit_data(a: argparse.Namespace, run: Run, final: Path) -> int:
    from .graph.summit_data import write_summit_data
    from .run.files import replacing
    with replacing(final) as out:
        report = write_summit_data(run, out, _graph_options(a), progress=not a.quiet)
    print(f"Summit's data folder -> {final / 'data'}: imagenet.json ({report.classes} classes), "
          f"{report.graphs} ag files ({len(report.empty_graphs)} empty), "
          + ", ".join(f"{n} {k} images" for k, n in report.images.items())
          + "".join(f"\n  not written: {m}" for m in report.missing)
          + "".join(f"\n  note: {w}" for w in report.warnings))
    return 0


def _is_export_file(name: str) -> bool:
    """Names `export --all` / `--format summit-data` write (what they may replace in an existing --out-dir)."""
    from .graph.formats import FORMATS
    from .run.files import is_temp
    return name in ("index.json", "data") or is_temp(name) or re.fullmatch(
        r"([0-9]{4}_.*\.(" + "|".join(FORMATS) + r")|ag-[0-9]+\.json)", name) is not None


def _export_all(a: argparse.Namespace, run: Run, out: Path) -> tuple[list[dict], list[dict]]:
    """Every class's graph plus index.json into `out`; (written, skipped) entries."""
    from .graph.build import class_graph, part_sizes
    from .graph.export import safe_filename, write_graph
    from .graph.summit_data import target_classes
    from .run.files import write_json
    options = _graph_options(a)
    targets = target_classes(run) if a.format == "summit" else []
    written: list[dict] = []
    skipped: list[dict] = []
    n_part = part_sizes(run, a.images).tolist()
    for i, name in enumerate(run.class_names):
        G = class_graph(run, i, options, images=a.images) if n_part[i] else None
        if G is None or G.number_of_nodes() == 0:
            skipped.append({"class": i, "name": name, "n_images": n_part[i]})
            continue
        file = f"ag-{targets[i]}.json" if a.format == "summit" else f"{i:04d}_{safe_filename(name)}.{a.format}"
        write_graph(G, out / file, a.format)
        written.append({"class": i, "name": name, "file": file, "nodes": G.number_of_nodes(),
                        "edges": G.number_of_edges()})
    write_json({"run": str(run.path.resolve()), "model": run.meta.get("model"), "format": a.format,
                "settings": options.as_dict(), "images": a.images, "graphs": written, "skipped": skipped},
               out / "index.json")
    return written, skipped


def _cmd_dream(a: argparse.Namespace) -> int:
    from pathlib import Path

    from torchvision.transforms.functional import to_tensor

    from .explain.images import file_image
    from .graph.export import safe_filename
    from .model.models import load_model
    from .run.store import Run
    from .vis.render import render_dream
    run = Run(a.run)
    if not a.layer or a.channels or a.all or a.graph_nodes is not None:
        raise SummitError("render --dream IMAGE needs --layer L (and no --channels/--all/--graph-nodes)")
    run.check_layer(a.layer)
    inp = file_image(run, a.dream)
    spec = load_model(run.meta["model"], run.meta["weights"], layers=run.layers)
    img = render_dream(spec, to_tensor(inp.image), a.layer, steps=a.steps, lr=a.lr, seed=a.seed,
                       device=a.device, progress=not a.quiet)
    out = run.path / "dream" / f"{safe_filename(Path(inp.name).stem)}-{a.layer}.png"
    out.parent.mkdir(exist_ok=True)
    img.save(out)
    print(f"DeepDream of {inp.name} at {a.layer} ({a.steps} steps) -> {out}")
    return 0


def _cmd_explain(a: argparse.Namespace) -> int:
    from .explain.drawing import write_explanation, write_renders
    from .explain.explainer import Explainer
    from .model.models import resolve_device
    resolve_device(a.device)
    explainer = Explainer(a.run, device=a.device)
    expl = explainer.explain(a.image, a.layers, groups=a.groups, top=a.top, grid=a.grid)
    files = write_explanation(expl, Path(a.out))
    if a.see:
        files += write_renders(explainer, expl, a.out, size=a.vis_size, steps=a.vis_steps,
                               progress=not a.quiet)
    top = expl.classes[0]
    print(f"{expl.input.name}: {top['name']} ({top['prob']:.0%}); layers {', '.join(expl.layers)}; "
          f"{len(files)} files -> {a.out}")
    if expl.mistake:
        t, p = expl.mistake["true"], expl.mistake["predicted"]
        print(f"misclassified: {t['name']} taken for {p['name']} ({p['prob']:.0%})"
              + ("" if p["run_class"] is not None else ", not a class of this run"))
    return 0


def _cmd_render(a: argparse.Namespace) -> int:
    from .graph.build import class_graph, graph_channels
    from .model.models import resolve_device
    from .run.store import Run
    from .vis.cache import render_run
    resolve_device(a.device)
    if a.dream is not None:
        return _cmd_dream(a)
    run = Run(a.run)
    if a.graph_nodes is not None:
        if a.layer or a.channels or a.all:
            raise SummitError("--graph-nodes renders the graph's nodes; drop --layer/--channels/--all")
        nodes = graph_channels(class_graph(run, a.graph_nodes))
        if not nodes:
            raise SummitError(f"the graph of class {a.graph_nodes!r} has no nodes")
    elif a.layer:
        run.check_layer(a.layer)
        if a.all:
            nodes = {a.layer: list(range(run.channels[a.layer]))}
        elif a.channels:
            nodes = {a.layer: parse_channels(a.channels, a.layer, run.channels[a.layer])}
        else:
            raise SummitError("render --layer needs --channels A B C-D or --all")
    else:
        raise SummitError("render needs --layer L (with --channels or --all) or --graph-nodes CLASS")
    if a.diversity:
        from .vis.render import check_diversity
        check_diversity(a.diversity)
    paths = render_run(run.path, nodes, size=a.size, steps=a.steps, lr=a.lr, seed=a.seed,
                       batch=a.batch, device=a.device, progress=not a.quiet)
    print(f"{len(paths)} images ({', '.join(f'{l}:{len(c)}' for l, c in nodes.items())}) "
          f"-> {run.path / 'featurevis'}")
    if a.diversity:
        _render_diversity(a, run.path, nodes)
    return 0


def _render_diversity(a: argparse.Namespace, run_dir: os.PathLike, nodes: dict[str, list[int]]) -> None:
    from .vis.cache import render_diversity_run
    paths = render_diversity_run(run_dir, nodes, a.diversity, weight=a.diversity_weight, size=a.size,
                                 steps=a.steps, lr=a.lr, seed=a.seed, batch=a.batch, device=a.device,
                                 progress=not a.quiet)
    print(f"{len(paths)} diversity images ({a.diversity} per channel) "
          f"-> {run_dir}/featurevis/<layer>/<channel>_d<i>.png")


def _cmd_figure(a: argparse.Namespace) -> int:
    from .serve.figure import render_figure
    out = render_figure(a.run, a.cls, a.out, compare=a.compare, scale=a.scale, hash_params=a.param,
                        chromium=a.chromium, images=a.images)
    print(f"figure -> {out}")
    return 0


def _cmd_diff(a: argparse.Namespace) -> int:
    from .graph.diff import diff_runs, write_diff_json, write_diff_svg
    from .graph.options import graph_options
    from .run.files import output_file
    if a.run_b is None and a.images[0] == a.images[1]:
        raise SummitError("diff needs RUN_B, or two parts of RUN_A's images with --images (e.g. correct:wrong)")
    outs = [output_file(f) for f in (a.json, a.figure) if f]  # refused before any work
    options = graph_options(method=a.method, selection=a.selection, layers=a.graph_layers).normalized()
    rd = diff_runs(a.run_a, a.run_b or a.run_a, options, classes=[a.cls] if a.cls else None, progress=not a.quiet,
                   images=a.images)
    parts = [f" ({p} images)" if p != "all" else "" for p in rd.images]
    print(f"A: {rd.run_a.path}{parts[0]} ({rd.run_a.meta.get('weights')}) vs B: {rd.run_b.path}{parts[1]} "
          f"({rd.run_b.meta.get('weights')}), {rd.run_a.meta.get('model')}, {len(rd.classes)} classes compared"
          + "".join(f"; {len(n)} classes only in {w} (not compared)" for w, n in (("A", rd.only_a), ("B", rd.only_b))
                    if n)
          + (f"; {len(rd.without_images)} classes without images of a side's part (not compared)"
             if rd.without_images else ""))
    print("classes by change (1 - weighted Jaccard of graph nodes; nodes lost/gained/kept):")
    for i, c in enumerate(rd.classes[:a.top]):
        n = c.counts()["nodes"]
        print(f"{i + 1:4d}. {c.label}: {c.score:.3f} (edges {c.edge_score:.3f}) -{n['lost']} +{n['gained']} ={n['kept']}")
    if a.cls:
        g = rd.classes[0].graph
        for what, m in (("lost", "a"), ("gained", "b"), ("kept", "both")):
            print(f"  {what}: " + (", ".join(f"{v} ({x['count_a']}->{x['count_b']})"
                                             for v, x in g.nodes(data=True) if x["membership"] == m) or "none"))
    print("channels that changed role most (1 - cosine of the per-class fractions A/n in A and B):")
    for layer, roles in rd.top_roles(a.top).items():
        print(f"  {layer}: " + ", ".join(f"{r.channel} ({r.change:.3f})" for r in roles))
    if a.json:
        print(f"diff -> {write_diff_json(rd, outs[0])}")
    if a.figure:
        cls = a.cls or rd.classes[0].name
        print(f"figure of {cls} -> {write_diff_svg(rd, cls, outs[-1])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .graph.formats import FORMATS
    from .graph.options import METHODS, defaults
    from .model import DEFAULT_MODEL
    from .run.store import IMAGE_PARTS, IMAGE_VIEWS
    p = _Parser(prog="summit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ag = sub.add_parser("aggregate", help="stream a dataset through a model, write Parquet matrices")
    ag.add_argument("data", nargs="?", default=None,
                    help="ImageFolder root, ImageNet val folder, WebDataset .tar/{a..b} pattern, Hugging Face "
                         "save_to_disk folder or .parquet (see docs/INPUTS.md); default: the bundled sample")
    ag.add_argument("--format", default=None, metavar="FORMAT",
                    help="imagefolder | imagenet-val | webdataset | hf (default: detected from DATA)")
    ag.add_argument("--labels", default=None, metavar="FILE",
                    help="imagenet-val ground truth (default: LOC_val_solution.csv in or beside DATA)")
    ag.add_argument("--image-column", default=None, help="hf: the image column (default: the only one)")
    ag.add_argument("--label-column", default=None, help="hf: the label column (default: the only one)")
    ag.add_argument("--out", default="runs/sample", help="run directory (default runs/sample)")
    ag.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"torchvision model name or efficientnet_lite0 (default {DEFAULT_MODEL})")
    ag.add_argument("--weights", default=None,
                    help="torchvision | ndf | efficientnet-lite0 | random | path.pth (default per model)")
    ag.add_argument("--layers", nargs="+", default=None, help="layer names or module paths")
    ag.add_argument("--mass", type=_float_in(0.0, 1.0), nargs="*", default=[0.01, 0.03],
                    help="Summit's selections: channels holding this share of an image's layer maxima "
                         "(default 0.01 0.03)")
    ag.add_argument("-k", type=_int_in(0, 4096), default=5,
                    help="also count the top-k channels per image (default 5; 0: off)")
    ag.add_argument("--k-influence", type=_int_in(1, 4096), default=5, help="top-k inputs per output channel")
    ag.add_argument("--examples-k", type=_int_in(0, 256), default=8,
                    help="dataset examples kept per channel (0: none)")
    ag.add_argument("--influence", choices=["auto", "conv", "grad", "off"], default="auto")
    ag.add_argument("--bottleneck", choices=["summit", "linear"], default="summit",
                    help="influence through 1x1 bottlenecks: Summit's two counted stages (default) or our "
                         "per-image linear composition")
    ag.add_argument("--influence-positions", choices=["summit", "exact"], default="summit",
                    help="positions of the per-channel convolutions (conv method): Summit's stride-3 SAME "
                         "grid, pool projection on the unpooled layer (default), or our exact maximum "
                         "over every position")
    ag.add_argument("--influence-targets", choices=["selected", "all"], default="selected",
                    help="gradient method: attribute only the channels each image selects (mass 0.03; "
                         "default, one backward per selection rank) or every channel (one backward each)")
    ag.add_argument("--exclude", default=None, metavar="L:C,...",
                    help="channels left out of the activation selections (mass normalisation, top-k) "
                         "and of the influence top-k candidates, as Summit did with five channels")
    ag.add_argument("--batch-size", type=_int_in(1, 4096), default=32)
    ag.add_argument("--image-size", type=_int_in(1, 2048), default=224,
                    help="input side (default 224; at least the model's minimum)")
    ag.add_argument("--limit", type=_int_in(1, 2**62), default=None, help="only the first N files")
    ag.add_argument("--workers", type=_int_in(0, 256), default=min(4, os.cpu_count() or 1),
                    help="data loader workers")
    ag.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ag.add_argument("--checkpoint-every", type=_int_in(1, 2**62), default=2000, help="images between checkpoints")
    ag.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ag.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    ag.add_argument("--shard", type=_parse_shard, default=None, help="i/N: this shard only (then `merge`)")
    ag.add_argument("--influence-memory", type=_int_in(1, 2**40), default=None, metavar="N",
                    help="influence counts per stage kept in memory (16 bytes each) before sorted runs "
                         "are spilled to the run directory (default 2097152)")
    ag.add_argument("--split-correct", action=argparse.BooleanOptionalAction, default=True,
                    help="also count every class's correctly and wrongly classified images apart (top-1), "
                         "for `summit graph --images correct|wrong` (default on; docs/MISTAKES.md)")
    ag.add_argument("--quiet", action="store_true", help="no progress bars")
    ag.set_defaults(func=_cmd_aggregate)

    mg = sub.add_parser("merge", help="combine --shard outputs into one run")
    mg.add_argument("shards", nargs="+")
    mg.add_argument("--out", required=True)
    mg.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    mg.add_argument("--quiet", action="store_true")
    mg.set_defaults(func=_cmd_merge)

    inf = sub.add_parser("info", help="describe a run, the models, or a model's layers")
    inf.add_argument("--run", default=None)
    inf.add_argument("--models", action="store_true")
    inf.add_argument("--layers", metavar="MODEL", default=None)
    inf.set_defaults(func=_cmd_info)

    sv = sub.add_parser("serve", help="web UI: class graphs, unit browser, compare (loopback by default)")
    sv.add_argument("--run", required=True, help="run directory")
    sv.add_argument("--against", metavar="RUN_B", default=None,
                    help="run-comparison mode: what changed from --run (A) to this run (B) of the same model, "
                         "layers and channels, class by class (docs/UI.md; refused unless comparable)")
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1, local only)")
    sv.add_argument("--port", type=_int_in(1, 65535), default=5000, help="port (default 5000)")
    sv.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="also accept requests whose Host header names NAME (repeatable; the bound "
                         "address and loopback names are always accepted)")
    sv.add_argument("--processes", type=_int_in(1, 64), default=min(4, os.cpu_count() or 1),
                    help="serving processes sharing the port (default: CPUs, at most 4)")
    sv.add_argument("--threads", type=_int_in(1, 256), default=8, help="request threads per process (default 8)")
    sv.add_argument("--build-queue", type=_int_in(0, 100000), default=None,
                    help="graph build work that may wait per process, in re-cuts (a class not yet in memory costs "
                         "more; default: serve.api.BUILD_QUEUE); beyond it the server answers 503 with Retry-After")
    sv.set_defaults(func=_cmd_serve)

    d = defaults()

    def graph_options(sp: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
        sp.add_argument("--run", required=True, help="run directory")
        sp.add_argument("--method", choices=METHODS, default=d.method,
                        help=f"Summit's PageRank rule (pagerank) or our top-N per layer (topn); default {d.method}")
        sp.add_argument("--selection", default=d.selection,
                        help="activation selection (default mass0.03 if counted)")
        sp.add_argument("--mass", type=_float_in(0.0, 1.0), default=d.mass,
                        help=f"pagerank: starting PageRank mass ({d.mass})")
        sp.add_argument("--mass-step", type=_float_in(0.0, 1.0), default=d.mass_step,
                        help=f"pagerank: mass increase ({d.mass_step})")
        sp.add_argument("--show-ubiquitous", dest="hide_ubiquitous", action="store_false",
                        help="keep channels that fire for most classes")
        sp.add_argument("--exclude", default=",".join(d.exclude) or None,
                        help="channels to leave out: layer:channel,...")
        sp.add_argument("--top-n", type=_int_in(1, 2**31 - 1), default=d.top_n,
                        help=f"topn: channels per layer (default {d.top_n})")
        sp.add_argument("--min-count", type=_int_in(1, 2**62), default=d.min_count,
                        help="instead of --top-n: every channel with count >= C")
        sp.add_argument("--edges-per-node", type=_int_in(0, 2**31 - 1), default=d.edges_per_node,
                        help=f"strongest incoming edges kept per node (default {d.edges_per_node})")
        sp.add_argument("--min-edge-count", type=_int_in(1, 2**62), default=d.min_edge_count,
                        help="minimum influence count of an edge")
        sp.add_argument("--keep-dangling", action="store_true", default=d.keep_dangling,
                        help="keep nodes without edges")
        sp.add_argument("--layers", dest="graph_layers", nargs="+", default=d.layers, help="only these layers")
        sp.add_argument("--format", choices=formats, default="json",
                        help="json (node-link), summit (Summit's ag-<class>.json shape), graphml, gexf, dot"
                        + (", summit-data (the data/ folder Summit's UI loads, images included)"
                           if "summit-data" in formats else ""))
        sp.set_defaults(hide_ubiquitous=d.hide_ubiquitous)

    gr = sub.add_parser("graph", help="write one class's attribution graph")
    graph_options(gr)
    gr.add_argument("--class", dest="cls", required=True, help="class: folder name, index, WordNet id or readable label")
    gr.add_argument("--out", required=True, help="output file")
    gr.add_argument("--images", choices=IMAGE_PARTS, default="all",
                    help="build from the class's images the model classifies correctly, wrongly (then also "
                         "print what they were mistaken for), or all (default; correct|wrong need a run "
                         "aggregated with --split-correct)")
    gr.set_defaults(func=_cmd_graph)

    gs = sub.add_parser("graphs", help="precompute every class's default graph into the run (graphs.parquet), "
                                       "which `summit serve` answers from")
    gs.add_argument("--run", required=True, help="run directory")
    gs.add_argument("--force", action="store_true", help="recompute even when the stored graphs are up to date")
    gs.add_argument("--quiet", action="store_true", help="no progress bar")
    gs.set_defaults(func=_cmd_graphs)

    ex = sub.add_parser("export", help="write every class's graph, Summit's data folder, or the class embedding")
    graph_options(ex, (*FORMATS, "summit-data"))
    what = ex.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="one graph file per class plus index.json")
    what.add_argument("--embedding", action="store_true", help="write embedding.parquet into the run")
    ex.add_argument("--out-dir", default=None, help="folder for --all and --format summit-data")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.add_argument("--images", choices=IMAGE_PARTS, default="all",
                    help="with --all: graphs of every class's correctly or wrongly classified images (classes "
                         "without such images are skipped), or all (default)")
    ex.add_argument("--embedding-method", choices=["umap", "pca", "tsne"], default="umap",
                    help="class embedding method (default umap, as Summit)")
    ex.set_defaults(func=_cmd_export)

    rd = sub.add_parser("render", help="feature visualizations of channels (Lucid-style) into the run")
    rd.add_argument("--run", required=True, help="run directory (model and weights come from run.json)")
    rd.add_argument("--layer", default=None, help="layer to render")
    chs = rd.add_mutually_exclusive_group()
    chs.add_argument("--channels", nargs="+", default=None, help="channels: 0 1 2 or ranges 0-15")
    chs.add_argument("--all", action="store_true", help="every channel of --layer")
    rd.add_argument("--graph-nodes", metavar="CLASS", default=None,
                    help="render every node of this class's attribution graph instead")
    rd.add_argument("--size", type=_int_in(16, 2048), default=128, help="image side in pixels (default 128)")
    rd.add_argument("--steps", type=_int_in(1, 1_000_000), default=512, help="optimization steps (default 512)")
    rd.add_argument("--lr", type=_float_in(0.0, 100.0), default=0.05, help="Adam learning rate (default 0.05)")
    rd.add_argument("--seed", type=_int_in(0, 2**63 - 1), default=0)
    rd.add_argument("--batch", type=_int_in(1, 4096), default=32, help="channels optimized together (default 32)")
    rd.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    rd.add_argument("--diversity", type=_int_in(0, 64), default=0, metavar="N",
                    help="also render N diverse images per channel (Summit shows 4; 0: off)")
    rd.add_argument("--diversity-weight", type=_float_in(0.0, 1e6), default=100.0, help="weight of the diversity term")
    rd.add_argument("--quiet", action="store_true", help="no progress bar")
    rd.add_argument("--dream", metavar="IMAGE", default=None,
                    help="DeepDream: amplify --layer's activations on IMAGE (a file or a dataset path), "
                         "written to <run>/dream/ (try --steps 64)")
    rd.set_defaults(func=_cmd_render)

    xp = sub.add_parser("explain", help="Building Blocks of one image: semantic dictionary, attribution, "
                                        "neuron groups, class-graph links (JSON + PNGs)")
    xp.add_argument("image", help="image file, or a path relative to the run's dataset root")
    xp.add_argument("--run", required=True, help="run directory (model and weights come from run.json)")
    xp.add_argument("--layers", nargs="+", default=None, help="layers (default: three of the upper half)")
    xp.add_argument("--out", required=True, help="output folder (explain.json and PNGs)")
    xp.add_argument("--groups", type=int, default=6, help="neuron groups per layer (default 6)")
    xp.add_argument("--top", type=int, default=3, help="top predicted classes explained (default 3)")
    xp.add_argument("--grid", type=int, default=14, help="dictionary cells per side, at most (default 14)")
    xp.add_argument("--see", action="store_true",
                    help="also render what the network sees at each cell and each group (slow on CPU)")
    xp.add_argument("--vis-size", type=_int_in(16, 2048), default=96, help="size of those renders (default 96)")
    xp.add_argument("--vis-steps", type=_int_in(1, 1_000_000), default=256, help="steps of those renders (default 256)")
    xp.add_argument("--device", default="cpu", help="cpu | cuda[:i] | auto")
    xp.add_argument("--quiet", action="store_true", help="no progress bar")
    xp.set_defaults(func=_cmd_explain)
    fg = sub.add_parser("figure", help="a class's graph as a paper figure (SVG or PNG, as the UI exports it)")
    fg.add_argument("--run", required=True, help="run directory")
    fg.add_argument("--class", dest="cls", required=True, help="class: folder name, index, WordNet id or readable label")
    fg.add_argument("--out", required=True, help="output file: .svg or .png")
    fg.add_argument("--compare", default=None, metavar="CLASS", help="compare with this class (as --class)")
    fg.add_argument("--images", choices=IMAGE_VIEWS, default="all",
                    help="the class's correctly or wrongly classified images, or its correct images' graph "
                         "against its mistakes' (as the page's images menu; default all)")
    fg.add_argument("--scale", type=_float_in(0.1, 8.0), default=2.0, help="PNG pixels per SVG unit (default 2)")
    fg.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a UI setting as in the page's URL hash, e.g. top_n=5 (repeatable)")
    fg.add_argument("--chromium", default=None, help="Chromium binary (default: /usr/bin/chromium, "
                                                     "else Playwright's own)")
    fg.set_defaults(func=_cmd_figure)

    df = sub.add_parser("diff", help="compare two runs of one architecture class by class (docs/DIFF.md)")
    df.add_argument("run_a", metavar="RUN_A", help="run directory A (e.g. the base checkpoint)")
    df.add_argument("run_b", metavar="RUN_B", nargs="?", default=None,
                    help="run directory B, same model, layers and channels (default: RUN_A, with --images)")
    df.add_argument("--images", type=_image_parts, default=("all", "all"), metavar="A:B",
                    help="the images compared: a part (all, correct, wrong) for A and B, e.g. correct:wrong "
                         "(a class's correct images against its mistakes; docs/MISTAKES.md), or one part for both")
    df.add_argument("--class", dest="cls", default=None,
                    help="only this class (as in RUN_A: folder name, index, WordNet id or label)")
    df.add_argument("--top", type=_int_in(1, 2**31 - 1), default=10,
                    help="classes and channels per layer listed (default 10)")
    df.add_argument("--json", default=None, metavar="OUT", help="write the whole diff as JSON")
    df.add_argument("--figure", default=None, metavar="OUT.svg",
                    help="write --class's diff (default: the most changed class) as an SVG figure")
    df.add_argument("--method", choices=METHODS, default=d.method, help=f"graph rule (default {d.method})")
    df.add_argument("--selection", default=d.selection, help="activation selection (default mass0.03 if counted)")
    df.add_argument("--layers", dest="graph_layers", nargs="+", default=d.layers, help="only these layers")
    df.add_argument("--quiet", action="store_true", help="no progress bar")
    df.set_defaults(func=_cmd_diff)

    return p


CLASS_OPTIONS = ("--class", "--compare")


def _class_values(argv: list[str]) -> list[str]:
    """`--class -rf` as `--class=-rf`: argparse would take a class folder named like a short
    option for an option of its own."""
    out: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok in CLASS_OPTIONS:
            nxt = next(it, None)
            if nxt is not None and nxt.startswith("-") and not nxt.startswith("--"):
                out.append(f"{tok}={nxt}")
                continue
            out.append(tok)
            if nxt is not None:
                out.append(nxt)
        else:
            out.append(tok)
    return out


def _say(line: str) -> None:
    """One line on stderr in one write: the ranks of a torchrun job share it (print writes the
    newline apart, and two ranks' lines could run into one)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_class_values(sys.argv[1:] if argv is None else list(argv)))
    try:
        return args.func(args)
    except SummitError as e:
        _say(error_line(e))
        return 2
    except KeyboardInterrupt:
        _say("summit: interrupted")
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
