"""What the serving modules share: the UI folder, a concurrent memo, a bound on queued graph
builds, strict parameter parsing, files looked up only inside a root, and the Host check against
DNS rebinding."""
from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections import OrderedDict
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator

import numpy as np
from flask import Response, send_file

from ..errors import SummitError


def _frontend_dir() -> Path:
    """The UI files: ``summit/frontend`` in an installed wheel, else the checkout's top-level
    ``frontend/`` (source tree or editable install); independent of the working directory."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "frontend"
    return packaged if (packaged / "index.html").is_file() else here.parent / "frontend"


STATIC_DIR = _frontend_dir()
INT_MAX = 2**31 - 1
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def parse_int(name: str, raw: str, lo: int, hi: int, status: int = 400) -> int:
    """A decimal integer in lo..hi (ASCII digits only: no "+", "_", spaces or exponents)."""
    if not re.fullmatch(r"-?[0-9]{1,12}", raw):
        raise SummitError(f"{name} must be an integer, got {raw!r}", status=status)
    v = int(raw)
    if not lo <= v <= hi:
        raise SummitError(f"{name} must be in {lo}..{hi}, got {v}", status=status)
    return v


HOST_RE = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\.?))(?::[0-9]{1,5})?")


def _canonical(name: str) -> str:
    """A host name lower-cased without its trailing dot; an IPv6 address in its short form."""
    name = name.lower().rstrip(".")
    try:
        return str(ipaddress.IPv6Address(name))
    except ValueError:
        return name


def host_name(header: str) -> str | None:
    """The host of a Host header ("[::1]:5000" -> "::1", "Example.org.:80" -> "example.org"), None
    unless the whole header is one host and an optional port (RFC 9110: no user info, paths,
    lists, or anything after a bracketed address)."""
    m = HOST_RE.fullmatch(header.strip(" \t").lower())
    if m is None:
        return None
    if m["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(m["v6"]))
        except ValueError:
            return None
    return _canonical(m["name"])


class HostCheck:
    """Which Host headers the server answers: loopback names, the bound address, ``--allow-host``
    names, and when bound to every interface also IP literals and this machine's names. A page
    on another domain that rebinds its DNS to this address sends its own name and is refused."""

    def __init__(self, bound: str = "127.0.0.1", allow: Iterable[str] = ()) -> None:
        self.wildcard = bound in WILDCARD_HOSTS
        names = {*LOOPBACK_NAMES, _canonical(bound.strip("[]")), *(_canonical(a.strip("[]")) for a in allow)}
        if self.wildcard:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = frozenset(n for n in names if n)

    def __call__(self, header: str) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        if self.wildcard:
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False


class Memo:
    """Thread-safe LRU memo of ``fn(*key)`` that computes each key once, even when concurrent
    requests ask for it at the same time (they wait for the first one); errors are not kept.
    Bounded by `maxsize` entries and, with `weigh`, by `max_weight` in total. ``get(key, compute)``
    remembers ``compute()`` under ``key`` (fn may then be None)."""

    def __init__(self, fn: Callable[..., Any] | None, maxsize: int, weigh: Callable[[Any], int] | None = None,
                 max_weight: int = 0) -> None:
        self.fn = fn
        self.maxsize = maxsize
        self.weigh = weigh
        self.max_weight = max_weight
        self.weight = 0
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._done: OrderedDict[Hashable, Any] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}

    def __call__(self, *key: Hashable) -> Any:
        return self.get(key, lambda: self.fn(*key))

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key``'s value is kept (not counted as a hit)."""
        with self._lock:
            return key in self._done

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._done:
                self.hits += 1
                self._done.move_to_end(key)
                return self._done[key]
            pending = self._pending.get(key)
            if pending is None:
                self.misses += 1
                fut: Future = Future()
                self._pending[key] = fut
        if pending is not None:
            return pending.result()
        try:
            value = compute()
        except BaseException as e:
            with self._lock:
                del self._pending[key]
            fut.set_exception(e)
            raise
        with self._lock:
            self._done[key] = value
            self.weight += self.weigh(value) if self.weigh else 0
            while len(self._done) > self.maxsize or (self.weigh and self.weight > self.max_weight
                                                     and len(self._done) > 1):
                _, old = self._done.popitem(last=False)
                self.weight -= self.weigh(old) if self.weigh else 0
            del self._pending[key]
        fut.set_result(value)
        return value


def nbytes(value: Any) -> int:
    """Bytes of the numpy arrays in a value: its own, or those of its fields (dataclasses,
    tuples, lists; nested), each array counted once."""
    seen: dict[int, int] = {}

    def walk(v: Any) -> None:
        if isinstance(v, np.ndarray):
            seen[id(v)] = v.nbytes
        elif isinstance(v, (tuple, list)):
            for x in v:
                walk(x)
        elif hasattr(v, "__dataclass_fields__"):
            for x in vars(v).values():
                walk(x)

    walk(value)
    return sum(seen.values())


class BuildGate:
    """At most `running` graph builds at a time; others wait their turn while the work queued
    stays within `queue` units (a build's `cost`: the server counts one per re-cut and more for a
    class whose full graph is not in memory); beyond, a build is refused at once with a 503
    ``SummitError``, so that a burst is answered in about a second, not after minutes in a queue."""

    def __init__(self, running: int = 1, queue: int = 64) -> None:
        if running < 1 or queue < 0:
            raise SummitError(f"need running >= 1 builds and queue >= 0, got {running} and {queue}")
        self.running, self.queue = running, queue
        self.active = self.waiting = self.queued = self.refused = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self, cost: int = 1) -> Iterator[None]:
        """Hold one of the `running` slots while the block runs, waiting for it if the queue has
        room for `cost` (newcomers queue behind those waiting)."""
        with self._cond:
            if self.active >= self.running or self.waiting:
                if self.queued + cost > self.queue:
                    self.refused += 1
                    raise SummitError(f"server busy: {self.active} graph build(s) running and {self.waiting} "
                                      f"waiting; retry in a moment", status=503)
                self.waiting += 1
                self.queued += cost
                try:
                    while self.active >= self.running:
                        self._cond.wait()
                finally:
                    self.waiting -= 1
                    self.queued -= cost
            self.active += 1
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify()


def unit_file(p: Path | None, missing: str, mimetype: str, max_age: int) -> Response:
    """A unit's image file (checked to be inside the run), or a 404 saying what is missing."""
    if p is None:
        raise SummitError(missing, status=404)
    return send_file(p, mimetype=mimetype, max_age=max_age)
