"""Store: one run directory of Parquet tables plus ``run.json`` metadata.

Layout (all tables readable with pyarrow/pandas; see docs/SCHEMA.md):

- ``run.json``         model, weights, layers (name, module, channels), layer pairs (method),
                       k, dataset (root, fingerprint, counts, skipped files with reasons)
- ``classes.parquet``  class:int32, name:string (the class folder), wnid:string (ImageNet WordNet
                       id, null if not ImageNet), label:string (readable: the model's class name,
                       else the folder name), model_index:int32 (null if unknown),
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
- ``split/correct/``, ``split/wrong/`` (``aggregate --split-correct``): classes, activations and
                       influence tables as above, of each class's images whose top-1 prediction is
                       the class and of the others (:meth:`Run.images`; docs/MISTAKES.md)
"""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import SummitError, reason
from .files import atomic_file
from .imagenet import label_key, resolve_folder
from .layout import (
    ACTIVATIONS_FILE,
    CLASSES_FILE,
    INFLUENCE_FILE,
    PREDICTIONS_FILE,
    SPLIT_PARTS,
    split_dir,
)

SCHEMA_VERSION = 2
ACTIVATION_SCHEMA = pa.schema([("selection", pa.string()), ("layer", pa.string()), ("class", pa.int32()),
                               ("channel", pa.int32()), ("count", pa.int64()), ("sum", pa.float64())])
INFLUENCE_SCHEMA = pa.schema([("layer_pair", pa.string()), ("class", pa.int32()), ("src", pa.int32()),
                              ("dst", pa.int32()), ("count", pa.int64())])
CLASS_SCHEMA = pa.schema([("class", pa.int32()), ("name", pa.string()), ("wnid", pa.string()),
                          ("label", pa.string()), ("model_index", pa.int32()),
                          ("n_images", pa.int64()), ("n_correct", pa.int64()),
                          ("hist", pa.list_(pa.int64()))])
HIST_BINS = 10  # classes.parquet hist: images per tenth of top-1 probability


def hist_bin(top1: np.ndarray) -> np.ndarray:
    """The ``hist`` bin (int64, 0..HIST_BINS-1) of top-1 probabilities p (float64): floor(p * HIST_BINS),
    p = 1 in the last bin."""
    return np.clip((top1 * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
INFLUENCE_ROW_GROUP_CLASSES = 2
INFLUENCE_ROW_BYTES = 40  # in memory: 4 int columns plus the layer pair name


InfluenceRows = Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def write_influence(path: str | os.PathLike, parts: list[tuple[str, InfluenceRows]], n_classes: int) -> None:
    """Write sparse influence rows sorted by class, then stage, src, dst; one row group per
    block of classes. Each part is (stage name, rows) with rows(c0, c1) giving the (class, src,
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
            order = np.argsort(cls, kind="stable")  # stages are in order within each class
            w.write_table(pa.table({"layer_pair": pa.array(names[pair[order]], pa.string()),
                                    "class": cls[order].astype(np.int32), "src": src[order].astype(np.int32),
                                    "dst": dst[order].astype(np.int32), "count": cnt[order].astype(np.int64)},
                                   schema=INFLUENCE_SCHEMA))
            empty = False
        if empty:
            w.write_table(INFLUENCE_SCHEMA.empty_table())


def array_rows(cls: np.ndarray, src: np.ndarray, dst: np.ndarray, count: np.ndarray) -> InfluenceRows:
    """rows(c0, c1) for :func:`write_influence` from in-memory arrays of one stage."""
    order = np.lexsort((dst, src, cls))
    cls, src, dst, count = cls[order], src[order], dst[order], count[order]

    def rows(c0: int, c1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        a, b = np.searchsorted(cls, [c0, c1])
        return cls[a:b], src[a:b], dst[a:b], count[a:b]
    return rows


def _unreadable(file: Path, e: BaseException) -> SummitError:
    """One-line error for a run file that is missing or cannot be parsed."""
    if isinstance(e, FileNotFoundError):
        return SummitError(f"{file}: missing (the run is incomplete; re-run `summit aggregate`)")
    return SummitError(f"{file}: unreadable ({reason(e)}); the run is damaged, re-run `summit aggregate`")


def _read_parquet(file: Path, **kw: Any) -> pa.Table:
    try:
        return pq.read_table(file, **kw)
    except (OSError, pa.ArrowException) as e:
        raise _unreadable(file, e) from None


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or (
        pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))


def _is_int_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type)


COLUMN_KINDS: dict[str, tuple[str, Callable[[pa.DataType], bool]]] = {
    "class": ("integer", pa.types.is_integer), "src": ("integer", pa.types.is_integer),
    "dst": ("integer", pa.types.is_integer), "channel": ("integer", pa.types.is_integer),
    "count": ("integer", pa.types.is_integer), "n_images": ("integer", pa.types.is_integer),
    "n_correct": ("integer", pa.types.is_integer), "model_index": ("integer", pa.types.is_integer),
    "sum": ("floating", pa.types.is_floating), "hist": ("a list of integers", _is_int_list),
    **{c: ("text", _is_text) for c in ("name", "wnid", "label", "layer", "selection", "layer_pair")},
}


def check_columns(schema: pa.Schema, file: Path, required: set[str]) -> None:
    """Refuse a run table lacking a required column or holding a known column of the wrong type."""
    missing = required - set(schema.names)
    if missing:
        raise SummitError(f"{file}: column(s) {', '.join(sorted(missing))} missing; the run is damaged")
    for f in schema:
        kind, ok = COLUMN_KINDS.get(f.name, ("", lambda t: True))
        if not ok(f.type):
            raise SummitError(f"{file}: column {f.name!r} is {f.type}, not {kind}; the run is damaged")


def check_meta(meta: Any, file: Path) -> None:
    """Refuse a run.json without the keys and types readers rely on (one line naming the key)."""
    def need(obj: Any, key: str, typ: type | tuple[type, ...], where: str = "") -> Any:
        v = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(v, typ) or (isinstance(v, bool) and typ is int):
            kind = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise SummitError(f"{file}: {where}{key!r} is missing or not {kind}; the run is damaged")
        return v

    if not isinstance(meta, dict):
        raise SummitError(f"{file}: expected a JSON object, got {type(meta).__name__}; the run is damaged")
    if meta.get("partial"):
        return
    for key, typ in (("model", str), ("weights", str), ("k", int), ("k_influence", int),
                     ("influence_method", list)):
        need(meta, key, typ)
    for i, layer in enumerate(need(meta, "layers", list)):
        need(layer, "name", str, f"layers[{i}].")
        if need(layer, "channels", int, f"layers[{i}].") < 1:
            raise SummitError(f"{file}: layers[{i}].channels must be >= 1; the run is damaged")
    if not meta["layers"]:
        raise SummitError(f"{file}: no layers; the run is damaged")
    for i, pair in enumerate(need(meta, "pairs", list)):
        for key in ("name", "src", "dst", "method"):
            need(pair, key, str, f"pairs[{i}].")
    d = need(meta, "dataset", dict)
    for key in ("n_files", "n_images", "n_skipped"):
        need(d, key, int, "dataset.")
    for key in ("skipped", "unreadable"):
        if key == "skipped" or key in d:
            for i, entry in enumerate(need(d, key, list, "dataset.")):
                for field in ("path", "reason"):
                    need(entry, field, str, f"dataset.{key}[{i}].")
    if meta.get("stages") is not None:
        for i, stage in enumerate(need(meta, "stages", list)):
            need(stage, "name", str, f"stages[{i}].")
            for field in ("src_channels", "dst_channels"):
                need(stage, field, int, f"stages[{i}].")
    if meta.get("selections") is not None and (not need(meta, "selections", list) or
                                                not all(isinstance(s, str) for s in meta["selections"])):
        raise SummitError(f"{file}: 'selections' must be a non-empty list of names; the run is damaged")
    if meta.get("ubiquitous") is not None:
        for i, u in enumerate(need(need(meta, "ubiquitous", dict), "channels", list, "ubiquitous.")):
            need(u, "layer", str, f"ubiquitous.channels[{i}].")
            need(u, "channel", int, f"ubiquitous.channels[{i}].")


IMAGE_PARTS = ("all", *SPLIT_PARTS)  # Run.images: every image, or one split part
IMAGE_VIEWS = (*IMAGE_PARTS, "correct-vs-wrong")  # the UI's images menu (hash images=), `summit figure --images`


class Run:
    """Read access to a finished run directory (validated on open: damaged or incomplete runs
    are refused with one line naming the file). ``part`` is the images its tables count ("all";
    a view from :meth:`images`: "correct" or "wrong", with ``base`` the whole run)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.part: str = "all"
        self.base: Run | None = None
        self._views: dict[str, Run] = {}  # Run.images' views, opened once (shared with them)
        meta = self.path / "run.json"
        if not meta.is_file():
            raise SummitError(f"not a summit run directory (no run.json): {self.path}")
        try:
            self.meta: dict = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise _unreadable(meta, e) from None
        except json.JSONDecodeError as e:
            raise SummitError(f"{meta}: not valid JSON ({e.msg} at line {e.lineno}); the run is damaged") from None
        except RecursionError:
            raise SummitError(f"{meta}: JSON nested too deep to read; the run is damaged") from None
        check_meta(self.meta, meta)
        if self.meta.get("partial"):
            raise SummitError(f"{self.path} is a shard (--shard); combine shards with `summit merge`")
        self.layers: list[str] = [l["name"] for l in self.meta["layers"]]
        self.channels: dict[str, int] = {l["name"]: l["channels"] for l in self.meta["layers"]}
        self.pairs: list[str] = [p["name"] for p in self.meta["pairs"]]
        self.stages: list[dict] = self.meta.get("stages") or [
            {"name": p["name"], "pair": p["name"], "kind": "direct", "bottleneck": None,
             "src_channels": self.channels[p["src"]], "dst_channels": self.channels[p["dst"]],
             "dst_ranges": [[0, self.channels[p["dst"]]]]} for p in self.meta["pairs"]]
        self.stage_names: list[str] = [st["name"] for st in self.stages]
        self.selections: list[str] = self.meta.get("selections") or ["top{}".format(self.meta.get("k", 5))]
        self._open_tables(self.path)

    def _open_tables(self, d: Path, want: np.ndarray | None = None) -> None:
        """Read and check the classes, activations and influence tables in ``d`` (``want``: the
        images per class they must count; None: run.json's total)."""
        self.classes = _read_parquet(d / CLASSES_FILE)
        self._check_classes(d / CLASSES_FILE, want)
        self._activations = _read_parquet(d / ACTIVATIONS_FILE)
        self._check_activations(self._activations, d / ACTIVATIONS_FILE)
        self._influence_rows: tuple[pa.Table, np.ndarray] | None = None  # see preload_influence
        self._influence_file = d / INFLUENCE_FILE
        try:
            self._influence = ds.dataset(self._influence_file, format=ds.ParquetFileFormat(
                read_options=ds.ParquetReadOptions(dictionary_columns=["layer_pair"])))
        except (OSError, pa.ArrowException) as e:
            raise _unreadable(self._influence_file, e) from None
        check_columns(self._influence.schema, self._influence_file, {"layer_pair", "class", "src", "dst", "count"})
        self._stage_limits = np.array([[st["src_channels"], st["dst_channels"]] for st in self.stages], np.int64)

    def images(self, part: str) -> Run:
        """The run restricted to one part of every class's images (IMAGE_PARTS): "all" is the run
        itself; "correct" / "wrong" (the images whose top-1 prediction is / is not the class) a
        view whose classes, activations and influence are that part's (``split/<part>/``). Runs
        aggregated without ``--split-correct`` are refused in one line."""
        if part not in IMAGE_PARTS:
            raise SummitError(f"unknown images {part!r}; valid: {', '.join(IMAGE_PARTS)}")
        if part == self.part:
            return self
        base = self.base or self
        if part == "all":
            return base
        if part in base._views:
            return base._views[part]
        if not base.meta.get("split_correct"):
            raise SummitError(f"{base.path} has no correct/wrong split of its images; re-run `summit aggregate` "
                              "with --split-correct")
        n = base.classes.column("n_images").to_numpy()
        hits = base.classes.column("n_correct").fill_null(0).to_numpy()
        view = copy.copy(base)
        view.part, view.base = part, base
        view._open_tables(split_dir(base.path, part), hits if part == "correct" else n - hits)
        base._views[part] = view
        return view

    def _check_classes(self, file: Path, want: np.ndarray | None = None) -> None:
        check_columns(self.classes.schema, file, {"class", "name", "n_images", "n_correct"})
        self.class_names: list[str] = self.classes.column("name").to_pylist()
        n = len(self.class_names)
        if n == 0 or self.classes.column("class").to_pylist() != list(range(n)) or None in self.class_names:
            raise SummitError(f"{file}: expected classes 0..N-1 with names; the run is damaged")
        names = self.classes.schema.names
        if "wnid" not in names:  # a run written before wnid and label (schema 2): not known
            self.classes = self.classes.add_column(names.index("name") + 1, "wnid", pa.nulls(n, pa.string()))
        if "label" not in self.classes.schema.names:
            self.classes = self.classes.add_column(self.classes.schema.names.index("wnid") + 1, "label",
                                                   pa.array(self.class_names, pa.string()))
        self.class_wnids: list[str | None] = self.classes.column("wnid").to_pylist()
        self.class_labels: list[str] = [l if l is not None else n
                                        for l, n in zip(self.classes.column("label").to_pylist(), self.class_names)]
        if want is not None:
            base = self.base.class_names if self.base is not None else self.class_names
            if self.class_names != base or not np.array_equal(self.classes.column("n_images").to_numpy(), want):
                raise SummitError(f"{file} does not fit the run's classes and their top-1 hits; the run is damaged, "
                                  "re-run `summit aggregate`")
            return
        held = int(pc.sum(self.classes.column("n_images")).as_py() or 0)
        said = self.meta["dataset"]["n_images"]
        if held != said:
            raise SummitError(f"{file} holds {held} images but run.json says {said}: the files come from "
                              "different runs (an interrupted write?); re-run `summit aggregate`")

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a class by index, name (its folder), WordNet id, readable label (case-insensitive,
        "_" as " ") or any ImageNet form of its model output ("243_bull_mastiff"); unknown ones
        are refused in one line listing close matches."""
        if isinstance(name_or_index, int) or re.fullmatch(r"[0-9]+", str(name_or_index)):
            i = int(name_or_index)
            if 0 <= i < len(self.class_names):
                return i
            raise SummitError(f"class index {i} out of range 0..{len(self.class_names) - 1}")
        text = str(name_or_index).strip()
        if text in self.class_names:
            return self.class_names.index(text)
        if text in self.class_wnids:
            return self.class_wnids.index(text)
        key = label_key(text)
        hits = [i for i, l in enumerate(self.class_labels) if label_key(l) == key] or \
               [i for i, n in enumerate(self.class_names) if label_key(n) == key]
        if not hits and "model_index" in self.classes.column_names:
            m = resolve_folder(text, strict=True)
            hits = [i for i, x in enumerate(self.classes.column("model_index").to_pylist()) if m is not None and x == m]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise SummitError(f"class {text!r} is ambiguous: {', '.join(self.class_names[i] for i in hits)}; "
                              "give its name or index")
        import difflib
        choices = list(dict.fromkeys([*self.class_names, *self.class_labels]))
        close = difflib.get_close_matches(text, choices, n=5, cutoff=0.4)
        raise SummitError(f"unknown class {name_or_index!r}; close matches: {', '.join(close) or 'none'}"
                          f" ({len(self.class_names)} classes, see `summit info --run`)")

    def check_layer(self, layer: str) -> str:
        if layer not in self.channels:
            raise SummitError(f"unknown layer {layer!r}; valid: {', '.join(self.layers)}")
        return layer

    def activations(self) -> pa.Table:
        """The whole (dense, small) activation table (read and checked when the run is opened)."""
        return self._activations

    def check_selection(self, selection: str | None, purpose: str = "graph") -> str:
        """A counted selection (None: Summit's for the purpose, see selection.default_selection)."""
        from .selection import default_selection
        if selection is None:
            return default_selection(self.selections, purpose)
        if selection not in self.selections:
            raise SummitError(f"unknown selection {selection!r}; valid: {', '.join(self.selections)}")
        return selection

    def _check_activations(self, t: pa.Table, file: Path) -> None:
        """Layers, classes and channels of the table must be those of run.json."""
        check_columns(t.schema, file, {"layer", "class", "channel", "count", "sum"})
        cells = len(self.class_names) * sum(self.channels.values())
        if t.num_rows == 0 or t.num_rows % cells:
            raise SummitError(f"{file}: {t.num_rows} rows do not fit run.json's {len(self.class_names)} classes x "
                              f"{sum(self.channels.values())} channels; the run is damaged")
        stats = t.group_by("layer").aggregate([("channel", "min"), ("channel", "max"), ("class", "min"),
                                                ("class", "max")]).to_pylist()
        for r in stats:
            layer = r["layer"]
            if layer not in self.channels:
                raise SummitError(f"{file}: layer {layer!r} is not in run.json; the run is damaged")
            n = self.channels[layer]
            if r["channel_min"] < 0 or r["channel_max"] != n - 1:
                raise SummitError(f"{file}: layer {layer} has channels {r['channel_min']}..{r['channel_max']} "
                                  f"but run.json says {n}; the run is damaged")
            if r["class_min"] < 0 or r["class_max"] >= len(self.class_names):
                raise SummitError(f"{file}: layer {layer} has classes outside 0..{len(self.class_names) - 1}; "
                                  "the run is damaged")

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

    def preload_influence(self, max_bytes: int) -> bool:
        """Hold the whole influence table in memory (for a server answering many classes) when it
        takes at most `max_bytes` decoded; then `influence` slices it instead of reading the file."""
        rows = pq.ParquetFile(self._influence_file).metadata.num_rows
        if rows * INFLUENCE_ROW_BYTES > max_bytes:
            return False
        t = self._read_influence(None)
        if len(t) and (np.diff(t.column("class").to_numpy()) < 0).any():
            t = t.sort_by("class")
        # one chunk and plain strings: per-class slices then convert without copies or decoding
        t = t.combine_chunks()
        t = t.set_column(0, "layer_pair", pc.cast(t.column("layer_pair"), pa.string()))
        classes = t.column("class").to_numpy()
        self._influence_rows = (t, np.searchsorted(classes, np.arange(len(self.class_names) + 1)))
        return True

    def influence(self, class_index: int, stage: str | None = None) -> pa.Table:
        """Sparse influence rows of one class (predicate pushdown: other classes are not read),
        of every stage or one (run.json ``stages``)."""
        flt = pc.field("class") == class_index
        if stage is not None:
            if stage not in self.stage_names:
                raise SummitError(f"unknown influence stage {stage!r}; valid: {', '.join(self.stage_names)}")
            flt = flt & (pc.field("layer_pair") == stage)
        if self._influence_rows is not None:
            t, bounds = self._influence_rows
            rows = t.slice(bounds[class_index], bounds[class_index + 1] - bounds[class_index])
            return rows if stage is None else rows.filter(flt)
        return self._read_influence(flt)

    def _read_influence(self, flt: pc.Expression | None) -> pa.Table:
        try:
            t = self._influence.to_table(filter=flt)
        except (OSError, pa.ArrowException) as e:
            raise _unreadable(self._influence_file, e) from None
        self._check_influence(t)
        return t

    def _check_influence(self, t: pa.Table) -> None:
        """Refuse rows naming a stage run.json lacks, a class outside 0..C-1, a src or dst outside
        the stage's channels or a count below 1 (one line naming the first such row)."""
        names = pc.cast(t.column("layer_pair"), pa.string())
        stage = pc.index_in(names, value_set=pa.array(self.stage_names, pa.string()))
        file = self._influence_file
        if stage.null_count:
            unknown = names.filter(pc.is_null(stage))[0].as_py()
            raise SummitError(f"{file}: stage {unknown!r} is not one of run.json's stages "
                              f"({', '.join(self.stage_names[:4])}{', ...' * (len(self.stage_names) > 4)}); "
                              "the run is damaged")
        st = stage.to_numpy()
        cls, src, dst, count = (t.column(c).to_numpy() for c in ("class", "src", "dst", "count"))
        bad = ((cls < 0) | (cls >= len(self.class_names)) | (src < 0) | (src >= self._stage_limits[st, 0])
               | (dst < 0) | (dst >= self._stage_limits[st, 1]) | (count < 1))
        if bad.any():
            i = int(bad.argmax())
            s = self.stages[st[i]]
            raise SummitError(f"{file}: row (stage {s['name']}, class {cls[i]}, src {src[i]}, dst {dst[i]}, "
                              f"count {count[i]}) is outside the run's {len(self.class_names)} classes and the "
                              f"stage's {s['src_channels']} -> {s['dst_channels']} channels; the run is damaged")

    def examples(self, layer: str | None = None) -> pa.Table | None:
        """Top dataset examples (layer, channel, rank, value, image, class, y, x, box), if stored."""
        p = self.path / "examples.parquet"
        if not p.is_file():
            return None
        try:
            return ds.dataset(p).to_table(filter=None if layer is None else pc.field("layer") == layer)
        except (OSError, pa.ArrowException) as e:
            raise _unreadable(p, e) from None

    def predictions(self) -> pa.Table | None:
        """Per image: dataset index, path, run class, the model's top outputs and probabilities,
        correct (``predictions.parquet``); None for runs written before it existed."""
        p = self.path / PREDICTIONS_FILE
        if not p.is_file():
            return None
        return _read_parquet(p)
