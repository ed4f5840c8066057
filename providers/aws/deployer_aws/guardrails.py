"""SageMaker deployment guardrails for ``strategy.native``: blue/green traffic shifting + auto-rollback.

The strategy maps to a ``BlueGreenUpdatePolicy``: canary -> CANARY (one canary step, then the rest),
linear -> LINEAR, blue-green / all-at-once -> ALL_AT_ONCE with the bake as the wait. Metric gates
with a ``max`` on ``error_rate`` or ``p99_ms`` become CloudWatch alarms on the new variant, joined
by ``provider_options.rollback_alarms``; SageMaker rolls back when any of them fires.
"""

from __future__ import annotations

import re
from typing import Any

from deployer.errors import SpecError
from deployer.spec import MetricGate, Spec, Strategy
from deployer_aws.errors import aws_errors

MAX_WAIT_S = 3600
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 600, 28800


def check(strategy: Strategy) -> None:
    """Offline: what SageMaker's traffic routing can express."""
    if strategy.type == "canary" and len(strategy.steps) > 2:
        raise SpecError(
            "strategy.steps",
            "SageMaker's native canary has one canary step before 100%",
            fix="use one step plus 100 (e.g. [{weight: 10}, {weight: 100}]), 'linear', or native: false",
        )
    bakes = [b for _, b in strategy.weights()]
    if any(b > MAX_WAIT_S for b in bakes):
        raise SpecError(
            "strategy",
            f"native rollouts wait at most {MAX_WAIT_S} s per step",
            fix="shorten bake_s / interval_s or set native: false",
        )
    if strategy.type == "linear" and strategy.step_percent >= 100:
        raise SpecError("strategy.step_percent", "a linear rollout needs step_percent below 100")


def traffic_routing(strategy: Strategy) -> dict[str, Any]:
    steps = strategy.weights()
    wait = int(min(MAX_WAIT_S, steps[0][1]))
    if strategy.type == "canary" and steps[0][0] < 100:
        return {
            "Type": "CANARY",
            "WaitIntervalInSeconds": wait,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": steps[0][0]},
        }
    if strategy.type == "linear":
        return {
            "Type": "LINEAR",
            "WaitIntervalInSeconds": int(min(MAX_WAIT_S, strategy.interval_s)),
            "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": strategy.step_percent},
        }
    return {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": wait}


def deployment_config(strategy: Strategy, alarms: list[str]) -> dict[str, Any]:
    timeout = int(min(MAX_TIMEOUT_S, max(MIN_TIMEOUT_S, strategy.ready_timeout_s)))
    cfg: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": traffic_routing(strategy),
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": timeout,
        }
    }
    if alarms:
        cfg["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms[:10]]}
    return cfg


def alarm_name(endpoint: str, release: str, metric: str) -> str:
    return f"deployer-{endpoint}-{release}-{metric}"


def gate_alarms(spec: Spec, endpoint: str, release: str, variant: str) -> list[dict[str, Any]]:
    """PutMetricAlarm bodies for the spec's metric gates that CloudWatch can judge.

    Named after the release, they watch ``variant``: a guarded update keeps the old variant name
    (https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-exclusions.html), so the
    new release's metrics arrive under it.
    """
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    out: list[dict[str, Any]] = []
    for gate in spec.gates:
        if not isinstance(gate, MetricGate) or gate.max is None:
            continue
        common = {
            "EvaluationPeriods": gate.failure_limit,
            "DatapointsToAlarm": gate.failure_limit,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmDescription": f"deployer gate for {endpoint}/{release}",
        }
        if gate.metric == "p99_ms":
            out.append(
                {
                    "AlarmName": alarm_name(endpoint, release, "p99"),
                    "Namespace": "AWS/SageMaker",
                    "MetricName": "ModelLatency",
                    "Dimensions": dims,
                    "ExtendedStatistic": "p99",
                    "Period": 60,
                    "Threshold": gate.max * 1000.0,
                    **common,
                }
            )
        elif gate.metric == "error_rate":

            def m(qid: str, name: str) -> dict[str, Any]:
                return {
                    "Id": qid,
                    "ReturnData": False,
                    "MetricStat": {
                        "Metric": {"Namespace": "AWS/SageMaker", "MetricName": name, "Dimensions": dims},
                        "Period": 60,
                        "Stat": "Sum",
                    },
                }

            out.append(
                {
                    "AlarmName": alarm_name(endpoint, release, "error-rate"),
                    "Threshold": gate.max,
                    "Metrics": [
                        m("err", "Invocation5XXErrors"),
                        m("inv", "Invocations"),
                        {
                            "Id": "rate",
                            "Expression": "IF(inv > 0, err / inv, 0)",
                            "Label": "error rate",
                            "ReturnData": True,
                        },
                    ],
                    **common,
                }
            )
    return out


def delete_alarms(cw: Any, endpoint: str, release: str | None) -> None:
    """Delete the gate alarms of ``release`` (of every release with None). Idempotent."""
    prefix = alarm_name(endpoint, release, "") if release else f"deployer-{endpoint}-"
    with aws_errors("DescribeAlarms"):
        found = cw.describe_alarms(AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"])
    pattern = re.compile(rf"deployer-{re.escape(endpoint)}-r\d{{4,}}-(p99|error-rate)")
    names = [a["AlarmName"] for a in found.get("MetricAlarms", []) if pattern.fullmatch(a["AlarmName"])]
    if names:
        with aws_errors("DeleteAlarms"):
            cw.delete_alarms(AlarmNames=names)
