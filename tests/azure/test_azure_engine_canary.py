"""Canaries on Azure ML through the engine, with gates fed by the Azure Monitor metrics the fake publishes
(after its delay) from the requests it really served: a healthy candidate is promoted, a candidate whose
scoring fails is rolled back with the previous release serving everything."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from armfake import ArmFake
from helpers import make_provider

from deployer.errors import GateFailedError
from deployer.ledger import Ledger
from deployer.testing import ConformanceTarget, Harness, make_model

pytestmark = pytest.mark.timeout(180)
EP = "canary-az"
CANARY = {"type": "canary", "steps": [{"weight": 50, "bake_s": 4}, {"weight": 100, "bake_s": 2}]}
LATENESS = {"metrics_granularity_s": 1, "metrics_delay_s": 0.5}
"""The fake publishes per second, half a second late: the provider is told so (real Azure Monitor: 60 s, 180 s)."""
GATES = [{"type": "metric", "metric": "error_rate", "max": 0.05, "min_samples": 5}]


class Traffic:
    """Callers sending real scoring requests through a provider of their own, until stopped."""

    def __init__(self, provider: Any) -> None:
        self.provider, self.stop, self.statuses = provider, threading.Event(), []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.statuses.append(self.provider.invoke(EP, [[0.2, -0.1, 0.4, 0.3]]).status)
            except Exception:  # the endpoint may be mid-update; callers retry
                self.statuses.append(-1)
            self.stop.wait(0.02)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.mark.parametrize("n_features, promoted", [(4, True), (3, False)])
def test_canary_gates_read_azure_monitor(
    arm: ArmFake, azure_target: ConformanceTarget, tmp_path: Path, n_features: int, promoted: bool
) -> None:
    arm.metrics.delay_s = 0.5
    ct = azure_target
    h = Harness(ct.ledger_path)
    h.deploy(ct.spec(EP, make_model(tmp_path / "m", 1)))
    candidate = make_model(tmp_path / "m2", 2, n_features)  # 3 features: every request fails in its score.py
    v2 = ct.spec(EP, candidate, strategy=CANARY, gates=GATES, provider_options={**ct.provider_options, **LATENESS})
    with Traffic(make_provider(tmp_path / "callers")) as callers:
        if promoted:
            assert h.deploy(v2).release == "r0002"
        else:
            with pytest.raises(GateFailedError, match="error_rate"):
                h.deploy(v2)
    ledger = Ledger(ct.ledger_path)
    try:
        rows = {r.id: r for r in ledger.releases(EP)}
    finally:
        ledger.close()
    obs = h.recorder.observe(EP) if h.recorder else None
    assert obs is not None
    if promoted:
        assert rows["r0002"].status == "live" and obs.traffic.weights == {"r0002": 100}
    else:
        assert rows["r0002"].status == "failed" and rows["r0001"].status == "live"
        assert obs.traffic.weights == {"r0001": 100}
        failed = [e for e in rows["r0002"].evidence if e["outcome"] == "fail"]
        assert failed and failed[0]["observed"]["requests"] >= 5
        assert 500 in callers.statuses  # callers routed to the canary saw its failures, then it was pulled
