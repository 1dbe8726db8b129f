"""Rendered images on disk: a content-addressed cache keyed by model, weights and settings, and
the run directory's ``featurevis/`` folder the server and exports read (docs/FEATUREVIS.md).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from ..model.models import ModelSpec
from ..model.pixels import to_pil
from ..run.layout import diversity_counts, diversity_path, featurevis_path
from .objectives import DIVERSITY_WEIGHT, directions
from .render import (
    _check_render_args,
    _item_seed,
    _render_chunks,
    check_channels,
    render_diversity,
    visualize,
)

FEATUREVIS_VERSION = 1  # bump when the algorithm changes: invalidates every cache entry


def cache_key(spec: ModelSpec, size: int, steps: int, lr: float, seed: int) -> dict:
    """What a cached image depends on besides (layer, channel)."""
    weights: dict = {"name": spec.weights}
    if os.path.isfile(spec.weights):
        st = os.stat(spec.weights)
        weights.update(bytes=st.st_size, mtime_ns=st.st_mtime_ns)
    return {"version": FEATUREVIS_VERSION, "model": spec.name, "weights": weights,
            "size": size, "steps": steps, "lr": lr, "seed": seed}


def settings_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def render_cached(spec: ModelSpec, layer: str, channels: list[int], cache_dir: str | os.PathLike,
                  *, size: int = 128, steps: int = 512, lr: float = 0.05, seed: int = 0,
                  batch: int = 32, device: str = "auto", progress: bool = True) -> list[Path]:
    """PNG paths ``cache_dir/<hash>/<layer>/<channel>.png``, rendering only the missing ones.

    <hash> covers model, weights, size, steps, lr, seed and the algorithm version; each
    finished batch is written at once, so an interrupted render resumes where it stopped.
    """
    from ..run.files import atomic_write_bytes, write_json
    spec.check_layers([layer])
    key = cache_key(spec, size, steps, lr, seed)
    root = Path(cache_dir) / settings_hash(key)
    paths = [root / layer / f"{c}.png" for c in channels]
    todo = sorted({c for c, p in zip(channels, paths) if not p.is_file()})
    if todo:
        (root / layer).mkdir(parents=True, exist_ok=True)
        if not (root / "settings.json").is_file():
            write_json(key, root / "settings.json")
        for chunk, imgs in _render_chunks(spec, layer, todo, size, steps, lr, seed, batch, device,
                                          progress):
            for c, img in zip(chunk, imgs):
                atomic_write_bytes(root / layer / f"{c}.png", _png(img))
    return paths


def _place(src: Path, dst: Path) -> None:
    """Atomically make `dst` a hardlink to `src` (a copy where links are not possible)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_file() and os.path.samefile(src, dst):
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def render_run(run_dir: str | os.PathLike, nodes: dict[str, list[int]], *, size: int = 128,
               steps: int = 512, lr: float = 0.05, seed: int = 0, batch: int = 32,
               device: str = "auto", progress: bool = True) -> list[Path]:
    """Render {layer: channels} for a run's model into ``run_dir/featurevis``.

    Images go to the cache ``featurevis/cache/<hash>/`` and are linked to the stable
    ``featurevis/<layer>/<channel>.png`` (the latest render wins); ``featurevis/settings.json``
    records which settings each stable image was rendered with.
    """
    from ..model.models import load_model
    from ..run.files import write_json
    from ..run.store import Run
    run = Run(run_dir)
    for layer, chs in nodes.items():
        run.check_layer(layer)
        check_channels(layer, chs, run.channels[layer])
    spec = load_model(run.meta["model"], run.meta["weights"], layers=run.layers)
    base = run.path / "featurevis"
    key = cache_key(spec, size, steps, lr, seed)
    digest = settings_hash(key)
    manifest_path = base / "settings.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("settings", {})[digest] = key
    out: list[Path] = []
    for layer, chs in nodes.items():
        cached = render_cached(spec, layer, chs, base / "cache", size=size, steps=steps, lr=lr,
                               seed=seed, batch=batch, device=device, progress=progress)
        for c, src in zip(chs, cached):
            dst = featurevis_path(run.path, layer, c)
            _place(src, dst)
            manifest.setdefault("channels", {}).setdefault(layer, {})[str(c)] = digest
            out.append(dst)
        write_json(manifest, manifest_path)
    return out


def direction_id(vector: torch.Tensor) -> str:
    """16 hex digits naming a direction (its float16 values: the same activations computed with
    another thread count name the same file)."""
    return hashlib.sha256(vector.detach().cpu().to(torch.float16).numpy().tobytes()).hexdigest()[:16]


def directions_key(spec: ModelSpec, neuron: bool, size: int = 128, steps: int = 512, lr: float = 0.05,
                   seed: int = 0) -> dict:
    """What a cached direction image depends on besides (layer, direction): its settings hash names
    the folder ``cache_dir/<hash>/`` of :func:`render_directions_cached`."""
    return {**cache_key(spec, size, steps, lr, seed),
            "objective": "direction_neuron" if neuron else "direction"}


def direction_paths(spec: ModelSpec, layer: str, vectors: torch.Tensor, cache_dir: str | os.PathLike, *,
                    neuron: bool = False, size: int = 128, steps: int = 512, lr: float = 0.05,
                    seed: int = 0) -> list[Path]:
    """Where :func:`render_directions_cached` keeps (or will keep) each direction's image."""
    root = Path(cache_dir) / settings_hash(directions_key(spec, neuron, size, steps, lr, seed)) / layer
    return [root / f"{direction_id(v)}.png" for v in torch.as_tensor(vectors, dtype=torch.float32)]


def render_directions_cached(spec: ModelSpec, layer: str, vectors: torch.Tensor,
                             cache_dir: str | os.PathLike, *, neuron: bool = False, size: int = 128,
                             steps: int = 512, lr: float = 0.05, seed: int = 0, batch: int = 32,
                             device: str = "auto", progress: bool = True) -> list[Path]:
    """Feature visualizations of directions (N, C) of `layer`, `batch` per optimization:
    PNG paths ``cache_dir/<hash>/<layer>/<direction_id>.png``, rendering only the missing ones.

    ``neuron=True`` maximizes the dot product at the centre position (a position's activation
    vector: "what the network sees" there), else averaged over positions (a neuron group).
    <hash> covers the settings as in :func:`render_cached` plus the objective.
    """
    from ..run.files import atomic_write_bytes, write_json
    spec.check_layers([layer])
    _check_render_args(batch, steps, size)
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    paths = direction_paths(spec, layer, vectors, cache_dir, neuron=neuron, size=size, steps=steps,
                            lr=lr, seed=seed)
    todo = list({p.stem: v for v, p in zip(vectors, paths) if not p.is_file()}.items())
    if todo:
        folder = paths[0].parent
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder.parent / "settings.json").is_file():
            write_json(directions_key(spec, neuron, size, steps, lr, seed), folder.parent / "settings.json")
        chunks = [todo[i:i + batch] for i in range(0, len(todo), batch)]
        with tqdm(total=steps * len(chunks), desc=f"render {layer} directions", unit="step",
                  disable=not progress) as bar:
            for chunk in chunks:
                obj = directions(layer, torch.stack([v for _, v in chunk]), neuron=neuron)
                imgs = visualize(spec, obj, [_item_seed(seed, int(n[:7], 16)) for n, _ in chunk],
                                 size=size, steps=steps, lr=lr, seed=seed, device=device,
                                 on_step=bar.update)
                for (n, _), img in zip(chunk, imgs):
                    atomic_write_bytes(folder / f"{n}.png", _png(to_pil(img)))
    return paths


DIVERSITY_FILE = "diversity.json"


def render_diversity_run(run_dir: str | os.PathLike, nodes: dict[str, list[int]], n: int = 4, *,
                         weight: float = DIVERSITY_WEIGHT, size: int = 128, steps: int = 512,
                         lr: float = 0.05, seed: int = 0, batch: int = 32, device: str = "auto",
                         progress: bool = True) -> list[Path]:
    """Render n diversity images per channel of {layer: channels} into
    ``run_dir/featurevis/<layer>/<channel>_d<i>.png``; channels already rendered with the same
    settings (``featurevis/diversity.json``) are skipped, each finished one is kept at once."""
    from ..model.models import load_model
    from ..run.files import atomic_write_bytes, write_json
    from ..run.store import Run
    run = Run(run_dir)
    for layer, chs in nodes.items():
        run.check_layer(layer)
        check_channels(layer, chs, run.channels[layer])
    spec = load_model(run.meta["model"], run.meta["weights"], layers=run.layers)
    key = {**cache_key(spec, size, steps, lr, seed), "diversity": n, "weight": weight}
    digest = settings_hash(key)
    manifest_path = run.path / "featurevis" / DIVERSITY_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("settings", {})[digest] = key
    done = manifest.setdefault("channels", {})
    out: list[Path] = []
    for layer, chs in nodes.items():
        paths = {c: [diversity_path(run.path, layer, c, i) for i in range(n)] for c in chs}
        todo = [c for c in dict.fromkeys(chs) if done.get(layer, {}).get(str(c)) != digest
                or not all(p.is_file() for p in paths[c])]
        if todo:
            (run.path / "featurevis" / layer).mkdir(parents=True, exist_ok=True)
            before = diversity_counts(run.path, layer)
            for c, imgs in render_diversity(spec, layer, todo, n, weight, size, steps, lr, seed,
                                            batch, device, progress):
                for p, img in zip(paths[c], imgs):
                    atomic_write_bytes(p, _png(img))
                for i in range(n, before.get(c, 0)):  # left over from an earlier, larger n
                    diversity_path(run.path, layer, c, i).unlink()
                done.setdefault(layer, {})[str(c)] = digest
                write_json(manifest, manifest_path)
        out += [p for c in chs for p in paths[c]]
    return out
