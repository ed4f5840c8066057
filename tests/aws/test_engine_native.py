"""The engine running a native (SageMaker guardrails) rollout end to end, through the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.errors import ProviderError
from deployer.ledger import Ledger
from deployer.testing import ConformanceTarget, Harness, make_model

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ct(aws_target: ConformanceTarget) -> ConformanceTarget:
    return aws_target


NATIVE = {"type": "canary", "native": True, "steps": [{"weight": 10, "bake_s": 60}, {"weight": 100, "bake_s": 0}]}


def _rows(ct: ConformanceTarget, name: str) -> dict[str, Any]:
    ledger = Ledger(ct.ledger_path)
    try:
        return {r.id: r for r in ledger.releases(name)}
    finally:
        ledger.close()


def test_native_canary_is_promoted(ct: ConformanceTarget, tmp_path: Path, sagemaker_fake: Any) -> None:
    h = Harness(ct.ledger_path)
    h.deploy(ct.spec("churn", make_model(tmp_path / "m", 1)))
    out = h.deploy(ct.spec("churn", make_model(tmp_path / "m", 2), strategy=NATIVE))
    assert out.outcome == "deployed" and out.release == "r0002"
    assert h.recorder is not None and h.recorder.calls["rollout_native"] == 1 and h.recorder.calls["route"] == 0
    policy = sagemaker_fake.updates[-1]["deployment"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    rows = _rows(ct, "churn")
    assert rows["r0002"].status == "live" and rows["r0001"].status == "superseded"


def test_silent_platform_rollback_is_recorded_as_failed(
    ct: ConformanceTarget, tmp_path: Path, sagemaker_fake: Any
) -> None:
    h = Harness(ct.ledger_path)
    h.deploy(ct.spec("churn", make_model(tmp_path / "m", 1)))
    sagemaker_fake.rollback_reason = "Alarm deployer-churn-r0002-error-rate went into ALARM; rolled back."
    with pytest.raises(ProviderError, match="rolled back r0002.*went into ALARM"):
        h.deploy(ct.spec("churn", make_model(tmp_path / "m", 2), strategy=NATIVE))
    rows = _rows(ct, "churn")
    assert rows["r0002"].status == "failed" and "went into ALARM" in (rows["r0002"].reason or "")
    assert rows["r0001"].status == "live"
    obs = h.recorder.observe("churn") if h.recorder else None
    assert obs is not None and obs.traffic.weights == {"r0001": 100}
