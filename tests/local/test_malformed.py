"""Malformed requests get a 4xx naming the problem, never a 500 or a dead worker, nor an error of the release."""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from deployer.local.provider import LocalProvider

from .models import e2e_home_fixture, local_provider  # noqa: F401 - a fixture
from .serving_kit import deploy, fresh_post, workers

MB = 1024 * 1024

CORPUS: list[tuple[str, bytes, int]] = [
    ("invalid JSON", b"{not json", 400),
    ("empty body", b"", 400),
    ("NaN literal", b"[[NaN, 1, 2, 3]]", 400),
    ("a string body", b'"hello"', 400),
    ("an object without instances", b'{"rows": [[1, 2, 3, 4]]}', 400),
    ("instances not a list", b'{"instances": 5}', 400),
    ("no rows", b"[]", 422),
    ("an empty row", b"[[]]", 422),
    ("wrong feature count", b"[[1, 2, 3]]", 422),
    ("too many features", b"[[1, 2, 3, 4, 5]]", 422),
    ("ragged rows", b"[[1, 2, 3, 4], [1, 2]]", 422),
    ("one flat row", b"[1, 2, 3, 4]", 422),
    ("rows of rows", b"[[[1, 2, 3, 4]]]", 422),
    ("strings", b'[["a", "b", "c", "d"]]', 422),
    ("numeric strings", b'[["1", "2", "3", "4"]]', 422),
    ("a null", b"[[1, null, 3, 4]]", 422),
    ("an object in a row", b'[[1, {"x": 2}, 3, 4]]', 422),
    ("records without feature names", b'[{"x0": 1, "x1": 2, "x2": 3, "x3": 4}]', 422),
]


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
    try:
        conn.request("POST", "/predict", body=body, headers={"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_malformed_corpus_gets_4xx_and_the_worker_stays_healthy(
    provider: LocalProvider, model_dirs: dict[str, Path]
) -> None:
    url = deploy(provider, model_dirs["a"], replicas=1)
    before = workers(provider)
    for what, body, expected in CORPUS:
        status, raw = _post(url, body)
        assert status == expected, (what, status, raw)
        assert b'"message"' in raw, (what, raw)

    # 50 MB, declared up front and streamed without a length: 413, read in linear time
    big = b"[" + b"[0.5, 0.5, 0.5, 0.5]," * (50 * MB // 21) + b"[0, 0, 0, 0]]"
    t0 = time.monotonic()
    status, raw = _post(url, big)
    took = time.monotonic() - t0
    assert status == 413 and b"too_large" in raw and took < 10, (status, took)

    def chunks() -> Any:
        for i in range(0, len(big), MB):
            yield big[i : i + MB]

    with httpx.Client(timeout=30) as client:
        r = client.post(f"{url}/predict", content=chunks())
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    # the same worker still serves, answers good rows, and counted no error against the release
    assert workers(provider) == before
    assert fresh_post(url, [[1, 0, 0, 0], [-1, 0, 0, 0]]) == (200, {"predictions": [1, 0], "release": "r0001"})
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/health").status_code == 200
        m = client.get("/metrics").json()["releases"]["r0001"]
    assert (m["requests"], m["errors"], m["rejected"]) == (1, 0, len(CORPUS) + 2), m
    metrics = provider.metrics("svc", "r0001", 60)
    assert (metrics.requests, metrics.errors) == (1, 0)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_schemathesis_finds_no_server_error_against_the_served_openapi(
    provider: LocalProvider, model_dirs: dict[str, Path]
) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    url = deploy(provider, model_dirs["a"], replicas=1)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    seen: list[tuple[str, int]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.path == "/predict":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            examples = 25 if operation.path == "/predict" else 5

            @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                response = case.call(base_url=url, timeout=10)
                seen.append((case.path, response.status_code))
                assert response.status_code < 500, (case.method, case.path, case.body, response.text)

            check()
    paths = {p for p, _ in seen}
    assert {"/predict", "/invocations", "/metrics", "/ready"} <= paths
    assert any(s == 200 for p, s in seen if p == "/predict"), "no valid prediction was generated"
    assert any(400 <= s < 500 for p, s in seen if p == "/predict")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_malformed_requests_do_not_make_guard_roll_back_a_healthy_release(
    e2e_home: Path, model_dirs: dict[str, Path]
) -> None:
    """100 malformed requests among 2,000 good ones are the callers' errors: the guard keeps the release."""
    import deployer
    from deployer.spec import Spec

    def spec(model: str) -> Spec:
        return Spec.model_validate({"name": "churn", "model": {"path": str(model_dirs[model]), "flavor": "sklearn"}})

    deployer.apply(spec("a"))
    url = deployer.apply(spec("b")).url
    assert url
    bad = [body for _, body, _ in CORPUS]
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=url, timeout=10, headers={"content-type": "application/json"}) as client:
        for i in range(2100):
            body = bad[i // 21 % len(bad)] if i % 21 == 20 else orjson.dumps([[i % 7 - 3, 0.5, 1.0, -1.0]])
            status = client.post("/predict", content=body).status_code
            statuses[status] = statuses.get(status, 0) + 1
    assert statuses[200] == 2000 and sum(n for s, n in statuses.items() if 400 <= s < 500) == 100, statuses
    time.sleep(1.0)  # one metrics flush

    report = deployer.guard("churn", max_error_rate=0.01, window="60s", min_samples=10)
    assert (report.outcome, report.exit_code, report.release) == ("healthy", 0, "r0002"), report
    metrics = local_provider(e2e_home).metrics("churn", "r0002", 60)
    assert (metrics.requests, metrics.errors) == (2000, 0)
