"""Application Auto Scaling per release (= per production variant).

Scalable target ``endpoint/{endpoint}/variant/{variant}`` on ``sagemaker:variant:DesiredInstanceCount``
with one target-tracking policy ``deployer-{endpoint}-{variant}``. The variant is the release id
except after a native rollout (which keeps the old variant name). Register and put are upserts, so
:func:`apply` is idempotent; :func:`remove` ignores a target that is already gone.
:meth:`Scaling.snapshot` / :meth:`Scaling.restore` carry a variant's target and policies across a
guarded UpdateEndpoint, which SageMaker refuses while the variant is a scalable target.
"""

from __future__ import annotations

from typing import Any

from deployer.errors import NotFoundError
from deployer.spec import Autoscaling
from deployer_aws import _sdk
from deployer_aws.errors import aws_errors

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
INSTANCE_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"


def resource_id(endpoint: str, release: str) -> str:
    return f"endpoint/{endpoint}/variant/{release}"


def policy_name(endpoint: str, release: str) -> str:
    return f"deployer-{endpoint}-{release}"


def tracking_config(endpoint: str, release: str, a: Autoscaling, metrics_namespace: str) -> dict[str, Any]:
    """TargetTrackingScalingPolicyConfiguration for the spec's target metric."""
    cfg: dict[str, Any] = {
        "TargetValue": float(a.target_value),
        "ScaleInCooldown": a.scale_in_cooldown_s,
        "ScaleOutCooldown": a.scale_out_cooldown_s,
    }
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": release}]
    if a.target_metric == "invocations_per_replica":
        cfg["PredefinedMetricSpecification"] = {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
    elif a.target_metric == "cpu_utilization":
        cfg["CustomizedMetricSpecification"] = {
            "MetricName": "CPUUtilization",
            "Namespace": INSTANCE_METRICS_NAMESPACE,
            "Dimensions": dims,
            "Statistic": "Average",
            "Unit": "Percent",
        }
    else:
        cfg["CustomizedMetricSpecification"] = {
            "MetricName": a.custom_metric,
            "Namespace": metrics_namespace,
            "Dimensions": dims,
            "Statistic": "Average",
        }
    return cfg


class Scaling:
    def __init__(self, clients: _sdk.Clients) -> None:
        self._clients = clients

    @property
    def aas(self) -> Any:
        return self._clients.client("application-autoscaling")

    def apply(self, endpoint: str, variant: str, a: Autoscaling, metrics_namespace: str) -> None:
        """Register the variant and put its target-tracking policy (upserts: idempotent)."""
        policy = {
            "PolicyName": policy_name(endpoint, variant),
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": tracking_config(endpoint, variant, a, metrics_namespace),
        }
        self.restore(endpoint, variant, {"min": a.min, "max": a.max, "policies": [policy]})

    def registered(self, endpoint: str, releases: list[str]) -> dict[str, tuple[int, int]]:
        """(min, max) of the releases that have a scalable target."""
        if not releases:
            return {}
        with aws_errors("DescribeScalableTargets"):
            page = self.aas.describe_scalable_targets(
                ServiceNamespace=NAMESPACE,
                ScalableDimension=DIMENSION,
                ResourceIds=[resource_id(endpoint, r) for r in releases],
            )
        out = {}
        for t in page.get("ScalableTargets", []):
            out[t["ResourceId"].rsplit("/", 1)[-1]] = (int(t["MinCapacity"]), int(t["MaxCapacity"]))
        return out

    def snapshot(self, endpoint: str, variant: str) -> dict[str, Any] | None:
        """The variant's scalable target and policies (JSON-ready), or None when it has none."""
        found = self.registered(endpoint, [variant])
        if variant not in found:
            return None
        with aws_errors("DescribeScalingPolicies"):
            page = self.aas.describe_scaling_policies(
                ServiceNamespace=NAMESPACE, ResourceId=resource_id(endpoint, variant), ScalableDimension=DIMENSION
            )
        policies = [
            {
                "PolicyName": p["PolicyName"],
                "PolicyType": p["PolicyType"],
                "TargetTrackingScalingPolicyConfiguration": p["TargetTrackingScalingPolicyConfiguration"],
            }
            for p in page.get("ScalingPolicies", [])
            if p.get("PolicyType") == "TargetTrackingScaling"
        ]
        low, high = found[variant]
        return {"min": low, "max": high, "policies": policies}

    def restore(self, endpoint: str, variant: str, snap: dict[str, Any]) -> None:
        """Register the variant again as :meth:`snapshot` saw it (upserts: idempotent)."""
        rid = resource_id(endpoint, variant)
        with aws_errors("RegisterScalableTarget"):
            self.aas.register_scalable_target(
                ServiceNamespace=NAMESPACE,
                ResourceId=rid,
                ScalableDimension=DIMENSION,
                MinCapacity=int(snap["min"]),
                MaxCapacity=int(snap["max"]),
            )
        for policy in snap.get("policies", []):
            with aws_errors("PutScalingPolicy"):
                self.aas.put_scaling_policy(
                    ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION, **policy
                )

    def remove(self, endpoint: str, releases: list[str]) -> None:
        """Deregister the releases' targets (their policies go with them). Idempotent.

        Looks first (one DescribeScalableTargets), so an unregistered release costs no failing call.
        """
        for release in self.registered(endpoint, releases):
            try:
                with aws_errors("DeregisterScalableTarget"):
                    self.aas.deregister_scalable_target(
                        ServiceNamespace=NAMESPACE,
                        ResourceId=resource_id(endpoint, release),
                        ScalableDimension=DIMENSION,
                    )
            except NotFoundError:  # ObjectNotFoundException: gone meanwhile
                pass
