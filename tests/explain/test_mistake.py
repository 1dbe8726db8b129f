"""A misclassified image's explanation: its true and predicted classes and which of its strongest
channels belong to which class graph (summit.explain.mistake), checked against class_graph's node
sets, the layers' channel attribution and predictions.parquet."""
from __future__ import annotations

import json

import numpy as np
import pytest

from summit.cli import main
from summit.explain.explainer import Explainer
from summit.explain.images import ImageInput
from summit.explain.mistake import MISTAKE_CHANNELS
from summit.graph.build import class_graph

EAGLE = "022_bald_eagle/imagenet_17_22_crop_tl.jpg"  # the model says kite (not a run class)
GOOSE = "099_goose/imagenet_15_99_orig.jpg"  # classified correctly
LAYERS = ["fire7", "fire9"]


@pytest.fixture(scope="module")
def eagle(explainer: Explainer):
    return explainer.explain(EAGLE, LAYERS, groups=3)


def prediction(run, image: str) -> tuple[int, bool]:
    """(top-1 model output, correct) of a dataset image in predictions.parquet."""
    t = run.predictions().to_pylist()
    row = next(r for r in t if r["path"] == image)
    return row["top"][0], row["correct"]


def check_channels(expl, graphs: dict[str, object]) -> None:
    """Every layer lists the image's strongest channels by spatial max (the first k the layer's
    active ones), each with its membership in `graphs` (role -> graph or None) and its attribution
    to the true and the predicted class (the channel_attr rows)."""
    m = expl.mistake
    k = expl.run.meta["k"]
    k_true = next(i for i, c in enumerate(expl.classes) if c["run_class"] == m["true"]["class"])
    assert m["channels"] == max(k, MISTAKE_CHANNELS)
    for name, layer in expl.layers.items():
        rows = m["layers"][name]
        peak = layer.acts.reshape(len(layer.acts), -1).max(1)
        assert [r["channel"] for r in rows] == np.argsort(-peak, kind="stable")[:m["channels"]].tolist()
        assert [r["channel"] for r in rows if r["active"]] == [c for c, _ in layer.active]
        for r in rows:
            node = f"{name}:{r['channel']}"
            assert r["in"] == {role: None if G is None else node in G for role, G in graphs.items()}, node
            assert r["attr"]["true"] == pytest.approx(layer.channel_attr[k_true, r["channel"]], rel=1e-3, abs=1e-6)
            assert r["attr"]["predicted"] == pytest.approx(layer.channel_attr[0, r["channel"]], rel=1e-3, abs=1e-6)
            assert r["value"] == pytest.approx(peak[r["channel"]], rel=1e-3)


def test_misclassified_image_prediction_outside_the_run(explainer, eagle):
    run = explainer.run
    m = json.loads(json.dumps(eagle.to_json()["mistake"], allow_nan=False))
    top, correct = prediction(run, EAGLE)
    assert not correct
    assert m["true"]["name"] == "022_bald_eagle" and m["true"]["rank"] > 1
    assert m["predicted"]["output"] == top and m["predicted"]["name"] == "kite"
    assert m["predicted"]["run_class"] is None and m["predicted"]["prob"] == eagle.classes[0]["prob"]
    assert m["graphs"]["predicted"] is None and "not a class of this run" in m["missing"]["predicted"]
    true_g = class_graph(run, "022_bald_eagle")
    wrong_g = class_graph(run, "022_bald_eagle", images="wrong")
    assert m["graphs"]["true"]["nodes"] == true_g.number_of_nodes()
    assert m["graphs"]["wrong"] == {"class": 0, "name": "022_bald_eagle", "images": "wrong",
                                    "nodes": wrong_g.number_of_nodes()}
    assert m["graphs"]["best"] is None and "true class" in m["missing"]["best"]  # the best run class is the eagle
    check_channels(eagle, {"true": true_g, "predicted": None, "best": None, "wrong": wrong_g})
    rows = [r for rows in m["layers"].values() for r in rows]
    assert any(r["in"]["true"] for r in rows) and any(r["in"]["wrong"] for r in rows)
    assert any(r["attr"]["predicted"] > r["attr"]["true"] for r in rows)  # channels pulling toward kite


def test_best_run_class_when_the_prediction_is_outside_the_run(explainer):
    spoonbill = "129_spoonbill/imagenet_14_129_crop_tl.jpg"  # taken for quail; goose is the best run class
    e = explainer.explain(spoonbill, ["fire9"], groups=2)
    m = e.mistake
    assert m["predicted"]["name"] == "quail" and m["best"]["name"] == "099_goose"
    assert m["best"]["model_rank"] == next(l["model_rank"] for l in e.links if "predicted" in l["roles"])
    check_channels(e, {"true": class_graph(e.run, "129_spoonbill"), "predicted": None,
                       "best": class_graph(e.run, "099_goose"),
                       "wrong": class_graph(e.run, "129_spoonbill", images="wrong")})


def test_prediction_that_is_a_run_class(explainer):
    """A goose image labelled as a bull mastiff (a class whose images are all classified correctly):
    the predicted class has a graph; the mastiff has no graph of misclassified images."""
    goose = explainer.input(GOOSE)
    mastiff = explainer.run.class_names.index("243_bull_mastiff")
    e = explainer.explain(ImageInput("memory", "goose as mastiff", goose.image, mastiff), ["fire9"], groups=2)
    m = e.mistake
    assert m["true"]["name"] == "243_bull_mastiff" and m["predicted"]["run_name"] == "099_goose"
    assert m["predicted"]["run_class"] == explainer.run.class_names.index("099_goose")
    assert m["graphs"]["predicted"]["nodes"] == class_graph(e.run, "099_goose").number_of_nodes()
    assert m["best"] is None and "predicted class" in m["missing"]["best"]
    assert m["graphs"]["wrong"] is None and "has no wrong images" in m["missing"]["wrong"]
    check_channels(e, {"true": class_graph(e.run, "243_bull_mastiff"), "predicted": class_graph(e.run, "099_goose"),
                       "best": None, "wrong": None})
    assert any(r["in"]["predicted"] for r in m["layers"]["fire9"])


def test_correct_image_and_no_true_class_have_no_mistake(explainer):
    top, correct = prediction(explainer.run, GOOSE)
    assert correct
    e = explainer.explain(GOOSE, ["fire9"], groups=2)
    assert e.mistake is None and e.to_json()["mistake"] is None
    no_class = ImageInput("memory", "no folder", explainer.input(EAGLE).image)
    assert explainer.explain(no_class, ["fire9"], groups=2).mistake is None


def test_cli_writes_the_mistake_and_says_so(sample_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", "--run", str(sample_run), EAGLE, "--layers", "fire9", "--out", str(out),
                 "--groups", "2", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("misclassified: 022_bald_eagle taken for kite (") and "not a class of this run" in lines[-1]
    d = json.loads((out / "explain.json").read_text())
    assert d["mistake"]["true"]["name"] == "022_bald_eagle" and len(d["mistake"]["layers"]["fire9"]) == 10
    assert main(["explain", "--run", str(sample_run), GOOSE, "--layers", "fire9", "--out", str(out),
                 "--groups", "2", "--quiet"]) == 0
    assert "misclassified" not in capsys.readouterr().out
    assert json.loads((out / "explain.json").read_text())["mistake"] is None


def test_notebook_shows_the_mistake(explainer, eagle) -> None:
    """The notebook's explanation HTML names the mistake and marks the strongest channels of
    the true (T) and predicted (P) class graphs; a correct image has no such line."""
    from summit.notebook import explanation_html
    page = explanation_html(eagle)
    assert "<b>misclassified</b>: 022_bald_eagle taken for kite (" in page
    true_nodes = {f"{l}:{c}" for l, cs in eagle.mistake["layers"].items() for c in
                  (r["channel"] for r in cs if r["in"]["true"])}
    assert true_nodes and all(f"{n.split(':')[1]}T" in page for n in true_nodes)
    assert "misclassified" not in explanation_html(explainer.explain(GOOSE, LAYERS, groups=3))
