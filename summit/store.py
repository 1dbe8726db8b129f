"""Store: one run directory of Parquet tables plus ``run.json`` metadata.

Layout (all tables readable with pyarrow/pandas; see docs/SCHEMA.md):

- ``run.json``         model, weights, layers (name, module, channels), layer pairs (method),
                       k, dataset (root, fingerprint, counts, skipped files with reasons)
- ``classes.parquet``  class:int32, name:string, model_index:int32 (null if unknown),
                       n_images:int64, n_correct:int64 (top-1, null if model_index unknown)
- ``activations.parquet``  layer:string, class:int32, channel:int32, count:int64, sum:float64
                       (dense: every class x channel of every layer; mean = sum / n_images)
- ``influence.parquet``    layer_pair:string ("src->dst"), class:int32, src:int32, dst:int32,
                       count:int64 (sparse: count > 0 only; sorted by class, one row group per
                       2 classes so reads filtered by class skip the rest)
- ``examples.parquet`` + ``examples/<layer>/<channel>.jpg``: top dataset examples per channel
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .models import SummitError

SCHEMA_VERSION = 1
ACTIVATION_SCHEMA = pa.schema([("layer", pa.string()), ("class", pa.int32()), ("channel", pa.int32()),
                               ("count", pa.int64()), ("sum", pa.float64())])
INFLUENCE_SCHEMA = pa.schema([("layer_pair", pa.string()), ("class", pa.int32()), ("src", pa.int32()),
                              ("dst", pa.int32()), ("count", pa.int64())])
CLASS_SCHEMA = pa.schema([("class", pa.int32()), ("name", pa.string()), ("model_index", pa.int32()),
                          ("n_images", pa.int64()), ("n_correct", pa.int64())])
INFLUENCE_ROW_GROUP_CLASSES = 2


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path next to ``path`` that replaces it (0644, fsynced) when the block ends,
    so readers see either the old or the complete new file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_table(table: pa.Table, path: str | os.PathLike, row_group_size: int | None = None) -> None:
    """Atomically write a deterministic (byte-reproducible) Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, compression="zstd",
                   write_statistics=True, store_schema=True)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def write_json(obj: Any, path: str | os.PathLike) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


InfluenceRows = Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def write_influence(path: str | os.PathLike, parts: list[tuple[str, InfluenceRows]], n_classes: int) -> None:
    """Write sparse influence rows sorted by class, then pair, src, dst; one row group per
    block of classes. Each part is (pair name, rows) with rows(c0, c1) giving the (class, src,
    dst, count) arrays of classes c0 <= class < c1 sorted by class, src, dst, so a run of any
    size is written one class block at a time."""
    names = np.array([name for name, _ in parts], dtype=object)
    with atomic_file(path) as tmp, pq.ParquetWriter(tmp, INFLUENCE_SCHEMA, compression="zstd") as w:
        empty = True
        for c0 in range(0, n_classes, INFLUENCE_ROW_GROUP_CLASSES):
            cols = [(np.full(len(r[0]), i, dtype=np.int32), *r)
                    for i, (_, rows) in enumerate(parts)
                    for r in [rows(c0, min(n_classes, c0 + INFLUENCE_ROW_GROUP_CLASSES))]]
            if not cols or not sum(len(c[0]) for c in cols):
                continue
            pair, cls, src, dst, cnt = (np.concatenate(c) for c in zip(*cols))
            order = np.argsort(cls, kind="stable")  # pairs are in order within each class
            w.write_table(pa.table({"layer_pair": pa.array(names[pair[order]], pa.string()),
                                    "class": cls[order].astype(np.int32), "src": src[order].astype(np.int32),
                                    "dst": dst[order].astype(np.int32), "count": cnt[order].astype(np.int64)},
                                   schema=INFLUENCE_SCHEMA))
            empty = False
        if empty:
            w.write_table(INFLUENCE_SCHEMA.empty_table())


def array_rows(cls: np.ndarray, src: np.ndarray, dst: np.ndarray, count: np.ndarray) -> InfluenceRows:
    """rows(c0, c1) for :func:`write_influence` from in-memory arrays of one pair."""
    order = np.lexsort((dst, src, cls))
    cls, src, dst, count = cls[order], src[order], dst[order], count[order]

    def rows(c0: int, c1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        a, b = np.searchsorted(cls, [c0, c1])
        return cls[a:b], src[a:b], dst[a:b], count[a:b]
    return rows


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

    def activation_matrix(self, layer: str, field: str = "count") -> np.ndarray:
        """(n_classes, channels) matrix of `count` or `sum` for one layer."""
        self.check_layer(layer)
        t = self.activations().filter(pc.field("layer") == layer)
        m = np.zeros((len(self.class_names), self.channels[layer]),
                     dtype=np.float64 if field == "sum" else np.int64)
        m[t.column("class").to_numpy(), t.column("channel").to_numpy()] = t.column(field).to_numpy()
        return m

    def influence(self, class_index: int, pair: str | None = None) -> pa.Table:
        """Sparse influence rows of one class (predicate pushdown: other classes are not read)."""
        flt = pc.field("class") == class_index
        if pair is not None:
            if pair not in self.pairs:
                raise SummitError(f"unknown layer pair {pair!r}; valid: {', '.join(self.pairs)}")
            flt = flt & (pc.field("layer_pair") == pair)
        return self._influence.to_table(filter=flt)

    def examples(self, layer: str | None = None) -> pa.Table | None:
        """Top dataset examples (layer, channel, rank, value, image, class, y, x, box), if stored."""
        p = self.path / "examples.parquet"
        if not p.is_file():
            return None
        return ds.dataset(p).to_table(filter=None if layer is None else pc.field("layer") == layer)
