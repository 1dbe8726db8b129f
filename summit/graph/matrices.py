"""Dense activation matrices of a run: every layer's A[class, channel] side by side, built once
per Run object and selection (the graph builder and the class embedding read them). For a view of
one part of the images (Run.images) they are that part's counts, and the ubiquitous channels
those of the whole run (so that the graphs of a class's parts hide the same channels)."""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..run.selection import ubiquitous_channels
from ..run.store import Run


@dataclass
class Dense:
    """All layers' A matrices (one selection) side by side: columns offsets[layer] + channel."""

    offsets: dict[str, int]
    count: np.ndarray  # (n_classes, total_channels) int64
    sum: np.ndarray  # (n_classes, total_channels) float64
    n_images: np.ndarray  # (n_classes,) int64
    n_correct: list[int | None]
    ubiquitous: list[str]  # "layer:channel" of selection.ubiquitous_channels, per layer in run order


_CACHE: weakref.WeakKeyDictionary[Run, dict[str, Dense]] = weakref.WeakKeyDictionary()


def offsets(run: Run) -> dict[str, int]:
    """Column offset of each layer when all layers' channels are laid side by side."""
    return dict(zip(run.layers, np.cumsum([0] + [run.channels[l] for l in run.layers]).tolist()))


def dense(run: Run, selection: str | None = None) -> Dense:
    """Dense activation matrices of a run for one selection, built once per Run object."""
    sel = run.check_selection(selection)
    cache = _CACHE.setdefault(run, {})
    if sel not in cache:
        offs = offsets(run)
        total = sum(run.channels.values())
        t = run.activations()
        keep = slice(None)
        if "selection" in t.column_names:  # a boolean mask on numpy columns: no filtered copy of the table
            eq = pc.equal(t.column("selection"), sel)
            if not pc.all(eq).as_py():
                keep = eq.to_numpy()
        li = pc.index_in(t.column("layer"), value_set=pa.array(run.layers)).to_numpy(zero_copy_only=False)[keep]
        cell = (t.column("class").to_numpy()[keep].astype(np.int64) * total
                + np.asarray(list(offs.values()), dtype=np.int64)[li] + t.column("channel").to_numpy()[keep])
        count = np.zeros((len(run.class_names), total), dtype=np.int64)
        total_sum = np.zeros((len(run.class_names), total), dtype=np.float64)
        count.reshape(-1)[cell] = t.column("count").to_numpy()[keep]
        total_sum.reshape(-1)[cell] = t.column("sum").to_numpy()[keep]
        n_images = run.classes.column("n_images").to_numpy()
        ubiquitous = dense(run.base, sel).ubiquitous if run.base is not None else \
            [f"{l}:{c}" for l in run.layers for c in
             ubiquitous_channels(count[:, offs[l]:offs[l] + run.channels[l]], n_images)[0].tolist()]
        cache[sel] = Dense(offs, count, total_sum, n_images, run.classes.column("n_correct").to_pylist(),
                            ubiquitous)
    return cache[sel]


