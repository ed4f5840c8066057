"""Shadow traffic on the local provider: a mirrored release receives copies; its answers never reach callers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from deployer.local.provider import LocalProvider
from deployer.records import Traffic

from .conftest import wait, wait_until
from .models import ENTRYPOINTS, model_dir
from .serving_kit import deploy


def _metrics(url: str) -> dict[str, dict[str, int]]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return client.get("/metrics").json()["releases"]


@pytest.mark.timeout(120)
def test_a_mirrored_candidate_gets_copies_and_its_errors_never_reach_callers(
    provider: LocalProvider, tmp_path: Path
) -> None:
    assert provider.capabilities.shadow
    healthy = model_dir("healthy", tmp_path / "healthy")
    failing = model_dir("failing", tmp_path / "failing")
    url = deploy(provider, healthy, "r0001", flavor="python", entrypoint=ENTRYPOINTS["healthy"], replicas=2)
    deploy(
        provider,
        failing,
        "r0002",
        flavor="python",
        entrypoint=ENTRYPOINTS["failing"],
        replicas=2,
        traffic=Traffic(weights={"r0001": 100}),
    )
    op = provider.route("svc", Traffic(weights={"r0001": 100}, mirror={"r0002": 100}))
    assert wait(provider, op).state == "succeeded"
    obs = provider.observe("svc")
    assert obs is not None and obs.traffic.mirror == {"r0002": 100} and obs.traffic.weights == {"r0001": 100}

    with httpx.Client(base_url=url, timeout=10) as client:
        replies = [client.post("/predict", json=[[i, 1]]) for i in range(200)]
    assert [r.status_code for r in replies] == [200] * 200
    assert {r.json()["release"] for r in replies} == {"r0001"}
    assert [r.json()["predictions"] for r in replies] == [[float(i + 1)] for i in range(200)]

    def copies() -> int:
        return provider.metrics("svc", "r0002", 60).requests

    wait_until(lambda: copies() >= 200, 10, "the mirrored copies in the candidate's metrics")
    candidate = provider.metrics("svc", "r0002", 60)
    live = provider.metrics("svc", "r0001", 60)
    assert (candidate.requests, candidate.errors) == (200, 200), candidate
    assert (live.requests, live.errors) == (200, 0), live

    # a direct request to the candidate still reaches it (smoke gates) and is not mirrored again
    direct = httpx.post(f"{url}/predict", json=[[1, 1]], headers={"x-deployer-release": "r0002"}, timeout=10)
    assert direct.status_code == 500

    # removing the mirror stops the copies
    op = provider.route("svc", Traffic(weights={"r0001": 100}))
    assert wait(provider, op).state == "succeeded"
    obs = provider.observe("svc")
    assert obs is not None and obs.traffic.mirror == {}
    time.sleep(0.6)  # a flush
    before = copies()
    with httpx.Client(base_url=url, timeout=10) as client:
        assert all(client.post("/predict", json=[[1, 1]]).status_code == 200 for _ in range(50))
    time.sleep(1.2)
    assert copies() == before == 201
    assert _metrics(url)["r0001"]["errors"] == 0


@pytest.mark.timeout(120)
def test_a_slow_mirror_neither_slows_callers_nor_queues_without_bound(provider: LocalProvider, tmp_path: Path) -> None:
    healthy = model_dir("healthy", tmp_path / "healthy")
    slow = model_dir("slow", tmp_path / "slow")  # ~300 ms per request
    url = deploy(provider, healthy, "r0001", flavor="python", entrypoint=ENTRYPOINTS["healthy"])
    deploy(provider, slow, "r0002", flavor="python", entrypoint=ENTRYPOINTS["slow"], traffic=Traffic.all_to("r0001"))
    assert wait(provider, provider.route("svc", Traffic(weights={"r0001": 100}, mirror={"r0002": 100}))).state == (
        "succeeded"
    )
    took = []
    with httpx.Client(base_url=url, timeout=10) as client:
        start = time.monotonic()
        for i in range(300):
            t0 = time.monotonic()
            assert client.post("/predict", json=[[i]]).status_code == 200
            took.append(time.monotonic() - t0)
        elapsed = time.monotonic() - start
    took.sort()
    # 300 copies at 300 ms each would take 90 s: callers never waited for them
    assert elapsed < 30 and took[int(len(took) * 0.99)] < 0.25, (elapsed, took[-5:])
    time.sleep(0.6)
    copies = provider.metrics("svc", "r0002", 60).requests
    assert 0 < copies < 300, copies
