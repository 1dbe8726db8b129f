"""The ImageNet-1k class table (summit/data/imagenet1k.tsv) and how class folders resolve."""
from __future__ import annotations

import pytest

from summit.run.imagenet import imagenet_table, label_key, resolve_folder, wnid_of


def test_table_has_1000_unique_wnids_in_model_order_matching_torchvision() -> None:
    torchvision = pytest.importorskip("torchvision")
    table = imagenet_table()
    assert [c.index for c in table] == list(range(1000))
    wnids = [c.wnid for c in table]
    assert len(set(wnids)) == 1000 and wnids == sorted(wnids)  # ImageFolder's sorted order = model order
    assert all(w.startswith("n") and len(w) == 9 and w[1:].isdigit() for w in wnids)
    assert [c.label for c in table] == torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]
    assert all(c.name == c.label.lower().replace(" ", "_") for c in table)
    assert table[243] == (243, "n02108422", "bull_mastiff", "bull mastiff")
    assert table[99].wnid == "n01855672" and table[22].wnid == "n01614925"


def test_model_class_names_are_the_table_labels() -> None:
    from summit.model.models import imagenet_class_names
    assert imagenet_class_names() == [c.label for c in imagenet_table()]


@pytest.mark.parametrize("folder,index", [
    ("n02108422", 243), ("243", 243), ("243_bull_mastiff", 243), ("bull_mastiff", 243), ("Bull Mastiff", 243),
    ("n01440764", 0), ("0", 0), ("099_goose", 99), ("goose", 99), ("crane bird", 134), ("999", 999),
    ("n99999999", None), ("1000", None), ("١", None), ("n0144076４", None), ("my_own_class", None), ("cats", None),
    ("", None)])
def test_resolve_folder(folder: str, index: int | None) -> None:
    assert resolve_folder(folder) == index


def test_strict_resolution_checks_the_name_of_index_name() -> None:
    assert resolve_folder("022_bald_egle") == 22 and resolve_folder("022_bald_egle", strict=True) is None
    assert resolve_folder("022_Bald_Eagle", strict=True) == 22 and resolve_folder("22", strict=True) == 22


def test_wnid_of_and_label_key() -> None:
    assert wnid_of(243) == "n02108422" and wnid_of(None) is None and wnid_of(1000) is None
    assert label_key("Bull_Mastiff ") == label_key("bull  mastiff") == "bull mastiff"
