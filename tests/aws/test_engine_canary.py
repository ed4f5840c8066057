"""Canaries on SageMaker through the engine: gates fed by CloudWatch, and a platform that keeps failing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from deployer.errors import GateFailedError, TransientError
from deployer.ledger import Ledger
from deployer.testing import ConformanceTarget, Harness, make_model
from deployer.waiting import FakeClock

from .helpers import BUCKET, REGION, TEST_OPTIONS, raw_error

pytestmark = pytest.mark.timeout(180)

CANARY = {"type": "canary", "steps": [{"weight": 20, "bake_s": 1}, {"weight": 100, "bake_s": 0}]}
GATES = [
    {"type": "metric", "metric": "error_rate", "max": 0.01, "min_samples": 50},
    {"type": "metric", "metric": "p99_ms", "max": 200, "min_samples": 50},
]


def put_variant_metrics(
    endpoint: str, variant: str, requests_: int, errors: int, latency_ms: float, endpoint_url: str | None = None
) -> None:
    """What SageMaker would publish for the variant in the last minute."""
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=endpoint_url)
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    now = dt.datetime.now(dt.UTC)
    cw.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": now, "Value": requests_, "Unit": "Count"},
            {
                "MetricName": "Invocation5XXErrors",
                "Dimensions": dims,
                "Timestamp": now,
                "Value": errors,
                "Unit": "Count",
            },
            {"MetricName": "Invocation4XXErrors", "Dimensions": dims, "Timestamp": now, "Value": 0, "Unit": "Count"},
            *(
                {
                    "MetricName": "ModelLatency",
                    "Dimensions": dims,
                    "Timestamp": now,
                    "Value": latency_ms * 1000,
                    "Unit": "Microseconds",
                }
                for _ in range(5)
            ),
        ],
    )


def _ledger_rows(path: Path, name: str) -> dict[str, Any]:
    ledger = Ledger(path)
    try:
        return {r.id: r for r in ledger.releases(name)}
    finally:
        ledger.close()


@pytest.mark.parametrize("errors, promoted", [(0, True), (30, False)])
def test_canary_gates_read_cloudwatch(
    aws_target: ConformanceTarget, tmp_path: Path, errors: int, promoted: bool
) -> None:
    ct = aws_target
    h = Harness(ct.ledger_path)
    h.deploy(ct.spec("churn", make_model(tmp_path / "m", 1)))
    put_variant_metrics("churn", "r0002", 200, errors, latency_ms=40)
    v2 = ct.spec("churn", make_model(tmp_path / "m", 2), strategy=CANARY, gates=GATES)
    if promoted:
        assert h.deploy(v2).release == "r0002"
    else:
        with pytest.raises(GateFailedError, match="error_rate"):
            h.deploy(v2)
    rows = _ledger_rows(ct.ledger_path, "churn")
    obs = h.recorder.observe("churn") if h.recorder else None
    assert obs is not None
    if promoted:
        assert rows["r0002"].status == "live" and obs.traffic.weights == {"r0002": 100}
    else:
        assert rows["r0002"].status == "failed" and rows["r0001"].status == "live"
        assert obs.traffic.weights == {"r0001": 100}
        failed = [e for e in rows["r0002"].evidence if e["outcome"] == "fail"]
        assert failed and failed[0]["observed"]["requests"] == 200


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
    rows = _ledger_rows(ct.ledger_path, "churn")
    assert rows["r0002"].status == "failed" and "Service Unavailable" in (rows["r0002"].reason or "")
    assert rows["r0001"].status == "live"
    obs = h.recorder.observe("churn") if h.recorder else None
    assert obs is not None and obs.traffic.weights == {"r0001": 100}  # the previous release still serves everything
