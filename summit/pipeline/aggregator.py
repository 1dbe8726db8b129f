"""Aggregation: stream a dataset through the model once and accumulate Summit's matrices.

dataset -> model hooks -> accumulators (activation, influence, examples) -> Parquet.

- A[selection, class, channel] counts images of a class whose channel is *selected* in its layer.
  Selections are counted side by side in one pass (``selection_names``): Summit's rule
  ``mass<τ>`` (normalise the image's per-channel spatial maxima to sum 1, take channels in
  descending order until the cumulative mass reaches τ; Summit used τ = 0.03 for graphs and
  0.01 for the embedding) and our option ``top<k>`` (the k largest maxima).
  ``sum`` adds every image's spatial max (kept in int64 fixed point with 2^-20 resolution so
  that sums are exact and order-independent: resumed and sharded runs give byte-identical files).
- Per class, a histogram of the images' top-1 softmax probability (``HIST_BINS`` equal bins).
- With ``split_correct`` (our default, docs/MISTAKES.md) A, the sums, the histograms and I are
  counted per class twice, for the images whose top-1 prediction is the class (``correct``) and
  for the others (``wrong``): each class has two accumulator bins, so checkpoints, shards,
  torchrun and merge carry the split exactly; the run's tables hold their sum (the same bytes as
  a run without the split) and ``split/<part>/`` each part's tables.
- The dataset is split into fixed batches of ``batch_size`` consecutive indices. A shard /
  torchrun rank r of N takes batches b with b % N == r, so each batch is identical in every
  run mode; checkpoints are taken at batch boundaries.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .. import __version__
from ..errors import SummitError, reason
from ..model import DEFAULT_MODEL
from ..model.hooks import Taps
from ..model.models import ModelSpec, load_model, resolve_device
from ..run.files import (
    check_replaceable,
    output_dir,
    replacing,
    write_json,
    write_table,
)
from ..run.imagenet import imagenet_table, wnid_of
from ..run.layout import (
    ACTIVATIONS_FILE,
    CLASSES_FILE,
    INFLUENCE_FILE,
    PREDICTIONS_FILE,
    SHARD_FILE,
    SPLIT_PARTS,
    is_run_file,
    split_dir,
)
from ..run.selection import (
    UBIQUITOUS_CLASSES,
    UBIQUITOUS_IMAGES,
    default_selection,
    selection_names,
    ubiquitous_channels,
)
from ..run.store import ACTIVATION_SCHEMA, CLASS_SCHEMA, SCHEMA_VERSION, write_influence
from .activations import FIXED_POINT, ActivationAccumulator, excluded_channels
from .data import DatasetAdapter, SafeImageFolder, collate
from .examples import ExamplesAccumulator, receptive_field, write_examples
from .influence import InfluenceAccumulator, LayerPair, build_pairs, pair_taps
from .predictions import PredictionsAccumulator, check_state
from .sources import open_source, reopen, source_meta
from .statefile import read_state, write_state

INFLUENCE_MEMORY = 1 << 21  # counts per stage held in memory (16 bytes each) before spilling


@dataclass
class AggregateConfig:
    """Everything that determines a run's result (checked on --resume and merge)."""

    model: str = DEFAULT_MODEL
    weights: str | None = None
    layers: list[str] | None = None
    masses: list[float] = field(default_factory=lambda: [0.01, 0.03])  # Summit's mass selections
    k: int = 5  # our top-k selection (0: none)
    k_influence: int = 5
    bottleneck: str = "summit"  # summit | linear: how influence crosses 1x1 bottlenecks
    influence_positions: str = "summit"  # summit (stride-3 SAME grid) | exact (every position)
    influence_targets: str = "selected"  # grad method: selected (mass0.03 channels of each image) | all
    exclude: list[str] = field(default_factory=list)  # "layer:channel": out of selections and top-k
    examples_k: int = 8  # 0: no dataset examples
    influence: str = "auto"  # auto | conv | grad | off
    batch_size: int = 32
    image_size: int = 224
    limit: int | None = None  # use only the first `limit` files (smoke runs)
    split_correct: bool = True  # also count each class's correct and wrong images apart (our default)

    def key(self, fingerprint: str) -> dict:
        """The settings and the dataset fingerprint; ``split_correct`` only when on, so that runs,
        checkpoints and shards without the split (also those made before it existed) share one key."""
        key = asdict(self)
        if not self.split_correct:
            del key["split_correct"]
        return {**key, "fingerprint": fingerprint}


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
    outputs: int  # model outputs (logits per image)
    rf: dict[str, int] = field(default_factory=dict)


def _forward_ok(spec: ModelSpec, size: int) -> bool:
    try:
        with torch.no_grad():
            spec.model(torch.zeros(1, 3, size, size))
        return True
    except RuntimeError:
        return False


def min_image_size(spec: ModelSpec, upper: int = 224) -> int:
    """Smallest square input side the model accepts (binary search over dummy forwards)."""
    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _forward_ok(spec, mid) else (mid + 1, hi)
    return lo


def probe_layers(spec: ModelSpec, layers: list[str], size: int) -> Probe:
    paths = {l: spec.layers[l] for l in layers}
    with Taps(spec.model.net, outputs=paths.values()) as taps, torch.no_grad():
        try:
            outputs = int(spec.model(torch.zeros(1, 3, size, size)).shape[1])
        except RuntimeError:
            raise SummitError(f"--image-size {size} is too small for {spec.name}: its minimum is "
                              f"{min_image_size(spec)}") from None
    channels = {l: int(taps.out[p].shape[1]) for l, p in paths.items()}
    hw = {l: tuple(int(s) for s in taps.out[p].shape[2:]) for l, p in paths.items()}
    bad = [l for l, p in paths.items() if taps.out[p].dim() != 4]
    if bad:
        raise SummitError(f"layer(s) {', '.join(bad)} do not output (N, C, H, W) feature maps")
    rf = {l: receptive_field(spec.model, spec.module(l), size) for l in layers}
    return Probe(channels, hw, outputs, rf)


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
        keep = excluded_channels(cfg.exclude, self.probe.channels)
        if cfg.influence_targets not in ("selected", "all"):
            raise SummitError(f"unknown influence targets {cfg.influence_targets!r}; valid: selected, all")
        self.pairs: list[LayerPair] = [] if cfg.influence == "off" else \
            [p.to(self.device) for p in build_pairs(self.spec, self.layers, self.probe.channels, cfg.influence,
                                                         cfg.bottleneck, cfg.influence_positions)]
        n_classes = len(dataset.classes)
        if not selection_names(cfg.masses, cfg.k):
            raise SummitError("no activation selection: give --mass values or -k >= 1")
        self.bins = len(SPLIT_PARTS) if cfg.split_correct else 1  # accumulator rows per class
        self.acts = ActivationAccumulator(self.probe.channels, n_classes, cfg.masses, cfg.k, keep, self.bins)
        self.infl = InfluenceAccumulator(self.pairs, n_classes, cfg.k_influence, keep, cfg.influence_targets,
                                         self.bins)
        self.examples = ExamplesAccumulator(self.probe.channels, cfg.examples_k)
        self.preds = PredictionsAccumulator(self.n, self.probe.outputs)
        self.skipped: list[tuple[int, str]] = []
        self.position = 0  # batches of this rank done
        self.key = cfg.key(dataset.fingerprint())
        mi = dataset.model_index
        self.model_index = torch.tensor([-1 if m is None else m for m in mi], dtype=torch.long)
        self.spec.model.to(self.device)

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict:
        return {"key": self.key, "position": self.position, "skipped": list(self.skipped),
                "acts": self.acts.state(), "infl": self.infl.state(), "examples": self.examples.state(),
                "preds": self.preds.state()}

    def load(self, state: dict) -> None:
        self.check_key(state["key"], "checkpoint")
        preds = check_state(state, "checkpoint")
        with _damaged("checkpoint"):
            self.position, self.skipped = int(state["position"]), [tuple(s) for s in state["skipped"]]
            for acc, key in ((self.acts, "acts"), (self.infl, "infl"), (self.examples, "examples")):
                acc.load(state[key])
            self.preds.load(preds)

    def merge(self, state: dict) -> None:
        self.check_key(state["key"], "shard")
        preds = check_state(state, "shard")
        with _damaged("shard"):
            self.skipped = sorted(set(self.skipped) | {tuple(s) for s in state["skipped"]})
            for acc, key in ((self.acts, "acts"), (self.infl, "infl"), (self.examples, "examples")):
                acc.merge(state[key])
            self.preds.merge(preds)

    def check_key(self, other: dict, what: str) -> None:
        diff = [k for k in dict.fromkeys([*self.key, *other]) if self.key.get(k) != other.get(k)]
        if diff:
            raise SummitError(f"{what} was made with different settings ({', '.join(diff)}); "
                              "use the same model, layers, k, batch size and dataset")

    def save_state(self, path: Path, split: tuple[int, int] = (0, 1)) -> None:
        """Atomically save the accumulators (a checkpoint, or a shard's result), stamped with the
        split (index, count) they belong to; the dataset fingerprint is in the key. The file
        cannot run code when read (summit.pipeline.statefile)."""
        write_state(path, {**self.state(), "split": list(split)})

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
                    self.save_state(checkpoint, (rank, world))
                    since = 0
        bar.close()

    def _step(self, taps: Taps, x: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
              grad: bool) -> None:
        x = x.to(self.device, non_blocking=True)
        with torch.set_grad_enabled(grad):
            logits = self.spec.model(x)
        probs = logits.detach().float().softmax(1).cpu()
        top1, pred = probs.max(1)
        self.preds.update(indices, labels, probs)
        mi = self.model_index[labels]
        correct = (pred == mi) & (mi >= 0)
        bins = labels if self.bins == 1 else labels * self.bins + (~correct).long()  # SPLIT_PARTS order
        self.acts.count_images(bins, correct, top1)
        for layer in self.layers:
            act = taps.out[self.spec.layers[layer]].detach()
            mv, am = act.flatten(2).max(2)
            mv, am = mv.float().cpu(), am.cpu()
            self.acts.update(layer, mv, bins)
            if self.cfg.examples_k:
                self.examples.update(layer, mv, am, self.probe.hw[layer], indices, labels)
        if self.pairs:
            self.infl.update(taps, bins.to(self.device))

    # -- output -------------------------------------------------------------------------
    def ubiquitous(self) -> dict:
        """Channels selected for most images of most classes (graph selection), per layer."""
        names = selection_names(self.cfg.masses, self.cfg.k)
        sel = default_selection(names, "graph") if names else None
        found, every = [], self.acts.tally()
        for l in self.layers if sel else []:
            chans, share = ubiquitous_channels(every.count[l][names.index(sel)].numpy(), every.n_images.numpy())
            found += [{"layer": l, "channel": int(c), "fraction": float(f)} for c, f in zip(chans, share)]
        return {"selection": sel, "images": UBIQUITOUS_IMAGES, "classes": UBIQUITOUS_CLASSES, "channels": found}

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
                       "routes": len(p.routes), "bottleneck": self.cfg.bottleneck,
                       "positions": self.cfg.influence_positions if p.method == "conv" else None,
                       "targets": self.cfg.influence_targets if p.method == "grad" else None}
                      for p in self.pairs],
            "stages": [st.describe(p.name) for p in self.pairs for st in p.stages],
            "selections": selection_names(self.cfg.masses, self.cfg.k),
            "excluded": [f"{l}:{c}" for l, kept in self.acts.keep.items()
                         for c in sorted(set(range(self.probe.channels[l])) - set(kept.tolist()))],
            "ubiquitous": self.ubiquitous(),
            "influence_method": sorted({p.method for p in self.pairs}),
            "split_correct": self.cfg.split_correct,
            "dataset": {"root": str(ds.root) if ds.root else None, **source_meta(ds),
                        "fingerprint": self.key["fingerprint"],
                        "n_files": self.n, "n_images": int(self.acts.n_images.sum()),
                        "n_skipped": len(self.skipped),
                        "skipped": [{"path": ds.name(i), "reason": r} for i, r in sorted(self.skipped)],
                        "unreadable": [{"path": p, "reason": r} for p, r in ds.unreadable]},
        }

    def write(self, out: Path, progress: bool = True) -> None:
        """Write the finished run (Parquet tables, each split part's, examples, run.json last)."""
        out.mkdir(parents=True, exist_ok=True)
        self._write_counts(out, None)
        for i, part in enumerate(SPLIT_PARTS if self.bins > 1 else ()):
            d = split_dir(out, part)
            d.mkdir(parents=True)
            self._write_counts(d, i)
        write_table(self.preds.table(self.dataset.name, self.model_index.tolist()), out / PREDICTIONS_FILE)
        if self.cfg.examples_k:
            write_examples(self.examples, self.dataset, out, self.probe.rf, self.cfg.image_size, progress)
        write_json(self.metadata(), out / "run.json")

    def _write_counts(self, out: Path, part: int | None) -> None:
        """classes, activations and influence tables of one split part (index into SPLIT_PARTS)
        of the images, or (None) of all, into ``out``."""
        names = list(self.dataset.classes)
        mi = self.model_index.numpy()
        has = mi >= 0
        model_names = self.spec.class_names
        imagenet = len(model_names) == len(imagenet_table())
        t = self.acts.tally(part)
        write_table(pa.table({
            "class": np.arange(len(names), dtype=np.int32), "name": names,
            "wnid": [wnid_of(int(m)) if imagenet and m >= 0 else None for m in mi],
            "label": [model_names[m] if 0 <= m < len(model_names) else n for n, m in zip(names, mi)],
            "model_index": pa.array(np.where(has, mi, 0).astype(np.int32), mask=~has),
            "n_images": t.n_images.numpy(),
            "n_correct": pa.array(t.n_correct.numpy(), mask=~has),
            "hist": list(t.hist.numpy())}, schema=CLASS_SCHEMA),
            out / CLASSES_FILE)
        cols: dict[str, list] = {k: [] for k in ACTIVATION_SCHEMA.names}
        for s, sel in enumerate(selection_names(self.cfg.masses, self.cfg.k)):
            for l in self.layers:
                cnt = t.count[l][s].numpy()
                n_cls, n_ch = cnt.shape
                cols["selection"].append(np.full(n_cls * n_ch, sel, dtype=object))
                cols["layer"].append(np.full(n_cls * n_ch, l, dtype=object))
                cols["class"].append(np.repeat(np.arange(n_cls, dtype=np.int32), n_ch))
                cols["channel"].append(np.tile(np.arange(n_ch, dtype=np.int32), n_cls))
                cols["count"].append(cnt.reshape(-1))
                cols["sum"].append(t.sum[l].numpy().reshape(-1) / FIXED_POINT)
        write_table(pa.table({k: np.concatenate(v) for k, v in cols.items()}, schema=ACTIVATION_SCHEMA),
                    out / ACTIVATIONS_FILE, row_group_size=1 << 20)
        write_influence(out / INFLUENCE_FILE,
                        [(n, lambda c0, c1, n=n: tuple(x.numpy() for x in self.infl.decode(n, c0, c1, part)))
                         for n in self.infl.stages], len(names))


def _dist_env() -> tuple[int, int]:
    """(rank, world) from torchrun's RANK / WORLD_SIZE (LOCAL_RANK, the device index, checked alike);
    a world of several processes needs the MASTER_ADDR / MASTER_PORT rendezvous that torchrun sets
    (else init_process_group raises or waits)."""
    env = {k: os.environ.get(k, d) for k, d in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"))}
    bad = [f"{k}={v!r}" for k, v in env.items() if not v.strip().isdigit()]
    if bad:
        raise SummitError(f"{', '.join(bad)} is not a whole number >= 0; start distributed runs with torchrun")
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    if not 0 <= rank < world:
        raise SummitError(f"RANK={rank} with WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE; "
                          "start distributed runs with torchrun")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if world > 1 and not os.environ.get(k)]
    if missing:
        raise SummitError(f"WORLD_SIZE={world} but {' and '.join(missing)} not set: start distributed runs with "
                          "`torchrun --nproc-per-node N -m summit aggregate ...`, or unset WORLD_SIZE")
    return rank, world


@contextlib.contextmanager
def _damaged(what: str) -> Iterator[None]:
    """A state whose contents do not fit this run's accumulators is refused with one line."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise SummitError(f"the {what} does not fit this run ({reason(e, 120)}); the file is damaged") from None


def load_state(path: Path, split: tuple[int, int] | None = None, spill: Path | None = None) -> dict:
    """A saved state (checkpoint or shard.npz); damaged files and states of another split are
    refused. Its spilled influence runs are looked for under ``spill`` (the run's
    .spill-<i>of<N>): a state names them, and only names of that form are accepted."""
    state = read_state(path)
    need = {"key": dict, "position": int, "skipped": list, "acts": dict, "infl": dict, "examples": dict}
    if any(not isinstance(state.get(k), t) for k, t in need.items()):
        raise SummitError(f"{path}: not a summit state file; the file is damaged")
    got = state.get("split")
    if got is not None and not (isinstance(got, list) and len(got) == 2 and all(isinstance(v, int) for v in got)):
        raise SummitError(f"{path}: not a summit state file (bad split); the file is damaged")
    if split is not None and got is not None and tuple(got) != tuple(split):
        raise SummitError(f"{path} belongs to split {got[0]}/{got[1]}, not {split[0]}/{split[1]}")
    for counter in state["infl"].values():
        if isinstance(counter, dict) and counter.get("runs"):
            counter["runs"] = [_spill_run(path, spill, r) for r in counter["runs"]]
    return state


def _spill_run(path: Path, spill: Path | None, run: Any) -> tuple[str, int]:
    """A spilled run named by a state, re-rooted under ``spill``: only stage<s>/run-<n> names are
    accepted, so a state cannot point summit at (or make it delete) any other file."""
    p = Path(str(run[0])) if isinstance(run, (list, tuple)) and len(run) == 2 else None
    ok = p is not None and isinstance(run[1], int) and spill is not None and \
        re.fullmatch(r"stage\d+", p.parent.name) is not None and re.fullmatch(r"run-\d+", p.name) is not None
    if not ok:
        raise SummitError(f"{path}: names a spilled influence run {str(run)[:80]!r} that is not one of its own; "
                          "the file is damaged")
    return str(spill / p.parent.name / p.name), run[1]


def _checkpoints(out: Path) -> dict[Path, tuple[int, int]]:
    found = {}
    for p in out.glob("checkpoint-*of*.npz"):
        m = re.fullmatch(r"checkpoint-(\d+)of(\d+)\.npz", p.name)
        if m:
            found[p] = (int(m.group(1)), int(m.group(2)))
    return found


def _pickled_states(d: Path) -> list[str]:
    """State files of an older summit (pickles, which summit never loads: they could run code)."""
    return sorted(p.name for p in d.glob("*.pt") if re.fullmatch(r"checkpoint-\d+of\d+\.pt|shard\.pt", p.name))


def _refuse_pickled(d: Path) -> None:
    old = _pickled_states(d)
    if old:
        raise SummitError(f"{d / old[0]} is a state file of an older summit (a pickle, which summit does not load: "
                          "it could run code); start again with --overwrite, or re-run that shard")


def _split_name(world: int) -> str:
    return "a single process" if world == 1 else f"{world} shards/ranks"


def _check_out(out: Path, ckpts: list[Path], world: int, resume: bool, overwrite: bool) -> None:
    """What may happen to an existing --out: refuse runs, foreign checkpoints and foreign files.
    ``ckpts``: the checkpoints that make this an interrupted run (a shard's own; under torchrun
    every rank's, so that all ranks decide alike even when one died before its first checkpoint)."""
    check_replaceable(out, is_run_file)
    if overwrite:
        for name in _pickled_states(out):
            (out / name).unlink(missing_ok=True)  # every torchrun rank removes them
    _refuse_pickled(out)
    interrupted = any(c.exists() for c in ckpts)
    if (out / "run.json").exists() and not overwrite:
        if not resume:
            raise SummitError(f"{out} already holds a run; pass --overwrite or choose another --out")
        if not interrupted:
            raise SummitError(f"{out} holds a finished run; nothing to resume")
    foreign = sorted(p.name for p, (_, n) in _checkpoints(out).items() if n != world)
    if foreign and not overwrite:
        raise SummitError(f"{out} holds the checkpoint of a run split differently ({', '.join(foreign)}), "
                          f"not {_split_name(world)}; resume it with the same --shard/torchrun size, or "
                          "pass --overwrite to start again")
    if interrupted and not resume and not overwrite:
        raise SummitError(f"{out} has a checkpoint of an interrupted run; pass --resume to continue it "
                          "or --overwrite to start again")


def _no_images(dataset: SafeImageFolder | DatasetAdapter, skipped: list[tuple[int, str]], n: int) -> SummitError:
    reasons = sorted({r.split(":")[0] for _, r in skipped})
    return SummitError(f"no usable image in {dataset.root or 'the dataset'}: all {n} files were skipped "
                       f"({', '.join(reasons) or 'none read'}); nothing written")


def aggregate(cfg: AggregateConfig, data: str | os.PathLike | None, out: str | os.PathLike, *,
              resume: bool = False, overwrite: bool = False, shard: tuple[int, int] | None = None,
              checkpoint_every: int = 1000, workers: int = 0, device: str = "auto",
              progress: bool = True, influence_memory: int = INFLUENCE_MEMORY, source: dict | None = None) -> dict:
    """Run the whole pipeline; returns a small report (images, skipped, seconds, img/s).

    The run is built in a temporary sibling directory and swapped into ``out`` atomically, so a
    crash leaves either the old run or the new one; checkpoints live in ``out`` itself.
    influence_memory: influence counts kept in memory per stage; beyond that sorted runs go to
    ``out/.spill-<rank>of<world>`` (a --shard run keeps them next to its shard.npz for `merge`).
    source: how to read ``data`` (``sources.open_source``'s format, labels, image_column, label_column)."""
    shown, out = str(out), output_dir(out)
    rank, world = _dist_env()
    distributed = world > 1
    if distributed and shard:
        raise SummitError("use either torchrun or --shard, not both")
    if shard:
        rank, world = shard
        if not 0 <= rank < world:
            raise SummitError(f"--shard {rank}/{world}: need 0 <= i < N")
    dev = resolve_device(device, int(os.environ.get("LOCAL_RANK", 0)))
    ckpt = out / f"checkpoint-{rank}of{world}.npz"
    _check_out(out, [out / f"checkpoint-{r}of{world}.npz" for r in range(world)] if distributed else [ckpt],
               world, resume, overwrite)
    spec = load_model(cfg.model, cfg.weights, cfg.layers)
    dataset = open_source(data, cfg.image_size, spec.class_names, **(source or {}))
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    agg = Aggregator(cfg, dataset, spec, str(dev))  # refuses bad settings before anything is written
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    spill = out / f".spill-{rank}of{world}"
    agg.infl.spill_to(spill, influence_memory)
    if ckpt.exists() and overwrite and not resume:
        ckpt.unlink()  # --overwrite starts afresh
    if not ckpt.exists():  # runs of an earlier, unfinished pass are not ours
        shutil.rmtree(spill, ignore_errors=True)
    if ckpt.exists():
        agg.load(load_state(ckpt, (rank, world), spill))
    before = int(agg.acts.n_images.sum())
    t0 = time.perf_counter()
    agg.run(rank, world, ckpt, checkpoint_every, workers, progress)
    seconds = time.perf_counter() - t0
    new = int(agg.acts.n_images.sum()) - before
    if distributed or shard:
        agg.infl.spill()  # states then carry run names, not tables
    if distributed:
        states = [None] * world
        dist.all_gather_object(states, agg.state())
        if rank == 0:
            for r in range(1, world):
                agg.merge(states[r])
        total = sum(int(s["acts"]["n_images"].sum()) for s in states)  # type: ignore[index]
    else:
        total = int(agg.acts.n_images.sum())
    if total == 0 and not (shard and world > 1):
        if ckpt.exists():
            ckpt.unlink()
        if created:  # nothing of ours to keep: refused without a trace
            shutil.rmtree(out, ignore_errors=True)
        raise _no_images(dataset, agg.skipped, agg.n)
    if shard and world > 1:
        with replacing(out) as stage:
            agg.save_state(stage / SHARD_FILE, (rank, world))
            write_json(agg.metadata(partial=True, shard=(rank, world)), stage / "run.json")
            if spill.exists():  # the state names its runs under `out`, which `stage` becomes; linked, so
                # that `out` keeps the runs its checkpoint names until the swap (a kill before it resumes)
                shutil.copytree(spill, stage / spill.name, copy_function=_link_or_copy)
    elif rank == 0:
        with replacing(out) as stage:
            agg.write(stage, progress)
    if distributed:
        dist.barrier()
    if ckpt.exists():
        ckpt.unlink()
    if not (shard and world > 1):  # a shard's runs are read by `summit merge`
        shutil.rmtree(spill, ignore_errors=True)
    done = int(agg.acts.n_images.sum())
    return {"images": done, "images_this_run": new, "resumed_images": before, "skipped": len(agg.skipped),
            "seconds": seconds, "images_per_s": new / seconds if seconds and new else 0.0, "out": shown,
            "unreadable": list(dataset.unreadable), "empty_classes": _empty_classes(agg)}


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (no data copied), or a copy where the file system has no links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _empty_classes(agg: Aggregator) -> list[str]:
    """Classes without a usable image (classes left out only by --limit aside)."""
    files = getattr(agg.dataset, "files", None)
    seen = None if agg.cfg.limit is None or files is None else {label for _, label in files[:agg.n]}
    return [c for i, (c, n) in enumerate(zip(agg.dataset.classes, agg.acts.tally().n_images.tolist()))
            if n == 0 and (seen is None or i in seen)]


def _read_shard(d: Path) -> tuple[dict, dict]:
    """(run.json, shard.npz state) of a --shard directory, checked against each other."""
    meta_file, state_file = d / "run.json", d / SHARD_FILE
    if not state_file.is_file():
        _refuse_pickled(d)
    if not meta_file.is_file() or not state_file.is_file():
        raise SummitError(f"not a shard directory (need run.json and {SHARD_FILE}): {d}")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise SummitError(f"{meta_file}: unreadable ({reason(e, 160)})") from None
    split = meta.get("shard") if isinstance(meta, dict) else None
    if not (isinstance(split, list) and len(split) == 2 and all(isinstance(v, int) for v in split)
            and meta.get("partial") and isinstance(meta.get("config"), dict)):
        raise SummitError(f"{meta_file}: not the run.json of a --shard run")
    state = load_state(state_file, spill=d / f".spill-{split[0]}of{split[1]}")
    if state.get("split") is None:
        raise SummitError(f"{state_file} does not say which shard it is (made by an older summit); "
                          "re-run that shard")
    if list(state["split"]) != split:
        raise SummitError(f"{state_file} is shard {state['split'][0]}/{state['split'][1]} but its run.json "
                          f"says {split[0]}/{split[1]} (a shard.npz copied between folders?)")
    if state["key"].get("fingerprint") != meta["config"].get("fingerprint"):
        raise SummitError(f"{state_file} and its run.json describe different datasets")
    for counter in state["infl"].values():  # spilled runs live beside shard.npz, wherever it moved
        if isinstance(counter, dict):
            missing = [p for p, _ in counter.get("runs", []) if not Path(f"{p}.keys").is_file()]
            if missing:
                raise SummitError(f"{missing[0]}.keys: missing (a spilled influence run of this shard); "
                                  "re-run that shard")
    return meta, state


def merge(shards: list[str | os.PathLike], out: str | os.PathLike, progress: bool = True,
          overwrite: bool = False) -> dict:
    """Combine `--shard i/N` outputs into one run, identical to a single-process run (built in a
    temporary sibling directory and swapped into ``out``)."""
    shown, out = str(out), output_dir(out)
    dirs = [Path(s).resolve() for s in shards]
    for d in dirs:
        if out == d or d.is_relative_to(out) or out.is_relative_to(d):
            raise SummitError(f"--out {shown} overlaps the shard {d}; merge into another directory")
    if len(set(dirs)) != len(dirs):
        raise SummitError("a shard directory is listed twice")
    check_replaceable(out, is_run_file)
    if (out / "run.json").exists() and not overwrite:
        raise SummitError(f"{shown} already holds a run; pass --overwrite or choose another --out")
    read = [_read_shard(d) for d in dirs]
    world = {m["shard"][1] for m, _ in read}
    got = sorted(m["shard"][0] for m, _ in read)
    if len(world) != 1 or got != list(range(next(iter(world)))):
        raise SummitError(f"shards {got} of {sorted(world)} do not cover 0..N-1 exactly once")
    fingerprints = {s["key"].get("fingerprint") for _, s in read}
    if len(fingerprints) != 1:
        raise SummitError("the shards were made from different datasets (fingerprints differ)")
    key = read[0][0]["config"]
    cfg = AggregateConfig(**{"split_correct": False, **{k: v for k, v in key.items() if k != "fingerprint"}})
    spec = load_model(cfg.model, cfg.weights, cfg.layers)
    dataset = reopen(read[0][0]["dataset"], cfg.image_size, spec.class_names)
    agg = Aggregator(cfg, dataset, spec)
    order = sorted(range(len(read)), key=lambda i: read[i][0]["shard"][0])
    agg.load(read[order[0]][1])
    for i in order[1:]:
        agg.merge(read[i][1])
    if int(agg.acts.n_images.sum()) == 0:
        raise _no_images(dataset, agg.skipped, agg.n)
    with replacing(out) as stage:
        agg.write(stage, progress)
    return {"images": int(agg.acts.n_images.sum()), "skipped": len(agg.skipped), "out": shown,
            "unreadable": list(dataset.unreadable), "empty_classes": _empty_classes(agg)}
