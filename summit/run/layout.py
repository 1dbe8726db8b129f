"""Every name inside a run directory: the run's tables, the folders summit commands write into it,
and where rendered feature visualizations live (torch-free: the server lists and serves them
without loading the rendering code)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .files import is_temp

RUN_JSON = "run.json"
CLASSES_FILE = "classes.parquet"
ACTIVATIONS_FILE = "activations.parquet"
INFLUENCE_FILE = "influence.parquet"
EXAMPLES_FILE = "examples.parquet"
PREDICTIONS_FILE = "predictions.parquet"  # per image: class, the model's top-5 outputs, correct
EXAMPLES_DIR = "examples"  # examples/<layer>/<channel>.jpg: dataset-example strips
EMBEDDING_FILE = "embedding.parquet"
GRAPHS_FILE = "graphs.parquet"  # every class's default graph (summit graphs)
FEATUREVIS_DIR = "featurevis"
BLOCKS_DIR = "blocks"  # the Building Blocks explorer's cache (uploads, direction renders)
DREAM_DIR = "dream"
SPLIT_DIR = "split"  # split/<part>/{classes,activations,influence}.parquet: aggregate --split-correct
SPLIT_PARTS = ("correct", "wrong")  # a class's images whose top-1 prediction is the class, and the others
SHARD_FILE = "shard.npz"  # a --shard run's state (pipeline.statefile: cannot run code when read)
RUN_FILES = {RUN_JSON, CLASSES_FILE, ACTIVATIONS_FILE, INFLUENCE_FILE, EXAMPLES_FILE, PREDICTIONS_FILE,
             EXAMPLES_DIR, EMBEDDING_FILE, FEATUREVIS_DIR, "graphs", "ag", SHARD_FILE, "shard.pt", GRAPHS_FILE,
             SPLIT_DIR, BLOCKS_DIR, DREAM_DIR}  # graphs/, ag/: the demo's exports; shard.pt: an older summit's (never loaded)


def is_run_file(name: str) -> bool:
    """Names a run directory may hold."""
    return name in RUN_FILES or re.fullmatch(r"checkpoint-\d+of\d+\.(npz|pt)|\.spill-\d+of\d+", name) is not None \
        or is_temp(name)


def split_dir(run_dir: str | os.PathLike, part: str) -> Path:
    """The folder of one split part's tables (SPLIT_PARTS) in a run directory."""
    return Path(run_dir) / SPLIT_DIR / part


def examples_path(run_dir: str | os.PathLike, layer: str, channel: int) -> Path:
    """A channel's dataset-example strip in a run directory."""
    return Path(run_dir) / EXAMPLES_DIR / layer / f"{channel}.jpg"


def featurevis_path(run_dir: str | os.PathLike, layer: str, channel: int) -> Path:
    """Stable path of a channel's latest rendered visualization in a run directory."""
    return Path(run_dir) / FEATUREVIS_DIR / layer / f"{channel}.png"


def diversity_path(run_dir: str | os.PathLike, layer: str, channel: int, i: int) -> Path:
    """Path of a channel's i-th diversity image in a run directory."""
    return Path(run_dir) / FEATUREVIS_DIR / layer / f"{channel}_d{i}.png"


def diversity_counts(run_dir: str | os.PathLike, layer: str) -> dict[int, int]:
    """{channel: number of diversity images d0, d1, ... present} of one layer of a run."""
    d = Path(run_dir) / FEATUREVIS_DIR / layer
    found: dict[int, set[int]] = {}
    for p in d.glob("*_d*.png") if d.is_dir() else ():
        ch, _, i = p.stem.partition("_d")
        if ch.isdigit() and i.isdigit():
            found.setdefault(int(ch), set()).add(int(i))
    return {c: next(i for i in range(len(s) + 1) if i not in s) for c, s in sorted(found.items())
            if 0 in s}
