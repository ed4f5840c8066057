"""Azure Monitor: gate metrics through ``MetricsQueryClient``, autoscale settings through ``MonitorManagementClient``.

Metrics of a managed online endpoint, as listed on
https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-machinelearningservices-workspaces-onlineendpoints-metrics
``RequestsPerMinute`` (dimensions ``deployment``, ``statusCode``, ``statusCodeClass``, ``modelStatusCode``) and
``RequestLatency_P50`` / ``RequestLatency_P99`` in milliseconds (dimension ``deployment``). Platform metrics
are one-minute aggregates that usually appear within a few minutes of the request
(https://learn.microsoft.com/azure/azure-monitor/essentials/data-platform-metrics#data-collection), hence
:data:`GRANULARITY_S` and :data:`DELAY_S`. A metric filter may only name dimensions of every metric it
queries, so requests and latencies are two queries.

Autoscale (https://learn.microsoft.com/azure/machine-learning/how-to-autoscale-endpoints): one autoscale
setting per deployment, named ``<endpoint>-<release>``, targeting the deployment's resource id, with one
profile (min / max / default) and a scale-out and a scale-in rule. It is written with ``enabled: true``:
a setting created disabled silently never scales.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from deployer.errors import NotFoundError
from deployer.records import Metrics
from deployer.spec import Autoscaling
from deployer_azure import _sdk
from deployer_azure.errors import azure_errors

GRANULARITY_S = 60.0
DELAY_S = 180.0
REQUESTS = "RequestsPerMinute"
LATENCY_P50 = "RequestLatency_P50"
LATENCY_P99 = "RequestLatency_P99"
CPU = "CpuUtilizationPercentage"


def window(window_s: float) -> dt.timedelta:
    """The query span: the window rounded up to whole minutes (the metrics' grain)."""
    minutes = max(1, int(-(-window_s // GRANULARITY_S)))
    return dt.timedelta(minutes=minutes)


def read_metrics(clients: _sdk.Clients, endpoint: str, release: str, window_s: float) -> Metrics:
    """Two ``query_resource`` calls on the endpoint: requests by status class, then latency percentiles."""
    uri = clients.endpoint_id(endpoint)
    span = window(window_s)
    grain = dt.timedelta(seconds=GRANULARITY_S)
    q = clients.metrics()
    with azure_errors("Metrics.List"):
        counts = q.query_resource(
            uri,
            [REQUESTS],
            timespan=span,
            granularity=grain,
            aggregations=[_sdk.MetricAggregationType.TOTAL],
            filter=f"deployment eq '{release}' and statusCodeClass eq '*'",
        )
        lat = q.query_resource(
            uri,
            [LATENCY_P50, LATENCY_P99],
            timespan=span,
            granularity=grain,
            aggregations=[_sdk.MetricAggregationType.AVERAGE],
            filter=f"deployment eq '{release}'",
        )
    requests = errors = 0
    for metric in counts.metrics:
        for series in metric.timeseries:
            total = int(sum(p.total or 0 for p in series.data))
            requests += total
            if str((series.metadata_values or {}).get("statusCodeClass", "")).startswith("5"):
                errors += total
    latency: dict[str, float | None] = {}
    for metric in lat.metrics:
        values = [p.average for s in metric.timeseries for p in s.data if p.average is not None]
        latency[metric.name] = max(values) if values else None
    return Metrics(
        release=release,
        window_s=window_s,
        requests=requests,
        errors=errors,
        p50_ms=latency.get(LATENCY_P50),
        p99_ms=latency.get(LATENCY_P99),
    )


def setting_name(endpoint: str, release: str) -> str:
    return f"{endpoint}-{release}"


def _rule(
    metric: str, resource: str, operator: str, threshold: float, direction: str, cooldown_s: int, dims: list[Any]
) -> Any:
    m = _sdk.monitor_models
    return m.ScaleRule(
        metric_trigger=m.MetricTrigger(
            metric_name=metric,
            metric_resource_uri=resource,
            time_grain=dt.timedelta(minutes=1),
            statistic="Average",
            time_window=dt.timedelta(minutes=5),
            time_aggregation="Average",
            operator=operator,
            threshold=threshold,
            dimensions=dims or None,
        ),
        scale_action=m.ScaleAction(
            direction=direction, type="ChangeCount", value="1", cooldown=dt.timedelta(seconds=max(cooldown_s, 60))
        ),
    )


def autoscale_body(
    clients: _sdk.Clients, endpoint: str, release: str, autoscaling: Autoscaling, location: str, cpu: float
) -> Any:
    """The autoscale setting for ``release`` (enabled, one profile, scale-out and scale-in rules)."""
    m = _sdk.monitor_models
    deployment = clients.deployment_id(endpoint, release)
    dims: list[Any] = []
    if autoscaling.target_metric == "cpu_utilization":
        metric, resource, threshold = CPU, deployment, autoscaling.target_value
    elif autoscaling.target_metric == "custom":
        metric, resource, threshold = str(autoscaling.custom_metric), deployment, autoscaling.target_value
    else:  # requests: the endpoint's per-minute requests of this deployment
        metric, resource, threshold = REQUESTS, clients.endpoint_id(endpoint), autoscaling.target_value
        dims = [m.ScaleRuleMetricDimension(dimension_name="deployment", operator="Equals", values=[release])]
    if autoscaling.target_metric == "cpu_utilization" and threshold > 100:
        threshold = cpu
    rules = [
        _rule(metric, resource, "GreaterThan", threshold, "Increase", autoscaling.scale_out_cooldown_s, dims),
        _rule(metric, resource, "LessThan", threshold / 2, "Decrease", autoscaling.scale_in_cooldown_s, dims),
    ]
    profile = m.AutoscaleProfile(
        name="deployer",
        capacity=m.ScaleCapacity(
            minimum=str(autoscaling.min), maximum=str(autoscaling.max), default=str(max(autoscaling.min, 1))
        ),
        rules=rules,
    )
    return m.AutoscaleSettingResource(
        location=location,
        profiles=[profile],
        enabled=True,
        target_resource_uri=deployment,
        tags={"deployer-endpoint": endpoint, "deployer-release": release},
    )


def put_autoscale(clients: _sdk.Clients, name: str, body: Any) -> None:
    with azure_errors("AutoscaleSettings.CreateOrUpdate"):
        clients.monitor().autoscale_settings.create_or_update(clients.resource_group, name, body)


def delete_autoscale(clients: _sdk.Clients, name: str) -> None:
    """Idempotent: a missing setting is already deleted."""
    try:
        with azure_errors("AutoscaleSettings.Delete"):
            clients.monitor().autoscale_settings.delete(clients.resource_group, name)
    except NotFoundError:
        return
