"""Bad input never crashes a run: every unusable file is skipped, counted and listed."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from summit.aggregate import AggregateConfig, aggregate
from summit.data import SafeImageFolder, class_to_model_index
from summit.models import SummitError, imagenet_class_names

SAMPLE_JPEG = next((Path(__file__).parent.parent / "summit/data/sample/022_bald_eagle").glob("*.jpg"))


def make_corpus(root: Path) -> dict[str, str]:
    """An ImageFolder with good and bad files; returns {relative path: expected reason}."""
    good, bad = root / "022_bald_eagle", root / "099_goose"
    good.mkdir(parents=True)
    (bad / "nested").mkdir(parents=True)
    jpeg = SAMPLE_JPEG.read_bytes()
    (good / "a.jpg").write_bytes(jpeg)
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("RGBA").save(good / "rgba.png")
    Image.fromarray(rgb).convert("P").save(bad / "palette.png")
    (bad / "nested" / "b.jpg").write_bytes(jpeg)
    expected = {"099_goose/zero.jpg": "zero-byte", "099_goose/truncated.jpg": "corrupt",
                "099_goose/notes.txt": "not an image", "099_goose/random.png": "not an image",
                "099_goose/gray.png": "grayscale", "099_goose/cmyk.jpg": "CMYK",
                "099_goose/sixteen.png": "unsupported mode I;16"}
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (bad / "notes.txt").write_text("not an image\n")
    (bad / "random.png").write_bytes(np.random.default_rng(1).bytes(2000))
    Image.fromarray(rgb[..., 0]).save(bad / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(bad / "cmyk.jpg")
    buf = io.BytesIO()
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 200)).save(buf, format="PNG")
    (bad / "sixteen.png").write_bytes(buf.getvalue())
    assert Image.open(bad / "sixteen.png").mode.startswith("I")
    return expected


def test_corrupt_corpus_is_skipped_counted_and_listed(tmp_path: Path) -> None:
    expected = make_corpus(tmp_path / "data")
    out = tmp_path / "run"
    rep = aggregate(AggregateConfig(layers=["fire2", "fire3"], batch_size=4, examples_k=2),
                    tmp_path / "data", out, progress=False)
    meta = json.loads((out / "run.json").read_text())
    assert rep["images"] == 4 and rep["skipped"] == len(expected)
    assert meta["dataset"]["n_files"] == 4 + len(expected)
    skipped = {s["path"]: s["reason"] for s in meta["dataset"]["skipped"]}
    assert set(skipped) == set(expected)
    for path, reason in expected.items():
        assert skipped[path].startswith(reason), (path, skipped[path])
        assert "\n" not in skipped[path]


def test_safe_image_folder_never_raises(tmp_path: Path) -> None:
    expected = make_corpus(tmp_path)
    ds = SafeImageFolder(tmp_path, 64)
    errors = {ds.files[i][0]: ds[i].error for i in range(len(ds))}
    assert {p for p, e in errors.items() if e} == set(expected)
    assert all(ds[i].image.shape == (3, 64, 64) for i in range(len(ds)))


def test_folder_names_map_to_model_classes() -> None:
    names = imagenet_class_names()
    assert class_to_model_index("243_bull_mastiff", names) == 243
    assert class_to_model_index("7", names) == 7
    assert class_to_model_index("goldfish", names) == 1
    assert class_to_model_index("my_own_class", names) is None


def test_missing_or_empty_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SummitError, match="not found"):
        SafeImageFolder(tmp_path / "missing")
    with pytest.raises(SummitError, match="no class folders"):
        SafeImageFolder(tmp_path)


def test_any_dataset_through_the_python_api(tmp_path: Path) -> None:
    from torchvision.datasets import FakeData

    from summit.aggregate import Aggregator
    from summit.data import DatasetAdapter
    from summit.store import Run
    fake = FakeData(size=10, image_size=(3, 80, 96), num_classes=3, random_offset=5)
    ds = DatasetAdapter(fake, classes=["a", "b", "c"], size=64)
    agg = Aggregator(AggregateConfig(layers=["fire2", "fire3"], batch_size=4, image_size=64, examples_k=2), ds)
    agg.run(progress=False)
    agg.write(tmp_path, progress=False)
    run = Run(tmp_path)
    labels = [int(fake[i][1]) for i in range(10)]
    assert run.classes.column("n_images").to_pylist() == [labels.count(c) for c in range(3)]
    ex = run.examples("fire3").to_pandas()
    assert (ex["class"] == [labels[int(i)] for i in ex["image"]]).all()
