"""State files (checkpoints and shard results) in a format that cannot run code.

A state is a tree of dicts (str keys), lists, tuples, ints, floats, strings, bools, None,
torch tensors and numpy arrays. It is stored as one uncompressed ``.npz`` (a zip of ``.npy``
arrays, numpy's format): every tensor and array leaf becomes a member ``a<n>``; the rest of the
tree, with each leaf replaced by ``{"__tensor__": "a<n>"}`` / ``{"__ndarray__": "a<n>"}`` and
each tuple by ``{"__tuple__": [...]}``, is JSON in the member ``summit_state`` (UTF-8 bytes as a
uint8 array). Reading uses ``numpy.load(allow_pickle=False)``, which refuses object arrays, and
``json``: nothing is unpickled, whoever wrote the file. Anything else is refused with one line.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SummitError, reason
from ..run.files import atomic_write_bytes

STATE_FORMAT, STATE_VERSION = "summit-state", 1
_TREE = "summit_state"


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"a{len(arrays)}"
        arrays[name] = obj.detach().cpu().contiguous().numpy()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = np.ascontiguousarray(obj)
        return {"__ndarray__": name}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"state dict keys must be strings: {list(obj)[:3]}")
        return {k: _encode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a state file")


def _decode(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return torch.from_numpy(np.array(arrays[obj["__tensor__"]]))
        if set(obj) == {"__ndarray__"}:
            return np.array(arrays[obj["__ndarray__"]])
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def write_state(path: str | os.PathLike, state: dict) -> None:
    """Atomically write a state (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {}
    tree = {"format": STATE_FORMAT, "version": STATE_VERSION, "state": _encode(state, arrays)}
    buf = io.BytesIO()
    np.savez(buf, **{_TREE: np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)}, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read_state(path: str | os.PathLike) -> dict:
    """A state written by :func:`write_state`; any other or damaged file is refused with one line."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if _TREE not in z.files:
                raise ValueError(f"no {_TREE} member")
            tree = json.loads(z[_TREE].tobytes().decode())
            if not (isinstance(tree, dict) and tree.get("format") == STATE_FORMAT
                    and tree.get("version") == STATE_VERSION and isinstance(tree.get("state"), dict)):
                raise ValueError("not a summit state of this version")
            return _decode(tree["state"], z)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, RecursionError) as e:
        raise SummitError(f"{path}: not a summit state file ({reason(e, 120)}); the file is damaged or "
                          "was not written by summit") from None
