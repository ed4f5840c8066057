"""What the fake Azure ML data plane does with a scoring request, and the Azure Monitor metrics it publishes.

* :class:`Runner` runs a deployment the way the Azure ML inference server does: it downloads the registered
  model (``modelUri``) into ``AZUREML_MODEL_DIR`` and the code asset's ``score.py`` (``codeUri``), imports
  the script, calls ``init()`` once and ``run(raw_body)`` per request; an exception is a 500
  (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-online-endpoints#understand-the-scoring-script).
* :class:`ImageRunner` runs a custom-container deployment of an image made by ``deployer build`` the way
  Azure ML runs a custom container (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container):
  the registered model under ``AZUREML_MODEL_DIR``, the deployment's environment variables, the image's
  runtime as a process on 127.0.0.1, requests POSTed to the environment's scoring route once its
  readiness route answers 200.
* :class:`MetricStore` records each request served (live and mirrored) and answers
  ``GET {endpoint id}/providers/Microsoft.Insights/metrics`` only with requests older than ``delay_s``, in
  one-minute buckets, in the shape of the Metrics - List reference
  (https://learn.microsoft.com/rest/api/monitor/metrics/list). A filter naming a dimension that a requested
  metric lacks is refused, as Azure Monitor does.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIMENSIONS = {
    # https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-machinelearningservices-workspaces-onlineendpoints-metrics
    "RequestsPerMinute": {"deployment", "statusCode", "statusCodeClass", "modelStatusCode"},
    "RequestLatency": {"deployment"},
    "RequestLatency_P50": {"deployment"},
    "RequestLatency_P90": {"deployment"},
    "RequestLatency_P95": {"deployment"},
    "RequestLatency_P99": {"deployment"},
}
_LOAD_LOCK = threading.Lock()


class Runner:
    """One deployment's scoring script, loaded from the blobs its assets name."""

    def __init__(self, name: str, model_uri: str, code_uri: str, fetch: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"fake-aml-{name}-"))
        (self.dir / "model").mkdir()
        (self.dir / "model" / model_uri.rsplit("/", 1)[-1]).write_bytes(fetch(model_uri))
        script = self.dir / "score.py"
        script.write_bytes(fetch(code_uri.rstrip("/") + "/score.py"))
        spec = importlib.util.spec_from_file_location(f"fake_aml_score_{id(self)}", script)
        assert spec is not None and spec.loader is not None
        self.module = importlib.util.module_from_spec(spec)
        with _LOAD_LOCK:  # AZUREML_MODEL_DIR is process-wide: one init() at a time
            spec.loader.exec_module(self.module)
            old = os.environ.get("AZUREML_MODEL_DIR")
            os.environ["AZUREML_MODEL_DIR"] = str(self.dir / "model")
            try:
                self.module.init()
            finally:
                if old is None:
                    os.environ.pop("AZUREML_MODEL_DIR", None)
                else:
                    os.environ["AZUREML_MODEL_DIR"] = old

    def score(self, body: bytes) -> tuple[int, bytes]:
        try:
            out = self.module.run(body.decode())
        except Exception as exc:  # the inference server answers 500 with the message
            return 500, json.dumps({"message": f"{type(exc).__name__}: {exc}"}).encode()
        return 200, json.dumps(out).encode()

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


class ImageRunner:
    """One custom-container deployment: a ``deployer build`` image's runtime, run as a process."""

    def __init__(
        self, name: str, model_uri: str, fetch: Any, context: Path, env: dict[str, str], routes: dict[str, Any]
    ) -> None:
        from deployer.testing.processes import run_image

        self.dir = Path(tempfile.mkdtemp(prefix=f"fake-aml-{name}-"))
        model_dir = self.dir / "model"
        model_dir.mkdir()
        (model_dir / model_uri.rsplit("/", 1)[-1]).write_bytes(fetch(model_uri))
        ready = routes["readinessRoute"]["path"]
        self.scoring = routes["scoringRoute"]["path"]
        platform = {**env, "AZUREML_MODEL_DIR": str(model_dir)}
        self.proc, self.port = run_image(context, platform, (), self.dir / "container.log", ready, "DEPLOYER_PORT")

    def score(self, body: bytes) -> tuple[int, bytes]:
        from deployer.testing.processes import post

        status, _type, out = post(f"http://127.0.0.1:{self.port}{self.scoring}", body, "application/json")
        return status, out

    def close(self) -> None:
        import shutil

        from deployer.testing.processes import stop_process

        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Served:
    at: float
    endpoint: str
    deployment: str
    status: int
    latency_ms: float


@dataclass
class MetricStore:
    delay_s: float = 1.0
    served: list[Served] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, deployment: str, status: int, latency_ms: float) -> None:
        with self.lock:
            self.served.append(Served(time.time(), endpoint, deployment, status, latency_ms))

    def query(self, endpoint: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        names = [n for n in params.get("metricnames", "").split(",") if n]
        if not names:
            return 400, _error("BadRequest", "metricnames is required")
        unknown = [n for n in names if n not in DIMENSIONS]
        if unknown:
            return 400, _error("BadRequest", f"Failed to find metric configuration for {unknown[0]}")
        filters = _parse_filter(params.get("$filter", ""))
        for n in names:
            extra = set(filters) - DIMENSIONS[n]
            if extra:
                return 400, _error("BadRequest", f"Metric {n} has no dimension {sorted(extra)[0]}")
        if params.get("interval", "PT1M") != "PT1M":
            return 400, _error("BadRequest", "only PT1M is served by this fake")
        start, end = _timespan(params.get("timespan", "PT1H"))
        visible = time.time() - self.delay_s
        with self.lock:
            rows = [
                s
                for s in self.served
                if s.endpoint == endpoint and s.at <= visible and start <= s.at < end and _match(s, filters)
            ]
        aggregation = params.get("aggregation", "Average").lower()
        value = [self._metric(endpoint, n, rows, filters, aggregation, start, end) for n in names]
        body = {
            "cost": 0,
            "timespan": params.get("timespan"),
            "interval": "PT1M",
            "value": value,
            "namespace": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            "resourceregion": "eastus",
        }
        return 200, body

    def _metric(
        self, endpoint: str, name: str, rows: list[Served], filters: dict[str, str], agg: str, start: float, end: float
    ) -> dict[str, Any]:
        split = [d for d, v in filters.items() if v == "*"]
        groups: dict[tuple[str, ...], list[Served]] = {}
        for s in rows:
            groups.setdefault(tuple(_dim(s, d) for d in split), []).append(s)
        series = []
        for key, group in sorted(groups.items()):
            data = []
            minute = int(start // 60) * 60
            while minute < end:
                bucket = [s for s in group if minute <= s.at < minute + 60]
                point: dict[str, Any] = {"timeStamp": _iso(minute)}
                if bucket:
                    point[agg] = _aggregate(name, bucket, agg)
                data.append(point)
                minute += 60
            meta = [{"name": {"value": d, "localizedValue": d}, "value": v} for d, v in zip(split, key, strict=True)]
            series.append({"metadatavalues": meta, "data": data})
        return {
            "id": f"{endpoint}/providers/Microsoft.Insights/metrics/{name}",
            "type": "Microsoft.Insights/metrics",
            "name": {"value": name, "localizedValue": name},
            "unit": "Count" if name == "RequestsPerMinute" else "MilliSeconds",
            "timeseries": series,
        }


def _aggregate(name: str, bucket: list[Served], agg: str) -> float:
    if name == "RequestsPerMinute":
        return float(len(bucket))
    lat = sorted(s.latency_ms for s in bucket)
    q = {"RequestLatency_P50": 0.5, "RequestLatency_P90": 0.9, "RequestLatency_P95": 0.95, "RequestLatency_P99": 0.99}
    if name in q:
        return lat[min(len(lat) - 1, int(q[name] * len(lat)))]
    return sum(lat) / len(lat)


def _dim(s: Served, d: str) -> str:
    if d == "deployment":
        return s.deployment
    if d == "statusCodeClass":
        return f"{s.status // 100}xx"
    return str(s.status)


def _match(s: Served, filters: dict[str, str]) -> bool:
    return all(v == "*" or _dim(s, d) == v for d, v in filters.items())


def _parse_filter(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in re.split(r"\s+and\s+", text.strip()) if text.strip() else []:
        m = re.fullmatch(r"(\w+)\s+eq\s+'([^']*)'", part.strip())
        if not m:
            raise ValueError(f"unsupported filter clause {part!r}")
        out[m.group(1)] = m.group(2)
    return out


def _timespan(text: str) -> tuple[float, float]:
    import isodate

    if "/" in text:
        a, b = text.split("/", 1)
        start = isodate.parse_datetime(a).timestamp()
        end = isodate.parse_datetime(b).timestamp() if not b.startswith("P") else start + _seconds(b)
        return start, end
    now = time.time()
    return now - _seconds(text), now


def _seconds(duration: str) -> float:
    import isodate

    return float(isodate.parse_duration(duration).total_seconds())


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
