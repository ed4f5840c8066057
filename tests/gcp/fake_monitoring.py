"""Cloud Monitoring's ``ListTimeSeries`` for the Vertex fake, on gRPC (the library's only transport).

Requests and answers use ``google.cloud.monitoring_v3``'s own types. Points are the predictions the
fake served, visible only ``metrics_delay_s`` after they happened (Cloud Monitoring shows a sampled
point after an ingestion delay: https://cloud.google.com/monitoring/api/metrics_gcp_a_b#gcp-aiplatform).
Rules (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/list):
``alignmentPeriod`` is required with an aligner and must be at least 60 seconds; a DELTA metric
aligns with ALIGN_DELTA / ALIGN_SUM, a distribution with ALIGN_PERCENTILE_*; the filter names one
metric type.
"""

from __future__ import annotations

import re
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud.monitoring_v3 import types

PREFIX = "aiplatform.googleapis.com/prediction/online/"
RESOURCE = "aiplatform.googleapis.com/Endpoint"


@dataclass(frozen=True)
class Point:
    at: float
    endpoint_id: str
    deployed_model_id: str
    ok: bool
    latency_ms: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[idx]


class MonitoringServer:
    def __init__(self, fake: Any) -> None:
        self.fake = fake
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "google.monitoring.v3.MetricService",
            {
                "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                    self.list_time_series,
                    request_deserializer=types.ListTimeSeriesRequest.deserialize,
                    response_serializer=types.ListTimeSeriesResponse.serialize,
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)

    def list_time_series(self, req: Any, context: Any) -> Any:
        import time

        self.fake.calls["monitoring.timeSeries.list"] += 1
        labels = dict(re.findall(r'([\w.]+)\s*=\s*"([^"]*)"', req.filter))
        metric = labels.get("metric.type", "")
        if not metric.startswith(PREFIX) or labels.get("resource.type") != RESOURCE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported filter {req.filter!r}")
        agg = req.aggregation
        period = agg.alignment_period.total_seconds() if agg.alignment_period else 0
        if agg.per_series_aligner and period < 60:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "The alignment period must be at least 60 seconds")
        start, end = req.interval.start_time.timestamp(), req.interval.end_time.timestamp()
        visible_until = time.time() - self.fake.metrics_delay_s
        with self.fake.lock:
            pts = [
                p for p in self.fake.points
                if start <= p.at <= min(end, visible_until)
                and p.endpoint_id == labels.get("resource.labels.endpoint_id", p.endpoint_id)
                and p.deployed_model_id == labels.get("metric.labels.deployed_model_id", p.deployed_model_id)
            ]
        kind = metric.removeprefix(PREFIX)
        A = types.Aggregation.Aligner
        if kind in ("prediction_count", "error_count"):
            if agg.per_series_aligner not in (A.ALIGN_DELTA, A.ALIGN_SUM):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{metric} is a DELTA INT64 metric")
            chosen = pts if kind == "prediction_count" else [p for p in pts if not p.ok]
            value: dict[str, Any] = {"int64_value": len(chosen)}
            if not chosen:
                return types.ListTimeSeriesResponse()
        elif kind == "prediction_latencies":
            q = {A.ALIGN_PERCENTILE_99: 99, A.ALIGN_PERCENTILE_95: 95, A.ALIGN_PERCENTILE_50: 50}
            if agg.per_series_aligner not in q:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{metric} is a DISTRIBUTION metric")
            ok = [p.latency_ms for p in pts if p.ok]
            if not ok:
                return types.ListTimeSeriesResponse()
            value = {"double_value": _percentile(ok, q[agg.per_series_aligner])}
        else:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown metric {metric}")
        dm = labels.get("metric.labels.deployed_model_id", "")
        series = types.TimeSeries(
            metric={"type": metric, "labels": {"deployed_model_id": dm}},
            resource={"type": RESOURCE, "labels": {"endpoint_id": labels.get("resource.labels.endpoint_id", "")}},
            points=[{"interval": {"start_time": req.interval.start_time, "end_time": req.interval.end_time},
                     "value": value}],
        )
        return types.ListTimeSeriesResponse(time_series=[series])
