"""Dataset sources beside ImageFolder: ImageNet's validation layout, WebDataset tar shards and
Hugging Face ``datasets`` (``save_to_disk`` folders or Parquet files), chosen by ``open_source``.

Every source is indexed once into a fixed order of items (name, label) without decoding an
image, so batches, shards, torchrun ranks and resume work exactly as for ImageFolder; each item's
bytes are read on demand and decoded by ``open_rgb`` with ImageFolder's checks. Whatever cannot be
used (a truncated tar member, a record without image or label, an image without a ground-truth
entry, a ground-truth entry without an image or with an unknown id) is an item whose read fails
with a one-line reason: skipped, counted and listed in run.json like a bad image file.
Problems that belong to no item (a shard that breaks off mid-header) go to ``unreadable``.

- ``imagefolder``: ``root/<class>/<image>``; torchvision's ``ImageNet`` root (``meta.bin``,
  ``train/``, ``val/``) is read as the ImageFolder ``root/val``.
- ``imagenet-val``: one folder of images plus ``LOC_val_solution.csv`` (``ImageId,PredictionString``,
  the class is the first token, a WordNet id in ImageNet's file) or the devkit's
  ``ILSVRC2012_validation_ground_truth.txt`` (1-based ILSVRC2012 ids, mapped to wnids by the
  devkit's ``meta.mat`` beside it), found in the folder or beside it, or given as ``labels``.
  Items are the union of image files and ground-truth rows, sorted by name.
- ``webdataset``: ``.tar`` files, brace patterns (``shards-{000000..000009}.tar``) or a folder of
  ``.tar``; records are the members sharing a key (webdataset's rule); image under
  jpg/jpeg/png/webp, label under ``cls`` (an integer or a class name).
- ``hf``: a ``Dataset.save_to_disk`` folder (one split) or ``.parquet`` files / a folder of them.
  The image column is the one ``Image`` feature (or ``{bytes, path}`` struct); the label column
  the one ``ClassLabel`` feature, else the one column named label/labels/class/cls/target.

Class names: the label feature's names when present, else the distinct labels (integers sorted
numerically, as strings). Names map to model outputs with ``class_to_model_index`` (so integer
labels are read as ImageNet output indices, as ImageFolder reads ``243`` or ``243_bull_mastiff``).
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import tarfile
from pathlib import Path
from typing import Any, Sequence

from ..errors import SummitError
from ..model.pixels import image_transform
from .data import (
    BAD_NAME,
    BUNDLED_SAMPLE,
    SafeImageFolder,
    class_to_model_index,
    is_utf8,
    open_rgb,
    readable_folder,
    shown,
)

FORMATS = ("imagefolder", "imagenet-val", "webdataset", "hf")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
LABEL_NAMES = ("label", "labels", "class", "cls", "target")
VAL_LABEL_FILES = ("LOC_val_solution.csv", "ILSVRC2012_validation_ground_truth.txt")


def _model_index(classes: Sequence[str], model_class_names: Sequence[str]) -> list[int | None]:
    """Model output index per class name (ImageFolder's rule: ``class_to_model_index``)."""
    return [class_to_model_index(c, model_class_names) if len(model_class_names) else None for c in classes]


def _class_table(labels: Sequence[Any], names: Sequence[str] | None) -> tuple[list[str], dict[Any, int]]:
    """(class names, label -> class index) for raw labels: the feature's names, else the distinct
    labels sorted (integers numerically)."""
    if names is not None:
        return list(names), {i: i for i in range(len(names))}
    present = {lab for lab in labels if lab is not None}
    ints = sorted(x for x in present if isinstance(x, int))
    strs = sorted(x for x in present if not isinstance(x, int))
    classes = [str(x) for x in ints] + [s for s in strs if s not in {str(x) for x in ints}]
    index = {c: i for i, c in enumerate(classes)}
    return classes, {lab: index[str(lab)] for lab in present}


class IndexedSource(SafeImageFolder):
    """A source of items (name, label) in a fixed order; subclasses read an item's bytes.

    An item that cannot be used carries its reason in ``problems`` (read as a skipped image)."""

    format = ""

    def __init__(self, root: str, size: int, model_class_names: Sequence[str], classes: list[str],
                 items: list[tuple[str, int]], problems: dict[int, str], extra: dict | None = None) -> None:
        if not items:
            raise SummitError(f"no records in {root}"
                              + (f" ({len(self.unreadable)} unreadable)" if getattr(self, "unreadable", None) else ""))
        self.root = root  # type: ignore[assignment]  # str: a pattern or a folder
        self.classes, self.files, self.problems = classes, items, problems
        self.unreadable = getattr(self, "unreadable", [])
        self.extra = extra or {}
        self.size, self.transform = size, image_transform(size)
        self.model_index = _model_index(classes, model_class_names)

    def path(self, index: int) -> Path:  # items are not files
        raise NotImplementedError

    def read(self, index: int) -> bytes:
        raise NotImplementedError

    def load_pil(self, index: int):
        if index in self.problems:
            raise ValueError(self.problems[index])
        return open_rgb(self.read(index))

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.format}\0{self.root}\n".encode())
        for i, (name, label) in enumerate(self.files):
            h.update(f"{name}\0{label}\0{self.problems.get(i, '')}\n".encode())
        for k, v in sorted(self.extra.items()):
            h.update(f"{k}\0{v}\n".encode())
        return h.hexdigest()

    def meta(self) -> dict:
        """What run.json records so that `merge` can open the same source again."""
        return {"format": self.format, **self.extra}


# -- ImageNet validation: one folder + ground truth ---------------------------------------------
def _find_val_labels(root: Path) -> Path:
    for d in (root, root.parent):
        for name in VAL_LABEL_FILES:
            if (d / name).is_file():
                return d / name
    raise SummitError(f"no ground-truth file for {root}: put {' or '.join(VAL_LABEL_FILES)} in it or "
                      "beside it, or pass --labels FILE")


class ImageNetVal(IndexedSource):
    """ImageNet validation images in one folder, labelled by LOC_val_solution.csv or the devkit's
    ILSVRC2012_validation_ground_truth.txt (with its meta.mat)."""

    format = "imagenet-val"

    def __init__(self, root: str | os.PathLike, size: int = 224, model_class_names: Sequence[str] = (),
                 labels: str | os.PathLike | None = None) -> None:
        self.folder = Path(root)
        readable_folder(self.folder)
        if not os.path.isdir(self.folder):
            raise SummitError(f"dataset directory not found: {self.folder}")
        if labels and not is_utf8(labels):  # run.json records it
            raise SummitError(f"the ground-truth path {shown(labels)} is not valid UTF-8: rename it")
        gt = Path(labels) if labels else _find_val_labels(self.folder)
        listed = sorted(os.listdir(self.folder))
        self.unreadable = [(shown(f), BAD_NAME) for f in listed if not is_utf8(f)]
        images = {os.path.splitext(f)[0]: f for f in listed
                  if f.lower().endswith(IMAGE_EXTS) and not f.startswith(".") and is_utf8(f)}
        truth, bad = self._read_devkit(gt) if gt.suffix == ".txt" else self._read_csv(gt)
        classes = sorted({c for c in truth.values() if c is not None})
        index = {c: i for i, c in enumerate(classes)}
        items, problems = [], {}
        for image_id in sorted(set(images) | set(truth) | set(bad)):
            i = len(items)
            items.append((images.get(image_id, image_id), index.get(truth.get(image_id), -1)))
            if image_id in bad:
                problems[i] = bad[image_id]
            elif image_id not in truth:
                problems[i] = f"no label in {gt.name}"
            elif image_id not in images:
                problems[i] = f"listed in {gt.name} but no image file"
        super().__init__(str(self.folder.resolve()), size, model_class_names, classes, items, problems,
                         {"labels": str(gt.resolve())})

    @staticmethod
    def _read_devkit(gt: Path) -> tuple[dict[str, str], dict[str, str]]:
        """{ImageId: wnid} and {ImageId: problem} of the devkit's ground truth: line n holds the
        1-based ILSVRC2012_ID of ILSVRC2012_val_<n>, mapped to its wnid by the meta.mat beside it."""
        meta = gt.parent / "meta.mat"
        if not meta.is_file():
            raise SummitError(f"{gt.name} needs the devkit's meta.mat beside it (ILSVRC2012 ids to wnids): "
                              f"{meta} not found")
        from scipy.io import loadmat
        try:
            synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
            wnid = {int(x["ILSVRC2012_ID"]): str(x["WNID"]) for x in synsets if int(x["num_children"]) == 0}
            lines = gt.read_text().splitlines()
        except Exception as e:
            raise SummitError(f"cannot read the devkit ground truth {gt} / {meta.name}: {e}".split("\n")[0]) from None
        truth: dict[str, str] = {}
        bad: dict[str, str] = {}
        for n, line in enumerate(lines, start=1):
            image_id, raw = f"ILSVRC2012_val_{n:08d}", line.strip()
            if not re.fullmatch(r"\d+", raw):
                bad[image_id] = f"{gt.name} line {n}: not an ILSVRC2012 id: {raw[:40]!r}"
            elif int(raw) not in wnid:
                bad[image_id] = f"{gt.name} line {n}: unknown ILSVRC2012 id {raw}"
            else:
                truth[image_id] = wnid[int(raw)]
        return truth, bad

    @staticmethod
    def _read_csv(gt: Path) -> tuple[dict[str, str], dict[str, str]]:
        """{ImageId: class} and {ImageId: problem} of a LOC_val_solution.csv."""
        try:
            with open(gt, newline="") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError) as e:
            raise SummitError(f"cannot read ground-truth file {gt}: {e}") from None
        if not rows or [c.strip() for c in rows[0][:2]] != ["ImageId", "PredictionString"]:
            raise SummitError(f"{gt}: not a LOC_val_solution.csv (expected the header ImageId,PredictionString)")
        truth: dict[str, str] = {}
        bad: dict[str, str] = {}
        for n, row in enumerate(rows[1:], start=2):
            if not row or not row[0].strip():
                continue
            image_id = row[0].strip()
            tokens = row[1].split() if len(row) > 1 else []
            if not tokens:
                bad[image_id] = f"{gt.name} line {n}: no class"
            elif image_id in truth and truth[image_id] != tokens[0]:
                bad[image_id] = f"{gt.name} line {n}: conflicting classes {truth[image_id]} and {tokens[0]}"
            else:
                truth[image_id] = tokens[0]
        for image_id in bad:
            truth.pop(image_id, None)
        return truth, bad

    def read(self, index: int) -> bytes:
        with open(self.folder / self.files[index][0], "rb") as f:
            return f.read()


# -- WebDataset ---------------------------------------------------------------------------------
def expand_shards(pattern: str) -> list[str]:
    """The shard files of a pattern: brace expansion, or every .tar of a folder, sorted."""
    if os.path.isdir(pattern):
        return [str(p) for p in sorted(Path(pattern).glob("*.tar"))]
    from webdataset.shardlists import expand_urls
    return expand_urls(pattern)


class WebDatasetSource(IndexedSource):
    """WebDataset tar shards, indexed once (member names, offsets, labels; no image decoding)."""

    format = "webdataset"

    def __init__(self, pattern: str, size: int = 224, model_class_names: Sequence[str] = ()) -> None:
        from webdataset.tariterators import base_plus_ext
        self.shards = expand_shards(str(pattern))
        self.unreadable = [(shown(os.path.basename(s)), BAD_NAME) for s in self.shards if not is_utf8(s)]
        self.shards = [s for s in self.shards if is_utf8(s)]
        if not self.shards:
            raise SummitError(f"no .tar shards in {pattern}" + (f" ({len(self.unreadable)} unreadable)"
                                                                if self.unreadable else ""))
        missing = [s for s in self.shards if not os.path.isfile(s)]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise SummitError(f"shard not found: {missing[0]}{more}")
        records: list[tuple[str, tuple | None, Any, str | None]] = []  # name, (shard, offset, size), label, problem
        for si, shard in enumerate(self.shards):
            records.extend(self._index(si, shard, base_plus_ext))
        labels = [lab for _, _, lab, _ in records]
        if labels and all(isinstance(x, int) or x is None for x in labels):
            classes, to_class = _class_table(labels, None)
        else:  # names: integers among them are names too
            classes, to_class = _class_table([None if x is None else str(x) for x in labels], None)
            to_class = {**to_class, **{x: to_class[str(x)] for x in labels if isinstance(x, int)}}
        self.where = [loc for _, loc, _, _ in records]
        items = [(name, to_class.get(lab, -1)) for name, _, lab, _ in records]
        problems = {i: p for i, (_, _, _, p) in enumerate(records) if p}
        super().__init__(str(pattern), size, model_class_names, classes, items, problems)

    def _index(self, si: int, shard: str, split) -> list[tuple[str, tuple | None, Any, str | None]]:
        """One shard's records, in member order; a shard that breaks off keeps what came before."""
        size = os.path.getsize(shard)
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        order: list[str] = []
        where = shown(os.path.basename(shard))
        labels: dict[str, Any] = {}
        try:
            with tarfile.open(shard, "r:") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    key, ext = split(m.name)
                    if key is None:
                        continue
                    if key not in groups:
                        groups[key] = {}
                        order.append(key)
                    groups[key][ext.lower()] = m
                    if ext.lower() == "cls" and m.offset_data + m.size <= size:
                        raw = tar.extractfile(m).read().decode("utf-8", "replace").strip()  # type: ignore[union-attr]
                        labels[key] = int(raw) if re.fullmatch(r"-?\d+", raw) else raw
                end = tar.offset
            with open(shard, "rb") as f:  # tarfile stops quietly where a shard breaks off
                f.seek(end)
                tail = f.read(1024)
            if len(tail) < 1024 or tail.strip(b"\0"):
                self.unreadable.append((where, f"truncated tar: no end-of-archive marker after {len(order)} record(s)"))
        except (tarfile.TarError, OSError, EOFError) as e:
            self.unreadable.append((where, f"truncated or corrupt tar after {len(order)} record(s): {e}"))
        out = []
        for key in order:
            g = groups[key]
            name = f"{where}/{shown(key)}"  # a name only: records are read by offset
            img = next((g[k] for k in WDS_IMAGE_KEYS if k in g), None)
            problem = None
            if img is None:
                problem = f"no image in the record (keys: {', '.join(sorted(g))})"
            elif img.offset_data + img.size > size:
                problem = "truncated: the image breaks off at the end of the shard"
            elif "cls" not in g:
                problem = "no label in the record (no cls)"
            elif key not in labels or labels[key] == "":
                problem = "unreadable label (cls truncated or empty)"
            loc = None if img is None else (si, img.offset_data, img.size)
            out.append((name, loc, None if problem else labels[key], problem))
        return out

    def read(self, index: int) -> bytes:
        si, offset, n = self.where[index]
        with open(self.shards[si], "rb") as f:
            f.seek(offset)
            data = f.read(n)
        if len(data) < n:
            raise ValueError("truncated: the image breaks off at the end of the shard")
        return data

    def fingerprint(self) -> str:
        h = hashlib.sha256(super().fingerprint().encode())
        for s in self.shards:
            h.update(f"{s}\0{os.path.getsize(s)}\n".encode())
        return h.hexdigest()


# -- Hugging Face datasets ----------------------------------------------------------------------
def _parquet_files(path: str) -> list[str]:
    if os.path.isdir(path):
        return [str(p) for p in sorted(Path(path).rglob("*.parquet"))]
    return [path]


def _choose(kind: str, candidates: list[str], all_columns: list[str], given: str | None, where: str) -> str:
    if given is not None:
        if given not in all_columns:
            raise SummitError(f"no column {given!r} in {where}; columns: {', '.join(all_columns)}")
        return given
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SummitError(f"no {kind} column in {where} (columns: {', '.join(all_columns)})")
    raise SummitError(f"several {kind} columns in {where}: {', '.join(candidates)}; choose one with "
                      f"--{kind}-column")


class HFSource(IndexedSource):
    """A Hugging Face dataset saved with save_to_disk, or Parquet files; read offline, never downloaded."""

    format = "hf"

    def __init__(self, path: str | os.PathLike, size: int = 224, model_class_names: Sequence[str] = (),
                 image_column: str | None = None, label_column: str | None = None) -> None:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import datasets
        import pyarrow.parquet as pq
        path = str(path)
        if not os.path.exists(path):
            raise SummitError(f"dataset not found: {path}")
        self.unreadable = []
        self.ds = None
        self.tables: list[tuple[str, Any]] = []
        if os.path.isdir(path) and (Path(path) / "dataset_dict.json").is_file():
            splits = sorted(p.parent.name for p in Path(path).glob("*/state.json"))
            raise SummitError(f"{path} holds several splits ({', '.join(splits)}); give one, e.g. "
                              f"{os.path.join(path, splits[0] if splits else 'validation')}")
        if os.path.isdir(path) and (Path(path) / "state.json").is_file():
            try:
                ds = datasets.load_from_disk(path)
            except Exception as e:
                raise SummitError(f"cannot load the saved dataset {path}: {e}".split("\n")[0]) from None
            features, n_rows = ds.features, len(ds)
            self.ds = ds
        else:
            files = _parquet_files(path)
            if not files:
                raise SummitError(f"no .parquet files in {path}")
            try:
                self.tables = [(f, pq.ParquetFile(f)) for f in files]
            except Exception as e:
                raise SummitError(f"cannot read Parquet file: {e}".split("\n")[0]) from None
            features = datasets.Features.from_arrow_schema(self.tables[0][1].schema_arrow)
            n_rows = sum(t.metadata.num_rows for _, t in self.tables)
        where = os.path.basename(path.rstrip("/")) or path
        columns = list(features)
        images = [c for c, f in features.items() if isinstance(f, datasets.Image)
                  or (isinstance(f, dict) and set(f) == {"bytes", "path"})]
        self.image_column = _choose("image", images, columns, image_column, where)
        if self.image_column not in images:
            raise SummitError(f"column {self.image_column!r} of {where} is not an image column")
        class_labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
        named = [c for c in columns if c.lower() in LABEL_NAMES and c != self.image_column]
        self.label_column = _choose("label", class_labels or named, columns, label_column, where)
        feat = features[self.label_column]
        names = feat.names if isinstance(feat, datasets.ClassLabel) else None
        if self.ds is not None:
            self.ds = self.ds.cast_column(self.image_column, datasets.Image(decode=False))
            raw = self.ds.data.column(self.label_column).to_pylist()
        else:
            raw = [v for _, t in self.tables for v in t.read(columns=[self.label_column]).column(0).to_pylist()]
        self.rows = []  # (table, row group, row within) of each row, for Parquet
        for ti, (_, t) in enumerate(self.tables):
            for g in range(t.metadata.num_row_groups):
                self.rows.extend((ti, g, r) for r in range(t.metadata.row_group(g).num_rows))
        assert len(raw) == n_rows
        classes, to_class = _class_table(raw, names)
        items, problems = [], {}
        for i, lab in enumerate(raw):
            ok = lab is not None and (names is None or 0 <= lab < len(names))
            items.append((str(i), to_class[lab] if ok else -1))
            if not ok:
                problems[i] = "no label" if lab is None else f"label {lab} outside the {len(names)} class names"
        self._group: tuple[tuple[int, int], Any] | None = None
        super().__init__(str(Path(path).resolve()), size, model_class_names, classes, items, problems,
                         {"image_column": self.image_column, "label_column": self.label_column})

    def read(self, index: int) -> bytes:
        if self.ds is not None:
            cell = self.ds[index][self.image_column]
        else:
            ti, g, r = self.rows[index]
            if self._group is None or self._group[0] != (ti, g):  # one row group at a time
                self._group = ((ti, g), self.tables[ti][1].read_row_group(g, columns=[self.image_column]).column(0))
            cell = self._group[1][r].as_py()
        if cell is None:
            raise ValueError("no image")
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path") and os.path.isfile(cell["path"]):
            with open(cell["path"], "rb") as f:
                return f.read()
        raise ValueError("no image bytes")

    def __getstate__(self) -> dict:  # DataLoader workers: ParquetFile handles reopen there
        state = dict(self.__dict__)
        state["tables"] = [(f, None) for f, _ in self.tables]
        state["_group"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        import pyarrow.parquet as pq
        self.__dict__.update(state)
        self.tables = [(f, pq.ParquetFile(f)) for f, _ in self.tables]


# -- choosing -----------------------------------------------------------------------------------
def _is_torchvision_imagenet(p: Path) -> bool:
    subs = {d.name for d in p.iterdir() if os.path.isdir(d)}
    return os.path.isdir(p / "val") and (os.path.isfile(p / "meta.bin") or subs <= {"train", "val", "test"})


def detect_format(data: str | os.PathLike | None) -> str:
    """The format of DATA: a .tar / brace pattern / folder of .tar = webdataset; a save_to_disk
    folder, .parquet or folder of .parquet = hf; a folder of images (no class folders) = imagenet-val;
    else imagefolder."""
    if data is None:
        return "imagefolder"
    s = str(data)
    if re.search(r"\{[^}]*\.\.[^}]*\}", s) or s.endswith(".tar"):
        return "webdataset"
    if s.endswith(".parquet"):
        return "hf"
    p = Path(s)
    if not os.path.isdir(p):
        return "imagefolder"  # refused there, with ImageFolder's message
    try:
        entries = list(p.iterdir())
    except OSError:
        return "imagefolder"
    names = {e.name for e in entries}
    if "state.json" in names or "dataset_dict.json" in names:
        return "hf"
    files = [e for e in entries if os.path.isfile(e)]
    if not any(os.path.isdir(e) for e in entries):
        if any(e.name.endswith(".tar") for e in files):
            return "webdataset"
        if any(e.name.endswith(".parquet") for e in files):
            return "hf"
        if any(e.name.lower().endswith(IMAGE_EXTS) for e in files):
            return "imagenet-val"
    return "imagefolder"


SOURCE_OPTIONS = ("format", "labels", "image_column", "label_column")


def open_source(data: str | os.PathLike | None, size: int = 224, model_class_names: Sequence[str] = (), *,
                format: str | None = None, labels: str | os.PathLike | None = None,
                image_column: str | None = None, label_column: str | None = None) -> SafeImageFolder:
    """The dataset for DATA (None: the bundled sample) in ``format`` (None: detected)."""
    if data is not None:
        readable_folder(Path(data))  # before anything lists it
    fmt = format or detect_format(data)
    if fmt not in FORMATS:
        raise SummitError(f"unknown dataset format {fmt!r}; valid: {', '.join(FORMATS)}")
    if data is None and fmt != "imagefolder":
        raise SummitError(f"--format {fmt} needs a DATA path")
    given = [o for o, v, f in (("--labels", labels, "imagenet-val"), ("--image-column", image_column, "hf"),
                               ("--label-column", label_column, "hf")) if v is not None and f != fmt]
    if given:
        raise SummitError(f"{given[0]} applies to another format, not {fmt}")
    if fmt == "imagefolder":
        root = Path(data) if data is not None else BUNDLED_SAMPLE
        if os.path.isdir(root) and _is_torchvision_imagenet(root):
            root = root / "val"
        return SafeImageFolder(root, size, model_class_names)
    if fmt == "imagenet-val":
        return ImageNetVal(data, size, model_class_names, labels)  # type: ignore[arg-type]
    if fmt == "webdataset":
        return WebDatasetSource(str(data), size, model_class_names)
    return HFSource(data, size, model_class_names, image_column, label_column)  # type: ignore[arg-type]


def source_meta(dataset: Any) -> dict:
    """The format (and its options) of a dataset, for run.json."""
    return dataset.meta() if isinstance(dataset, IndexedSource) else {"format": "imagefolder"}


def reopen(meta: dict, size: int, model_class_names: Sequence[str]) -> SafeImageFolder:
    """The dataset that run.json's ``dataset`` block describes (for `merge`)."""
    options = {k: meta.get(k) for k in SOURCE_OPTIONS if k != "format"}
    return open_source(meta.get("root"), size, model_class_names, **options,
                       format=meta.get("format") or "imagefolder")
