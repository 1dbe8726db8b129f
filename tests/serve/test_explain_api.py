"""The explorer's HTTP API on a real run: explanations, uploads (validated, kept in the run's cache),
renders, the page files, and what the server refuses to read or write."""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from summit.explain.images import MAX_FILE_BYTES
from summit.pipeline.data import BUNDLED_SAMPLE
from summit.serve.app import create_app

IMAGE = "099_goose/imagenet_15_99_orig.jpg"
SECRET = "TOP-SECRET-OUTSIDE-THE-RUN"


@pytest.fixture(scope="module")
def root(sample_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tmp/run (a copy of the sample run), tmp/data (a copy of its dataset, recorded as the run's
    dataset, with a symlink to an image outside it) and tmp/secret.jpg."""
    base = tmp_path_factory.mktemp("explain-api")
    run = Path(shutil.copytree(sample_run, base / "run"))
    data = Path(shutil.copytree(BUNDLED_SAMPLE, base / "data"))
    Image.new("RGB", (64, 64), (9, 9, 9)).save(base / "secret.jpg")
    (data / "099_goose" / "link.jpg").symlink_to(base / "secret.jpg")
    meta = json.loads((run / "run.json").read_text())
    meta["dataset"]["root"] = str(data)
    (run / "run.json").write_text(json.dumps(meta))
    return base


@pytest.fixture(scope="module")
def client(root: Path) -> FlaskClient:
    return create_app(root / "run").test_client()


def get(client: FlaskClient, url: str, status: int = 200) -> dict:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.data[:300])
    assert r.mimetype == "application/json"
    return r.get_json()


def files_under(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def post_file(client: FlaskClient, data: bytes, name: str = "x.jpg"):
    return client.post("/api/explain/upload", data={"file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def test_explain(client):
    d = get(client, f"/api/explain?image={IMAGE}&layers=fire8,fire7&groups=3&top=2")
    assert [l["name"] for l in d["layers"]] == ["fire7", "fire8"]
    assert d["classes"][0]["name"] == "goose" and len(d["classes"]) == 2
    assert d["layers"][0]["groups"]["n"] == 3 and d["links"][0]["roles"] == ["predicted", "true"]
    assert get(client, f"/api/explain?image={IMAGE}&layers=fire7,fire8&groups=3&top=2") == d  # memo
    r = client.get(f"/api/explain/input.png?image={IMAGE}")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert Image.open(io.BytesIO(r.data)).size == (224, 224)


@pytest.mark.parametrize("query, status, msg", [
    ("", 400, "exactly one of"),
    (f"image={IMAGE}&upload=" + "a" * 32, 400, "exactly one of"),
    (f"image={IMAGE}&layers=fire99", 400, "unknown layer 'fire99'"),
    (f"image={IMAGE}&groups=0", 400, "groups must be in 1..32"),
    (f"image={IMAGE}&groups=six", 400, "groups must be an integer"),
    (f"image={IMAGE}&top=11", 400, "top must be in 1..10"),
    ("image=../run.json", 400, "bad dataset path"),
    ("image=/etc/passwd", 400, "bad dataset path"),
    ("image=099_goose/../../secret.jpg", 400, "bad dataset path"),
    ("image=099_goose/link.jpg", 404, "no image"),  # a symlink out of the dataset
    ("image=099_goose/nothing.jpg", 404, "no image"),
    ("upload=xyz", 400, "bad upload id"),
    ("upload=" + "0" * 32, 404, "no upload"),
])
def test_explain_refuses(client, query, status, msg):
    assert msg in get(client, f"/api/explain?{query}", status)["error"]


def test_image_listings(client):
    assert get(client, "/api/explain/images?class=099_goose")["images"] == [
        "099_goose/imagenet_15_99_crop_br.jpg", "099_goose/imagenet_15_99_crop_tl.jpg",
        "099_goose/imagenet_15_99_flip.jpg", "099_goose/imagenet_15_99_orig.jpg", "099_goose/link.jpg"]
    ex = get(client, "/api/explain/images?source=examples")["images"]
    assert ex and all({"image", "units", "class", "name"} <= set(e) for e in ex)
    assert ex[0]["units"] >= ex[-1]["units"]
    assert "close matches: 099_goose" in get(client, "/api/explain/images?class=099_gose", 400)["error"]


def test_upload_is_validated_and_kept_in_the_run_cache(client, root):
    before = files_under(root)
    good = (BUNDLED_SAMPLE / "251_dalmatian" / "imagenet_16_251_orig.jpg").read_bytes()
    r = post_file(client, good)
    assert r.status_code == 201, r.data
    uid = r.get_json()["upload"]
    assert r.get_json()["url"] == f"/blocks.html?upload={uid}"
    assert post_file(client, good).get_json()["upload"] == uid  # same content, same id
    d = get(client, f"/api/explain?upload={uid}&layers=fire9")
    assert d["image"]["source"] == "upload" and d["image"]["true_class"] is None
    assert d["classes"][0]["name"] == get(client, "/api/explain?image=251_dalmatian/imagenet_16_251_orig.jpg"
                                                  "&layers=fire9")["classes"][0]["name"]
    after = files_under(root)
    new = sorted(set(after) - set(before))
    assert new == [f"run/blocks/uploads/{uid}.png"]
    assert all(after[p] == t for p, t in before.items())  # nothing else touched
    assert Image.open(root / new[0]).size == (224, 224)


def _bad_uploads() -> list[tuple[str, bytes, int, str]]:
    rgb = Image.new("RGB", (32, 32), (200, 10, 10))
    jpeg = encoded(rgb, "JPEG")
    return [
        ("text", b"hello, I am not an image", 415, "not an image"),
        ("empty", b"", 415, "not an image"),
        ("tiff", encoded(rgb, "TIFF"), 415, "not an image"),
        ("cmyk", encoded(Image.new("CMYK", (32, 32)), "JPEG"), 415, "unsupported colour mode CMYK"),
        ("16-bit", encoded(Image.fromarray(np.full((32, 32), 40000, np.uint16)), "PNG"), 415, "colour mode"),
        ("truncated", jpeg[: len(jpeg) // 2], 400, "corrupt image"),
        ("bomb", encoded(Image.new("1", (8000, 8000)), "PNG"), 413, "decompression-bomb guard"),
        ("huge bomb", encoded(Image.new("1", (20000, 20000)), "PNG"), 413, "too large"),
        ("too many bytes", jpeg + b"\0" * MAX_FILE_BYTES, 413, "limit"),
    ]


@pytest.mark.parametrize("name, data, status, msg", _bad_uploads(), ids=[b[0] for b in _bad_uploads()])
def test_upload_refuses_bad_files(client, root, name, data, status, msg):
    before = files_under(root)
    r = post_file(client, data)
    assert r.status_code == status, (name, r.status_code, r.data[:200])
    assert r.mimetype == "application/json" and msg in r.get_json()["error"], r.get_json()
    assert "\n" not in r.get_json()["error"]
    assert files_under(root) == before


def test_upload_needs_a_file_field(client):
    r = client.post("/api/explain/upload", data={"other": "x"}, content_type="multipart/form-data")
    assert r.status_code == 400 and "field 'file'" in r.get_json()["error"]
    assert client.get("/api/explain/upload").status_code == 405


def test_layer_attribution(client):
    d = get(client, f"/api/explain/layer?image={IMAGE}&src=fire7&dst=fire8&y0=3&y1=5&x0=4&x1=6")
    assert d["box"] == [3, 5, 4, 6] and (d["height"], d["width"]) == (13, 13) and d["positive"]
    d = get(client, f"/api/explain/layer?image={IMAGE}&src=fire2&dst=fire8&channel=7&grid=5")
    assert d["cells"]["rows"] == 5 and d["channel"] == 7
    assert "must come before" in get(client, f"/api/explain/layer?image={IMAGE}&src=fire8&dst=fire7&channel=1", 400)["error"]
    assert "needs a channel" in get(client, f"/api/explain/layer?image={IMAGE}&src=fire7&dst=fire8", 400)["error"]
    assert "out of range" in get(client, f"/api/explain/layer?image={IMAGE}&src=fire7&dst=fire8&y0=0&y1=99&x0=0&x1=1", 400)["error"]
    assert "channel must be in" in get(client, f"/api/explain/layer?image={IMAGE}&src=fire7&dst=fire8&channel=512", 400)["error"]


def test_renders(client, root):
    q = f"image={IMAGE}&layers=fire9&groups=2&layer=fire9&kind=groups&size=32&steps=2"
    assert get(client, f"/api/explain/render?{q}")["urls"] == [None, None]
    urls = client.post(f"/api/explain/render?{q}").get_json()["urls"]
    assert len(urls) == 2 and all(urls) and get(client, f"/api/explain/render?{q}")["urls"] == urls
    r = client.get(urls[0])
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert Image.open(io.BytesIO(r.data)).size == (32, 32)
    rendered = [p for p in files_under(root / "run") if p.startswith("blocks/featurevis/")]
    assert len(rendered) == 3  # two images and the settings of their folder
    pos = get(client, f"/api/explain/render?image={IMAGE}&layers=fire9&layer=fire9&kind=positions")
    assert len(pos["urls"]) == 169 and pos["size"] == 96 and pos["steps"] == 256
    digest = urls[0].split("/")[4]
    for bad in [f"/api/explain/vis/{digest}/fire9/0123456789abcdef.png", f"/api/explain/vis/xyz/fire9/{'0' * 16}.png",
                f"/api/explain/vis/{digest}/fire99/{'0' * 16}.png"]:
        assert client.get(bad).status_code == 404
    assert "kind must be one of" in get(client, f"/api/explain/render?image={IMAGE}&layer=fire9&kind=x", 400)["error"]
    assert "was not explained; explained: fire8" in get(
        client, f"/api/explain/render?image={IMAGE}&layers=fire8&layer=fire9&kind=groups", 400)["error"]


def test_page_files(client):
    for path, mime in [("/blocks.html", "text/html"), ("/blocks.js", "text/javascript"),
                       ("/vendor/d3.v7.min.js", "text/javascript"), ("/vendor/d3.LICENSE", None)]:
        r = client.get(path)
        assert r.status_code == 200, path
        assert mime is None or r.mimetype == mime, (path, r.mimetype)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    for path in ["/vendor/other.js", "/vendor/..%2fblocks.html", "/vendor/%2e%2e%2f%2e%2e%2frun.json", "/blocks.css"]:
        assert client.get(path).status_code == 404, path
    html = client.get("/blocks.html").get_data(as_text=True)
    assert 'src="vendor/d3.v7.min.js"' in html and 'type="module" src="blocks.js"' in html


def test_page_works_from_any_working_directory(root, tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert create_app(root / "run").test_client().get("/blocks.js").status_code == 200
    finally:
        os.chdir(cwd)


def fresh_client(sample_run: Path, tmp_path: Path) -> tuple[FlaskClient, Path]:
    run = Path(shutil.copytree(sample_run, tmp_path / "run"))
    return create_app(run).test_client(), run


def test_an_upload_that_links_out_of_the_run_is_not_served(sample_run, tmp_path):
    client, run = fresh_client(sample_run, tmp_path)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (224, 224), (1, 2, 3)).save(secret)
    (run / "blocks" / "uploads").mkdir(parents=True)
    uid = "ab" * 16
    (run / "blocks" / "uploads" / f"{uid}.png").symlink_to(secret)
    assert f"no upload {uid}" in get(client, f"/api/explain?upload={uid}&layers=fire9", 404)["error"]
    assert client.get(f"/api/explain/input.png?upload={uid}").status_code == 404


def test_nothing_is_written_through_a_linked_blocks_folder(sample_run, tmp_path):
    client, run = fresh_client(sample_run, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "blocks").symlink_to(outside)
    good = (BUNDLED_SAMPLE / "251_dalmatian" / "imagenet_16_251_orig.jpg").read_bytes()
    r = post_file(client, good)
    assert r.status_code == 403 and "leads outside it" in r.get_json()["error"], r.data
    q = f"image={IMAGE}&layers=fire9&groups=2&layer=fire9&kind=groups&size=32&steps=2"
    assert client.post(f"/api/explain/render?{q}").status_code == 403
    assert list(outside.rglob("*")) == []


def test_the_upload_store_is_bounded(sample_run, tmp_path, monkeypatch):
    from summit.explain import images
    monkeypatch.setattr(images, "MAX_UPLOADS", 3)
    client, run = fresh_client(sample_run, tmp_path)
    ids = []
    for shade in range(5):
        r = post_file(client, encoded(Image.new("RGB", (40, 40), (shade * 40, 0, 0)), "PNG"), "x.png")
        assert r.status_code == 201, r.data
        ids.append(r.get_json()["upload"])
        os.utime(run / "blocks" / "uploads" / f"{ids[-1]}.png", ns=(shade * 10**9, shade * 10**9))
    kept = sorted(p.stem for p in (run / "blocks" / "uploads").iterdir())
    assert kept == sorted(ids[2:])  # the oldest went first
    assert get(client, f"/api/explain?upload={ids[0]}&layers=fire9", 404)
    monkeypatch.setattr(images, "MAX_UPLOAD_STORE", 1)  # bytes: only the newest upload fits
    r = post_file(client, encoded(Image.new("RGB", (40, 40), (0, 90, 0)), "PNG"), "y.png")
    assert r.status_code == 201 and [p.stem for p in (run / "blocks" / "uploads").iterdir()] == [r.get_json()["upload"]]
