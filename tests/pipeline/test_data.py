"""Bad input never crashes a run: every unusable file is skipped, counted and listed (a hostile
corpus: corrupt files, symlink loops, dangling links, extreme aspect ratios, decompression bombs,
unreadable folders); a dataset without a usable image is refused in one line."""
from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from summit.model.models import SummitError, imagenet_class_names
from summit.pipeline.aggregator import AggregateConfig, aggregate
from summit.pipeline.data import SafeImageFolder, class_to_model_index

SAMPLE_JPEG = next((Path(__file__).resolve().parents[2] / "summit/data/sample/022_bald_eagle").glob("*.jpg"))


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
                "099_goose/sixteen.png": "grayscale (16-bit)"}
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
    expected.update(make_hostile(bad, good))
    return expected


def png(width: int, height: int, pixels: bytes, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A PNG file written by hand (Pillow cannot write 16-bit RGB or lie about the size)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


def make_hostile(bad: Path, good: Path) -> dict[str, str]:
    """Links and shapes that crashed or exhausted earlier versions; returns expected reasons.
    Also adds a usable 16-bit colour PNG and a 50:1 panorama to `good`."""
    (bad / "loop.jpg").symlink_to("loop.jpg")
    (bad / "dangling.jpg").symlink_to("does-not-exist.jpg")
    (bad / "cycle").symlink_to(".")  # a folder link cycle: not followed, so never listed
    Image.new("RGB", (4000, 1), (10, 200, 30)).save(bad / "wide.png")
    Image.new("RGB", (12000, 1), (10, 200, 30)).save(bad / "wider.png")
    Image.new("RGB", (1, 5000), (10, 200, 30)).save(bad / "tall.png")
    (bad / "bomb.png").write_bytes(png(20000, 20000, b"\0"))  # 400M pixels claimed, 1 byte sent
    rows = np.random.default_rng(2).integers(0, 65535, (30, 40, 3), dtype=np.uint16).astype(">u2")
    (good / "sixteen_rgb.png").write_bytes(png(40, 30, b"".join(b"\0" + r.tobytes() for r in rows), 16))
    Image.new("RGB", (500, 10), (200, 100, 0)).save(good / "panorama.png")
    return {"099_goose/loop.jpg": "unreadable: symlink loop", "099_goose/dangling.jpg": "unreadable: dangling",
            "099_goose/wide.png": "extreme aspect ratio 4000x1",
            "099_goose/wider.png": "extreme aspect ratio 12000x1", "099_goose/tall.png": "extreme aspect ratio 1x5000",
            "099_goose/bomb.png": "decompression bomb (400000000 pixels)"}


def test_corrupt_corpus_is_skipped_counted_and_listed(tmp_path: Path) -> None:
    expected = make_corpus(tmp_path / "data")
    out = tmp_path / "run"
    rep = aggregate(AggregateConfig(layers=["fire2", "fire3"], batch_size=4, examples_k=2),
                    tmp_path / "data", out, progress=False)
    meta = json.loads((out / "run.json").read_text())
    assert rep["images"] == 6 and rep["skipped"] == len(expected)
    assert meta["dataset"]["n_files"] == 6 + len(expected)
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
    assert len(ds.fingerprint()) == 64  # links that cannot be followed do not break it


def test_sixteen_bit_colour_is_used_at_eight_bits(tmp_path: Path) -> None:
    """docs: 16-bit colour PNGs are reduced to 8 bits per channel and used; 16-bit gray is skipped."""
    make_corpus(tmp_path)
    ds = SafeImageFolder(tmp_path, 64)
    i = next(i for i, (p, _) in enumerate(ds.files) if p.endswith("sixteen_rgb.png"))
    im = ds.load_pil(i)
    rows = np.random.default_rng(2).integers(0, 65535, (30, 40, 3), dtype=np.uint16)
    assert im.mode == "RGB" and np.array_equal(np.asarray(im), (rows >> 8).astype(np.uint8))


def _list_as_nobody(root: Path) -> tuple[list[str], list[list[str]]]:
    """SafeImageFolder(root) built by an unprivileged user (root reads any folder): (classes, unreadable)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # no torch operation runs in the child
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            ds = SafeImageFolder(root)
            os.write(w, json.dumps([ds.classes, ds.unreadable]).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    return tuple(json.loads(data))  # type: ignore[return-value]


def test_unreadable_class_folder_is_counted_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for c in ("a_ok", "b_locked"):
        (root / c).mkdir(parents=True)
        (root / c / "x.jpg").write_bytes(SAMPLE_JPEG.read_bytes())
    (root / "b_locked").chmod(0)
    try:
        if os.geteuid() == 0:
            for p in (tmp_path, *tmp_path.parents):
                if not p.stat().st_mode & 0o001:
                    p.chmod(p.stat().st_mode | 0o005)  # let the unprivileged child reach the data
            classes, unreadable = _list_as_nobody(root)
        else:
            ds = SafeImageFolder(root)
            classes, unreadable = ds.classes, [list(u) for u in ds.unreadable]
    finally:
        (root / "b_locked").chmod(0o755)
    assert classes == ["a_ok", "b_locked"]
    assert unreadable == [["b_locked", "unreadable: permission denied"]]


def test_empty_class_folders_are_refused(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
    (tmp_path / "a" / ".hidden").write_text("x")
    with pytest.raises(SummitError, match=r"no image files in the 2 class folder\(s\) of"):
        SafeImageFolder(tmp_path)


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

    from summit.pipeline.aggregator import Aggregator
    from summit.pipeline.data import DatasetAdapter
    from summit.run.store import Run
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


def test_nothing_is_dropped_silently(tmp_path: Path) -> None:
    """Every entry of the dataset is used or listed with its reason (issue 21, item 6)."""
    good = SAMPLE_JPEG.read_bytes()
    root = tmp_path / "data"
    for cls in ("-rf", "..x", "plain"):
        (root / cls).mkdir(parents=True)
        (root / cls / "a.jpg").write_bytes(good)
    (root / "plain" / "README").write_bytes(good)  # a valid JPEG named README: used
    (root / "plain" / "readme.md").write_text("# notes\n")  # tried, skipped as not an image
    (root / "plain" / ".hidden.jpg").write_bytes(good)
    (root / "root.jpg").write_bytes(good)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.jpg").write_bytes(good)
    (root / "plain" / "linked").symlink_to(tmp_path / "elsewhere")
    ds = SafeImageFolder(root)
    assert ds.classes == ["-rf", "..x", "plain"]
    assert sorted(n for n, _ in ds.files) == ["-rf/a.jpg", "..x/a.jpg", "plain/README", "plain/a.jpg", "plain/readme.md"]
    assert sorted(ds.unreadable) == [("plain/.hidden.jpg", "a hidden file: not used"),
                                     ("plain/linked", "a symbolic link to a folder: not followed"),
                                     ("root.jpg", "a file where a class folder is expected: not used")]
    assert ds[ds.files.index(("plain/readme.md", 2))].error is not None
    assert ds[ds.files.index(("plain/README", 2))].error is None
