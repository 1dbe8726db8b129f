"""Command line: `summit aggregate | merge | info` (and graph, export, render, serve)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .models import SummitError


def _parse_shard(s: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in s.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard wants i/N, e.g. 0/4, got {s!r}") from None
    return i, n


def _cmd_aggregate(a: argparse.Namespace) -> int:
    from .aggregate import AggregateConfig, aggregate
    cfg = AggregateConfig(model=a.model, weights=a.weights, layers=a.layers, k=a.k,
                          k_influence=a.k_influence, examples_k=a.examples_k, influence=a.influence,
                          batch_size=a.batch_size, image_size=a.image_size, limit=a.limit)
    rep = aggregate(cfg, a.data, a.out, resume=a.resume, overwrite=a.overwrite, shard=a.shard,
                    checkpoint_every=a.checkpoint_every, workers=a.workers, device=a.device,
                    progress=not a.quiet,
                    **({"influence_memory": a.influence_memory} if a.influence_memory else {}))
    if os.environ.get("RANK", "0") == "0":
        print(f"{rep['images']} images ({rep['skipped']} skipped) in {rep['seconds']:.1f}s "
              f"= {rep['images_per_s']:.1f} img/s -> {rep['out']}")
    return 0


def _cmd_merge(a: argparse.Namespace) -> int:
    from .aggregate import merge
    rep = merge(a.shards, a.out, progress=not a.quiet)
    print(f"merged {len(a.shards)} shards: {rep['images']} images ({rep['skipped']} skipped) -> {rep['out']}")
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    if a.models:
        from .models import available_models
        print("\n".join(available_models()))
        return 0
    if a.layers:
        from .models import load_model
        spec = load_model(a.layers, "random")
        for name, path in spec.layers.items():
            print(f"{name}\t{path}")
        return 0
    if not a.run:
        raise SummitError("info needs --run DIR, --models or --layers MODEL")
    from .store import Run
    run = Run(a.run)
    m = run.meta
    print(json.dumps({k: m[k] for k in ("model", "weights", "k", "k_influence", "influence_method")}))
    print(f"layers: {', '.join(f'{l}({c})' for l, c in run.channels.items())}")
    print(f"pairs: {', '.join(p['name'] + ':' + p['method'] for p in m['pairs'])}")
    d = m["dataset"]
    print(f"dataset: {d['root']} files={d['n_files']} images={d['n_images']} skipped={d['n_skipped']}")
    for s in d["skipped"]:
        print(f"  skipped {s['path']}: {s['reason']}")
    print(f"classes ({len(run.class_names)}): {', '.join(run.class_names)}")
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from .server import serve
    serve(a.run, host=a.host, port=a.port)
    return 0


def _graph_kwargs(a: argparse.Namespace) -> dict:
    return {"top_n": a.top_n, "min_count": a.min_count, "edges_per_node": a.edges_per_node,
            "min_edge_count": a.min_edge_count, "keep_dangling": a.keep_dangling, "layers": a.graph_layers}


def _cmd_graph(a: argparse.Namespace) -> int:
    from .graph import class_graph, write_graph
    from .store import Run
    G = class_graph(Run(a.run), a.cls, **_graph_kwargs(a))
    path = write_graph(G, a.out, a.format)
    print(f"{G.graph['class_name']}: {G.number_of_nodes()} nodes, {G.number_of_edges()} edges -> {path}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .graph import class_graph, safe_filename, write_embedding, write_graph
    from .store import Run, write_json
    run = Run(a.run)
    if a.embedding:
        print(f"{a.method} embedding of {len(run.class_names)} classes -> {write_embedding(run, a.method)}")
        return 0
    if not a.out_dir:
        raise SummitError("export --all needs --out-dir DIR")
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = _graph_kwargs(a)
    written, skipped = [], []
    for i, name in enumerate(run.class_names):
        G = class_graph(run, i, **kwargs)
        if G.number_of_nodes() == 0:
            skipped.append({"class": i, "name": name, "n_images": G.graph["n_images"]})
            continue
        file = f"{i:04d}_{safe_filename(name)}.{a.format}"
        write_graph(G, out / file, a.format)
        written.append({"class": i, "name": name, "file": file, "nodes": G.number_of_nodes(),
                        "edges": G.number_of_edges()})
    write_json({"run": str(run.path.resolve()), "model": run.meta.get("model"), "format": a.format,
                "settings": kwargs, "graphs": written, "skipped": skipped}, out / "index.json")
    print(f"{len(written)} graphs -> {out} (index.json); {len(skipped)} classes skipped (empty graph)"
          + "".join(f"\n  skipped {s['name']} ({s['n_images']} images)" for s in skipped))
    return 0


def _cmd_render(a: argparse.Namespace) -> int:
    from .featurevis import graph_channels, parse_channels, render_run
    from .store import Run
    run = Run(a.run)
    if a.graph_nodes is not None:
        if a.layer or a.channels or a.all:
            raise SummitError("--graph-nodes renders the graph's nodes; drop --layer/--channels/--all")
        nodes = graph_channels(run, a.graph_nodes, top_n=a.top_n)
        if not nodes:
            raise SummitError(f"the graph of class {a.graph_nodes!r} has no nodes")
    elif a.layer:
        run.check_layer(a.layer)
        if a.all:
            nodes = {a.layer: list(range(run.channels[a.layer]))}
        elif a.channels:
            nodes = {a.layer: parse_channels(a.channels)}
        else:
            raise SummitError("render --layer needs --channels A B C-D or --all")
    else:
        raise SummitError("render needs --layer L (with --channels or --all) or --graph-nodes CLASS")
    paths = render_run(run.path, nodes, size=a.size, steps=a.steps, lr=a.lr, seed=a.seed,
                       batch=a.batch, device=a.device, progress=not a.quiet)
    print(f"{len(paths)} images ({', '.join(f'{l}:{len(c)}' for l, c in nodes.items())}) "
          f"-> {run.path / 'featurevis'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="summit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ag = sub.add_parser("aggregate", help="stream a dataset through a model, write Parquet matrices")
    ag.add_argument("data", nargs="?", default=None,
                    help="ImageFolder root (ImageNet layout); default: the bundled sample")
    ag.add_argument("--out", default="runs/sample", help="run directory (default runs/sample)")
    ag.add_argument("--model", default="squeezenet1_1", help="torchvision model name or efficientnet_lite0")
    ag.add_argument("--weights", default=None,
                    help="torchvision | ndf | efficientnet-lite0 | random | path.pth (default per model)")
    ag.add_argument("--layers", nargs="+", default=None, help="layer names or module paths")
    ag.add_argument("-k", type=int, default=5, help="top-k channels per image (default 5)")
    ag.add_argument("--k-influence", type=int, default=5, help="top-k inputs per output channel")
    ag.add_argument("--examples-k", type=int, default=8, help="dataset examples kept per channel (0: none)")
    ag.add_argument("--influence", choices=["auto", "conv", "grad", "off"], default="auto")
    ag.add_argument("--batch-size", type=int, default=32)
    ag.add_argument("--image-size", type=int, default=224)
    ag.add_argument("--limit", type=int, default=None, help="only the first N files")
    ag.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="data loader workers")
    ag.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ag.add_argument("--checkpoint-every", type=int, default=2000, help="images between checkpoints")
    ag.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ag.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    ag.add_argument("--shard", type=_parse_shard, default=None, help="i/N: this shard only (then `merge`)")
    ag.add_argument("--influence-memory", type=int, default=None, metavar="N",
                    help="influence counts per layer pair kept in memory (16 bytes each) before sorted "
                         "runs are spilled to the run directory (default 8388608)")
    ag.add_argument("--quiet", action="store_true", help="no progress bars")
    ag.set_defaults(func=_cmd_aggregate)

    mg = sub.add_parser("merge", help="combine --shard outputs into one run")
    mg.add_argument("shards", nargs="+")
    mg.add_argument("--out", required=True)
    mg.add_argument("--quiet", action="store_true")
    mg.set_defaults(func=_cmd_merge)

    inf = sub.add_parser("info", help="describe a run, the models, or a model's layers")
    inf.add_argument("--run", default=None)
    inf.add_argument("--models", action="store_true")
    inf.add_argument("--layers", metavar="MODEL", default=None)
    inf.set_defaults(func=_cmd_info)

    sv = sub.add_parser("serve", help="web UI: class graphs, unit browser, compare (loopback by default)")
    sv.add_argument("--run", required=True, help="run directory")
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1, local only)")
    sv.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    sv.set_defaults(func=_cmd_serve)

    def graph_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--run", required=True, help="run directory")
        sp.add_argument("--top-n", type=int, default=10, help="channels per layer (default 10)")
        sp.add_argument("--min-count", type=int, default=None,
                        help="instead of --top-n: every channel with count >= C")
        sp.add_argument("--edges-per-node", type=int, default=3, help="strongest incoming edges kept per node")
        sp.add_argument("--min-edge-count", type=int, default=1, help="minimum influence count of an edge")
        sp.add_argument("--keep-dangling", action="store_true", help="keep nodes without edges")
        sp.add_argument("--layers", dest="graph_layers", nargs="+", default=None, help="only these layers")
        sp.add_argument("--format", choices=["json", "graphml", "gexf", "dot"], default="json")

    gr = sub.add_parser("graph", help="write one class's attribution graph")
    graph_options(gr)
    gr.add_argument("--class", dest="cls", required=True, help="class name or index")
    gr.add_argument("--out", required=True, help="output file")
    gr.set_defaults(func=_cmd_graph)

    ex = sub.add_parser("export", help="write every class's graph, or the class embedding")
    graph_options(ex)
    what = ex.add_mutually_exclusive_group(required=True)
    what.add_argument("--all", action="store_true", help="one graph file per class plus index.json")
    what.add_argument("--embedding", action="store_true", help="write embedding.parquet into the run")
    ex.add_argument("--out-dir", default=None, help="folder for --all")
    ex.add_argument("--method", choices=["pca", "mds", "tsne"], default="pca", help="embedding method")
    ex.set_defaults(func=_cmd_export)

    rd = sub.add_parser("render", help="feature visualizations of channels (Lucid-style) into the run")
    rd.add_argument("--run", required=True, help="run directory (model and weights come from run.json)")
    rd.add_argument("--layer", default=None, help="layer to render")
    chs = rd.add_mutually_exclusive_group()
    chs.add_argument("--channels", nargs="+", default=None, help="channels: 0 1 2 or ranges 0-15")
    chs.add_argument("--all", action="store_true", help="every channel of --layer")
    rd.add_argument("--graph-nodes", metavar="CLASS", default=None,
                    help="render every node of this class's attribution graph instead")
    rd.add_argument("--top-n", type=int, default=10, help="graph channels per layer (default 10)")
    rd.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    rd.add_argument("--steps", type=int, default=512, help="optimization steps (default 512)")
    rd.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument("--batch", type=int, default=32, help="channels optimized together (default 32)")
    rd.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    rd.add_argument("--quiet", action="store_true", help="no progress bar")
    rd.set_defaults(func=_cmd_render)

    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SummitError as e:
        print(f"summit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("summit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
