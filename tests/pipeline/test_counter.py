"""SparseCounter: exact counts with sorted runs spilled to disk, resumed and merged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from summit.pipeline.counter import SparseCounter


def _batches(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 20000, size=int(rng.integers(1, 3000))) for _ in range(60)]


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _small(d: Path, **kw) -> SparseCounter:
    args = {"flush_at": 1000, "max_entries": 500, "fanin": 3, "range_entries": 300, **kw}
    return SparseCounter(spill_dir=d, **args)


def test_spilled_counts_equal_in_memory_counts(tmp_path: Path) -> None:
    batches = _batches()
    ref, sp = SparseCounter(), _small(tmp_path / "a")
    for b in batches:
        ref.add(torch.from_numpy(b))
        sp.add(b)
    assert len(sp.runs) > 1 and any(r.level > 0 for r in sp.runs)  # spilled and merged runs
    want = ref.range()
    assert _same(sp.range(), want) and int(want[1].sum()) == sum(b.size for b in batches)
    for lo, hi in [(0, 100), (5000, 5001), (19990, None), (None, 3), (7, 7)]:
        assert _same(sp.range(lo, hi), ref.range(lo, hi))
    sp.discard_files()
    assert not list((tmp_path / "a").iterdir())


def test_resume_from_last_state_and_merge_of_shards(tmp_path: Path) -> None:
    batches = _batches(1)
    ref = SparseCounter()
    for b in batches:
        ref.add(b)
    first = _small(tmp_path / "a")
    for i, b in enumerate(batches):
        first.add(b)
        if i % 10 == 9 and i < 40:
            state = first.state()  # the last checkpoint; the process goes on, then dies
    resumed = _small(tmp_path / "a")
    resumed.load(state)
    for b in batches[40:]:
        resumed.add(b)
    assert _same(resumed.range(), ref.range())
    s1, s2 = _small(tmp_path / "s1", fanin=2), _small(tmp_path / "s2", max_entries=300, fanin=4)
    for i, b in enumerate(batches):
        (s1 if i % 2 else s2).add(b)
    merged = SparseCounter(spill_dir=tmp_path / "m", max_entries=100)
    merged.load(s1.state())
    merged.merge(s2.state())
    assert _same(merged.range(), ref.range())
    merged.discard_files()  # its own runs only: the shards' runs stay readable
    assert all(Path(f"{r.path}.keys").exists() for r in s1.runs + s2.runs)


def test_states_of_the_previous_format_load() -> None:
    keys, counts = torch.tensor([3, 7, 9]), torch.tensor([1, 2, 5])
    c = SparseCounter()
    c.load((keys, counts))
    c.merge((keys, counts))
    c.add(torch.tensor([7, 10]))
    assert [a.tolist() for a in c.range()] == [[3, 7, 9, 10], [2, 5, 10, 1]]
