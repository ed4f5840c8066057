"""The ASGI app over real HTTP on 127.0.0.1 (uvicorn in a thread), with stand-in models."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from deployer.serving.app import ServingApp
from deployer.serving.routing import Routing

from .asgi import serve

pytestmark = pytest.mark.timeout(60)


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def predict(self, rows: Any) -> Any:
        return np.array([self.name] * len(rows), dtype=object) if self.name == "obj" else np.full(len(rows), 7)


class Boom:
    def predict(self, rows: Any) -> Any:
        raise RuntimeError("model exploded")


def test_predict_list_and_instances_and_numpy() -> None:
    app = ServingApp(Routing({"r0001": Named("n")}, {"r0001": 100}))
    with serve(app) as c:
        r = c.post("/predict", content=b"[[1, 2], [3, 4]]")
        assert r.status_code == 200
        assert r.json() == {"predictions": [7, 7], "release": "r0001"}
        assert r.headers["x-deployer-release"] == "r0001"
        assert c.post("/predict", json={"instances": [[1, 2]]}).json()["predictions"] == [7]
        assert c.post("/invocations", json=[[1]]).json()["predictions"] == [7]


def test_object_arrays_are_serialised() -> None:
    app = ServingApp(Routing({"r0001": Named("obj")}, {"r0001": 100}))
    with serve(app) as c:
        assert c.post("/predict", json=[[1], [2]]).json()["predictions"] == ["obj", "obj"]


def test_weights_are_honoured_within_tolerance() -> None:
    routing = Routing({"r0001": Named("a"), "r0002": Named("b"), "r0003": Named("c")}, {"r0001": 70, "r0002": 30})
    with serve(ServingApp(routing)) as c:
        seen = Counter(c.post("/predict", json=[[1]]).json()["release"] for _ in range(1000))
    assert set(seen) == {"r0001", "r0002"}, "a release at weight 0 gets no traffic"
    assert 0.25 <= seen["r0002"] / 1000 <= 0.35, seen


def test_pick_distribution_is_exact_for_a_uniform_draw() -> None:
    routing = Routing({"a": Named("a"), "b": Named("b")}, {"a": 25, "b": 75})
    picks = Counter(routing.pick(lambda u=u: u / 1000) for u in range(1000))  # type: ignore[misc]
    assert picks == {"a": 250, "b": 750}


def test_header_targets_a_release_even_at_weight_zero_and_404_when_unknown() -> None:
    routing = Routing({"r0001": Named("a"), "r0002": Named("b")}, {"r0001": 100, "r0002": 0})
    with serve(ServingApp(routing)) as c:
        r = c.post("/predict", json=[[1]], headers={"x-deployer-release": "r0002"})
        assert r.status_code == 200 and r.json()["release"] == "r0002"
        r = c.post("/predict", json=[[1]], headers={"x-deployer-release": "r0009"})
        assert r.status_code == 404 and r.json()["error"] == "unknown_release"


def test_bad_json_is_400_and_model_error_is_500_counted() -> None:
    app = ServingApp(Routing({"r0001": Boom()}, {"r0001": 100}))
    with serve(app) as c:
        r = c.post("/predict", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"] == "bad_json"
        assert c.post("/predict", json={"rows": []}).status_code == 400
        r = c.post("/predict", json=[[1]])
        assert r.status_code == 500 and "model exploded" in r.json()["message"]
        m = c.get("/metrics").json()["releases"]["r0001"]
        assert (m["requests"], m["errors"]) == (1, 1)


def test_token_is_required_when_configured() -> None:
    app = ServingApp(Routing({"r0001": Named("a")}, {"r0001": 100}), token="s3cret")
    with serve(app) as c:
        assert c.post("/predict", json=[[1]]).status_code == 401
        assert c.post("/predict", json=[[1]], headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.post("/predict", json=[[1]], headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200, "liveness needs no token"


def test_ready_health_ping_and_unknown_routes() -> None:
    app = ServingApp(Routing({"r0001": Named("a")}, {"r0001": 0}))
    with serve(app) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/ready").status_code == 503, "no release with weight > 0"
        assert c.post("/predict", json=[[1]]).status_code == 503
        app.routing = Routing({"r0001": Named("a")}, {"r0001": 100})
        assert c.get("/ready").status_code == 200
        assert c.get("/ping").status_code == 200
        assert c.get("/nope").status_code == 404
        assert c.get("/predict").status_code == 405


def test_metrics_counts_and_prometheus() -> None:
    routing = Routing({"r0001": Named("a"), "r0002": Named("b")}, {"r0001": 50, "r0002": 50})
    with serve(ServingApp(routing)) as c:
        for _ in range(40):
            c.post("/predict", json=[[1]])
        body = c.get("/metrics").json()["releases"]
        assert body["r0001"]["requests"] + body["r0002"]["requests"] == 40
        assert body["r0001"]["errors"] == 0 and body["r0001"]["p99_ms"] is not None
        assert sum(body["r0001"]["latency_ms_buckets"].values()) == body["r0001"]["requests"]
        assert c.get("/metrics", params={"window": "60"}).json()["window_s"] == 60
        text = c.get("/metrics", params={"format": "prometheus"}).text
        assert "# TYPE deployer_requests_total counter" in text
        assert 'deployer_request_duration_seconds_bucket{release="r0001",le="+Inf"}' in text
        total = sum(
            int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("deployer_requests_total{")
        )
        assert total == 40
