"""CloudWatch metrics of one production variant, fetched with a single GetMetricData call.

SageMaker publishes per minute in ``AWS/SageMaker`` with dimensions EndpointName + VariantName:
Invocations, Invocation4XXErrors, Invocation5XXErrors (sums) and ModelLatency (microseconds).
``errors`` counts 5XX only (4XX are the caller's mistakes); 4XX is reported as
``custom["invocation_4xx_errors"]``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from deployer.records import Metrics

NAMESPACE = "AWS/SageMaker"


def _qid(prefix: str, name: str) -> str:
    """MetricDataQuery ids start with a lowercase letter: letters, digits and '_' only."""
    return prefix + re.sub(r"[^a-zA-Z0-9_]", "_", name).lower()


def queries(endpoint: str, release: str, period: int, custom: list[str], custom_namespace: str) -> list[dict[str, Any]]:
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": release}]

    def q(qid: str, metric: str, stat: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return {
            "Id": qid,
            "ReturnData": True,
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dims},
                "Period": period,
                "Stat": stat,
            },
        }

    out = [
        q("inv", "Invocations", "Sum"),
        q("e4xx", "Invocation4XXErrors", "Sum"),
        q("e5xx", "Invocation5XXErrors", "Sum"),
        q("p99", "ModelLatency", "p99"),
        q("p50", "ModelLatency", "p50"),
    ]
    out += [q(_qid("c_", name), name, "Average", custom_namespace) for name in custom]
    return out


def period_for(window_s: float) -> int:
    """One datapoint for the whole window where possible: a multiple of 60 s, at least 60."""
    return max(60, int(math.ceil(window_s / 60.0)) * 60)


def request(
    endpoint: str,
    release: str,
    window_s: float,
    custom: list[str],
    custom_namespace: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One GetMetricData request ending at ``now`` floored to the minute (CloudWatch aggregates one-minute
    datapoints on minute boundaries; an unaligned window would cut a minute in two)."""
    end = (now or dt.datetime.now(dt.UTC)).replace(second=0, microsecond=0)
    period = period_for(window_s)
    return {
        "MetricDataQueries": queries(endpoint, release, period, custom, custom_namespace),
        "StartTime": end - dt.timedelta(seconds=period),
        "EndTime": end,
        "ScanBy": "TimestampDescending",
    }


def parse(results: list[dict[str, Any]], release: str, window_s: float, custom: list[str]) -> Metrics:
    values = {r["Id"]: [float(v) for v in r.get("Values", [])] for r in results}

    def total(qid: str) -> float:
        return sum(values.get(qid, []))

    def worst_ms(qid: str) -> float | None:
        vals = values.get(qid, [])
        return max(vals) / 1000.0 if vals else None  # microseconds -> ms

    extra: dict[str, float] = {"invocation_4xx_errors": total("e4xx")}
    for name in custom:
        vals = values.get(_qid("c_", name), [])
        if vals:
            extra[name] = sum(vals) / len(vals)
    return Metrics(
        release=release,
        window_s=window_s,
        requests=int(total("inv")),
        errors=int(total("e5xx")),
        p50_ms=worst_ms("p50"),
        p99_ms=worst_ms("p99"),
        custom=extra,
    )
