"""The Building Blocks explainer on the sample run: links to class graphs, classes, JSON, inputs,
the `summit explain` CLI and the notebook pictures."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from summit.cli import main
from summit.errors import SummitError
from summit.explain.explainer import Explainer, default_layers
from summit.graph.build import class_graph
from summit.graph.svg import graph_svg
from summit.notebook import ChannelCard, explanation_html
from summit.pipeline.data import BUNDLED_SAMPLE
from summit.run.store import Run

MISCLASSIFIED = "129_spoonbill/imagenet_14_129_crop_tl.jpg"  # best run class: 099_goose
TRUE_NOT_IN_TOP3 = "251_dalmatian/imagenet_16_251_orig.jpg"


@pytest.fixture(scope="module")
def expl(explainer: Explainer):
    return explainer.explain(MISCLASSIFIED, ["fire3", "fire6", "fire9"], groups=4)


def test_default_layers(sample_run):
    assert default_layers(Run(sample_run)) == ["fire5", "fire7", "fire9"]


def test_link_to_class_graphs_matches_class_graph_nodes(explainer, expl):
    run = explainer.run
    roles = {r: l for l in expl.links for r in l["roles"]}
    assert roles["predicted"]["name"] == "099_goose" and roles["true"]["name"] == "129_spoonbill"
    data = expl.to_json()
    for link in expl.links:
        G = class_graph(run, link["class"])
        assert link["graph_nodes"] == G.number_of_nodes()
        for layer in expl.layers:
            want = sorted(d["channel"] for _, d in G.nodes(data=True) if d["layer"] == layer)
            assert link["nodes"].get(layer, []) == want, (link["name"], layer)
    for layer in data["layers"]:
        for a in layer["active"]:
            node = f"{layer['name']}:{a['channel']}"
            assert a["in"] == [i for i, l in enumerate(expl.links) if node in class_graph(run, l["class"])]
    # the image's active channels: its top-k by spatial max, k from the run (Summit's A rule)
    acts = expl.layers["fire9"].acts.reshape(512, -1).max(1)
    assert [c for c, _ in expl.layers["fire9"].active] == acts.argsort()[::-1][:run.meta["k"]].tolist()
    assert any(a["in"] for layer in data["layers"] for a in layer["active"])


def test_classes_include_the_true_class(explainer):
    e = explainer.explain(TRUE_NOT_IN_TOP3, ["fire9"], top=3)
    assert [c["role"] for c in e.classes] == ["top", "top", "top", "true"]
    assert [c["rank"] for c in e.classes[:3]] == [1, 2, 3] and e.classes[3]["rank"] > 3
    assert e.classes[3]["index"] == 251 and e.classes[3]["run_name"] == "251_dalmatian"
    assert e.layers["fire9"].grads.shape[0] == 4
    probs = [c["prob"] for c in e.classes[:3]]
    assert probs == sorted(probs, reverse=True)


def test_json_document(expl):
    d = json.loads(json.dumps(expl.to_json(), allow_nan=False))
    assert d["schema"] == "summit-explain" and d["image"]["source"] == "dataset"
    assert d["image"]["query"] == {"image": MISCLASSIFIED}
    assert d["image"]["true_class"]["name"] == "129_spoonbill"
    assert [l["name"] for l in d["layers"]] == ["fire3", "fire6", "fire9"]
    fire3, fire6 = d["layers"][0], d["layers"][1]
    assert (fire3["height"], fire3["grid"]["rows"]) == (55, 14) and (fire6["height"], fire6["grid"]["rows"]) == (13, 13)
    assert len(fire3["spatial"][0]) == 55 * 55 and len(fire3["groups"]["maps"]) == 4
    assert fire3["groups"]["next"]["layer"] == "fire6" and len(fire3["groups"]["next"]["attr"][0]) == 4
    assert d["layers"][-1]["groups"]["next"] is None
    assert len(fire6["groups"]["attr"][0]) == len(d["classes"])


def test_inputs(explainer, tmp_path):
    src = BUNDLED_SAMPLE / "099_goose" / "imagenet_15_99_flip.jpg"
    inside = explainer.input(src)  # an absolute path inside the dataset is a dataset image
    assert inside.source == "dataset" and inside.true_class == explainer.run.class_names.index("099_goose")
    copy = Path(shutil.copy(src, tmp_path / "mine.jpg"))
    outside = explainer.input(copy)
    assert outside.source == "file" and outside.true_class is None and outside.image.size == (224, 224)
    assert explainer.input(Image.open(src)).image.tobytes() == outside.image.tobytes()
    e = explainer.explain(copy, ["fire9"])
    assert [l["roles"] for l in e.links] == [["predicted"]]
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(SummitError, match="not an image") as err:
        explainer.input(tmp_path / "notes.jpg")
    assert err.value.status == 415
    with pytest.raises(SummitError, match="image not found"):
        explainer.input("nope/nothing.jpg")


def test_cli_explain_writes_json_and_pngs(sample_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", "--run", str(sample_run), "099_goose/imagenet_15_99_orig.jpg", "--layers", "fire7",
                 "fire8", "--out", str(out), "--groups", "3", "--quiet"]) == 0
    assert "goose" in capsys.readouterr().out
    d = json.loads((out / "explain.json").read_text())
    assert d["settings"]["layers"] == ["fire7", "fire8"] and d["settings"]["groups"] == 3
    for f in d["files"].values():
        size = Image.open(out / f).size
        assert size == (224, 224) or "dictionary" in f, (f, size)
    assert {"input.png", "fire7-groups.png", "fire8-dictionary.png", "fire7-attribution-2.png"} <= set(d["files"].values())
    assert main(["explain", "--run", str(sample_run), "099_goose/imagenet_15_99_orig.jpg", "--layers", "fire99",
                 "--out", str(out)]) == 2
    assert "unknown layer 'fire99'" in capsys.readouterr().err
    assert main(["explain", "--run", str(sample_run), "099_goose/../../x.jpg", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("summit: error: ") and err.count("\n") == 1


def test_notebook_pictures(sample_run, expl):
    """The pictures summit.notebook registers with IPython: a graph's SVG, a channel card, an explanation."""
    G = class_graph(Run(sample_run), "099_goose")
    svg = ET.fromstring(graph_svg(G))
    assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == G.number_of_nodes() > 0
    assert len(svg.findall("{http://www.w3.org/2000/svg}line")) == G.number_of_edges()
    card = ChannelCard(sample_run, "fire9", 10)._repr_html_()
    assert "fire9:10" in card and "data:image/jpeg;base64," in card  # the dataset-example strip
    html = explanation_html(expl)
    assert html.count("data:image/png;base64,") >= 1 + 3 * (len(expl.classes) + 2)
    assert "129_spoonbill" in html and "099_goose" in html
