"""The ImageNet-1k class table (``summit/data/imagenet1k.tsv``): model output index, WordNet id,
Summit's name ("bull_mastiff") and readable label ("bull mastiff"), without torch.

:func:`resolve_folder` maps an ImageFolder class folder to a model output index, whichever way
the folder is named: a WordNet id ("n02108422", ImageNet's train layout), an index ("243"), an
index and name ("243_bull_mastiff", the bundled sample) or a name ("bull_mastiff",
"bull mastiff"). Any subset of the 1000 classes maps; a folder matching nothing maps to None.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

IMAGENET_TABLE_FILE = Path(__file__).resolve().parent.parent / "data" / "imagenet1k.tsv"
WNID_RE = re.compile(r"n[0-9]{8}")
_INDEX_RE = re.compile(r"([0-9]+)(?:[_\-\s](.*))?")


class ImagenetClass(NamedTuple):
    index: int  # model output index
    wnid: str
    name: str   # Summit's form: lowercase, spaces as underscores
    label: str  # readable (torchvision's category)


@lru_cache(maxsize=1)
def imagenet_table() -> tuple[ImagenetClass, ...]:
    """The 1000 classes in model output order."""
    rows = []
    for line in IMAGENET_TABLE_FILE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith(("#", "index\t")):
            continue
        i, wnid, name, label = line.split("\t")
        rows.append(ImagenetClass(int(i), wnid, name, label))
    assert [r.index for r in rows] == list(range(1000)), IMAGENET_TABLE_FILE
    return tuple(rows)


def label_key(text: str) -> str:
    """How labels compare: case-insensitive, underscores as spaces."""
    return " ".join(text.replace("_", " ").lower().split())


@lru_cache(maxsize=1)
def _lookup() -> tuple[dict[str, int], dict[str, int]]:
    table = imagenet_table()
    by_wnid = {r.wnid: r.index for r in table}
    by_label: dict[str, int] = {}
    for r in table:
        for k in {label_key(r.label), label_key(r.name)}:
            by_label.setdefault(k, r.index)
    return by_wnid, by_label


def resolve_folder(folder: str, strict: bool = False) -> int | None:
    """The model output index a class folder names (see the module doc), or None. Strict (for
    what a user types): the name of "243_bull_mastiff" must be that index's, so a typo is no match."""
    folder = folder.strip()
    by_wnid, by_label = _lookup()
    if WNID_RE.fullmatch(folder):
        return by_wnid.get(folder)
    m = _INDEX_RE.fullmatch(folder)
    if m and int(m.group(1)) < len(by_wnid):
        i = int(m.group(1))
        if strict and m.group(2) is not None and by_label.get(label_key(m.group(2))) != i:
            return None
        return i
    return by_label.get(label_key(folder))


def wnid_of(index: int | None) -> str | None:
    """The WordNet id of a model output index (None for None or out of range)."""
    table = imagenet_table()
    return table[index].wnid if index is not None and 0 <= index < len(table) else None
