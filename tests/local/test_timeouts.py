"""Predictions never block the event loop; a slow request times out with 504; a hung worker is recycled."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployer.local.provider import LocalProvider
from deployer.local.state import pid_alive, read_json
from deployer.serving.app import ServingApp
from deployer.serving.routing import Routing
from deployer.serving.settings import Settings
from deployer.spec import Serving

from .asgi import serve
from .conftest import wait_until
from .models import ENTRYPOINTS, model_dir
from .serving_kit import deploy, fresh_post, workers


class SleepsOnMinusFive:
    """Sleeps 5 s on a row starting with -5, else answers the row's sum at once."""

    def predict(self, rows: Any) -> Any:
        if any(r[0] == -5 for r in rows):
            time.sleep(5)
        return [sum(r) for r in rows]


@pytest.mark.timeout(60)
def test_a_slow_prediction_times_out_with_504_while_everything_else_answers() -> None:
    routing = Routing(
        {"r0001": SleepsOnMinusFive(), "r0002": SleepsOnMinusFive()},
        {"r0001": 100},
        settings={"r0001": Settings(timeout_s=1.0)},
    )
    app = ServingApp(routing)
    with serve(app) as c:
        slow: dict[str, Any] = {}

        def call_slow() -> None:
            t0 = time.monotonic()
            with httpx.Client(base_url=c.base_url, timeout=10) as other:
                slow["reply"] = other.post("/predict", json=[[-5, 1]])
            slow["took"] = time.monotonic() - t0

        thread = threading.Thread(target=call_slow)
        thread.start()
        time.sleep(0.2)  # the slow prediction is running
        timings = []
        for _ in range(5):
            for method, path, body, headers in (
                ("GET", "/ready", None, {}),
                ("GET", "/health", None, {}),
                ("GET", "/metrics", None, {}),
                ("POST", "/predict", [[1, 2]], {}),
                ("POST", "/predict", [[3, 4]], {"x-deployer-release": "r0002"}),
            ):
                t0 = time.monotonic()
                r = c.request(method, path, json=body, headers=headers)
                timings.append(time.monotonic() - t0)
                assert r.status_code == 200, (path, r.status_code, r.text)
        assert "reply" not in slow, "the slow request must still be running while the others answered"
        thread.join(10)
        assert max(timings) < 0.1, f"answers took up to {max(timings) * 1000:.0f} ms while a model slept"
        assert slow["reply"].status_code == 504 and slow["reply"].json()["error"] == "timeout"
        assert 0.9 < slow["took"] < 3.0
        m = c.get("/metrics").json()["releases"]["r0001"]
        assert (m["requests"], m["errors"], m["rejected"]) == (6, 1, 0), m


@pytest.mark.timeout(90)
def test_a_hung_worker_is_recycled_without_failing_other_requests(provider: LocalProvider, tmp_path: Path) -> None:
    src = model_dir("sleepy", tmp_path / "sleepy")
    url = deploy(
        provider, src, flavor="python", entrypoint=ENTRYPOINTS["sleepy"], serving=Serving(timeout_s=0.5)
    )  # a prediction still running after 2 x 0.5 s recycles its worker
    [first] = workers(provider)
    sent: list[tuple[float, int]] = []
    stop = threading.Event()

    def steady() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                status = fresh_post(url, [[1, 2, 3]])[0]
            except OSError as e:
                status = -1
                print("transport error", e)
            sent.append((t0, status))
            time.sleep(0.01)

    thread = threading.Thread(target=steady)
    thread.start()
    try:
        time.sleep(0.5)
        hung_at = time.monotonic()
        assert fresh_post(url, [[-5, 1]])[0] == 504
        paths = provider.paths("svc")
        wait_until(lambda: (read_json(paths.state) or {}).get("recycled", 0) >= 1, 15, "the hung worker recycled")
        wait_until(lambda: workers(provider) and workers(provider) != [first], 15, "a replacement worker")
        wait_until(lambda: not pid_alive(first), 15, "the hung worker to exit")
        replaced_at = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(15)
    statuses = [s for _, s in sent]
    assert set(statuses) == {200}, statuses
    assert sum(1 for t, _ in sent if hung_at < t < replaced_at) >= 5, "too few requests while the worker was replaced"
    assert "recycled" in (read_json(provider.paths("svc").state) or {}).get("last_exit", "")
    assert fresh_post(url, [[1, 1]]) == (200, {"predictions": [2.0], "release": "r0001"})
