"""The local provider end to end: real supervisor and worker processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import joblib
import pytest

from deployer.errors import CapabilityError, ConflictError, NotFoundError, SpecError
from deployer.local.provider import LocalProvider
from deployer.local.state import Paths, pid_alive, read_json
from deployer.records import Traffic
from deployer.spec import Autoscaling, ModelSource, Spec

from .conftest import release_for, train, wait, wait_until

pytestmark = pytest.mark.timeout(120)

POS, NEG = [[2.0, 0, 0, 0]], [[-2.0, 0, 0, 0]]


def worker_pids(provider: LocalProvider, endpoint: str = "churn") -> list[int]:
    state = read_json(provider.paths(endpoint).state) or {}
    return [int(p) for p in state.get("workers", [])]


def test_validate_options_and_capabilities(provider: LocalProvider) -> None:
    def spec(**opts: object) -> Spec:
        return Spec(name="churn", model=ModelSource(path="m.joblib"), provider_options=opts)

    provider.validate(spec())
    provider.validate(spec(host="0.0.0.0", token="t"))
    with pytest.raises(SpecError) as e:
        provider.validate(spec(host="0.0.0.0"))
    assert e.value.field == "provider_options.token"
    with pytest.raises(SpecError) as e:
        provider.validate(spec(prot=1))
    assert e.value.field == "provider_options.prot"
    with pytest.raises(CapabilityError):
        provider.validate(Spec(name="churn", model=ModelSource(flavor="container", image="x:1")))
    assert provider.capabilities.autoscaling is False and provider.capabilities.reason("autoscaling")
    assert provider.observe("churn") is None


def test_release_lifecycle(provider: LocalProvider, model_dirs: dict[str, Path]) -> None:
    r1 = release_for(provider, model_dirs["a"], "r0001")
    assert wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001"))).state == "succeeded"
    obs = provider.observe("churn")
    assert obs is not None and obs.status == "ready" and obs.releases["r0001"].status == "ready"
    assert obs.meta["pid"] and obs.meta["port"] and obs.url == f"http://127.0.0.1:{obs.meta['port']}"
    resp = provider.invoke("churn", POS + NEG)
    assert (resp.status, resp.body["predictions"], resp.release) == (200, [1, 0], "r0001")

    # Idempotent: the same deploy again converges without a new version.
    again = provider.deploy_release(r1, Traffic.all_to("r0001"))
    assert wait(provider, again).state == "succeeded"

    # A second release at 0 is loaded but gets no traffic until routed; the header reaches it.
    r2 = release_for(provider, model_dirs["b"], "r0002")
    op = provider.deploy_release(r2, Traffic(weights={"r0001": 100, "r0002": 0}))
    assert wait(provider, op).state == "succeeded"
    assert {provider.invoke("churn", POS).release for _ in range(20)} == {"r0001"}
    direct = provider.invoke("churn", POS, release="r0002")
    assert (direct.release, direct.body["predictions"]) == ("r0002", [0])

    assert wait(provider, provider.route("churn", Traffic(weights={"r0001": 50, "r0002": 50}))).state == "succeeded"
    seen = Counter(provider.invoke("churn", POS).release for _ in range(200))
    assert seen["r0001"] > 50 and seen["r0002"] > 50, seen
    assert provider.observe("churn").traffic.weights == {"r0001": 50, "r0002": 50}  # type: ignore[union-attr]

    def flushed() -> bool:
        m = provider.metrics("churn", "r0002", 60)
        return m.requests == seen["r0002"] + 1

    wait_until(flushed, what="metrics flushed by the workers")
    m = provider.metrics("churn", "r0002", 60)
    assert m.errors == 0 and m.p99_ms is not None and m.p50_ms is not None
    assert provider.metrics("churn", "r0009", 60).requests == 0

    with pytest.raises(NotFoundError):
        provider.route("churn", Traffic.all_to("r0009"))
    assert wait(provider, provider.route("churn", Traffic.all_to("r0002"))).state == "succeeded"
    with pytest.raises(ConflictError):
        provider.retire_release("churn", "r0002")
    assert wait(provider, provider.retire_release("churn", "r0001")).state == "succeeded"
    assert provider.retire_release("churn", "r0001").done, "retiring twice succeeds"
    obs = provider.observe("churn")
    assert obs is not None and list(obs.releases) == ["r0002"]
    assert provider.invoke("churn", POS, release="r0001").status == 404

    pids = [int(obs.meta["pid"]), *worker_pids(provider)]
    assert wait(provider, provider.destroy("churn")).state == "succeeded"
    assert not any(pid_alive(p) for p in pids), "destroy leaves no process"
    assert provider.observe("churn") is None
    assert not provider.paths("churn").root.exists()
    assert provider.destroy("churn").done, "destroying twice succeeds"


def test_scale_workers_1_3_1(provider: LocalProvider, model_dirs: dict[str, Path]) -> None:
    r1 = release_for(provider, model_dirs["a"], "r0001")
    assert wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001"))).state == "succeeded"
    assert len(worker_pids(provider)) == 1
    assert wait(provider, provider.scale("churn", "r0001", Autoscaling(min=3, max=5))).state == "succeeded"
    three = worker_pids(provider)
    assert len(three) == 3 and all(pid_alive(p) for p in three)
    assert provider.observe("churn").replicas == 3  # type: ignore[union-attr]
    assert {provider.invoke("churn", POS).status for _ in range(30)} == {200}
    assert wait(provider, provider.scale("churn", "r0001", Autoscaling(min=1, max=5))).state == "succeeded"
    one = worker_pids(provider)
    assert len(one) == 1
    wait_until(lambda: sum(pid_alive(p) for p in three) == 1, what="extra workers to exit")
    assert provider.invoke("churn", POS).status == 200


def test_traffic_changes_under_load_drop_nothing(provider: LocalProvider, model_dirs: dict[str, Path]) -> None:
    r1 = release_for(provider, model_dirs["a"], "r0001")
    r2 = release_for(provider, model_dirs["b"], "r0002")
    assert wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001"))).state == "succeeded"
    assert wait(provider, provider.scale("churn", "r0001", Autoscaling(min=2, max=2))).state == "succeeded"
    port = int(provider.observe("churn").meta["port"])  # type: ignore[union-attr]
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    releases: Counter[str] = Counter()
    failures: list[str] = []

    def load() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("POST", "/predict", body=b"[[2.0, 0, 0, 0]]")
                resp = conn.getresponse()
                resp.read()
                statuses[resp.status] += 1
                releases[resp.getheader("x-deployer-release") or "-"] += 1
            except (OSError, http.client.HTTPException) as e:
                failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        assert (
            wait(provider, provider.deploy_release(r2, Traffic(weights={"r0001": 100, "r0002": 0}))).state
            == "succeeded"
        )
        for weights in ({"r0001": 90, "r0002": 10}, {"r0001": 50, "r0002": 50}, {"r0002": 100}, {"r0001": 100}):
            assert wait(provider, provider.route("churn", Traffic(weights=weights))).state == "succeeded"
            time.sleep(0.3)
        assert wait(provider, provider.retire_release("churn", "r0002")).state == "succeeded"
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not failures, failures[:3]
    assert set(statuses) == {200}, statuses
    assert releases["r0001"] > 0 and releases["r0002"] > 0, releases


def test_second_supervisor_is_refused(provider: LocalProvider, model_dirs: dict[str, Path], tmp_path: Path) -> None:
    r1 = release_for(provider, model_dirs["a"], "r0001")
    assert wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001"))).state == "succeeded"
    paths = provider.paths("churn")
    log = tmp_path / "second.log"
    with open(log, "wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "deployer.local.supervisor", str(paths.root)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 3
    assert "already serves" in log.read_text()
    assert provider.invoke("churn", POS).status == 200, "the first one still serves"


def test_workers_restart_after_a_crash_and_die_with_the_supervisor(
    provider: LocalProvider, model_dirs: dict[str, Path]
) -> None:
    r1 = release_for(provider, model_dirs["a"], "r0001", resources={"replicas": 2})
    assert wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001"))).state == "succeeded"
    first = worker_pids(provider)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: len(set(worker_pids(provider)) - set(first)) == 1, what="a replacement worker")
    wait_until(lambda: provider.observe("churn").status == "ready", what="the endpoint ready again")  # type: ignore[union-attr]
    workers = worker_pids(provider)
    sup = int(provider.observe("churn").meta["pid"])  # type: ignore[union-attr]
    os.kill(sup, signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(p) for p in [sup, *workers]), what="workers to follow the supervisor")
    obs = provider.observe("churn")
    assert obs is not None and obs.status == "failed"
    # The next change restarts the supervisor on the same port.
    old_port = read_json(Paths(provider.paths("churn").root).state)
    assert wait(provider, provider.route("churn", Traffic.all_to("r0001"))).state == "succeeded"
    assert provider.invoke("churn", POS).status == 200
    assert old_port is None or provider.observe("churn").meta["port"] == str(old_port["port"])  # type: ignore[union-attr]


def test_load_error_fails_the_operation(provider: LocalProvider, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.joblib").write_bytes(b"not a pickle")
    r1 = release_for(provider, bad, "r0001")
    status = wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001")))
    assert status.state == "failed" and "cannot load model.joblib" in (status.message or "")
    obs = provider.observe("churn")
    assert obs is not None and obs.releases["r0001"].status == "failed" and obs.status == "degraded"


def test_token_protects_the_endpoint(provider: LocalProvider, model_dirs: dict[str, Path]) -> None:
    r1 = release_for(provider, model_dirs["a"], "r0001", options={"token": "s3cret"})
    assert wait(provider, provider.deploy_release(r1, Traffic.all_to("r0001"))).state == "succeeded"
    assert provider.invoke("churn", POS).status == 200, "invoke sends the token"
    url = provider.observe("churn").url  # type: ignore[union-attr]
    assert httpx.post(f"{url}/predict", json=POS, timeout=10).status_code == 401
    ok = httpx.post(f"{url}/predict", json=POS, headers={"authorization": "Bearer s3cret"}, timeout=10)
    assert ok.status_code == 200


def test_foreground_serve(tmp_path: Path) -> None:
    joblib.dump(train(0), tmp_path / "model.joblib")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer.local.serve", str(tmp_path / "model.joblib"), "--port", "0",
             "--workers", "2"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "serving serve on http://" in log.read_text(), timeout=60, what="the serve log line")
        url = log.read_text().split(" on ", 1)[1].split()[0]

        def answered() -> bool:
            try:
                return httpx.post(f"{url}/predict", json=POS, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answered, timeout=30, what="the first 200")
        assert httpx.post(f"{url}/predict", json=NEG, timeout=5).json()["predictions"] == [0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
