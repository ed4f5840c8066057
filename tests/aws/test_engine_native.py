"""Native (SageMaker deployment guardrails) rollouts through the engine, on the stricter fake:
the variant keeps its name, the alarms watch it, autoscaling is handed over and survives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deployer.errors import ProviderError
from deployer.testing import ConformanceTarget, Harness, make_model

from .helpers import REGION, ledger_rows

pytestmark = pytest.mark.timeout(180)

NATIVE = {"type": "canary", "native": True, "steps": [{"weight": 10, "bake_s": 240}, {"weight": 100, "bake_s": 0}]}
GATES = [{"type": "metric", "metric": "error_rate", "max": 0.05, "min_samples": 20}]
AUTO_V1 = {"min": 1, "max": 3, "target_value": 100}
AUTO_V2 = {"min": 2, "max": 5, "target_value": 150}


@pytest.fixture
def ct(aws_target: ConformanceTarget) -> ConformanceTarget:
    return aws_target


def _scalable() -> list[tuple[str, int, int]]:
    aas = boto3.client("application-autoscaling", region_name=REGION)
    found = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    return [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in found]


def _served() -> tuple[list[str], list[str]]:
    """(variant names, model names) of the endpoint's current config."""
    sm = boto3.client("sagemaker", region_name=REGION)
    ep = sm.describe_endpoint(EndpointName="churn")
    cfg = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    return [v["VariantName"] for v in ep["ProductionVariants"]], [v["ModelName"] for v in cfg["ProductionVariants"]]


def test_native_canary_promotes_then_alarm_rolls_back(
    ct: ConformanceTarget, tmp_path: Path, sagemaker_fake: Any
) -> None:
    h = Harness(ct.ledger_path)
    h.deploy(ct.spec("churn", make_model(tmp_path / "m", 1), autoscaling=AUTO_V1))
    assert _scalable() == [("endpoint/churn/variant/r0001", 1, 3)]

    out = h.deploy(ct.spec("churn", make_model(tmp_path / "m", 2), strategy=NATIVE, gates=GATES, autoscaling=AUTO_V2))
    assert out.outcome == "deployed" and out.release == "r0002"
    assert h.recorder is not None and h.recorder.calls["rollout_native"] == 1 and h.recorder.calls["route"] == 0
    update = sagemaker_fake.updates[-1]
    assert update["deployment"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert update["deployment"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "deployer-churn-r0002-error-rate"}
    ]
    # the variant keeps its name; the release is read from its model and config tags
    assert _served() == (["r0001"], ["churn-r0002"])
    observed = h.recorder.observe("churn")
    assert observed is not None and set(observed.releases) == {"r0002"} and observed.traffic.weights == {"r0002": 100}
    rows = ledger_rows(ct.ledger_path, "churn")
    assert observed.releases["r0002"].fingerprint == rows["r0002"].fingerprint
    assert rows["r0002"].status == "live" and rows["r0001"].status == "superseded"
    # the alarm watches the variant that serves the new release
    cw = boto3.client("cloudwatch", region_name=REGION)
    alarm = cw.describe_alarms(AlarmNames=["deployer-churn-r0002-error-rate"])["MetricAlarms"][0]
    dims = {
        d["Name"]: d["Value"]
        for m in alarm["Metrics"]
        if "MetricStat" in m
        for d in m["MetricStat"]["Metric"]["Dimensions"]
    }
    assert dims == {"EndpointName": "churn", "VariantName": "r0001"}
    # the new release got its autoscaling on the (same) variant
    assert _scalable() == [("endpoint/churn/variant/r0001", 2, 5)]
    assert h.recorder.invoke("churn", [[0.5] * 4]).body["release"] == "r0002"

    # an alarm fires during the next rollout: SageMaker rolls back to r0002, autoscaling comes back
    sagemaker_fake.rollback_reason = "Alarm deployer-churn-r0003-error-rate went into ALARM; rolled back."
    with pytest.raises(ProviderError, match="rolled back r0003.*went into ALARM"):
        h.deploy(ct.spec("churn", make_model(tmp_path / "m", 3), strategy=NATIVE, gates=GATES, autoscaling=AUTO_V2))
    rows = ledger_rows(ct.ledger_path, "churn")
    assert rows["r0003"].status == "failed" and "went into ALARM" in (rows["r0003"].reason or "")
    assert rows["r0002"].status == "live"
    assert _served() == (["r0001"], ["churn-r0002"])
    assert _scalable() == [("endpoint/churn/variant/r0001", 2, 5)]
    observed = h.recorder.observe("churn")
    assert observed is not None and observed.traffic.weights == {"r0002": 100}
    assert h.recorder.invoke("churn", [[0.5] * 4]).body["release"] == "r0002"
    # retiring the failed candidate (SageMaker already removed it) is done at once, twice, and takes its alarms
    assert h.recorder.retire_release("churn", "r0003").done and h.recorder.retire_release("churn", "r0003").done
    assert not cw.describe_alarms(AlarmNamePrefix="deployer-churn-r0003-")["MetricAlarms"]
    assert _scalable() == [("endpoint/churn/variant/r0001", 2, 5)]  # the live release keeps its autoscaling


def test_fake_refuses_what_guardrails_refuse(ct: ConformanceTarget, tmp_path: Path) -> None:
    """A guarded update that renames the variant, or touches a variant that is still a scalable target."""
    h = Harness(ct.ledger_path)
    h.deploy(ct.spec("churn", make_model(tmp_path / "m", 1), autoscaling=AUTO_V1))
    sm = boto3.client("sagemaker", region_name=REGION)
    current = sm.describe_endpoint(EndpointName="churn")["EndpointConfigName"]
    variant = sm.describe_endpoint_config(EndpointConfigName=current)["ProductionVariants"][0]
    renamed = {**variant, "VariantName": "blue"}
    renamed.pop("VariantStatus", None)
    sm.create_endpoint_config(EndpointConfigName="churn-renamed", ProductionVariants=[renamed])
    guarded = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        }
    }
    with pytest.raises(ClientError, match="same names"):
        sm.update_endpoint(EndpointName="churn", EndpointConfigName="churn-renamed", DeploymentConfig=guarded)
    with pytest.raises(ClientError, match="scalable targets"):
        sm.update_endpoint(EndpointName="churn", EndpointConfigName=current, DeploymentConfig=guarded)
