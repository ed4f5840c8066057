"""Adaptive micro-batching over real HTTP: concurrent requests share predict calls, each caller gets its own rows."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from deployer.serving.app import ServingApp
from deployer.serving.batching import Lane
from deployer.serving.inputs import Contract
from deployer.serving.loader import SklearnPredictor
from deployer.serving.routing import Routing
from deployer.serving.settings import Settings

from .asgi import serve

pytestmark = pytest.mark.timeout(60)


class Tagged:
    """Returns each row's tag (its first value) times 10; a negative tag makes the whole call fail.

    It records the size of every call and takes 20 ms per call, so concurrent requests pile up.
    """

    batchable = True
    contract = Contract(numeric=True, width=2)

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def predict(self, x: Any) -> Any:
        with self.lock:
            self.calls.append(len(x))
        time.sleep(0.02)
        if (x[:, 0] < 0).any():
            raise ValueError("negative tag")
        return x[:, 0] * 10


async def _post_all(base: str, bodies: list[Any]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=base, timeout=20, limits=limits) as client:
        return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))


def _base(c: httpx.Client) -> str:
    return str(c.base_url).rstrip("/")


def test_64_concurrent_callers_each_get_their_own_row_and_batches_form() -> None:
    model = Tagged()
    app = ServingApp(Routing({"r0001": model}, {"r0001": 100}))
    with serve(app) as c:
        bodies = [[[float(tag), 1.0]] for tag in range(64)]
        replies = asyncio.run(_post_all(_base(c), bodies))
        assert [r.status_code for r in replies] == [200] * 64
        assert [r.json()["predictions"] for r in replies] == [[tag * 10.0] for tag in range(64)]
        assert max(model.calls) > 1, f"no batch formed: {model.calls}"
        assert sum(model.calls) == 64 and len(model.calls) < 64
        sizes = c.get("/metrics").json()["releases"]["r0001"]["batch_sizes"]
        assert sum(sizes.values()) == len(model.calls) and sizes["1"] < len(model.calls)


def test_a_bad_row_fails_only_its_own_request() -> None:
    model = Tagged()
    app = ServingApp(Routing({"r0001": model}, {"r0001": 100}))
    with serve(app) as c:
        bodies = [[[float(tag), 1.0]] for tag in range(40)]
        bodies[17] = [[-1.0, 1.0]]
        replies = asyncio.run(_post_all(_base(c), bodies))
        failed = [i for i, r in enumerate(replies) if r.status_code != 200]
        assert failed == [17], [(i, replies[i].status_code) for i in failed]
        assert replies[17].status_code == 500 and "negative tag" in replies[17].json()["message"]
        ok = [r.json()["predictions"] for i, r in enumerate(replies) if i != 17]
        assert ok == [[tag * 10.0] for tag in range(40) if tag != 17]
        assert max(model.calls) > 1, "the bad row must have shared a batch for this test to mean anything"
        m = c.get("/metrics").json()["releases"]["r0001"]
        assert (m["requests"], m["errors"]) == (40, 1)


def test_sklearn_model_batched_gives_each_caller_exactly_its_rows() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    model = LinearRegression().fit(x, x @ rng.normal(size=5))
    predictor = SklearnPredictor(model)
    app = ServingApp(Routing({"r0001": predictor}, {"r0001": 100}, settings={"r0001": Settings(max_wait_ms=5)}))
    rows = rng.normal(size=(64, 5)).round(6)
    bodies = [[list(r)] for r in rows[:48]] + [rows[48 + 4 * i : 52 + 4 * i].tolist() for i in range(4)]
    expected = model.predict(rows)
    with serve(app) as c:
        replies = asyncio.run(_post_all(_base(c), bodies))
    got = np.concatenate([np.asarray(r.json()["predictions"]) for r in replies])
    assert got.shape == (64,)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_python_models_are_not_batched_unless_they_say_so() -> None:
    class Plain(Tagged):
        batchable = False

    model = Plain()
    with serve(ServingApp(Routing({"r0001": model}, {"r0001": 100}))) as c:
        replies = asyncio.run(_post_all(_base(c), [[[float(t), 1.0]] for t in range(16)]))
    assert all(r.status_code == 200 for r in replies) and set(model.calls) == {1}


def test_a_shadow_lane_drops_copies_beyond_its_capacity() -> None:
    release = threading.Event()

    def blocked(x: Any) -> Any:
        release.wait(10)
        return x[:, 0]

    async def scenario() -> tuple[list[bool], list[Any]]:
        pool = ThreadPoolExecutor(1)
        lane = Lane(blocked, pool, batching=True, max_batch=4, concurrency=1, capacity=8)
        futures = [lane.offer(np.array([[float(i)]]), 1) for i in range(20)]
        await asyncio.sleep(0.05)
        release.set()
        kept = [f for f in futures if f is not None]
        results = await asyncio.gather(*kept)
        pool.shutdown()
        return [f is not None for f in futures], results

    accepted, results = asyncio.run(scenario())
    # the first copy runs at once; eight more queue; the rest are dropped, never queued
    assert accepted == [True] * 9 + [False] * 11
    assert [float(r[0]) for r in results] == [float(i) for i in range(9)]
