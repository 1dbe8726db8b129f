"""The server under load: per-class graph inputs remembered across settings (same JSON as without
them) and a bounded queue of graph builds answered with 503 under a real waitress server."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

from summit.graph.build import class_graph, compare_graph
from summit.graph.cache import graph_bytes
from summit.graph.edges import class_edges
from summit.serve.api import COLD_COST, Api
from summit.serve.app import create_app
from summit.serve.common import BuildGate, nbytes
from summit.serve.http import RETRY_AFTER_SECONDS, make_http_server

# settings in an order that reuses each class's inputs under other masses, steps, layers and exclusions
SETTINGS = [{}, {"mass": "0.08"}, {"mass": "0.3", "mass_step": "0.02"}, {"mass_step": "0.006"},
            {"ubiquitous": "show"}, {"ubiquitous": "show", "mass": "0.2"}, {"exclude": "fire5:3,fire9:0"},
            {"exclude": "fire5:3", "mass": "0.12"}, {"layers": "fire3,fire4,fire5"},
            {"layers": "fire3,fire4,fire5", "mass": "0.5"}, {"selection": "mass0.03"},
            {"selection": "mass0.03", "mass": "0.09"}, {"method": "topn", "top_n": "7"}, {"mass": "1"}]


def test_remembered_inputs_give_the_same_json(sample_run: Path) -> None:
    """A sequence of settings answered with the inputs cache warm is byte-identical to graphs
    built from scratch, and the cache was used (another mass only re-cuts)."""
    api = Api(sample_run)
    for i, args in enumerate(SETTINGS):
        params = api.graph_params(args, ())
        for a, b in ((0, None), (5, None), (0, 5), (11, 2)):
            warm = api._graph(a, b, params)
            cold = class_graph(api.run, a, params) if b is None else compare_graph(api.run, a, b, params)
            assert warm == graph_bytes(cold), (args, a, b)
    keys = list(api.graph_inputs._done)
    assert {k[0] for k in keys} == {"edges", "pagerank"}
    assert sum(k[0] == "edges" for k in keys) == 4  # one full graph per class, whatever the settings
    assert api.graph_inputs.hits > 2 * api.graph_inputs.misses


def test_nbytes_counts_shared_arrays_once(sample_run: Path) -> None:
    """The inputs cache's weight: a class's edges without bottlenecks share `full` and `attr`."""
    ce = class_edges(Api(sample_run).run, 0)
    arrays = {id(a): a.nbytes for e in (ce.full, ce.attr) for a in vars(e).values()}
    assert nbytes(ce) == sum(arrays.values()) > 0
    assert nbytes((ce, [ce.full])) == nbytes(ce)


def test_build_gate_refuses_beyond_its_queue() -> None:
    gate = BuildGate(running=1, queue=0)
    with gate.slot():
        with pytest.raises(Exception, match="server busy: 1 graph build.s. running and 0 waiting") as e:
            with gate.slot():
                pass
        assert e.value.status == 503
    with gate.slot():  # free again
        assert gate.active == 1
    assert (gate.active, gate.waiting, gate.refused) == (0, 0, 1)


def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urlopen(url, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_full_build_queue_answers_503_under_waitress(sample_run: Path) -> None:
    """With the one build slot held and the queue filled by one build of a class not in memory,
    concurrent requests for other computed graphs get a fast JSON 503 with Retry-After; cheap and
    remembered answers still come; once the slot is free the waiting request and a refused one are
    answered. A re-cut of a remembered class costs less: it still queues beside another re-cut."""
    app = create_app(sample_run)
    api = app.extensions["summit"]
    api.builds = BuildGate(running=1, queue=1 + COLD_COST)
    srv = make_http_server(app, "127.0.0.1", 0)
    assert srv.threads == 8 + 1 + 1 + COLD_COST  # one more per build slot and queue unit
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.server_port}"

    def wait_for(n: int, *futures: Future) -> None:
        while api.builds.waiting < n:  # the requests sent wait for the slot
            for f in futures:
                assert not f.done(), f.result()
            time.sleep(0.01)

    try:
        assert _get(f"{base}/api/graph?class=1&mass=0.2")[0] == 200  # remembered below
        with ThreadPoolExecutor(8) as pool:
            with api.builds.slot():
                first = pool.submit(_get, f"{base}/api/graph?class=2&mass=0.2")
                wait_for(1, first)
                refused = list(pool.map(_get, [f"{base}/api/graph?class={c}&mass=0.3" for c in range(3, 8)]
                                        + [f"{base}/api/compare?a=3&b=4", f"{base}/api/graph?class=1&mass=0.4"]))
                assert _get(f"{base}/api/graph?class=1&mass=0.2")[0] == 200
                assert _get(f"{base}/api/classes")[0] == 200
                assert not first.done()
            status, _, body = first.result()
            assert status == 200
            assert body == graph_bytes(class_graph(api.run, 2, api.graph_params({"mass": "0.2"}, ())))
            for status, headers, body in refused:
                assert status == 503 and headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
                assert headers["Content-Type"] == "application/json"
                assert json.loads(body)["error"].startswith("server busy: 1 graph build(s) running and 1 waiting")
            assert api.builds.refused == 7
            with api.builds.slot():  # classes 1 and 2 are in memory now: two re-cuts fit, a cold class not
                recuts = [pool.submit(_get, f"{base}/api/graph?class={c}&mass=0.5") for c in (1, 2)]
                wait_for(2, *recuts)
                assert _get(f"{base}/api/graph?class=9&mass=0.5")[0] == 503
            assert [f.result()[0] for f in recuts] == [200, 200]
        assert _get(f"{base}/api/graph?class=3&mass=0.3")[0] == 200
    finally:
        srv.shutdown()
        t.join()
