"""Gate metrics from Cloud Monitoring: the Vertex AI online-prediction metrics of one deployed model.

``prediction_count`` and ``error_count`` (DELTA, INT64) are summed over the window with ALIGN_DELTA;
``prediction_latencies`` (DISTRIBUTION, ms) is read as ALIGN_PERCENTILE_99 / _50. Resource type
``aiplatform.googleapis.com/Endpoint``, filtered by ``endpoint_id`` and the metric label
``deployed_model_id`` (https://cloud.google.com/monitoring/api/metrics_gcp_a_b#gcp-aiplatform).
Cloud Monitoring aligns to periods of at least 60 s, so a window is read as whole minutes; a point
becomes visible only after Vertex's ingestion delay (``METRICS_DELAY_S``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from deployer.records import Metrics
from deployer_gcp import _sdk
from deployer_gcp.errors import gcp_errors

PREFIX = "aiplatform.googleapis.com/prediction/online/"
RESOURCE = "aiplatform.googleapis.com/Endpoint"
GRANULARITY_S = 60.0
METRICS_DELAY_S = 180.0
"""Sampled every 60 s; deployer assumes a point is readable 180 s after it was sampled."""
ALIGN_DELTA, ALIGN_PERCENTILE_99, ALIGN_PERCENTILE_50 = 1, 18, 20
"""``google.monitoring.v3.Aggregation.Aligner`` values."""


def period(window_s: float) -> int:
    """The alignment period for a window: whole minutes, at least one."""
    return max(60, math.ceil(window_s / GRANULARITY_S) * 60)


def _filter(metric: str, endpoint_id: str, deployed_model_id: str) -> str:
    return (
        f'metric.type = "{PREFIX}{metric}" AND resource.type = "{RESOURCE}" '
        f'AND resource.labels.endpoint_id = "{endpoint_id}" '
        f'AND metric.labels.deployed_model_id = "{deployed_model_id}"'
    )


def _value(series: list[dict[str, Any]]) -> float | None:
    values = [
        float(p["value"].get("int64_value", p["value"].get("double_value", 0)))
        for ts in series
        for p in ts.get("points", [])
    ]
    return sum(values) if values else None


def read(clients: _sdk.Clients, endpoint_id: str, deployed_model_id: str, release: str, window_s: float) -> Metrics:
    """Four ListTimeSeries calls: requests, errors, p99 and p50 latency."""
    span = period(window_s)
    end = time.time()
    start = end - span
    out: dict[str, float | None] = {}
    for key, metric, aligner in (
        ("requests", "prediction_count", ALIGN_DELTA),
        ("errors", "error_count", ALIGN_DELTA),
        ("p99", "prediction_latencies", ALIGN_PERCENTILE_99),
        ("p50", "prediction_latencies", ALIGN_PERCENTILE_50),
    ):
        agg = {"alignment_period": {"seconds": span}, "per_series_aligner": aligner}
        with gcp_errors("monitoring.timeSeries.list"):
            series = _sdk.list_time_series(clients, _filter(metric, endpoint_id, deployed_model_id), start, end, agg)
        out[key] = _value(series)
    return Metrics(
        release=release,
        window_s=window_s,
        requests=int(out["requests"] or 0),
        errors=int(out["errors"] or 0),
        p99_ms=out["p99"],
        p50_ms=out["p50"],
    )
