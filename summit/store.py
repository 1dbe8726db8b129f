"""Store: one run directory of Parquet tables plus ``run.json`` metadata.

Layout (all tables readable with pyarrow/pandas; see docs/SCHEMA.md):

- ``run.json``         model, weights, layers (name, module, channels), layer pairs (method),
                       k, dataset (root, fingerprint, counts, skipped files with reasons)
- ``classes.parquet``  class:int32, name:string, model_index:int32 (null if unknown),
                       n_images:int64, n_correct:int64 (top-1, null if model_index unknown),
                       hist:list<int64> (images per bin of top-1 probability, 10 bins on [0, 1])
- ``activations.parquet``  selection:string ("mass0.03", "top5", ...), layer:string, class:int32,
                       channel:int32, count:int64, sum:float64 (dense: every selection x class x
                       channel of every layer; ``sum`` repeats per selection; mean = sum / n_images)
- ``influence.parquet``    layer_pair:string (a stage of run.json ``stages``: "src->dst", or into /
                       out of a bottleneck), class:int32, src:int32, dst:int32, count:int64
                       (sparse: count > 0 only; sorted by class, one row group per 2 classes so
                       reads filtered by class skip the rest)
- ``examples.parquet`` + ``examples/<layer>/<channel>.jpg``: top dataset examples per channel
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .models import SummitError

SCHEMA_VERSION = 2
ACTIVATION_SCHEMA = pa.schema([("selection", pa.string()), ("layer", pa.string()), ("class", pa.int32()),
                               ("channel", pa.int32()), ("count", pa.int64()), ("sum", pa.float64())])
INFLUENCE_SCHEMA = pa.schema([("layer_pair", pa.string()), ("class", pa.int32()), ("src", pa.int32()),
                              ("dst", pa.int32()), ("count", pa.int64())])
CLASS_SCHEMA = pa.schema([("class", pa.int32()), ("name", pa.string()), ("model_index", pa.int32()),
                          ("n_images", pa.int64()), ("n_correct", pa.int64()),
                          ("hist", pa.list_(pa.int64()))])
INFLUENCE_ROW_GROUP_CLASSES = 2


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_table(table: pa.Table, path: str | os.PathLike, row_group_size: int | None = None) -> None:
    """Atomically write a deterministic (byte-reproducible) Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, compression="zstd",
                   write_statistics=True, store_schema=True)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def write_json(obj: Any, path: str | os.PathLike, sort_keys: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n").encode())


def write_influence(path: str | os.PathLike, parts: list[tuple[str, np.ndarray, np.ndarray,
                                                             np.ndarray, np.ndarray]]) -> None:
    """Write sparse influence rows sorted by class, row groups aligned to class blocks."""
    if parts:
        pair = np.concatenate([np.full(len(c), i, dtype=np.int32) for i, (_, c, *_r) in enumerate(parts)])
        cls = np.concatenate([p[1] for p in parts]).astype(np.int32)
        src = np.concatenate([p[2] for p in parts]).astype(np.int32)
        dst = np.concatenate([p[3] for p in parts]).astype(np.int32)
        cnt = np.concatenate([p[4] for p in parts]).astype(np.int64)
        order = np.lexsort((dst, src, pair, cls))
        names = np.array([p[0] for p in parts], dtype=object)
        table = pa.table({"layer_pair": pa.array(names[pair[order]], pa.string()), "class": cls[order],
                          "src": src[order], "dst": dst[order], "count": cnt[order]},
                         schema=INFLUENCE_SCHEMA)
    else:
        table = INFLUENCE_SCHEMA.empty_table()
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, INFLUENCE_SCHEMA, compression="zstd") as w:
        classes = table.column("class").to_numpy()
        if len(classes) == 0:
            w.write_table(table)
        bounds = np.flatnonzero(np.diff(classes // INFLUENCE_ROW_GROUP_CLASSES)) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(classes)]):
            w.write_table(table.slice(a, b - a))
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


class Run:
    """Read access to a finished run directory."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        meta = self.path / "run.json"
        if not meta.is_file():
            raise SummitError(f"not a summit run directory (no run.json): {self.path}")
        self.meta: dict = json.loads(meta.read_text())
        if self.meta.get("partial"):
            raise SummitError(f"{self.path} is a shard (--shard); combine shards with `summit merge`")
        self.classes = pq.read_table(self.path / "classes.parquet")
        self.class_names: list[str] = self.classes.column("name").to_pylist()
        self.layers: list[str] = [l["name"] for l in self.meta["layers"]]
        self.channels: dict[str, int] = {l["name"]: l["channels"] for l in self.meta["layers"]}
        self.pairs: list[str] = [p["name"] for p in self.meta["pairs"]]
        self.stages: list[dict] = self.meta.get("stages") or [
            {"name": p["name"], "pair": p["name"], "kind": "direct", "bottleneck": None,
             "src_channels": self.channels[p["src"]], "dst_channels": self.channels[p["dst"]],
             "dst_ranges": [[0, self.channels[p["dst"]]]]} for p in self.meta["pairs"]]
        self.stage_names: list[str] = [st["name"] for st in self.stages]
        self.selections: list[str] = self.meta.get("selections") or ["top{}".format(self.meta.get("k", 5))]
        self._activations: pa.Table | None = None
        self._influence = ds.dataset(self.path / "influence.parquet", format=ds.ParquetFileFormat(
            read_options=ds.ParquetReadOptions(dictionary_columns=["layer_pair"])))

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a class by name (or index); unknown names list close matches."""
        if isinstance(name_or_index, int) or str(name_or_index).isdigit():
            i = int(name_or_index)
            if 0 <= i < len(self.class_names):
                return i
            raise SummitError(f"class index {i} out of range 0..{len(self.class_names) - 1}")
        if name_or_index in self.class_names:
            return self.class_names.index(name_or_index)
        import difflib
        close = difflib.get_close_matches(str(name_or_index), self.class_names, n=5, cutoff=0.4)
        raise SummitError(f"unknown class {name_or_index!r}; close matches: {', '.join(close) or 'none'}"
                          f" ({len(self.class_names)} classes, see `summit info --run`)")

    def check_layer(self, layer: str) -> str:
        if layer not in self.channels:
            raise SummitError(f"unknown layer {layer!r}; valid: {', '.join(self.layers)}")
        return layer

    def activations(self) -> pa.Table:
        """The whole (dense, small) activation table, cached."""
        if self._activations is None:
            self._activations = pq.read_table(self.path / "activations.parquet")
        return self._activations

    def check_selection(self, selection: str | None, purpose: str = "graph") -> str:
        """A counted selection (None: Summit's for the purpose, see selection.default_selection)."""
        from .selection import default_selection
        if selection is None:
            return default_selection(self.selections, purpose)
        if selection not in self.selections:
            raise SummitError(f"unknown selection {selection!r}; valid: {', '.join(self.selections)}")
        return selection

    def activation_matrix(self, layer: str, field: str = "count", selection: str | None = None) -> np.ndarray:
        """(n_classes, channels) matrix of `count` (of a selection; None: the graph default) or
        `sum` for one layer."""
        self.check_layer(layer)
        flt = pc.field("layer") == layer
        if "selection" in self.activations().column_names:
            flt = flt & (pc.field("selection") == self.check_selection(selection))
        t = self.activations().filter(flt)
        m = np.zeros((len(self.class_names), self.channels[layer]),
                     dtype=np.float64 if field == "sum" else np.int64)
        m[t.column("class").to_numpy(), t.column("channel").to_numpy()] = t.column(field).to_numpy()
        return m

    def influence(self, class_index: int, stage: str | None = None) -> pa.Table:
        """Sparse influence rows of one class (predicate pushdown: other classes are not read),
        of every stage or one (run.json ``stages``)."""
        flt = pc.field("class") == class_index
        if stage is not None:
            if stage not in self.stage_names:
                raise SummitError(f"unknown influence stage {stage!r}; valid: {', '.join(self.stage_names)}")
            flt = flt & (pc.field("layer_pair") == stage)
        return self._influence.to_table(filter=flt)

    def examples(self, layer: str | None = None) -> pa.Table | None:
        """Top dataset examples (layer, channel, rank, value, image, class, y, x, box), if stored."""
        p = self.path / "examples.parquet"
        if not p.is_file():
            return None
        return ds.dataset(p).to_table(filter=None if layer is None else pc.field("layer") == layer)
