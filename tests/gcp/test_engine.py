"""The engine on gcp: two ledgers on one endpoint, and canary gates fed by the fake's Cloud Monitoring data."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from deployer.errors import ConflictError, GateFailedError
from deployer.ledger import Ledger
from deployer.testing import ConformanceTarget, Harness, make_model

from .fake_server import FakeServer

pytestmark = pytest.mark.timeout(180)


def _rows(path: Path, name: str) -> dict[str, Any]:
    ledger = Ledger(path)
    try:
        return {r.id: r for r in ledger.releases(name)}
    finally:
        ledger.close()


def test_a_second_ledger_cannot_take_the_endpoint(gcp_target: ConformanceTarget, tmp_path: Path) -> None:
    ct = gcp_target
    first = Harness(ct.ledger_path)
    first.deploy(ct.spec("churn", make_model(tmp_path / "m", 1)))
    obs = first.recorder.observe("churn") if first.recorder else None
    assert obs is not None
    fingerprint = obs.releases["r0001"].fingerprint
    second = Harness(tmp_path / "other-ledger.db")
    with pytest.raises(ConflictError, match="r0001"):
        second.deploy(ct.spec("churn", make_model(tmp_path / "m", 2)))
    after = second.recorder.observe("churn") if second.recorder else None
    assert after is not None and after.traffic.weights == {"r0001": 100}
    assert after.releases["r0001"].fingerprint == fingerprint  # still the first ledger's release
    assert _rows(ct.ledger_path, "churn")["r0001"].status == "live"


class Load:
    """Sends predictions through the endpoint (as users would) until stopped."""

    def __init__(self, provider: Any, endpoint: str, rows: list[list[float]]) -> None:
        self.provider, self.endpoint, self.rows = provider, endpoint, rows
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.provider.invoke(self.endpoint, self.rows)
            except Exception:
                self.stop.wait(0.05)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.mark.parametrize("healthy", [True, False])
def test_canary_gates_read_cloud_monitoring(
    gcp_target: ConformanceTarget, vertex: FakeServer, tmp_path: Path, healthy: bool
) -> None:
    """The candidate is judged on what the fake published about the traffic it served, after the delay.
    An unhealthy candidate is a model fitted on 3 features: real predictions with 4 features fail."""
    ct = gcp_target
    vertex.fake.metrics_delay_s = 0.5
    h = Harness(ct.ledger_path)
    h.deploy(ct.spec("churn", make_model(tmp_path / "m", 1)))
    candidate = make_model(tmp_path / "m", 2, n_features=4 if healthy else 3)
    strategy = {"type": "canary", "steps": [{"weight": 50, "bake_s": 3}, {"weight": 100, "bake_s": 2}]}
    gates = [{"type": "metric", "metric": "error_rate", "max": 0.05, "min_samples": 5, "failure_limit": 1}]
    from deployer import api

    lateness = {"metrics_granularity_s": 1, "metrics_delay_s": 0.5}  # the fake's, told to the provider
    spec = ct.spec(
        "churn", candidate, strategy=strategy, gates=gates, provider_options={**ct.provider_options, **lateness}
    )
    load_provider = api.make_provider(spec.target, spec.provider_options)
    with Load(load_provider, "churn", [[0.2, 0.1, 0.4, 0.3]]):
        if healthy:
            assert h.deploy(spec).release == "r0002"
        else:
            with pytest.raises(GateFailedError, match="error_rate"):
                h.deploy(spec)
    rows = _rows(ct.ledger_path, "churn")
    obs = h.recorder.observe("churn") if h.recorder else None
    assert obs is not None
    if healthy:
        assert rows["r0002"].status == "live" and obs.traffic.weights == {"r0002": 100}
    else:
        assert rows["r0002"].status == "failed" and rows["r0001"].status == "live"
        assert obs.traffic.weights == {"r0001": 100}
        failed = [e for e in rows["r0002"].evidence if e["outcome"] == "fail"]
        assert failed and failed[0]["observed"]["errors"] > 0
    assert vertex.fake.calls["monitoring.timeSeries.list"] > 0
