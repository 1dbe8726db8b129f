"""Exact sparse counts of int64 keys with bounded memory (an external sort).

Keys arrive in batches. They are buffered, then sorted and merged into an in-memory sorted
table of (key, count). With a spill directory, a table that outgrows ``max_entries`` is
written to disk as an immutable sorted *run* and memory starts empty again; every
``fanin`` runs of one size class are merged into one run of the next class (as in an
LSM tree), so each entry is rewritten about log_fanin(runs) times and few runs need to be
read at the end. Reading merges memory and runs range by range (:meth:`SparseCounter.range`),
so a whole pass needs memory for one key range only.

Merges are exact (int64 sums) and order-independent: any spill pattern, checkpoint/resume,
shard or rank split gives the same counts. States (:meth:`state`) hold the in-memory table
and the *names* of runs; runs dropped by a merge stay on disk until the next state is taken
(the previous checkpoint may still name them) and go with :meth:`discard_files`.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import torch


def unique_sum(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys and the summed counts of each (any input order)."""
    if keys.size == 0:
        return keys.astype(np.int64), counts.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    k, c = keys[order], counts[order]
    start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return k[start], np.add.reduceat(c, start)


def _count_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys and how often each occurs (a plain sort: much faster than argsort)."""
    k = np.sort(keys)
    start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if k.size else np.empty(0, np.int64)
    return k[start], np.diff(np.r_[start, k.size]).astype(np.int64)


def _merge(k1: np.ndarray, c1: np.ndarray, k2: np.ndarray, c2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted unique (keys, counts) tables: linear in the larger one."""
    if k2.size == 0:
        return k1, c1
    at = np.searchsorted(k1, k2)
    hit = at < k1.size
    hit[hit] = k1[at[hit]] == k2[hit]
    c = c1.copy()
    c[at[hit]] += c2[hit]
    new = ~hit
    return np.insert(k1, at[new], k2[new]), np.insert(c, at[new], c2[new])


class _Run:
    """One sorted run on disk: <name>.keys and <name>.counts, raw little-endian int64."""

    def __init__(self, path: Path, level: int) -> None:
        self.path, self.level = path, level

    @staticmethod
    def write(path: Path, level: int, parts) -> "_Run":
        """Write a run from an iterable of sorted, disjoint, increasing (keys, counts) chunks."""
        tmp = [path.with_name(f".{path.name}.{s}.{uuid.uuid4().hex}") for s in ("keys", "counts")]
        with open(tmp[0], "wb") as fk, open(tmp[1], "wb") as fc:
            for k, c in parts:
                fk.write(np.ascontiguousarray(k, dtype="<i8").tobytes())
                fc.write(np.ascontiguousarray(c, dtype="<i8").tobytes())
            for f in (fk, fc):
                f.flush()
                os.fsync(f.fileno())
        for t, s in zip(tmp, ("keys", "counts")):
            os.replace(t, f"{path}.{s}")
        return _Run(path, level)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return tuple(np.memmap(f"{self.path}.{s}", dtype="<i8", mode="r")  # type: ignore[return-value]
                     if os.path.getsize(f"{self.path}.{s}") else np.empty(0, np.int64)
                     for s in ("keys", "counts"))

    def size(self) -> int:
        return os.path.getsize(f"{self.path}.keys") // 8

    def delete(self) -> None:
        for s in ("keys", "counts"):
            Path(f"{self.path}.{s}").unlink(missing_ok=True)


class SparseCounter:
    """Counts of int64 keys, kept sorted and unique; merging is exact and order-independent.

    spill_dir: where runs go once the in-memory table exceeds ``max_entries`` (None: memory
    only). ``flush_at`` pending keys are sorted into the table at a time.
    """

    def __init__(self, flush_at: int = 2_000_000, spill_dir: str | os.PathLike | None = None,
                 max_entries: int = 1 << 24, fanin: int = 8, range_entries: int = 1 << 22) -> None:
        self.keys = np.empty(0, np.int64)
        self.counts = np.empty(0, np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self.flush_at = flush_at
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.max_entries, self.fanin, self.range_entries = max_entries, fanin, range_entries
        self.runs: list[_Run] = []
        self._seq = 0
        self._dropped: list[_Run] = []  # merged away since the last state()
        self._releasable: list[_Run] = []  # merged away before the last state(): deletable now

    # -- adding -------------------------------------------------------------------------
    def add(self, keys: torch.Tensor | np.ndarray) -> None:
        k = keys.cpu().numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        self._pending.append(k.reshape(-1).astype(np.int64, copy=False))
        self._pending_n += k.size
        if self._pending_n >= self.flush_at:
            self.flush()

    def add_counts(self, keys: torch.Tensor | np.ndarray, counts: torch.Tensor | np.ndarray) -> None:
        self.flush()
        k, c = (t.cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in (keys, counts))
        self._combine(*unique_sum(k.astype(np.int64), c.astype(np.int64)))

    def flush(self) -> None:
        if self._pending:
            new = np.concatenate(self._pending)
            self._pending, self._pending_n = [], 0
            self._combine(*_count_keys(new))

    def _combine(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """Merge a sorted unique table into memory; spill when memory is full."""
        self.keys, self.counts = _merge(self.keys, self.counts, keys, counts)
        if self.spill_dir is not None and self.keys.size > self.max_entries:
            self._spill()

    def spill(self) -> None:
        """Move the in-memory table to a run now (no-op without a spill directory)."""
        self.flush()
        if self.spill_dir is not None and self.keys.size:
            self._spill()

    # -- runs ---------------------------------------------------------------------------
    def _new_path(self) -> Path:
        assert self.spill_dir is not None
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        return self.spill_dir / f"run-{self._seq:06d}"

    def _spill(self) -> None:
        self.runs.append(_Run.write(self._new_path(), 0, [(self.keys, self.counts)]))
        self.keys, self.counts = np.empty(0, np.int64), np.empty(0, np.int64)
        level = 0
        while True:  # size-tiered: fanin runs of one level become one run of the next
            same = [r for r in self.runs if r.level == level]
            if len(same) < self.fanin:
                break
            merged = _Run.write(self._new_path(), level + 1, self._merged(same, with_memory=False))
            self.runs = [r for r in self.runs if r not in same] + [merged]
            self._dropped += same
            level += 1

    def _bounds(self, runs: list[_Run]) -> list[int]:
        """Key boundaries splitting the union of runs into ranges of about range_entries."""
        cuts = set()
        for r in runs:
            k, _ = r.arrays()
            step = max(1, self.range_entries // max(1, len(runs)))
            cuts.update(int(v) for v in k[step::step])
        return sorted(cuts)

    def _merged(self, runs: list[_Run], with_memory: bool, lo: int | None = None, hi: int | None = None):
        """(keys, counts) chunks, increasing and disjoint, of the runs (and memory) in [lo, hi)."""
        self.flush()
        sources = [r.arrays() for r in runs] + ([(self.keys, self.counts)] if with_memory else [])
        inner = [b for b in self._bounds(runs) if (lo is None or b > lo) and (hi is None or b < hi)]
        edges = [lo, *inner, hi]
        for a, b in zip(edges, edges[1:]):
            k, c = np.empty(0, np.int64), np.empty(0, np.int64)
            for sk, sc in sources:  # each source is sorted and unique
                i0 = 0 if a is None else int(np.searchsorted(sk, a))
                i1 = sk.size if b is None else int(np.searchsorted(sk, b))
                k, c = _merge(k, c, np.asarray(sk[i0:i1]), np.asarray(sc[i0:i1]))
            if k.size:
                yield k, c

    # -- reading ------------------------------------------------------------------------
    def range(self, lo: int | None = None, hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All (keys, counts) with lo <= key < hi, merged across memory and runs."""
        parts = list(self._merged(self.runs, True, lo, hi))
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def entries(self) -> int:
        """Entries held (in memory plus runs; a key may appear in several runs)."""
        return int(self.keys.size + sum(r.size() for r in self.runs))

    def disk_bytes(self) -> int:
        return 16 * sum(r.size() for r in self.runs + self._dropped + self._releasable)

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict:
        """In-memory table and run names (copies). Runs merged away before the previous state
        are deleted now: a checkpoint taken from that state no longer names them."""
        self.flush()
        for r in self._releasable:
            r.delete()
        self._releasable, self._dropped = self._dropped, []
        return {"keys": self.keys.copy(), "counts": self.counts.copy(), "seq": self._seq,
                "runs": [(str(r.path), r.level) for r in self.runs]}

    @staticmethod
    def _state(state: dict | tuple) -> dict:
        """A state; (keys, counts) tensors as written before runs existed are accepted too."""
        if isinstance(state, tuple):
            return {"keys": np.asarray(state[0], np.int64), "counts": np.asarray(state[1], np.int64)}
        return state

    def load(self, state: dict | tuple) -> None:
        """Continue from a state (runs written after it are overwritten as numbering resumes)."""
        state = self._state(state)
        self.keys, self.counts = np.asarray(state["keys"]), np.asarray(state["counts"])
        self._pending, self._pending_n = [], 0
        self.runs = [_Run(Path(p), lvl) for p, lvl in state.get("runs", [])]
        self._seq = state.get("seq", 0)

    def merge(self, state: dict | tuple) -> None:
        """Add another counter's state (its runs are read in place, not copied)."""
        state = self._state(state)
        self.add_counts(state["keys"], state["counts"])
        self.runs += [_Run(Path(p), lvl) for p, lvl in state.get("runs", [])]

    def discard_files(self) -> None:
        """Delete the runs in this counter's spill_dir once the result is written (runs merged
        in from other ranks or shards stay where they are)."""
        own = [r for r in self.runs + self._dropped + self._releasable
               if self.spill_dir is not None and r.path.parent == self.spill_dir]
        for r in own:
            r.delete()
        self.runs = [r for r in self.runs if r not in own]
        self._dropped, self._releasable = [], []
