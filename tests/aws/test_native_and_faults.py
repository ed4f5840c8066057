"""Native guardrails, silent rollback, throttling inside botocore's retry loop, metrics, invoke."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import boto3
import pytest
from deployer_aws.provider import AwsProvider

from deployer.errors import TransientError
from deployer.records import ArtifactRef, Traffic
from deployer.spec import Spec

from .helpers import REGION, raw_error, release, s3_slow_down, wait

pytestmark = pytest.mark.timeout(60)


def spec(**strategy: Any) -> Spec:
    return Spec.model_validate(
        {
            "name": "churn",
            "target": {"provider": "aws", "region": REGION},
            "model": {"path": "m.joblib"},
            "strategy": {"native": True, **strategy},
            "gates": [
                {"type": "metric", "metric": "error_rate", "max": 0.02},
                {"type": "metric", "metric": "p99_ms", "max": 250},
            ],
        }
    )


def deploy(provider: AwsProvider, rid: str, artifact: ArtifactRef, traffic: Traffic | None = None) -> None:
    assert wait(provider, provider.deploy_release(release(rid, artifact), traffic or Traffic())).state == "succeeded"


def test_native_canary_sends_blue_green_policy_with_alarms(
    provider: AwsProvider, artifact: ArtifactRef, sagemaker_fake: Any
) -> None:
    deploy(provider, "r0001", artifact)
    s = spec(type="canary", steps=[{"weight": 10, "bake_s": 300}, {"weight": 100}])
    provider.validate(
        s.model_copy(
            update={
                "provider_options": {"bucket": "b-1", "role_arn": provider.options.role_arn, "sklearn_version": "1.2-1"}
            }
        )
    )
    op = provider.rollout_native(release("r0002", artifact), "r0001", s)
    assert op.kind == "native_rollout"
    dc = sagemaker_fake.updates[-1]["deployment"]
    routing = dc["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 300,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
    }
    alarms = [a["AlarmName"] for a in dc["AutoRollbackConfiguration"]["Alarms"]]
    assert alarms == ["deployer-churn-r0002-error-rate", "deployer-churn-r0002-p99"]
    cw = boto3.client("cloudwatch", region_name=REGION)
    assert {a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix="deployer-churn-")["MetricAlarms"]} == set(
        alarms
    )
    assert wait(provider, op).state == "succeeded"
    ep = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName="churn")
    assert [v["VariantName"] for v in ep["ProductionVariants"]] == ["r0001"]  # guardrails keep the name
    assert provider.observe("churn").traffic.weights == {"r0002": 100}  # type: ignore[union-attr]
    assert ep["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    # destroy removes the gate alarms too
    wait(provider, provider.destroy("churn"))
    assert cw.describe_alarms(AlarmNamePrefix="deployer-churn-")["MetricAlarms"] == []


def test_native_linear_policy(provider: AwsProvider, artifact: ArtifactRef, sagemaker_fake: Any) -> None:
    deploy(provider, "r0001", artifact)
    provider.rollout_native(release("r0002", artifact), "r0001", spec(type="linear", step_percent=25, interval_s=120))
    routing = sagemaker_fake.updates[-1]["deployment"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 120,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }


def test_silent_rollback_is_reported_failed(provider: AwsProvider, artifact: ArtifactRef, sagemaker_fake: Any) -> None:
    deploy(provider, "r0001", artifact)
    sagemaker_fake.rollback_reason = "Alarm deployer-churn-r0002-error-rate went into ALARM; rolled back."
    op = provider.rollout_native(release("r0002", artifact), "r0001", spec(type="blue-green", bake_s=60))
    status = wait(provider, op)
    assert status.state == "failed"
    assert "rolled back" in (status.message or "") and "went into ALARM" in (status.message or "")
    ep = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName="churn")
    assert ep["EndpointStatus"] == "InService"  # SageMaker itself says nothing went wrong
    assert [v["VariantName"] for v in ep["ProductionVariants"]] == ["r0001"]


def test_silent_rollback_of_a_plain_update_is_failed_too(
    provider: AwsProvider, artifact: ArtifactRef, sagemaker_fake: Any
) -> None:
    deploy(provider, "r0001", artifact)
    sagemaker_fake.rollback_reason = "Failed to launch instances for production variant r0002."
    status = wait(provider, provider.deploy_release(release("r0002", artifact), Traffic.all_to("r0001")))
    assert status.state == "failed" and "Failed to launch" in (status.message or "")


def test_throttling_on_30_percent_of_calls_still_deploys(server_provider: AwsProvider, tmp_path: Path) -> None:
    provider = server_provider
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"model bytes" * 1000)
    rng = random.Random(7)
    injected = {"n": 0, "calls": 0}

    def throttle(request: Any, **_: Any) -> Any:
        injected["calls"] += 1
        if rng.random() < 0.3:
            injected["n"] += 1
            if "/deployer-models" in request.url:
                return s3_slow_down(request.url)
            return raw_error(request.url, 400, "ThrottlingException", "Rate exceeded")
        return None

    for service in ("sagemaker", "s3", "application-autoscaling"):
        provider._clients.client(service).meta.events.register_first(f"before-send.{service}", throttle)
    artifact = provider.store().put(path, hashlib.sha256(path.read_bytes()).hexdigest())
    deploy(provider, "r0001", artifact)
    deploy(provider, "r0002", artifact, Traffic.all_to("r0001"))
    assert wait(provider, provider.route("churn", Traffic(weights={"r0001": 50, "r0002": 50}))).state == "succeeded"
    assert injected["n"] >= 3


def test_persistent_throttling_surfaces_as_transient(provider: AwsProvider) -> None:
    sm = provider._clients.client("sagemaker")
    sends = {"n": 0}

    def always(request: Any, **_: Any) -> Any:
        sends["n"] += 1
        return raw_error(request.url, 400, "ThrottlingException")

    sm.meta.events.register_first("before-send.sagemaker", always)
    with pytest.raises(TransientError) as info:
        provider.observe("churn")
    assert info.value.code == "ThrottlingException"
    assert sends["n"] == 4  # botocore's standard mode: total_max_attempts=4, then the core's turn


def test_metrics_from_cloudwatch_in_one_call(provider: AwsProvider) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    now = dt.datetime.now(dt.UTC)
    dims = [{"Name": "EndpointName", "Value": "churn"}, {"Name": "VariantName", "Value": "r0002"}]

    def put(name: str, values: list[float], unit: str = "Count") -> None:
        cw.put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": dims,
                    "Timestamp": now - dt.timedelta(seconds=30),
                    "Value": v,
                    "Unit": unit,
                }
                for v in values
            ],
        )

    put("Invocations", [40, 60])
    put("Invocation5XXErrors", [2])
    put("Invocation4XXErrors", [3])
    put("ModelLatency", [100_000.0, 120_000.0, 250_000.0], "Microseconds")
    cw.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {"MetricName": "Drift", "Dimensions": dims, "Timestamp": now - dt.timedelta(seconds=30), "Value": 0.25}
        ],
    )
    provider.options = provider.options.model_copy(update={"custom_metrics": ["Drift"]})
    calls: list[str] = []
    provider._clients.client("cloudwatch").meta.events.register(
        "before-call.*.*", lambda model, **_: calls.append(model.name)
    )
    provider.utcnow = lambda: now + dt.timedelta(seconds=180)  # read once the minute is published
    m = provider.metrics("churn", "r0002", 300)
    assert calls == ["GetMetricData"]
    assert (m.requests, m.errors) == (100, 2)
    assert m.custom["invocation_4xx_errors"] == 3 and m.custom["Drift"] == pytest.approx(0.25)
    assert m.p99_ms is not None and 100 <= m.p99_ms <= 250
    empty = provider.metrics("churn", "r0009", 300)
    assert empty.requests == 0 and empty.error_rate is None and empty.p99_ms is None


def test_invoke_targets_a_variant(provider: AwsProvider, artifact: ArtifactRef) -> None:
    deploy(provider, "r0001", artifact)
    sent: list[dict[str, Any]] = []
    provider._clients.client("sagemaker-runtime").meta.events.register(
        "before-call.sagemaker-runtime.InvokeEndpoint", lambda params, **_: sent.append(params)
    )
    resp = provider.invoke("churn", {"instances": [[1, 2]]}, release="r0001")
    assert sent[0]["headers"].get("X-Amzn-SageMaker-Target-Variant") == "r0001"
    assert json.loads(sent[0]["body"]) == {"instances": [[1, 2]]}
    assert resp.status == 500  # the real model wants 4 features: the container answers ModelError
