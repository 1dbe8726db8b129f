"""Data: ImageFolder (ImageNet layout) or any Dataset, read defensively, in a fixed order.

Images that cannot be used are skipped, counted and listed with a reason, never fatal:
zero-byte, non-image, corrupt or truncated files, unreadable files (permissions such as mode
000 or 111, dangling symlinks, symlink loops), decompression bombs, extreme aspect ratios (more
than ``MAX_ASPECT_RATIO``:1, whose resize would need gigabytes), and images that are grayscale
(8, 16 or 32-bit) or CMYK. (ImageNet has a handful of grayscale and CMYK JPEGs; Summit's
reference pipeline skips them too.) Palette and RGBA images are converted to RGB; 16-bit
colour PNGs are reduced to 8 bits per channel by Pillow and used. Class folders that cannot
be listed, and files or folders whose names are not valid UTF-8 (shown with their undecodable
bytes as ``\\xNN``), are counted and reported (``unreadable``); a dataset root that cannot be
listed and entered, or whose path is not valid UTF-8, and a dataset without any file are refused.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from ..errors import SummitError
from ..model.pixels import image_transform
from ..run.imagenet import imagenet_table, resolve_folder

BUNDLED_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
ACCEPTED_MODES = {"RGB": None, "RGBA": "RGB", "P": "RGB", "PA": "RGB"}
MAX_ASPECT_RATIO = 100  # longer side / shorter side; beyond it the resize alone needs gigabytes
BAD_NAME = "a name that is not valid UTF-8 (undecodable bytes shown as \\xNN): not used"
BAD_FOLDER_NAME = ("a folder name that is not valid UTF-8 (undecodable bytes shown as \\xNN): "
                   "not used, nor what it holds")


def is_utf8(name: str | os.PathLike) -> bool:
    """Whether a file name (str, undecodable bytes as surrogates) is valid UTF-8."""
    try:
        os.fspath(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str | os.PathLike) -> str:
    """A file name as run files write it: valid UTF-8, undecodable bytes as ``\\xNN`` (b'a\\xff' -> 'a\\\\xff')."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def readable_folder(root: Path) -> None:
    """Refuse, in one line, a dataset folder whose path is not valid UTF-8 or that this user cannot
    list (read) and enter (execute)."""
    if not is_utf8(root):
        raise SummitError(f"the dataset path {shown(root)} is not valid UTF-8: rename it, or link to it "
                          "from a UTF-8 path")
    try:
        os.stat(root)
    except PermissionError:
        raise SummitError(f"cannot reach dataset directory {root}: permission denied on a folder above "
                          "it") from None
    except OSError:
        return  # missing: refused by the caller with its own message
    if os.path.isdir(root) and not os.access(root, os.R_OK | os.X_OK):
        raise SummitError(f"cannot list dataset directory {root}: permission denied (this user needs "
                          "read and execute permission on it)")


def _os_reason(e: OSError) -> str:
    """A short skip reason for a file system error."""
    if e.errno == errno.ELOOP:
        return "unreadable: symlink loop"
    if isinstance(e, FileNotFoundError):
        return "unreadable: dangling symlink or missing file"
    if isinstance(e, PermissionError):
        return "unreadable: permission denied"
    return f"unreadable: {e.strerror or type(e).__name__}"


def _mode_reason(mode: str) -> str:
    if mode.startswith("I;16"):
        return "grayscale (16-bit)"
    return {"L": "grayscale", "LA": "grayscale", "1": "grayscale (1-bit)", "I": "grayscale (32-bit)",
            "F": "grayscale (32-bit float)", "CMYK": "CMYK"}.get(mode, f"unsupported mode {mode}")


def open_rgb(path: str | os.PathLike | bytes) -> Image.Image:
    """Open and fully decode an image (a file, or its bytes) as RGB, or raise ValueError with a short reason."""
    try:
        if (len(path) if isinstance(path, bytes) else os.path.getsize(path)) == 0:
            raise ValueError("zero-byte file")
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
            w, h = im.size
            if max(w, h) > MAX_ASPECT_RATIO * max(1, min(w, h)):
                raise ValueError(f"extreme aspect ratio {w}x{h} (more than {MAX_ASPECT_RATIO}:1)")
            im.load()
            if im.mode not in ACCEPTED_MODES:
                raise ValueError(_mode_reason(im.mode))
            return im.convert("RGB") if ACCEPTED_MODES[im.mode] else im.copy()
    except ValueError:
        raise
    except Image.DecompressionBombError as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise ValueError(f"decompression bomb ({pixels.group(1) if pixels else 'too many'} pixels)") from None
    except OSError as e:  # PIL raises OSError/UnidentifiedImageError for corrupt/truncated
        if e.errno is not None:
            raise ValueError(_os_reason(e)) from None
        msg = str(e).split("\n")[0]
        raise ValueError("not an image" if "cannot identify" in msg else f"corrupt: {msg}") from None


def class_to_model_index(folder: str, class_names: Sequence[str]) -> int | None:
    """Map an ImageFolder class folder to a model output index, if recognisable.

    For a 1000-class (ImageNet) model: a WordNet id ("n02108422"), "243", "243_bull_mastiff" or a
    name ("bull_mastiff", "bull mastiff"), for any subset of the classes (run.imagenet). For other
    models: "243", "243_name" or an exact class name. Anything else: None.
    """
    if len(class_names) == len(imagenet_table()):
        return resolve_folder(folder)
    m = re.match(r"^(\d+)(?:[_\-\s].*)?$", folder)
    if m and int(m.group(1)) < len(class_names):
        return int(m.group(1))
    lowered = {n.lower(): i for i, n in enumerate(class_names)}
    return lowered.get(folder.replace("_", " ").lower())


def _stat_error(path: str | os.PathLike) -> OSError | None:
    """The error stat() raises for a path (links followed), None if it has none."""
    try:
        os.stat(path)
    except OSError as e:
        return e
    return None


def _stamp(path: str | os.PathLike) -> tuple[int, int]:
    """(size, modification time in ns) of a file, (-1, -1) if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


@dataclass
class Sample:
    """One decoded item: image tensor (zeros if unusable), label, dataset index, skip reason."""

    image: torch.Tensor
    label: int
    index: int
    error: str | None


class SafeImageFolder(Dataset):
    """ImageFolder that never raises on a bad file; every file is listed, sorted, in order."""

    stamps: np.ndarray | None = None  # (n, 2) size and mtime (ns) per file when fingerprinted

    def __init__(self, root: str | os.PathLike, size: int = 224,
                 model_class_names: Sequence[str] = ()) -> None:
        self.root = Path(root)
        readable_folder(self.root)
        if not os.path.isdir(self.root):
            raise SummitError(f"dataset directory not found: {self.root}")
        self.unreadable: list[tuple[str, str]] = []  # (folder or entry, reason): reported, not fatal
        try:
            entries = sorted(self.root.iterdir())
        except OSError as e:
            raise SummitError(f"cannot list dataset directory {self.root}: {e.strerror}") from None
        self.classes = []
        for d in entries:
            if not is_utf8(d.name):
                self.unreadable.append((shown(d.name), BAD_FOLDER_NAME if os.path.isdir(d) else BAD_NAME))
            elif os.path.isdir(d):
                self.classes.append(d.name)
            elif (err := _stat_error(d)) is not None:  # a link that leads nowhere or where we may not go
                self.unreadable.append((d.name, _os_reason(err)))
            else:
                self.unreadable.append((d.name, "a file where a class folder is expected: not used"))
        if not self.classes:
            raise SummitError(f"no class folders in {self.root} (expected ImageFolder layout root/<class>/<image>)")
        self.files: list[tuple[str, int]] = []
        for ci, c in enumerate(self.classes):
            for dirpath, dirnames, filenames in os.walk(self.root / c, onerror=self._unreadable):
                dirnames.sort()
                for dn in list(dirnames):
                    rel = os.path.relpath(os.path.join(dirpath, dn), self.root)
                    if not is_utf8(dn):
                        dirnames.remove(dn)
                        self.unreadable.append((shown(rel), BAD_FOLDER_NAME))
                    elif os.path.islink(os.path.join(dirpath, dn)):  # os.walk does not descend into them
                        self.unreadable.append((rel, "a symbolic link to a folder: not followed"))
                for f in sorted(filenames):
                    rel = os.path.relpath(os.path.join(dirpath, f), self.root)
                    if not is_utf8(f):
                        self.unreadable.append((shown(rel), BAD_NAME))
                    elif f.startswith("."):  # .DS_Store, ._AppleDouble, editors' files
                        self.unreadable.append((rel, "a hidden file: not used"))
                    else:
                        self.files.append((rel, ci))
        if not self.files:
            raise SummitError(f"no image files in the {len(self.classes)} class folder(s) of {self.root}"
                              + (f" ({len(self.unreadable)} unreadable)" if self.unreadable else ""))
        self.transform = image_transform(size)
        self.size = size
        n_model = len(model_class_names)
        self.model_index = [class_to_model_index(c, model_class_names) if n_model else None
                            for c in self.classes]

    def _unreadable(self, e: OSError) -> None:
        self.unreadable.append((shown(os.path.relpath(e.filename, self.root)), _os_reason(e)))

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        return self.root / self.files[index][0]

    def name(self, index: int) -> str:
        """How run files refer to an item: its path relative to the root."""
        return self.files[index][0]

    def load_pil(self, index: int) -> Image.Image:
        return open_rgb(self.path(index))

    def __getitem__(self, index: int) -> Sample:
        label = self.files[index][1]
        try:
            img = self.transform(self.load_pil(index))
            return Sample(img, label, index, None)
        except ValueError as e:
            return Sample(torch.zeros(3, self.size, self.size), label, index, str(e))
        except Exception as e:  # anything else a decoder may throw: skip, keep going
            return Sample(torch.zeros(3, self.size, self.size), label, index,
                          f"corrupt: {type(e).__name__}: {e}".split("\n")[0])

    def fingerprint(self) -> str:
        """sha256 over (relative path, class, size) of every file: identifies the dataset. Keeps
        each file's (size, mtime) in ``stamps`` for ``changed``."""
        h = hashlib.sha256()
        self.stamps = np.empty((len(self.files), 2), dtype=np.int64)
        for i, (rel, label) in enumerate(self.files):
            self.stamps[i] = _stamp(self.root / rel)  # -1: dangling link, loop, permissions: skipped when read
            h.update(f"{rel}\0{label}\0{self.stamps[i, 0]}\n".encode())
        return h.hexdigest()

    def changed(self, index: int) -> str | None:
        """Why item ``index`` is not the file ``fingerprint`` saw (size or mtime differ), or None."""
        if self.stamps is None or self.stamps[index].tolist() == list(_stamp(self.path(index))):
            return None
        return "changed since the pass (size or modification time)"


class DatasetAdapter(Dataset):
    """Wrap any Dataset yielding (PIL image or [0,1] CHW tensor, label) for the pipeline."""

    def __init__(self, dataset: Dataset, classes: Sequence[str], size: int = 224,
                 model_index: Sequence[int | None] | None = None) -> None:
        self.dataset = dataset
        self.classes = list(classes)
        self.size = size
        self.transform = image_transform(size)
        self.model_index = list(model_index) if model_index is not None else [None] * len(self.classes)
        self.root = None
        self.unreadable: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def name(self, index: int) -> str:
        return str(index)

    def load_pil(self, index: int) -> Image.Image:
        img, _ = self.dataset[index]
        return img.convert("RGB") if isinstance(img, Image.Image) else transforms.ToPILImage()(img)

    def __getitem__(self, index: int) -> Sample:
        try:
            img, label = self.dataset[index]
            if isinstance(img, Image.Image):
                if img.mode not in ACCEPTED_MODES:
                    raise ValueError(f"unsupported mode {img.mode}")
                img = self.transform(img.convert("RGB"))
            else:
                img = transforms.functional.center_crop(
                    transforms.functional.resize(img, int(round(self.size * 256 / 224)), antialias=True),
                    self.size)
                if img.shape[0] != 3:
                    raise ValueError(f"expected 3 channels, got {img.shape[0]}")
            return Sample(img.float(), int(label), index, None)
        except Exception as e:
            return Sample(torch.zeros(3, self.size, self.size), -1, index,
                          f"{type(e).__name__}: {e}".split("\n")[0])

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{type(self.dataset).__name__}:{len(self)}".encode()).hexdigest()

    def changed(self, index: int) -> str | None:
        """Items of a Python Dataset cannot be told apart from a later read: never reported changed."""
        return None


def collate(samples: list[Sample]) -> dict[str, Any]:
    """Batch samples; `ok` marks usable images."""
    return {
        "image": torch.stack([s.image for s in samples]),
        "label": torch.tensor([s.label for s in samples], dtype=torch.long),
        "index": torch.tensor([s.index for s in samples], dtype=torch.long),
        "ok": torch.tensor([s.error is None for s in samples]),
        "errors": [(s.index, s.error) for s in samples if s.error is not None],
    }
