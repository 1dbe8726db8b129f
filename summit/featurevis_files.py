"""Where rendered feature visualizations live in a run directory (torch-free: the server lists
and serves them without loading the rendering code)."""
from __future__ import annotations

import os
from pathlib import Path


def featurevis_path(run_dir: str | os.PathLike, layer: str, channel: int) -> Path:
    """Stable path of a channel's latest rendered visualization in a run directory."""
    return Path(run_dir) / "featurevis" / layer / f"{channel}.png"


def diversity_path(run_dir: str | os.PathLike, layer: str, channel: int, i: int) -> Path:
    """Path of a channel's i-th diversity image in a run directory."""
    return Path(run_dir) / "featurevis" / layer / f"{channel}_d{i}.png"


def diversity_counts(run_dir: str | os.PathLike, layer: str) -> dict[int, int]:
    """{channel: number of diversity images d0, d1, ... present} of one layer of a run."""
    d = Path(run_dir) / "featurevis" / layer
    found: dict[int, set[int]] = {}
    for p in d.glob("*_d*.png") if d.is_dir() else ():
        ch, _, i = p.stem.partition("_d")
        if ch.isdigit() and i.isdigit():
            found.setdefault(int(ch), set()).add(int(i))
    return {c: next(i for i in range(len(s) + 1) if i not in s) for c, s in sorted(found.items())
            if 0 in s}
