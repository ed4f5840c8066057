"""Releases, traffic, scaling, retire and destroy against moto + deployer_aws.testing."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from deployer_aws.provider import AwsProvider

from deployer.errors import ConflictError, NotFoundError
from deployer.records import ArtifactRef, Traffic
from deployer.spec import Autoscaling

from .helpers import REGION, release, wait

pytestmark = pytest.mark.timeout(60)


def sm() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


def deploy(provider: AwsProvider, rid: str, artifact: ArtifactRef, traffic: Traffic | None = None) -> None:
    op = provider.deploy_release(release(rid, artifact), traffic or Traffic())
    status = wait(provider, op)
    assert status.state == "succeeded", status.message


def test_first_release_creates_endpoint_with_variant(provider: AwsProvider, artifact: ArtifactRef) -> None:
    op = provider.deploy_release(release("r0001", artifact), Traffic())
    assert provider.poll(op).state == "running"  # Creating
    assert wait(provider, op).state == "succeeded"
    ep = sm().describe_endpoint(EndpointName="churn")
    assert ep["EndpointStatus"] == "InService"
    assert [v["VariantName"] for v in ep["ProductionVariants"]] == ["r0001"]
    model = sm().describe_model(ModelName="churn-r0001")
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == artifact.uri
    assert container["Image"].startswith("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"].endswith("/sourcedir.tar.gz")
    observed = provider.observe("churn")
    assert observed is not None and observed.status == "ready"
    assert observed.traffic.weights == {"r0001": 100}
    # idempotent: the same call again is a no-op
    again = provider.deploy_release(release("r0001", artifact), Traffic())
    assert again.done


def test_second_release_at_zero_then_route_half(provider: AwsProvider, artifact: ArtifactRef) -> None:
    deploy(provider, "r0001", artifact)
    deploy(provider, "r0002", artifact, Traffic.all_to("r0001"))
    ep = sm().describe_endpoint(EndpointName="churn")
    assert sorted(v["VariantName"] for v in ep["ProductionVariants"]) == ["r0001", "r0002"]
    observed = provider.observe("churn")
    assert observed is not None and observed.traffic.weights == {"r0001": 100}
    assert set(observed.releases) == {"r0001", "r0002"}

    op = provider.route("churn", Traffic(weights={"r0001": 50, "r0002": 50}))
    assert wait(provider, op).state == "succeeded"
    weights = {
        v["VariantName"]: v["CurrentWeight"] for v in sm().describe_endpoint(EndpointName="churn")["ProductionVariants"]
    }
    assert weights == {"r0001": 50.0, "r0002": 50.0}
    assert provider.route("churn", Traffic(weights={"r0001": 50, "r0002": 50})).done  # no-op


def test_route_to_unknown_release_is_not_found(provider: AwsProvider, artifact: ArtifactRef) -> None:
    deploy(provider, "r0001", artifact)
    with pytest.raises(NotFoundError):
        provider.route("churn", Traffic(weights={"r0001": 50, "r0009": 50}))


def test_busy_endpoint_is_a_conflict(provider: AwsProvider, artifact: ArtifactRef, sagemaker_fake: Any) -> None:
    sagemaker_fake.polls = 5
    provider.deploy_release(release("r0001", artifact), Traffic())
    with pytest.raises(ConflictError):
        provider.route("churn", Traffic.all_to("r0001"))


def test_redeploy_while_updating_returns_the_pending_update(
    provider: AwsProvider, artifact: ArtifactRef, sagemaker_fake: Any
) -> None:
    deploy(provider, "r0001", artifact)
    sagemaker_fake.polls = 3
    first = provider.deploy_release(release("r0002", artifact), Traffic.all_to("r0001"))
    again = provider.deploy_release(release("r0002", artifact), Traffic.all_to("r0001"))  # e.g. after a crash
    assert again.ref["endpoint_config"] == first.ref["endpoint_config"]
    assert len(sagemaker_fake.updates) == 1
    assert wait(provider, again).state == "succeeded"


def test_scale_registers_target_and_policy(provider: AwsProvider, artifact: ArtifactRef) -> None:
    deploy(provider, "r0001", artifact)
    op = provider.scale("churn", "r0001", Autoscaling(min=2, max=6, target_value=250, scale_in_cooldown_s=120))
    assert op.done
    aas = boto3.client("application-autoscaling", region_name=REGION)
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        ("endpoint/churn/variant/r0001", 2, 6)
    ]
    assert targets[0]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    cfg = policies[0]["TargetTrackingScalingPolicyConfiguration"]
    assert cfg["TargetValue"] == 250
    assert cfg["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert cfg["ScaleInCooldown"] == 120 and cfg["ScaleOutCooldown"] == 60
    # idempotent upsert
    provider.scale("churn", "r0001", Autoscaling(min=2, max=6, target_value=250, scale_in_cooldown_s=120))
    assert len(aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]) == 1


def test_scale_custom_metric(provider: AwsProvider, artifact: ArtifactRef) -> None:
    deploy(provider, "r0001", artifact)
    provider.scale(
        "churn", "r0001", Autoscaling(min=1, max=3, target_metric="custom", custom_metric="QueueDepth", target_value=10)
    )
    aas = boto3.client("application-autoscaling", region_name=REGION)
    cfg = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0][
        "TargetTrackingScalingPolicyConfiguration"
    ]
    assert cfg["CustomizedMetricSpecification"]["MetricName"] == "QueueDepth"


def test_retire_removes_variant_and_deregisters(
    provider: AwsProvider, artifact: ArtifactRef, sagemaker_fake: Any
) -> None:
    deploy(provider, "r0001", artifact)
    deploy(provider, "r0002", artifact, Traffic.all_to("r0001"))
    provider.scale("churn", "r0002", Autoscaling(min=1, max=4))
    assert wait(provider, provider.route("churn", Traffic.all_to("r0002"))).state == "succeeded"
    op = provider.retire_release("churn", "r0001")
    assert wait(provider, op).state == "succeeded"
    ep = sm().describe_endpoint(EndpointName="churn")
    assert [v["VariantName"] for v in ep["ProductionVariants"]] == ["r0002"]
    assert provider.observe("churn").traffic.weights == {"r0002": 100}  # type: ignore[union-attr]
    # the update kept autoscaled counts and took weights + data capture from the new config
    assert sagemaker_fake.updates[-1]["retain"] is True
    # retiring r0002's sibling again, or an unknown release, succeeds at once
    assert provider.retire_release("churn", "r0001").done
    assert provider.retire_release("churn", "r0042").done
    provider.scale("churn", "r0002", Autoscaling(min=1, max=4))
    deploy(provider, "r0003", artifact, Traffic.all_to("r0002"))
    wait(provider, provider.route("churn", Traffic.all_to("r0003")))
    assert wait(provider, provider.retire_release("churn", "r0002")).state == "succeeded"
    aas = boto3.client("application-autoscaling", region_name=REGION)
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []


def test_retire_refuses_live_traffic_and_last_release(provider: AwsProvider, artifact: ArtifactRef) -> None:
    deploy(provider, "r0001", artifact)
    with pytest.raises(ConflictError):
        provider.retire_release("churn", "r0001")
    deploy(provider, "r0002", artifact, Traffic(weights={"r0001": 90, "r0002": 10}))
    with pytest.raises(ConflictError):
        provider.retire_release("churn", "r0002")


def test_destroy_is_idempotent(provider: AwsProvider, artifact: ArtifactRef) -> None:
    deploy(provider, "r0001", artifact)
    deploy(provider, "r0002", artifact, Traffic.all_to("r0001"))
    provider.scale("churn", "r0001", Autoscaling(min=1, max=2))
    op = provider.destroy("churn")
    assert wait(provider, op).state == "succeeded"
    assert provider.observe("churn") is None
    assert sm().list_models()["Models"] == []
    assert sm().list_endpoint_configs()["EndpointConfigs"] == []
    aas = boto3.client("application-autoscaling", region_name=REGION)
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    again = provider.destroy("churn")
    assert again.done and provider.poll(again).state == "succeeded"


def test_destroy_leaves_other_endpoints_alone(provider: AwsProvider, artifact: ArtifactRef) -> None:
    deploy(provider, "r0001", artifact)
    other = provider.deploy_release(release("r0001", artifact, endpoint="churn-2"), Traffic())
    wait(provider, other)
    wait(provider, provider.destroy("churn"))
    assert provider.observe("churn-2") is not None
    assert [m["ModelName"] for m in sm().list_models()["Models"]] == ["churn-2-r0001"]


def test_creating_then_failed_reports_reason(provider: AwsProvider, artifact: ArtifactRef) -> None:
    seq = ["Creating", "Failed"]

    def script(parsed: dict[str, Any], **_: Any) -> None:
        if seq and "EndpointStatus" in parsed:
            parsed["EndpointStatus"] = seq.pop(0)
            if parsed["EndpointStatus"] == "Failed":
                parsed["FailureReason"] = "The primary container did not pass the ping health check."

    op = provider.deploy_release(release("r0001", artifact), Traffic())
    provider._clients.client("sagemaker").meta.events.register("after-call.sagemaker.DescribeEndpoint", script)
    assert provider.poll(op).state == "running"
    status = provider.poll(op)
    assert status.state == "failed"
    assert "ping health check" in (status.message or "")


def test_observe_missing_endpoint_is_none(provider: AwsProvider) -> None:
    assert provider.observe("nothing-here") is None
