"""Single images to explain: from the run's dataset, an uploaded file or a local path.

Every image is decoded defensively (:func:`decode_image`): only JPEG, PNG, WebP, GIF and BMP
content (sniffed, not taken from the name), at most ``MAX_PIXELS`` pixels (checked from the
header before anything is decoded: the decompression-bomb guard) and ``MAX_FILE_BYTES`` bytes.
Refusals raise :class:`~summit.errors.SummitError` carrying the HTTP status the server answers with. The model
input is the same resize + centre crop the pipeline uses. Uploads are stored, re-encoded as
that crop in PNG, only under the run's cache ``<run>/blocks/uploads/<id>.png``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
from PIL import Image, UnidentifiedImageError

from ..errors import SummitError, reason
from ..run.files import atomic_write_bytes, file_inside
from ..run.imagenet import imagenet_table
from ..run.layout import BLOCKS_DIR
from ..run.store import Run

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MODES = ("RGB", "RGBA", "P", "PA", "L", "LA", "1")  # converted to RGB; CMYK, 16-bit, float refused
MAX_FILE_BYTES = 20 * 2**20
MAX_PIXELS = 40_000_000
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
MAX_UPLOADS = 500  # uploads kept per run; the oldest go first
MAX_UPLOAD_STORE = 256 * 2**20  # bytes of uploads kept per run
LIST_LIMIT = 2000


@dataclass
class ImageInput:
    """An image ready for the model, and where it came from."""

    source: str  # "dataset" | "upload" | "file" | "memory"
    name: str  # dataset path (relative to its root), upload id, file path, or a label
    image: Image.Image  # RGB model input: size x size centre crop
    true_class: int | None = None  # run class index (dataset images: their class folder)

    @property
    def query(self) -> dict[str, str]:
        """How the server and the explorer page address this image."""
        return {"dataset": {"image": self.name}, "upload": {"upload": self.name}}.get(self.source, {})


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode image bytes to RGB, refusing other types (415), bombs (413) and corrupt data (400)."""
    if len(data) > MAX_FILE_BYTES:
        raise SummitError(f"image file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}", status=413)
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise SummitError(f"not an image of an accepted type ({', '.join(FORMATS)})", status=415) from None
    except Image.DecompressionBombError as e:
        raise SummitError(f"image too large: {e}", status=413) from None
    except Exception as e:  # a header the decoder chokes on
        raise SummitError(f"corrupt image: {reason(e)}") from None
    w, h = im.size
    if w * h > max_pixels:
        raise SummitError(f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels} "
                              "(decompression-bomb guard)", status=413)
    if im.mode not in MODES:
        raise SummitError(f"unsupported colour mode {im.mode} (e.g. CMYK or 16-bit); "
                              f"accepted: {', '.join(MODES)}", status=415)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
        return im.convert("RGB")
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise SummitError(f"image too large: {e}", status=413) from None
    except Exception as e:  # truncated or corrupt data: whatever the decoder raises
        raise SummitError(f"corrupt image: {reason(e)}") from None


def read_image_file(path: str | os.PathLike) -> Image.Image:
    """Decode an image file (same checks as uploads)."""
    p = Path(path)
    if not p.is_file():
        raise SummitError(f"image file not found: {p}", status=404)
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SummitError(f"image file is {size} bytes; the limit is {MAX_FILE_BYTES}", status=413)
    return decode_image(p.read_bytes())


def model_input(image: Image.Image, size: int) -> Image.Image:
    """The pipeline's resize + centre crop (``data.image_transform``) as an RGB image."""
    from ..model.pixels import image_transform, to_pil
    return to_pil(image_transform(size)(image))


def image_size(run: Run) -> int:
    return int(run.meta.get("image_size", 224))


# -- the run's dataset ------------------------------------------------------------------------
def dataset_root(run: Run) -> Path:
    """The run's ImageFolder root (run.json), or SummitError (404) if the run did not read a folder."""
    root = run.meta.get("dataset", {}).get("root")
    if not root or not Path(root).is_dir():
        raise SummitError("this run's dataset folder is not available "
                              f"({root or 'the run was made from a Python Dataset'})", status=404)
    return Path(root).resolve()


def dataset_file(run: Run, name: str) -> Path:
    """A dataset path (relative to the root, "/"-separated) checked to stay inside the root."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or "\0" in name or \
            any(p in ("", ".", "..") for p in parts):
        raise SummitError(f"bad dataset path {name!r}: want a path relative to the dataset root")
    root = dataset_root(run)
    p = (root / name).resolve()
    if not p.is_relative_to(root) or not p.is_file():
        raise SummitError(f"no image {name!r} in the run's dataset", status=404)
    return p


def dataset_image(run: Run, name: str) -> ImageInput:
    """An image of the run's dataset by its path relative to the dataset root."""
    img = model_input(read_image_file(dataset_file(run, name)), image_size(run))
    folder = name.split("/")[0]
    true = run.class_names.index(folder) if folder in run.class_names else None
    return ImageInput("dataset", name, img, true)


def dataset_listing(run: Run, cls: str | int) -> list[str]:
    """Dataset paths of one class folder, sorted (at most LIST_LIMIT)."""
    name = run.class_names[run.class_index(cls)]
    root = dataset_root(run)
    folder = (root / name).resolve()
    if not folder.is_relative_to(root) or not folder.is_dir():
        raise SummitError(f"no folder {name!r} in the run's dataset", status=404)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.startswith(".") and f.lower() != "readme.md":
                out.append(Path(dirpath, f).relative_to(root).as_posix())
                if len(out) >= LIST_LIMIT:
                    return out
    return out


def example_images(run: Run) -> list[dict]:
    """Images that are dataset examples of some unit (examples.parquet), most units first."""
    t = run.examples()
    if t is None:
        return []
    counts: dict[str, int] = {}
    classes: dict[str, int] = {}
    for img, cls in zip(t.column("image").to_pylist(), t.column("class").to_pylist()):
        counts[img] = counts.get(img, 0) + 1
        classes[img] = cls
    names = run.class_names
    return [{"image": img, "units": n, "class": classes[img],
             "name": names[classes[img]] if 0 <= classes[img] < len(names) else None}
            for img, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def mistake_images(run: Run) -> list[dict]:
    """The run's misclassified images (``predictions.parquet``: the top-1 output is not the image's
    class), in dataset order: image (dataset path), class, name (run class), output (the top-1
    model output), label, prob (its probability), run_class (of that output, or None). Empty for
    runs without predictions."""
    t = run.predictions()
    if t is None:
        return []
    of = {m: c for c, m in enumerate(run.classes.column("model_index").to_pylist()) if m is not None}
    table = imagenet_table()
    out = []
    for r in t.filter(pc.invert(t.column("correct"))).to_pylist():
        m, rc = r["top"][0], of.get(r["top"][0])
        label = run.class_labels[rc] if rc is not None else table[m].label if m < len(table) else str(m)
        out.append({"image": r["path"], "class": r["class"], "name": run.class_names[r["class"]], "output": m,
                    "label": label, "prob": r["top_prob"][0], "run_class": rc})
    return out


# -- uploads ----------------------------------------------------------------------------------
def run_cache(run: Run, name: str) -> Path:
    """``<run>/blocks/<name>``, refused (403) when it leads outside the run through a symbolic
    link: the explorer writes nowhere else."""
    p = run.path / BLOCKS_DIR / name
    if not p.resolve().is_relative_to(run.path.resolve()):
        raise SummitError(f"{BLOCKS_DIR}/{name} of this run leads outside it (a symbolic link); "
                          "the explorer does not read or write there", status=403)
    return p


def uploads_dir(run: Run) -> Path:
    return run_cache(run, "uploads")


def _make_room(folder: Path, incoming: int) -> None:
    """Delete the oldest uploads until one more of ``incoming`` bytes fits MAX_UPLOADS and
    MAX_UPLOAD_STORE."""
    try:
        files = [(e.stat(follow_symlinks=False), e.path) for e in os.scandir(folder)
                 if e.name.endswith(".png") and UPLOAD_ID.fullmatch(e.name[:-4])]
    except OSError:
        return
    files.sort(key=lambda f: f[0].st_mtime_ns)
    total = sum(st.st_size for st, _ in files)
    while files and (len(files) >= MAX_UPLOADS or total + incoming > MAX_UPLOAD_STORE):
        st, path = files.pop(0)
        total -= st.st_size
        with contextlib.suppress(OSError):
            os.unlink(path)


def store_upload(run: Run, data: bytes) -> str:
    """Validate an uploaded file and keep its model input as ``<run>/blocks/uploads/<id>.png``;
    at most MAX_UPLOADS files and MAX_UPLOAD_STORE bytes are kept, the oldest deleted first."""
    img = model_input(decode_image(data), image_size(run))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    png = buf.getvalue()
    uid = hashlib.sha256(png).hexdigest()[:32]
    folder = uploads_dir(run)
    path = folder / f"{uid}.png"
    try:
        if path.is_file() and not path.is_symlink():
            os.utime(path)  # kept: now the newest
        else:
            folder.mkdir(parents=True, exist_ok=True)
            _make_room(folder, len(png))
            atomic_write_bytes(path, png)
    except OSError as e:
        raise SummitError(f"cannot store the upload in the run's cache: {e.strerror}", status=507) from None
    return uid


def upload_image(run: Run, uid: str) -> ImageInput:
    """A stored upload by id (a file inside the run: no symbolic link out of it)."""
    if not UPLOAD_ID.fullmatch(uid):
        raise SummitError(f"bad upload id {uid!r}: want 32 hex digits")
    path = file_inside(uploads_dir(run) / f"{uid}.png", run.path.resolve())
    if path is None:
        raise SummitError(f"no upload {uid} in this run's cache", status=404)
    img = read_image_file(path)
    if img.size != (image_size(run),) * 2:
        img = model_input(img, image_size(run))
    return ImageInput("upload", uid, img)


def file_image(run: Run, path: str | os.PathLike) -> ImageInput:
    """A local file (CLI, Python); a dataset path relative to the run's dataset root also works."""
    p = Path(path)
    if p.is_file():
        try:
            root = dataset_root(run)
            if p.resolve().is_relative_to(root):
                return dataset_image(run, p.resolve().relative_to(root).as_posix())
        except SummitError:
            pass
    else:
        try:
            return dataset_image(run, str(path))
        except SummitError:
            raise SummitError(f"image not found: {path} (neither a file nor a path in the run's "
                                  "dataset)", status=404) from None
    return ImageInput("file", str(p), model_input(read_image_file(p), image_size(run)))
