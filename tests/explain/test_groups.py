"""Neuron groups (NMF of one image's activations) on real SqueezeNet activations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF

from summit.explain.attribution import forward
from summit.explain.groups import factorize
from summit.model.models import SummitError, load_model
from summit.model.pixels import image_transform
from summit.pipeline.data import BUNDLED_SAMPLE, open_rgb

IMAGE = BUNDLED_SAMPLE / "251_dalmatian" / "imagenet_16_251_orig.jpg"


@pytest.fixture(scope="module")
def acts() -> dict[str, torch.Tensor]:
    spec = load_model("squeezenet1_1")
    fwd = forward(spec, image_transform(224)(open_rgb(IMAGE)), ["fire5", "fire8"])
    return {l: fwd.act(l) for l in ("fire5", "fire8")}


@pytest.mark.parametrize("layer", ["fire5", "fire8"])
def test_groups_are_non_negative_and_error_falls_as_groups_grow(acts, layer):
    a = acts[layer]
    errors = []
    for n in range(1, 9):
        g = factorize(a, n)
        assert g.maps.shape == (n, *a.shape[1:]) and g.directions.shape == (n, a.shape[0])
        assert (g.maps >= 0).all() and (g.directions >= 0).all()
        np.testing.assert_allclose(np.linalg.norm(g.directions, axis=1), 1.0, rtol=1e-6)
        rebuilt = np.linalg.norm(a.numpy() - g.reconstruction()) / np.linalg.norm(a.numpy())
        assert g.error == pytest.approx(rebuilt, rel=1e-4)
        errors.append(g.error)
    assert all(b < e for e, b in zip(errors, errors[1:])), errors
    assert errors[0] < 1 and errors[-1] < 0.9 * errors[0], errors  # measured: fire5 0.80 -> 0.65, fire8 0.82 -> 0.62


def test_groups_are_scikit_learns_factorization(acts):
    """Ordering and scaling keep scikit-learn's product W @ H: the same reconstruction."""
    a = acts["fire8"].numpy()
    c = a.shape[0]
    m = a.reshape(c, -1).T
    ref = NMF(6, init="nndsvda", random_state=0, max_iter=400, tol=1e-4)
    w = ref.fit_transform(m)
    np.testing.assert_allclose(factorize(a, 6).reconstruction().reshape(c, -1).T, w @ ref.components_,
                               rtol=1e-4, atol=1e-3 * float(m.max()))
    order = factorize(a, 6).maps.sum((1, 2))
    assert all(x >= y for x, y in zip(order, order[1:]))  # largest share first


def test_group_attribution_is_the_gradient_on_the_groups_activations(acts):
    a = acts["fire8"]
    g = factorize(a, 4)
    grad = torch.randn(2, *a.shape, generator=torch.Generator().manual_seed(0))
    got = g.attribution(grad)
    assert got.shape == (2, 4)
    for j in range(4):
        part = np.einsum("hw,c->chw", g.maps[j], g.directions[j])
        np.testing.assert_allclose(got[:, j], (grad.numpy() * part).sum((1, 2, 3)), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got.sum(1), (grad.numpy() * g.reconstruction()).sum((1, 2, 3)), rtol=1e-4, atol=1e-3)


def test_factorize_edge_cases():
    z = factorize(np.zeros((8, 4, 4)), 3)
    assert z.error == 0.0 and not z.maps.any()
    neg = factorize(-np.ones((8, 4, 4)) + np.eye(4)[None] * 3, 2)  # negatives are clipped, not refused
    assert (neg.maps >= 0).all()
    for bad in (0, 9, 33):
        with pytest.raises(SummitError, match="groups must be in"):
            factorize(np.ones((8, 3, 3)), bad)
    with pytest.raises(SummitError, match="C, H, W"):
        factorize(np.ones((8, 3)), 2)
