"""Aggregation: stream a dataset through the model once and accumulate Summit's matrices.

dataset -> model hooks -> accumulators (activation, influence, examples) -> Parquet.

- A[class, channel] counts images of a class whose channel is in the image's top-k channels
  (by spatial max) of its layer; ``sum`` adds every image's spatial max (kept in int64 fixed
  point with 2^-20 resolution so that sums are exact and order-independent: resumed and
  sharded runs give byte-identical files).
- The dataset is split into fixed batches of ``batch_size`` consecutive indices. A shard /
  torchrun rank r of N takes batches b with b % N == r, so each batch is identical in every
  run mode; checkpoints are taken at batch boundaries.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from . import __version__
from .data import BUNDLED_SAMPLE, SafeImageFolder, collate
from .examples import ExamplesAccumulator, receptive_field, write_examples
from .hooks import Taps
from .influence import InfluenceAccumulator, LayerPair, build_pairs, pair_taps
from .models import ModelSpec, SummitError, load_model
from .store import (ACTIVATION_SCHEMA, CLASS_SCHEMA, SCHEMA_VERSION, atomic_write_bytes,
                    write_influence, write_json, write_table)

FIXED_POINT = 2**20
INFLUENCE_MEMORY = 1 << 23  # counts per layer pair held in memory (16 bytes each) before spilling


@dataclass
class AggregateConfig:
    """Everything that determines a run's result (checked on --resume and merge)."""

    model: str = "squeezenet1_1"
    weights: str | None = None
    layers: list[str] | None = None
    k: int = 5
    k_influence: int = 5
    examples_k: int = 8  # 0: no dataset examples
    influence: str = "auto"  # auto | conv | grad | off
    batch_size: int = 32
    image_size: int = 224
    limit: int | None = None  # use only the first `limit` files (smoke runs)

    def key(self, fingerprint: str) -> dict:
        return {**asdict(self), "fingerprint": fingerprint}


class ActivationAccumulator:
    """A[class, channel] top-k counts and fixed-point sums of spatial maxima, per layer."""

    def __init__(self, channels: dict[str, int], n_classes: int, k: int) -> None:
        self.k = k
        self.count = {l: torch.zeros(n_classes, c, dtype=torch.long) for l, c in channels.items()}
        self.sum = {l: torch.zeros(n_classes, c, dtype=torch.long) for l, c in channels.items()}
        self.n_images = torch.zeros(n_classes, dtype=torch.long)
        self.n_correct = torch.zeros(n_classes, dtype=torch.long)

    def update(self, layer: str, maxval: torch.Tensor, labels: torch.Tensor) -> None:
        k = min(self.k, maxval.shape[1])
        top = maxval.topk(k, dim=1).indices
        self.count[layer].index_put_((labels.view(-1, 1).expand(-1, k), top),
                                     torch.ones_like(top), accumulate=True)
        self.sum[layer].index_add_(0, labels, (maxval.double() * FIXED_POINT).round().long())

    def count_images(self, labels: torch.Tensor, correct: torch.Tensor) -> None:
        self.n_images.index_add_(0, labels, torch.ones_like(labels))
        self.n_correct.index_add_(0, labels, correct.long())

    def state(self) -> dict:
        return {"count": self.count, "sum": self.sum, "n_images": self.n_images, "n_correct": self.n_correct}

    def load(self, state: dict) -> None:
        self.count, self.sum = state["count"], state["sum"]
        self.n_images, self.n_correct = state["n_images"], state["n_correct"]

    def merge(self, state: dict) -> None:
        for l in self.count:
            self.count[l] += state["count"][l]
            self.sum[l] += state["sum"][l]
        self.n_images += state["n_images"]
        self.n_correct += state["n_correct"]


class BatchList(Sampler):
    """Batches b = [b*B, (b+1)*B) of the dataset with b % world == rank, from position `start`."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int, start: int = 0) -> None:
        self.batches = list(range(rank, (n + batch_size - 1) // batch_size, world))
        self.n, self.bs, self.start = n, batch_size, start

    def images(self, start: int = 0) -> int:
        return sum(min(self.n, (b + 1) * self.bs) - b * self.bs for b in self.batches[start:])

    def __len__(self) -> int:
        return len(self.batches) - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.batches[self.start:]:
            yield list(range(b * self.bs, min(self.n, (b + 1) * self.bs)))


@dataclass
class Probe:
    """What one dummy forward tells about the chosen layers."""

    channels: dict[str, int]
    hw: dict[str, tuple[int, int]]
    rf: dict[str, int] = field(default_factory=dict)


def probe_layers(spec: ModelSpec, layers: list[str], size: int) -> Probe:
    paths = {l: spec.layers[l] for l in layers}
    with Taps(spec.model.net, outputs=paths.values()) as taps, torch.no_grad():
        spec.model(torch.zeros(1, 3, size, size))
    channels = {l: int(taps.out[p].shape[1]) for l, p in paths.items()}
    hw = {l: tuple(int(s) for s in taps.out[p].shape[2:]) for l, p in paths.items()}
    bad = [l for l, p in paths.items() if taps.out[p].dim() != 4]
    if bad:
        raise SummitError(f"layer(s) {', '.join(bad)} do not output (N, C, H, W) feature maps")
    rf = {l: receptive_field(spec.model, spec.module(l), size) for l in layers}
    return Probe(channels, hw, rf)


class Aggregator:
    """One streaming pass, with checkpoints, resume, sharding and torch.distributed."""

    def __init__(self, cfg: AggregateConfig, dataset: SafeImageFolder, spec: ModelSpec | None = None,
                 device: str = "cpu") -> None:
        self.cfg = cfg
        self.spec = spec or load_model(cfg.model, cfg.weights, cfg.layers)
        self.layers = self.spec.check_layers(cfg.layers or list(self.spec.layers))
        self.dataset = dataset
        self.n = len(dataset) if cfg.limit is None else min(cfg.limit, len(dataset))
        self.device = torch.device(device)
        self.probe = probe_layers(self.spec, self.layers, cfg.image_size)
        self.pairs: list[LayerPair] = [] if cfg.influence == "off" else \
            [p.to(self.device) for p in build_pairs(self.spec, self.layers, self.probe.channels, cfg.influence)]
        n_classes = len(dataset.classes)
        self.acts = ActivationAccumulator(self.probe.channels, n_classes, cfg.k)
        self.infl = InfluenceAccumulator(self.pairs, n_classes, cfg.k_influence)
        self.examples = ExamplesAccumulator(self.probe.channels, cfg.examples_k)
        self.skipped: list[tuple[int, str]] = []
        self.position = 0  # batches of this rank done
        self.key = cfg.key(dataset.fingerprint())
        mi = dataset.model_index
        self.model_index = torch.tensor([-1 if m is None else m for m in mi], dtype=torch.long)
        self.spec.model.to(self.device)

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict:
        return {"key": self.key, "position": self.position, "skipped": list(self.skipped),
                "acts": self.acts.state(), "infl": self.infl.state(), "examples": self.examples.state()}

    def load(self, state: dict) -> None:
        self.check_key(state["key"], "checkpoint")
        self.position, self.skipped = state["position"], list(state["skipped"])
        self.acts.load(state["acts"]); self.infl.load(state["infl"]); self.examples.load(state["examples"])

    def merge(self, state: dict) -> None:
        self.check_key(state["key"], "shard")
        self.skipped = sorted(set(self.skipped) | set(map(tuple, state["skipped"])))
        self.acts.merge(state["acts"]); self.infl.merge(state["infl"]); self.examples.merge(state["examples"])

    def check_key(self, other: dict, what: str) -> None:
        diff = [k for k in self.key if self.key[k] != other.get(k)]
        if diff:
            raise SummitError(f"{what} was made with different settings ({', '.join(diff)}); "
                              "use the same model, layers, k, batch size and dataset")

    def save_state(self, path: Path) -> None:
        """Atomically save the accumulators (a checkpoint, or a shard's result)."""
        import io
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        atomic_write_bytes(path, buf.getvalue())

    # -- streaming ----------------------------------------------------------------------
    def run(self, rank: int = 0, world: int = 1, checkpoint: Path | None = None,
            checkpoint_every: int = 1000, workers: int = 0, progress: bool = True) -> None:
        """Process this rank's batches from self.position on, checkpointing atomically."""
        sampler = BatchList(self.n, self.cfg.batch_size, rank, world, self.position)
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                            persistent_workers=False)
        outs, inps = pair_taps(self.pairs)
        grad = any(p.method == "grad" for p in self.pairs)
        layer_paths = [self.spec.layers[l] for l in self.layers]
        since = 0
        bar = tqdm(total=sampler.images(0), initial=sampler.images(0) - sampler.images(self.position),
                   unit="img", desc=f"aggregate{'' if world == 1 else f' [{rank}/{world}]'}",
                   disable=not progress, smoothing=0.1)
        with Taps(self.spec.model.net, outputs=[*layer_paths, *outs], inputs=inps, detach=not grad) as taps:
            for batch in loader:
                n_batch = len(batch["index"])
                self.skipped.extend((int(i), e) for i, e in batch["errors"])
                ok = batch["ok"]
                if ok.any():
                    self._step(taps, batch["image"][ok], batch["label"][ok], batch["index"][ok], grad)
                taps.clear()
                self.position += 1
                since += n_batch
                bar.update(n_batch)
                bar.set_postfix(skipped=len(self.skipped), refresh=False)
                if checkpoint is not None and since >= checkpoint_every:
                    self.save_state(checkpoint)
                    since = 0
        bar.close()

    def _step(self, taps: Taps, x: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
              grad: bool) -> None:
        x = x.to(self.device, non_blocking=True)
        with torch.set_grad_enabled(grad):
            logits = self.spec.model(x)
        pred = logits.argmax(1).cpu()
        mi = self.model_index[labels]
        self.acts.count_images(labels, (pred == mi) & (mi >= 0))
        for layer in self.layers:
            act = taps.out[self.spec.layers[layer]].detach()
            mv, am = act.flatten(2).max(2)
            mv, am = mv.float().cpu(), am.cpu()
            self.acts.update(layer, mv, labels)
            if self.cfg.examples_k:
                self.examples.update(layer, mv, am, self.probe.hw[layer], indices, labels)
        if self.pairs:
            self.infl.update(taps, labels.to(self.device))

    # -- output -------------------------------------------------------------------------
    def metadata(self, partial: bool = False, shard: tuple[int, int] | None = None) -> dict:
        ds = self.dataset
        return {
            "schema_version": SCHEMA_VERSION, "summit_version": __version__, "partial": partial,
            "shard": list(shard) if shard else None, "config": self.key,
            "model": self.spec.name, "weights": self.spec.weights, "k": self.cfg.k,
            "k_influence": self.cfg.k_influence, "examples_k": self.cfg.examples_k,
            "image_size": self.cfg.image_size,
            "layers": [{"name": l, "module": self.spec.layers[l], "channels": self.probe.channels[l],
                        "height": self.probe.hw[l][0], "width": self.probe.hw[l][1],
                        "receptive_field": self.probe.rf[l]} for l in self.layers],
            "pairs": [{"name": p.name, "src": p.src, "dst": p.dst, "method": p.method,
                       "routes": len(p.routes)} for p in self.pairs],
            "influence_method": sorted({p.method for p in self.pairs}),
            "dataset": {"root": str(ds.root) if ds.root else None, "fingerprint": self.key["fingerprint"],
                        "n_files": self.n, "n_images": int(self.acts.n_images.sum()),
                        "n_skipped": len(self.skipped),
                        "skipped": [{"path": ds.name(i), "reason": r} for i, r in sorted(self.skipped)]},
        }

    def write(self, out: Path, progress: bool = True) -> None:
        """Write the finished run (Parquet tables, examples, run.json last)."""
        out.mkdir(parents=True, exist_ok=True)
        names = list(self.dataset.classes)
        mi = self.model_index.numpy()
        has = mi >= 0
        write_table(pa.table({
            "class": np.arange(len(names), dtype=np.int32), "name": names,
            "model_index": pa.array(np.where(has, mi, 0).astype(np.int32), mask=~has),
            "n_images": self.acts.n_images.numpy(),
            "n_correct": pa.array(self.acts.n_correct.numpy(), mask=~has)}, schema=CLASS_SCHEMA),
            out / "classes.parquet")
        cols: dict[str, list] = {k: [] for k in ACTIVATION_SCHEMA.names}
        for l in self.layers:
            cnt = self.acts.count[l].numpy()
            n_cls, n_ch = cnt.shape
            cols["layer"].append(np.full(n_cls * n_ch, l, dtype=object))
            cols["class"].append(np.repeat(np.arange(n_cls, dtype=np.int32), n_ch))
            cols["channel"].append(np.tile(np.arange(n_ch, dtype=np.int32), n_cls))
            cols["count"].append(cnt.reshape(-1))
            cols["sum"].append(self.acts.sum[l].numpy().reshape(-1) / FIXED_POINT)
        write_table(pa.table({k: np.concatenate(v) for k, v in cols.items()}, schema=ACTIVATION_SCHEMA),
                    out / "activations.parquet", row_group_size=1 << 20)
        write_influence(out / "influence.parquet",
                        [(p.name, lambda c0, c1, name=p.name: tuple(t.numpy() for t in self.infl.decode(name, c0, c1)))
                         for p in self.pairs], len(names))
        if self.cfg.examples_k:
            write_examples(self.examples, self.dataset, out, self.probe.rf, self.cfg.image_size, progress)
        write_json(self.metadata(), out / "run.json")


def _dist_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def aggregate(cfg: AggregateConfig, data: str | os.PathLike | None, out: str | os.PathLike, *,
              resume: bool = False, overwrite: bool = False, shard: tuple[int, int] | None = None,
              checkpoint_every: int = 1000, workers: int = 0, device: str = "auto",
              progress: bool = True, influence_memory: int = INFLUENCE_MEMORY) -> dict:
    """Run the whole pipeline; returns a small report (images, skipped, seconds, img/s).

    influence_memory: influence counts kept in memory per layer pair; beyond that sorted runs
    go to ``out/.spill-<rank>of<world>`` (kept by --shard runs until `merge` has read them)."""
    out = Path(out)
    spec = load_model(cfg.model, cfg.weights, cfg.layers)
    dataset = SafeImageFolder(data or BUNDLED_SAMPLE, cfg.image_size, spec.class_names)
    rank, world = _dist_env()
    distributed = world > 1
    if distributed and shard:
        raise SummitError("use either torchrun or --shard, not both")
    if device == "auto":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if shard:
        rank, world = shard
        if not 0 <= rank < world:
            raise SummitError(f"--shard {rank}/{world}: need 0 <= i < N")
    ckpt = out / f"checkpoint-{rank}of{world}.pt"
    if (out / "run.json").exists() and not overwrite:
        if not resume:
            raise SummitError(f"{out} already holds a run; pass --overwrite or choose another --out")
        if not ckpt.exists():
            raise SummitError(f"{out} holds a finished run; nothing to resume")
    out.mkdir(parents=True, exist_ok=True)
    agg = Aggregator(cfg, dataset, spec, device)
    spill = out / f".spill-{rank}of{world}"
    agg.infl.spill_to(spill, influence_memory)
    if ckpt.exists() and overwrite and not resume:
        ckpt.unlink()  # --overwrite starts afresh
        shutil.rmtree(spill, ignore_errors=True)
    if ckpt.exists():
        if not resume:
            raise SummitError(f"{out} has a checkpoint of an interrupted run; pass --resume to continue it "
                              "or --overwrite to start again")
        agg.load(torch.load(ckpt, weights_only=False))
    t0 = time.perf_counter()
    agg.run(rank, world, ckpt, checkpoint_every, workers, progress)
    seconds = time.perf_counter() - t0
    if distributed or shard:
        agg.infl.spill()  # states then carry run names, not tables
    if distributed:
        states = [None] * world
        dist.all_gather_object(states, agg.state())
        if rank == 0:
            for r in range(1, world):
                agg.merge(states[r])
    if shard and world > 1:
        agg.save_state(out / "shard.pt")
        write_json(agg.metadata(partial=True, shard=(rank, world)), out / "run.json")
    elif rank == 0:
        agg.write(out, progress)
    if distributed:
        dist.barrier()
    if ckpt.exists():
        ckpt.unlink()
    if not (shard and world > 1):  # a shard's runs are read by `summit merge`
        shutil.rmtree(spill, ignore_errors=True)
    done = int(agg.acts.n_images.sum())
    return {"images": done, "skipped": len(agg.skipped), "seconds": seconds,
            "images_per_s": done / seconds if seconds else 0.0, "out": str(out)}


def merge(shards: list[str | os.PathLike], out: str | os.PathLike, progress: bool = True) -> dict:
    """Combine `--shard i/N` outputs into one run, identical to a single-process run."""
    import json
    metas = []
    for s in shards:
        p = Path(s) / "run.json"
        if not p.is_file() or not (Path(s) / "shard.pt").is_file():
            raise SummitError(f"not a shard directory (need run.json and shard.pt): {s}")
        metas.append(json.loads(p.read_text()))
    world = {m["shard"][1] for m in metas}
    got = sorted(m["shard"][0] for m in metas)
    if len(world) != 1 or got != list(range(next(iter(world)))):
        raise SummitError(f"shards {got} of {sorted(world)} do not cover 0..N-1 exactly once")
    key = metas[0]["config"]
    cfg = AggregateConfig(**{k: v for k, v in key.items() if k != "fingerprint"})
    spec = load_model(cfg.model, cfg.weights, cfg.layers)
    dataset = SafeImageFolder(metas[0]["dataset"]["root"], cfg.image_size, spec.class_names)
    agg = Aggregator(cfg, dataset, spec)
    spill = Path(out) / ".spill-merge"
    agg.infl.spill_to(spill, INFLUENCE_MEMORY)
    order = sorted(range(len(shards)), key=lambda i: metas[i]["shard"][0])
    agg.load(torch.load(Path(shards[order[0]]) / "shard.pt", weights_only=False))
    for i in order[1:]:
        agg.merge(torch.load(Path(shards[i]) / "shard.pt", weights_only=False))
    agg.write(Path(out), progress)
    shutil.rmtree(spill, ignore_errors=True)
    return {"images": int(agg.acts.n_images.sum()), "skipped": len(agg.skipped), "out": str(out)}
