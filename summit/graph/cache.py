"""Precomputed class graphs: every class's graph under the default settings (Summit's rule,
``class_graph(run, c)``), as the server's node-link JSON, computed once and stored in the run
directory as ``graphs.parquet`` so that a server answers them without computing.

The file (class:int32, json:binary; zstd; one row group per class, so that a reader decodes only
the class it is asked for and the writer holds one graph at a time) carries a key in its Parquet metadata: a hash of the
run's files (size and modification time of run.json and the three tables), the default graph
options (``options.DEFAULTS``) and this module's format version. A run that changed,
other defaults or another format make it stale: readers ignore it and ``store_graphs`` replaces it
(atomically). Graphs with other settings are not stored; the server computes them on demand.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import networkx as nx
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..errors import SummitError, reason
from ..run.files import atomic_file
from ..run.layout import (
    ACTIVATIONS_FILE,
    CLASSES_FILE,
    GRAPHS_FILE,
    INFLUENCE_FILE,
    RUN_JSON,
)
from ..run.store import Run

CACHE_VERSION = 2  # 2: one row group per class
KEY_FIELD = b"summit_graphs"
RUN_TABLES = (RUN_JSON, CLASSES_FILE, ACTIVATIONS_FILE, INFLUENCE_FILE)
RECHECK_SECONDS = 1.0  # how often a reader looks for a new or replaced cache file


def graph_bytes(G: nx.DiGraph) -> bytes:
    """The node-link JSON (UTF-8, compact, sorted keys) the server sends for a graph."""
    from .export import to_json
    return json.dumps(to_json(G), separators=(",", ":"), sort_keys=True).encode()


def cache_key(run: Run) -> str:
    """Hash of what the stored graphs depend on: the run's files, the default options, the format."""
    from .export import GRAPH_SCHEMA_VERSION
    from .options import defaults
    files = {}
    for name in RUN_TABLES:
        st = (run.path / name).stat()
        files[name] = [st.st_size, st.st_mtime_ns]
    doc = {"files": files, "defaults": defaults().as_dict(), "version": CACHE_VERSION, "graph_schema": GRAPH_SCHEMA_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def stored_key(path: Path) -> str | None:
    """The key of a cache file, None if it is missing or not a cache file."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    return meta.get(KEY_FIELD, b"").decode() or None


def is_fresh(run: Run) -> bool:
    """Whether the run holds an up-to-date cache."""
    return stored_key(run.path / GRAPHS_FILE) == cache_key(run)


def store_graphs(run: Run, progress: bool = True) -> Path:
    """Compute every class's default graph and store them (replacing any older cache), one class
    at a time: memory holds one graph, whatever the number of classes."""
    from .build import class_graph
    schema = pa.schema([("class", pa.int32()), ("json", pa.binary())], metadata={KEY_FIELD: cache_key(run).encode()})
    path = run.path / GRAPHS_FILE
    try:
        with atomic_file(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as w:
            for c in tqdm(range(len(run.class_names)), desc="graphs", unit="class", disable=not progress):
                w.write_table(pa.table({"class": pa.array([c], pa.int32()),
                                        "json": pa.array([graph_bytes(class_graph(run, c))], pa.binary())},
                                       schema=schema))
    except OSError as e:
        raise SummitError(f"cannot write {path} ({reason(e)}); graphs are then computed per request") from None
    return path


def build_in_background(run: Run) -> subprocess.Popen | None:
    """Start `summit graphs` for the run in a low-priority process (Linux; it ends with the calling
    process, and a thread reaps it when it ends, so no zombie stays) when its cache is missing or
    stale and the run directory is writable; None when there is nothing to do."""
    if is_fresh(run) or not os.access(run.path, os.W_OK):
        return None
    code = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); os.nice(10); "
            "from summit.cli import main; sys.exit(main(sys.argv[1:]))")  # ends with its parent (PDEATHSIG)
    proc = subprocess.Popen([sys.executable, "-c", code, "graphs", "--run", str(run.path), "--quiet"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threading.Thread(target=proc.wait, name="summit-graphs-reaper", daemon=True).start()
    return proc


class GraphCache:
    """Read side for a server: the stored graphs of a run, picked up when the file appears or is
    replaced (looked for at most every RECHECK_SECONDS), ignored while stale. Only the file's
    footer is held; each request decodes its class's row group."""

    def __init__(self, run: Run) -> None:
        self.path = run.path / GRAPHS_FILE
        self.key = cache_key(run)
        self.n_classes = len(run.class_names)
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._checked = float("-inf")
        self._file: pq.ParquetFile | None = None

    def get(self, class_index: int) -> bytes | None:
        """The stored JSON of a class's default graph, None if there is no fresh cache."""
        with self._lock:
            if time.monotonic() - self._checked >= RECHECK_SECONDS:
                self._refresh()
            if self._file is None:
                return None
            try:
                t = self._file.read_row_group(class_index)
            except (OSError, pa.ArrowException):
                self._file = None
                return None
            return t.column("json")[0].as_py() if t.column("class").to_pylist() == [class_index] else None

    def _refresh(self) -> None:
        self._checked = time.monotonic()
        try:
            st = self.path.stat()
        except OSError:
            self._seen, self._file = None, None
            return
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen == self._seen:
            return
        self._seen, self._file = seen, None
        try:
            f = pq.ParquetFile(self.path)  # an open handle: a later replacement leaves it readable
        except (OSError, pa.ArrowException):
            return
        meta = f.schema_arrow.metadata or {}
        if meta.get(KEY_FIELD, b"").decode() == self.key and f.metadata.num_row_groups == self.n_classes:
            self._file = f
