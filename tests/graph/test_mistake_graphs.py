"""Graphs of a class's correctly or wrongly classified images (`summit graph --images`), the
refusals, and what a class is mistaken for (docs/MISTAKES.md)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from cli_runner import CliRunner

from summit.errors import SummitError
from summit.graph.build import class_graph, mistaken_for, part_sizes
from summit.graph.diff import diff_json, diff_runs, diff_svg, mistakes_diff
from summit.graph.export import to_json
from summit.pipeline.aggregator import AggregateConfig, aggregate
from summit.run.imagenet import imagenet_table
from summit.run.layout import split_dir
from summit.run.store import Run

MIXED, ALL_WRONG, ALL_CORRECT = "022_bald_eagle", "609_jeep", "099_goose"  # on the bundled sample


@pytest.fixture(scope="module")
def split_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample through SqueezeNet, with --split-correct."""
    out = tmp_path_factory.mktemp("split") / "run"
    aggregate(AggregateConfig(model="squeezenet1_1", batch_size=16, split_correct=True), None, out, progress=False)
    return out


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run without the split."""
    out = tmp_path_factory.mktemp("plain") / "run"
    aggregate(AggregateConfig(model="squeezenet1_1", batch_size=16, split_correct=False), None, out, progress=False)
    return out


def part_as_run(run_dir: Path, part: str, dest: Path) -> Path:
    """A run directory whose tables are one split part's (run.json's image total adjusted): what
    an aggregation over only those images would count."""
    d = Path(shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("split")))
    for t in ("classes.parquet", "activations.parquet", "influence.parquet"):
        shutil.copy(split_dir(run_dir, part) / t, d / t)
    meta = json.loads((d / "run.json").read_text())
    meta["dataset"]["n_images"] = int(pc.sum(pq.read_table(d / "classes.parquet").column("n_images")).as_py())
    meta["split_correct"] = False
    (d / "run.json").write_text(json.dumps(meta))
    return d


def graph_data(G) -> dict:
    """A graph's nodes and edges with their attributes (JSON export, settings aside)."""
    d = to_json(G)
    return {"nodes": d["nodes"], "links": d["links"]}


@pytest.mark.parametrize("part, cls", [("wrong", MIXED), ("correct", MIXED), ("wrong", ALL_WRONG)])
def test_part_graph_is_the_graph_of_a_run_of_those_images(split_run: Path, tmp_path: Path, part: str,
                                                         cls: str) -> None:
    run = Run(split_run)
    alone = Run(part_as_run(split_run, part, tmp_path / "alone"))
    G = class_graph(run, cls, images=part, hide_ubiquitous=False)
    want = class_graph(alone, cls, hide_ubiquitous=False)
    assert G.graph["images"] == part and "images" not in want.graph
    n = int(alone.classes.column("n_images")[run.class_index(cls)].as_py())
    assert G.graph["n_images"] == want.graph["n_images"] == n
    assert G.number_of_nodes() > 0 and graph_data(G) == graph_data(want)
    if part == "wrong" and cls == MIXED:
        assert graph_data(G) != graph_data(class_graph(run, cls, hide_ubiquitous=False))


def test_part_graph_hides_the_whole_runs_ubiquitous_channels(split_run: Path) -> None:
    run = Run(split_run)
    G = class_graph(run, MIXED, images="wrong")
    whole = [f"{u['layer']}:{u['channel']}" for u in run.meta["ubiquitous"]["channels"]]
    assert whole and G.graph["settings"]["excluded"] == whole
    assert not set(G) & set(whole)


def test_all_images_graph_is_the_unsplit_runs(split_run: Path, plain_run: Path) -> None:
    for cls in (MIXED, ALL_WRONG):
        G, want = class_graph(Run(split_run), cls), class_graph(Run(plain_run), cls)
        assert to_json(G) == to_json(want) and "images" not in G.graph


def test_recalled_inputs_are_kept_apart_per_part(split_run: Path) -> None:
    """A server's memo (recall) holding the all-images full graph and PageRank does not leak into
    a part's graph."""
    run = Run(split_run)
    memo: dict = {}

    def recall(key, compute):
        if key not in memo:
            memo[key] = compute()
        return memo[key]
    class_graph(run, MIXED, recall=recall)
    G = class_graph(run, MIXED, recall=recall, images="wrong")
    assert to_json(G) == to_json(class_graph(run, MIXED, images="wrong"))
    assert any(k[0] == "wrong" for k in memo) and any(k[0] == "edges" for k in memo)


def test_refusals(split_run: Path, plain_run: Path) -> None:
    run = Run(split_run)
    with pytest.raises(SummitError, match="class 099_goose has no wrong images: 4 of its 4 images are classified"):
        class_graph(run, ALL_CORRECT, images="wrong")
    with pytest.raises(SummitError, match="class 609_jeep has no correct images: 0 of its 8"):
        class_graph(run, ALL_WRONG, images="correct")
    with pytest.raises(SummitError, match="has no correct/wrong split of its images; re-run `summit aggregate` "
                                          "with --split-correct"):
        class_graph(Run(plain_run), MIXED, images="wrong")
    with pytest.raises(SummitError, match="unknown images 'right'; valid: all, correct, wrong"):
        class_graph(run, MIXED, images="right")


def test_old_run_without_the_key_opens_and_refuses_parts(plain_run: Path, tmp_path: Path) -> None:
    d = Path(shutil.copytree(plain_run, tmp_path / "old"))
    meta = json.loads((d / "run.json").read_text())
    del meta["split_correct"]
    (d / "run.json").write_text(json.dumps(meta))
    run = Run(d)
    assert class_graph(run, MIXED).number_of_nodes() > 0
    with pytest.raises(SummitError, match="re-run `summit aggregate` with --split-correct"):
        run.images("correct")


def test_class_outside_the_model_outputs_is_refused(tmp_path: Path) -> None:
    """Folders that name no model output: no image is correct, so neither part is offered."""
    from summit.pipeline.data import BUNDLED_SAMPLE
    root = tmp_path / "data"
    for name, src in (("dogs", "243_bull_mastiff"), ("eagles", "022_bald_eagle")):
        shutil.copytree(BUNDLED_SAMPLE / src, root / name)
    aggregate(AggregateConfig(model="squeezenet1_1", layers=["fire2", "fire3"], examples_k=0, split_correct=True),
              root, tmp_path / "run", progress=False, workers=0)
    run = Run(tmp_path / "run")
    for part in ("correct", "wrong"):
        with pytest.raises(SummitError, match="class dogs is not one of the model's outputs: its images are "
                                              "neither correct nor wrong"):
            class_graph(run, "dogs", images=part)
    assert mistaken_for(run, "dogs") == []
    assert part_sizes(run, "wrong").tolist() == [0, 0] and part_sizes(run, "all").tolist() == [4, 4]
    with pytest.raises(SummitError, match="no class has both wrong images in run A and wrong images in run B"):
        diff_runs(run, run, images=("wrong", "wrong"))


def test_mistaken_for_counts_the_wrong_images_top1(split_run: Path) -> None:
    run = Run(split_run)
    pred = pq.read_table(split_run / "predictions.parquet").to_pandas()
    ci = run.class_index(ALL_WRONG)
    rows = pred[(pred["class"] == ci) & (pred["correct"] == False)]  # noqa: E712
    tally: dict[int, int] = {}
    for top in rows["top"]:
        tally[int(top[0])] = tally.get(int(top[0]), 0) + 1
    want = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    got = mistaken_for(run, ALL_WRONG)
    assert [(m["output"], m["images"]) for m in got] == want and sum(tally.values()) == 8
    assert [m["label"] for m in got] == [imagenet_table()[o].label for o, _ in want]
    assert all(m["class"] is None for m in got)  # none of them is a class of the sample
    assert mistaken_for(run, ALL_CORRECT) == []


def mistaken_as(run_dir: Path, cls: int, other: int, dest: Path, images: int = 2) -> Path:
    """A copy of the run whose first `images` correctly classified images of class `cls` were
    taken for run class `other` (in predictions.parquet only)."""
    d = Path(shutil.copytree(run_dir, dest))
    t = pq.read_table(d / "predictions.parquet")
    model_index = pq.read_table(d / "classes.parquet").column("model_index").to_pylist()
    top, correct = t.column("top").to_pylist(), t.column("correct").to_pylist()
    rows = [i for i, (c, ok) in enumerate(zip(t.column("class").to_pylist(), correct)) if c == cls and ok][:images]
    assert len(rows) == images
    for i in rows:
        top[i], correct[i] = [model_index[other], *top[i][1:]], False
    t = t.set_column(t.schema.get_field_index("top"), "top", pa.array(top, t.schema.field("top").type))
    t = t.set_column(t.schema.get_field_index("correct"), "correct", pa.array(correct, pa.bool_()))
    pq.write_table(t, d / "predictions.parquet")
    return d


def test_mistaken_for_names_run_classes(split_run: Path, tmp_path: Path) -> None:
    run = Run(mistaken_as(split_run, 0, 12, tmp_path / "run"))
    got = mistaken_for(run, 0)
    assert got == [{"output": 609, "label": "jeep", "class": 12, "images": 2},  # and the pass's own mistake:
                   {"output": 21, "label": "kite", "class": None, "images": 1}]
    assert np.array_equal(run.classes.column("model_index").to_numpy()[[0, 12]], [22, 609])


def test_cli_graph_images(cli: CliRunner, split_run: Path, plain_run: Path, tmp_path: Path) -> None:
    run = mistaken_as(split_run, 0, 12, tmp_path / "run")
    out = tmp_path / "g.json"
    p = cli.run("graph", "--run", str(run), "--class", MIXED, "--images", "wrong", "--out", str(out))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"{MIXED} (wrong images): ") and lines[0].endswith(f"-> {out}")
    assert json.loads(out.read_text())["graph"]["images"] == "wrong"
    cmd = f"summit graph --run {run} --class 609_jeep --out 609_jeep.json"
    assert lines[1:] == [f"  mistaken for jeep (2 of its images): {cmd}",
                         "  mistaken for kite (1 of its images): not a class of this run"]
    p = cli.wait(cli.start(*cmd.split()[1:], cwd=tmp_path))
    assert p.returncode == 0 and (tmp_path / "609_jeep.json").is_file(), p.stderr
    p = cli.run("graph", "--run", str(split_run), "--class", ALL_WRONG, "--images", "wrong", "--out", str(out))
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 6
    assert "mistaken for convertible (3 of its images): not a class of this run" in p.stdout
    p = cli.run("graph", "--run", str(split_run), "--class", ALL_WRONG, "--out", str(out))
    assert p.returncode == 0 and p.stdout.splitlines() == [f"{ALL_WRONG}: " + p.stdout.split(": ", 1)[1].strip()]
    for args, message in (((str(plain_run), MIXED, "wrong"), "re-run `summit aggregate` with --split-correct"),
                          ((str(split_run), ALL_CORRECT, "wrong"), "class 099_goose has no wrong images"),
                          ((str(split_run), MIXED, "right"), "argument --images: invalid choice: 'right'")):
        bad = tmp_path / "refused.json"
        p = cli.run("graph", "--run", args[0], "--class", args[1], "--images", args[2], "--out", str(bad))
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and message in p.stderr, p.stderr
        assert not bad.exists()


# -- correct vs wrong: a class's two graphs compared (graph.diff with images, `summit diff --images`) --
def diff_data(c) -> dict:
    """A class diff's nodes and edges with their attributes."""
    return {"nodes": dict(c.graph.nodes(data=True)), "edges": {(u, v): x for u, v, x in c.graph.edges(data=True)}}


def test_mistakes_diff_is_the_diff_of_runs_of_those_images(split_run: Path, tmp_path: Path) -> None:
    """Correct vs wrong of one class = the diff of two runs that saw only those images."""
    got = mistakes_diff(Run(split_run), MIXED, hide_ubiquitous=False)
    want = diff_runs(part_as_run(split_run, "correct", tmp_path / "c"), part_as_run(split_run, "wrong", tmp_path / "w"),
                     classes=[MIXED], hide_ubiquitous=False).get(MIXED)
    assert diff_data(got) == diff_data(want) and got.graph.number_of_nodes() > 0
    assert (got.score, got.edge_score) == (want.score, want.edge_score) and 0 < got.score < 1
    g = got.graph.graph
    assert (g["images_a"], g["images_b"]) == ("correct", "wrong") and "images_a" not in want.graph.graph
    n, hits = Run(split_run).classes.column("n_images").to_pylist(), Run(split_run).classes.column("n_correct").to_pylist()
    i = Run(split_run).class_index(MIXED)
    assert (g["n_images_a"], g["n_images_b"]) == (hits[i], n[i] - hits[i])
    # hidden channels: the whole run's on both sides, as in the parts' own graphs
    hidden = mistakes_diff(Run(split_run), MIXED)
    part_nodes = set(class_graph(Run(split_run), MIXED, images="correct")) | set(class_graph(Run(split_run), MIXED,
                                                                                               images="wrong"))
    assert set(hidden.graph) == part_nodes


def test_correct_vs_wrong_of_every_class(split_run: Path) -> None:
    """All classes: those with both correct and wrong images are compared, the others listed,
    as the predictions say (derived here from predictions.parquet)."""
    run = Run(split_run)
    pred = pq.read_table(split_run / "predictions.parquet").to_pydict()
    ok: dict[int, set[bool]] = {}
    for c, right in zip(pred["class"], pred["correct"]):
        ok.setdefault(c, set()).add(bool(right))
    mixed = {run.class_names[c] for c, s in ok.items() if s == {True, False}}
    rd = diff_runs(run, run, images=("correct", "wrong"))
    assert {c.name for c in rd.classes} == mixed and MIXED in mixed
    assert set(rd.without_images) == set(run.class_names) - mixed and {ALL_CORRECT, ALL_WRONG} <= set(rd.without_images)
    j = diff_json(rd)
    assert (j["run_a"]["images"], j["run_b"]["images"]) == ("correct", "wrong")
    assert j["classes_without_images"] == rd.without_images
    svg = diff_svg(rd, MIXED)
    assert "lost: in the graph of correct images only" in svg and "of correct images (" in svg
    assert diff_runs(run, run).images == ("all", "all") and diff_runs(run, run).is_empty()
    lean = diff_runs(run, run, images=("correct", "wrong"), roles=False)
    assert lean.roles == {} and rd.roles and [diff_data(c) for c in lean.classes] == [diff_data(c) for c in rd.classes]


def test_mistakes_diff_refusals(split_run: Path, plain_run: Path) -> None:
    with pytest.raises(SummitError, match="class 099_goose has no wrong images"):
        mistakes_diff(Run(split_run), ALL_CORRECT)
    with pytest.raises(SummitError, match="class 609_jeep has no correct images"):
        mistakes_diff(Run(split_run), ALL_WRONG)
    with pytest.raises(SummitError, match="has no correct/wrong split"):
        mistakes_diff(Run(plain_run), MIXED)


def test_cli_diff_images(cli: CliRunner, split_run: Path, tmp_path: Path) -> None:
    out, fig = tmp_path / "d.json", tmp_path / "d.svg"
    p = cli.run("diff", str(split_run), "--images", "correct:wrong", "--class", MIXED, "--json", str(out),
                "--figure", str(fig), "--quiet")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"A: {split_run} (correct images) (ndf) vs B: {split_run} (wrong images) (ndf)")
    j = json.loads(out.read_text())
    assert [c["name"] for c in j["classes"]] == [MIXED] and j["run_b"]["images"] == "wrong"
    assert "correct images" in fig.read_text()
    p = cli.run("diff", str(split_run), "--images", "correct:wrong", "--quiet")
    assert p.returncode == 0 and "classes without images of a side's part (not compared)" in p.stdout
    for args, message in ((("--images", "wrong"), "diff needs RUN_B, or two parts of RUN_A's images"),
                          ((), "diff needs RUN_B"),
                          (("--images", "right:wrong"), "argument --images: want A:B or one part"),
                          (("--images", "correct:wrong", "--class", ALL_CORRECT), "class 099_goose has no wrong images")):
        bad = tmp_path / "refused.json"
        p = cli.run("diff", str(split_run), *args, "--json", str(bad), "--quiet")
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and message in p.stderr, p.stderr
        assert not bad.exists()


def test_cli_export_all_images(cli: CliRunner, split_run: Path, plain_run: Path, tmp_path: Path) -> None:
    """`export --all --images wrong`: one file per class with wrong images, each that part's graph."""
    out = tmp_path / "wrong"
    p = cli.run("export", "--run", str(split_run), "--all", "--images", "wrong", "--out-dir", str(out), "--quiet")
    assert p.returncode == 0 and p.stdout.startswith("10 graphs of wrong images -> "), p.stderr + p.stdout
    run = Run(split_run)
    index = json.loads((out / "index.json").read_text())
    assert index["images"] == "wrong" and len(index["graphs"]) == 10
    hits, n = run.classes.column("n_correct").to_pylist(), run.classes.column("n_images").to_pylist()
    assert {g["name"] for g in index["graphs"]} == {c for c, h, k in zip(run.class_names, hits, n) if h < k}
    assert {s["name"]: s["n_images"] for s in index["skipped"]}[ALL_CORRECT] == 0
    for g in index["graphs"][:3]:
        got = json.loads((out / g["file"]).read_text())
        assert got["graph"]["images"] == "wrong"
        assert graph_data_json(got) == graph_data(class_graph(run, g["name"], images="wrong"))
    for args, message in (((str(plain_run), "--all", "--images", "wrong"), "re-run `summit aggregate` with --split"),
                          ((str(split_run), "--format", "summit-data", "--images", "wrong"),
                           "--format summit-data writes the graphs of all images")):
        bad = tmp_path / "refused"
        p = cli.run("export", "--run", *args, "--out-dir", str(bad), "--quiet")
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and message in p.stderr, p.stderr
        assert not bad.exists()


def graph_data_json(d: dict) -> dict:
    """graph_data of a node-link file read back."""
    return {"nodes": d["nodes"], "links": d["links"]}


def test_mistakes_diff_reuses_the_parts_build_inputs(split_run: Path) -> None:
    """With a memo (a server's recall), the correct-vs-wrong diff is the same as without one, and
    it and the parts' own graphs share their build inputs under the part's keys."""
    run = Run(split_run)
    memo: dict = {}
    computed: list = []

    def recall(key, compute):
        if key not in memo:
            computed.append(key)
            memo[key] = compute()
        return memo[key]
    i = run.class_index(MIXED)
    class_graph(run, MIXED, recall=recall, images="wrong")
    n = len(computed)
    got = mistakes_diff(run, MIXED, recall=recall)
    assert diff_data(got) == diff_data(mistakes_diff(run, MIXED)) and got.score == mistakes_diff(run, MIXED).score
    new = computed[n:]
    assert ("correct", "edges", i) in new and not any(k[0] == "wrong" for k in new)  # the wrong part was kept
    m = len(computed)
    class_graph(run, MIXED, recall=recall, images="correct")
    assert len(computed) == m  # built from what the diff left
