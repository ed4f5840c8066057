"""Canaries on SageMaker through the engine: gates fed by CloudWatch, and a platform that keeps failing."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from deployer.errors import GateFailedError, TransientError
from deployer.events import GateEvaluated
from deployer.testing import ConformanceTarget, Harness, make_model
from deployer.waiting import FakeClock

from .helpers import BUCKET, REGION, TEST_OPTIONS, ledger_rows, raw_error

pytestmark = pytest.mark.timeout(180)

CANARY = {"type": "canary", "steps": [{"weight": 20, "bake_s": 1}, {"weight": 100, "bake_s": 0}]}
CLOUDWATCH_CANARY = {"type": "canary", "steps": [{"weight": 50, "bake_s": 240}, {"weight": 100, "bake_s": 180}]}
"""A bake of a minute (CloudWatch's granularity) plus the publication delay, plus a minute of alignment; the
step at 100% bakes the shortest time plan allows (granularity + delay), since its gates are judged too."""
GATES = [
    {"type": "metric", "metric": "error_rate", "max": 0.01, "min_samples": 50},
    {"type": "metric", "metric": "p99_ms", "max": 200, "min_samples": 50},
]
PAYLOAD = json.dumps([[0.1, -0.2, 0.3, 0.4]]).encode()


class TrafficClock(FakeClock):
    """The engine's injected clock. While the engine sleeps, callers keep sending ``rate`` requests a
    second through the endpoint (SageMaker picks the variant by weight), stamped on this clock."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self._next = 0.0
        self._runtime = boto3.client("sagemaker-runtime", region_name=REGION)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        end = self.t + max(0.0, seconds)
        while self._next <= end:
            self.t = self._next
            self._next += 1.0 / self.rate
            with contextlib.suppress(ClientError):  # not InService yet, or the model failed
                self._runtime.invoke_endpoint(EndpointName="churn", Body=PAYLOAD, ContentType="application/json")
        self.t = end


@pytest.mark.parametrize("error_share, promoted", [(0.0, True), (0.2, False)], ids=["healthy", "20%-errors"])
def test_canary_gates_read_cloudwatch_published_late(
    aws_target: ConformanceTarget, tmp_path: Path, sagemaker_fake: Any, error_share: float, promoted: bool
) -> None:
    """Gates judge what the fake served, as CloudWatch publishes it: per minute, two minutes late."""
    clock = TrafficClock(rate=3.0)
    runtime = sagemaker_fake.runtime
    runtime.clock, runtime.epoch = clock, (time.time() // 60) * 60 - 3600
    if error_share:
        runtime.model_errors = {"churn-r0002": error_share}
    h = Harness(aws_target.ledger_path, clock=clock)
    h.setup = lambda provider: setattr(provider, "utcnow", runtime.utcnow)
    h.deploy(aws_target.spec("churn", make_model(tmp_path / "m", 1)))
    v2 = aws_target.spec("churn", make_model(tmp_path / "m", 2), strategy=CLOUDWATCH_CANARY, gates=GATES)
    if promoted:
        assert h.deploy(v2).release == "r0002"
    else:
        with pytest.raises(GateFailedError, match="error_rate"):
            h.deploy(v2)
    rows = ledger_rows(aws_target.ledger_path, "churn")
    obs = h.recorder.observe("churn") if h.recorder else None
    assert obs is not None
    rounds = [e for e in h.events if isinstance(e, GateEvaluated) and e.gate == "metric:error_rate"]
    judged = [e for e in rounds if e.outcome != "inconclusive"]
    assert judged and int(judged[-1].observed["requests"]) >= 50
    if promoted:
        assert rows["r0002"].status == "live" and obs.traffic.weights == {"r0002": 100}
        assert judged[-1].outcome == "pass"
    else:
        assert rows["r0002"].status == "failed" and rows["r0001"].status == "live"
        assert obs.traffic.weights == {"r0001": 100}
        assert judged[-1].outcome == "fail"
        assert float(judged[-1].observed["value"]) == pytest.approx(0.2, abs=0.05)


def test_persistent_5xx_during_a_canary_fails_cleanly(
    moto_server: str, sagemaker_fake: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    ct = ConformanceTarget(
        target={"provider": "aws", "region": REGION},
        ledger_path=tmp_path / "ledger.db",
        provider_options=TEST_OPTIONS,
        resources={"instance_type": "ml.m5.large"},
        real_predictions=False,
    )
    sent = {"n": 0}

    def unavailable(request: Any, **_: Any) -> Any:
        sent["n"] += 1
        return raw_error(request.url, 503, "ServiceUnavailable", "Service Unavailable")

    def break_traffic_changes(provider: Any) -> None:
        provider._clients.client("sagemaker").meta.events.register_first(
            "before-send.sagemaker.UpdateEndpointWeightsAndCapacities", unavailable
        )

    h = Harness(ct.ledger_path, clock=FakeClock())
    h.deploy(ct.spec("churn", make_model(tmp_path / "m", 1)))
    h.setup = break_traffic_changes
    with pytest.raises(TransientError):
        h.deploy(ct.spec("churn", make_model(tmp_path / "m", 2), strategy=CANARY))
    assert sent["n"] > 4  # botocore's retries and the core's
    rows = ledger_rows(ct.ledger_path, "churn")
    assert rows["r0002"].status == "failed" and "Service Unavailable" in (rows["r0002"].reason or "")
    assert rows["r0001"].status == "live"
    obs = h.recorder.observe("churn") if h.recorder else None
    assert obs is not None and obs.traffic.weights == {"r0001": 100}  # the previous release still serves everything
