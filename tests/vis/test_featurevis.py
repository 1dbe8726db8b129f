"""Feature visualization on the real Caffe SqueezeNet 1.1 weights (small images, few steps)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from summit.cli import main, parse_channels
from summit.model.models import SummitError, load_model
from summit.run.layout import diversity_counts, diversity_path, featurevis_path
from summit.vis.cache import DIVERSITY_FILE, render_cached, render_diversity_run
from summit.vis.objectives import Objective, channel, channels, direction, diversity, grouped_diversity, neuron
from summit.vis.param import FourierImage
from summit.vis.render import _capture, redirected_relu, render, render_diversity, visualize

LAYER = "fire4"
CHANNELS = list(range(8))
SIZE = 64
STEPS = 64


@pytest.fixture(scope="module")
def spec():
    return load_model("squeezenet1_1")


def _acts(spec, x: torch.Tensor, layer: str = LAYER) -> torch.Tensor:
    """(N, C) mean activation of every channel of `layer`."""
    with _capture(spec, [layer]) as run, torch.no_grad():
        return run(x)[layer].mean((-2, -1))


def _tensor(imgs: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in imgs])


@pytest.fixture(scope="module")
def rendered(spec):
    """One batched optimization of 8 channels, plus their un-optimized starts."""
    imgs = render(spec, LAYER, CHANNELS, size=SIZE, steps=STEPS, batch=8, progress=False)
    start = render(spec, LAYER, CHANNELS, size=SIZE, steps=0, batch=8, progress=False)
    return _tensor(imgs), _tensor(start)


def test_render_raises_channel_activation(spec, rendered):
    imgs, start = rendered
    idx = torch.arange(len(CHANNELS))
    got = _acts(spec, imgs)[idx, CHANNELS]
    before = _acts(spec, start)[idx, CHANNELS]
    noise = _acts(spec, torch.rand(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))
    noise = noise.mean(0)[CHANNELS]
    # measured (64 px, 64 steps): rendered 170-640, noise 0-230 (ratios 2.7x..134x, inf where
    # noise gives 0), un-optimized start 0-27
    assert (got >= 2 * noise).all(), (got, noise)
    assert got.mean() >= 5 * noise.mean(), (got, noise)
    assert (got >= 10 * before.clamp(min=1.0)).all(), (got, before)


def test_batched_render_is_diagonal(spec, rendered):
    imgs, _ = rendered
    a = _acts(spec, imgs)[:, CHANNELS]  # a[i, j]: channel j on the image rendered for channel i
    wins = sum(int(a[:, j].argmax()) == j for j in range(len(CHANNELS)))
    assert wins >= len(CHANNELS) - 1, a  # measured: 8 of 8


def test_same_seed_same_pixels(spec):
    kw = dict(size=48, steps=8, batch=2, progress=False)
    a = [np.array(im) for im in render(spec, "fire3", [0, 1], seed=0, **kw)]
    b = [np.array(im) for im in render(spec, "fire3", [0, 1], seed=0, **kw)]
    c = [np.array(im) for im in render(spec, "fire3", [0, 1], seed=1, **kw)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not any(np.array_equal(x, y) for x, y in zip(a, c))
    assert a[0].shape == (48, 48, 3) and a[0].dtype == np.uint8


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


def test_model_unchanged_after_render(spec):
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    relu, hardtanh = F.relu, F.hardtanh
    with torch.no_grad():
        before = spec.model(x)
    render(spec, "fire5", [3, 4], size=48, steps=4, progress=False)
    with torch.no_grad():
        after = spec.model(x)
    assert torch.equal(before, after)
    assert _no_hooks(spec.model)
    assert F.relu is relu and F.hardtanh is hardtanh
    assert not spec.model.training
    assert all(p.grad is None and p.requires_grad for p in spec.model.parameters())


def test_model_restored_after_failed_render(spec):
    relu = F.relu

    def boom(acts):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        visualize(spec, Objective(boom, ("fire3",), "boom"), [0], size=48, steps=2)
    assert F.relu is relu and _no_hooks(spec.model)


def test_redirected_relu_gradient():
    x = torch.tensor([[-1.0, -2.0], [-1.0, 3.0]], requires_grad=True)
    with redirected_relu():
        y = F.relu(x)
        (-y.sum()).backward()  # maximize: wants every input to go up
    # row 0 is fully dead: gradient redirected; row 1 has a live unit: ordinary ReLU gradient
    assert x.grad.tolist() == [[-1.0, -1.0], [0.0, -1.0]]
    assert torch.equal(y, x.detach().clamp(min=0))
    x.grad = None
    with redirected_relu():
        (y2 := F.relu(x)).sum().backward()  # minimize: never pushes negative inputs further down
    assert x.grad.tolist() == [[0.0, 0.0], [0.0, 1.0]] and y2.shape == x.shape
    x.grad = None
    F.relu(x).sum().neg().backward()  # outside the context: plain ReLU
    assert x.grad.tolist() == [[0.0, 0.0], [0.0, -1.0]]


def test_fourier_image_shape_and_range():
    img = FourierImage(33, seeds=[0, 1, 2])
    assert img.spectrum.shape == (3, 3, 33, 17, 2)
    with torch.no_grad():
        img.spectrum.normal_(0, 5)  # far from the init: sigmoid must still bound it
        out = img()
    assert out.shape == (3, 3, 33, 33)
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0.05
    a, b = FourierImage(16, [7]), FourierImage(16, [7, 8])
    assert torch.equal(a.spectrum[0], b.spectrum[0])  # an item's start depends on its seed only


def test_objectives_compose():
    acts = {"l": torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).view(2, 3, 3, 3)}
    ch, nr = channel("l", 1), neuron("l", 2)
    assert torch.equal(ch(acts), acts["l"][:, 1].mean((1, 2)))
    assert torch.equal(nr(acts), acts["l"][:, 2, 1, 1])
    combo = 2 * ch - nr + 1
    assert torch.allclose(combo(acts), 2 * ch(acts) - nr(acts) + 1)
    assert combo.layers == ("l",)
    assert torch.allclose(direction("l", [0, 1, 0])(acts), ch(acts))
    assert torch.equal(channels("l", [2, 0])(acts), torch.stack([acts["l"][0, 2].mean(), acts["l"][1, 0].mean()]))
    same = {"l": torch.ones(2, 3, 2, 2)}
    assert torch.allclose(diversity("l")(same), torch.full((2,), -0.5))  # identical: cos = 1
    assert (ch + channel("m", 0)).layers == ("l", "m")


def test_unknown_layer_and_channel_errors(spec):
    with pytest.raises(SummitError, match="valid: fire2, fire3"):
        render(spec, "fire99", [0], progress=False)
    with pytest.raises(SummitError, match=r"128 out of range for fire3: valid 0..127"):
        render(spec, "fire3", [0, 128], size=48, steps=1, progress=False)
    assert parse_channels(["0-2", "5", "1"], "fire2", 6) == [0, 1, 2, 5]
    with pytest.raises(SummitError, match="bad channel"):
        parse_channels(["x"], "fire2", 6)
    with pytest.raises(SummitError, match=r"channel\(s\) 99999999999 out of range for fire2: valid 0..5"):
        parse_channels(["0-99999999999"], "fire2", 6)  # refused before the range is built (was a MemoryError)


def test_cache_skips_rerender(spec, tmp_path, monkeypatch):
    kw = dict(size=48, steps=4, progress=False)
    paths = render_cached(spec, "fire3", [0, 1], tmp_path, **kw)
    assert [p.name for p in paths] == ["0.png", "1.png"] and all(p.is_file() for p in paths)
    mtimes = [p.stat().st_mtime_ns for p in paths]

    def fail(*a, **k):
        raise AssertionError("re-rendered a cached channel")
    with monkeypatch.context() as m:
        m.setattr("summit.vis.cache.visualize", fail)
        again = render_cached(spec, "fire3", [1, 0], tmp_path, **kw)
    assert again == paths[::-1] and [p.stat().st_mtime_ns for p in paths] == mtimes
    other = render_cached(spec, "fire3", [0], tmp_path, **{**kw, "steps": 5})
    assert other[0].parent.parent != paths[0].parent.parent  # new settings hash directory
    assert sorted(d.name for d in tmp_path.iterdir()) == sorted(
        {paths[0].parent.parent.name, other[0].parent.parent.name})
    assert json.loads((other[0].parent.parent / "settings.json").read_text())["steps"] == 5


def test_cli_render_writes_stable_paths(run_copy):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-m", "summit", "render", "--run", str(run_copy), "--layer",
                        "fire3", "--channels", "0-1", "--size", "48", "--steps", "16", "--quiet"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    for c in (0, 1):
        p = featurevis_path(run_copy, "fire3", c)
        assert p == run_copy / "featurevis" / "fire3" / f"{c}.png"
        assert Image.open(p).size == (48, 48)
    manifest = json.loads((run_copy / "featurevis" / "settings.json").read_text())
    digest = manifest["channels"]["fire3"]["0"]
    assert manifest["settings"][digest]["steps"] == 16
    assert (run_copy / "featurevis" / "cache" / digest / "fire3" / "0.png").is_file()


def test_cli_render_errors(run_copy, capsys):
    assert main(["render", "--run", str(run_copy), "--layer", "fire42", "--channels", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "valid: fire2, fire3" in err
    assert main(["render", "--run", str(run_copy), "--layer", "fire3", "--channels", "500"]) == 2
    assert "out of range for fire3: valid 0..127" in capsys.readouterr().err
    assert main(["render", "--run", str(run_copy), "--layer", "fire3"]) == 2
    assert "--channels" in capsys.readouterr().err


def test_cli_render_graph_nodes(run_copy, capsys):
    from summit.graph.build import class_graph
    from summit.run.store import Run
    cls = Run(run_copy).class_names[0]
    assert main(["render", "--run", str(run_copy), "--graph-nodes", cls,
                 "--size", "48", "--steps", "2", "--quiet"]) == 0
    nodes = list(class_graph(Run(run_copy), cls).nodes(data=True))
    assert nodes
    for _, d in nodes:
        assert featurevis_path(run_copy, d["layer"], d["channel"]).is_file()


# -- diversity (Summit's four images per channel) ---------------------------------------------
def _gram_similarity(spec, imgs: list[Image.Image], layer: str = LAYER) -> float:
    """Mean cosine similarity between the images' Gram matrices at `layer` (1: identical style)."""
    with _capture(spec, [layer]) as run, torch.no_grad():
        f = run(_tensor(imgs))[layer].flatten(2)
    g = F.normalize((f @ f.transpose(1, 2)).flatten(1), dim=1)
    sim = g @ g.t()
    n = len(imgs)
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def test_grouped_diversity_is_diversity_per_group():
    acts = {"l": torch.randn(6, 4, 3, 3)}
    want = torch.cat([diversity("l")({"l": acts["l"][:3]}), diversity("l")({"l": acts["l"][3:]})])
    assert torch.allclose(grouped_diversity("l", 3)(acts), want)


def test_diversity_images_differ_and_excite_the_channel(spec):
    kw = dict(n=4, size=48, steps=48, batch=8, progress=False)
    div = dict(render_diversity(spec, LAYER, [3, 5], **kw))
    plain = dict(render_diversity(spec, LAYER, [3, 5], weight=0.0, **kw))
    start = dict(render_diversity(spec, LAYER, [3, 5], **{**kw, "steps": 0}))
    assert sorted(div) == [3, 5] and all(len(v) == 4 and v[0].size == (48, 48) for v in div.values())
    for c in (3, 5):
        # measured (48 px, 48 steps): 0.57 and 0.71 with the diversity term, 0.94 and 0.95 without;
        # activations 315-409 against at most 15 for the un-optimized starts
        assert _gram_similarity(spec, div[c]) < _gram_similarity(spec, plain[c]) - 0.1
        assert (_acts(spec, _tensor(div[c]))[:, c] > _acts(spec, _tensor(start[c]))[:, c].max()).all()
    with pytest.raises(SummitError, match="2..16 images per channel"):
        next(render_diversity(spec, LAYER, [3], n=1))


def test_render_diversity_run_files_resume_and_cli(run_copy, capsys, monkeypatch):
    kw = dict(size=32, steps=2, progress=False)
    paths = render_diversity_run(run_copy, {"fire3": [0, 2]}, 4, **kw)
    assert paths == [diversity_path(run_copy, "fire3", c, i) for c in (0, 2) for i in range(4)]
    assert paths[1] == run_copy / "featurevis" / "fire3" / "0_d1.png" and Image.open(paths[1]).size == (32, 32)
    assert diversity_counts(run_copy, "fire3") == {0: 4, 2: 4}
    manifest = json.loads((run_copy / "featurevis" / DIVERSITY_FILE).read_text())
    assert manifest["settings"][manifest["channels"]["fire3"]["0"]]["diversity"] == 4
    with monkeypatch.context() as m:  # same settings: nothing to render
        m.setattr("summit.vis.cache.visualize", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-rendered")))
        assert render_diversity_run(run_copy, {"fire3": [2]}, 4, **kw) == paths[4:]
    render_diversity_run(run_copy, {"fire3": [0]}, 2, **kw)  # fewer images: the extra ones go
    assert diversity_counts(run_copy, "fire3") == {0: 2, 2: 4}
    assert main(["render", "--run", str(run_copy), "--layer", "fire4", "--channels", "1", "--size", "32",
                 "--steps", "2", "--diversity", "3", "--quiet"]) == 0
    assert "3 diversity images (3 per channel)" in capsys.readouterr().out
    assert diversity_counts(run_copy, "fire4") == {1: 3} and featurevis_path(run_copy, "fire4", 1).is_file()
    assert main(["render", "--run", str(run_copy), "--layer", "fire4", "--channels", "1", "--diversity", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "summit: error: diversity wants 2..16 images per channel, got 1"
