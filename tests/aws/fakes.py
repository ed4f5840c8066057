"""Makes moto's SageMaker backend behave like SageMaker where the aws provider depends on it.

moto 5.2 has no UpdateEndpoint, accepts duplicate names, and has endpoints InService at once.
Following the API reference (UpdateEndpoint, DescribeEndpoint, CreateModel/...):

* CreateModel / CreateEndpointConfig / CreateEndpoint refuse an existing name (ValidationException).
* CreateEndpoint starts ``Creating``; UpdateEndpoint and UpdateEndpointWeightsAndCapacities go
  ``Updating``; each becomes ``InService`` after ``SageMakerFake.polls`` DescribeEndpoint calls.
  While it updates, DescribeEndpoint shows the old config plus ``PendingDeploymentSummary``.
* UpdateEndpoint needs an existing endpoint and config, refuses an endpoint that is not InService,
  stores DeploymentConfig (shown as ``LastDeploymentConfig``), honours RetainAllVariantProperties
  for instance counts, and in ``rollback`` mode ends InService on the *old* config with a
  FailureReason, as SageMaker does when new instances fail or an auto-rollback alarm fires.
* UpdateEndpointWeightsAndCapacities keeps instance counts that the request leaves out.

sagemaker-runtime: moto answers InvokeEndpoint with canned text and variant "invoked_production_variant"
for any endpoint; here an unqueued call answers JSON from the variant SageMaker would pick (the
``TargetVariant`` header, else the heaviest variant) and refuses an unknown endpoint.

CloudWatch: moto's GetMetricData answers percentile statistics (``p99``) with null; CloudWatch
computes them. Here ``pNN`` is the nearest-rank percentile of the raw values put in the period.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from moto.cloudwatch.models import Statistics
from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse


@dataclass
class SageMakerFake:
    """Switches the tests flip. One instance, reset before every test."""

    polls: int = 1
    rollback_reason: str | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self.polls, self.rollback_reason, self.updates = 1, None, []


FAKE = SageMakerFake()


def _state(backend: Any) -> dict[str, dict[str, Any]]:
    if not hasattr(backend, "_deployer_fake"):
        backend._deployer_fake = {}
    return backend._deployer_fake


def _arn(backend: Any, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:{kind}/{name}"


def _create_model(self: Any, **kwargs: Any) -> Any:
    name = kwargs.get("model_name")
    if name in self._models:
        raise ValidationError(message=f'Cannot create already existing model "{_arn(self, "model", name)}".')
    return _orig["create_model"](self, **kwargs)


def _create_endpoint_config(self: Any, **kwargs: Any) -> Any:
    name = kwargs.get("endpoint_config_name")
    if name in self.endpoint_configs:
        arn = _arn(self, "endpoint-config", name)
        raise ValidationError(message=f'Cannot create already existing endpoint configuration "{arn}".')
    return _orig["create_endpoint_config"](self, **kwargs)


def _create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
    if endpoint_name in self.endpoints:
        raise ValidationError(
            message=f'Cannot create already existing endpoint "{_arn(self, "endpoint", endpoint_name)}".'
        )
    ep = _orig["create_endpoint"](
        self, endpoint_name=endpoint_name, endpoint_config_name=endpoint_config_name, tags=tags
    )
    ep.endpoint_status = "Creating"
    _state(self)[endpoint_name] = {"polls": FAKE.polls, "pending": None, "deployment": None, "failure": None}
    return ep


def _update_endpoint(
    self: Any,
    endpoint_name: str,
    endpoint_config_name: str,
    deployment_config: Any,
    retain: bool,
    exclude: list[dict[str, str]] | None,
) -> str:
    ep = self.endpoints.get(endpoint_name)
    if ep is None:
        raise ValidationError(message=f"Could not find endpoint '{_arn(self, 'endpoint', endpoint_name)}'.")
    if endpoint_config_name not in self.endpoint_configs:
        arn = _arn(self, "endpoint-config", endpoint_config_name)
        raise ValidationError(message=f"Could not find endpoint configuration '{arn}'.")
    if ep.endpoint_status != "InService":
        raise ValidationError(message=f'Cannot update in-progress endpoint "{ep.arn}".')
    if deployment_config and "BlueGreenUpdatePolicy" in deployment_config and retain:
        raise ValidationError(message="RetainAllVariantProperties is not supported with a blue/green deployment.")
    FAKE.updates.append(
        {
            "endpoint": endpoint_name,
            "config": endpoint_config_name,
            "deployment": copy.deepcopy(deployment_config),
            "retain": retain,
            "exclude": exclude,
        }
    )
    ep.endpoint_status = "Updating"
    ep.failure_reason = None
    _state(self)[endpoint_name] = {
        "polls": FAKE.polls,
        "pending": endpoint_config_name,
        "deployment": deployment_config,
        "retain": retain,
        "exclude": [e.get("VariantPropertyType") for e in exclude or []],
        "rollback": FAKE.rollback_reason,
    }
    return ep.arn


def _finish(self: Any, ep: FakeEndpoint, st: dict[str, Any]) -> None:
    ep.endpoint_status = "InService"
    target = st.get("pending")
    st["pending"] = None
    if target is None:
        return
    if st.get("rollback"):
        ep.failure_reason = st["rollback"]
        return
    cfg = self.endpoint_configs[target]
    old = {v["VariantName"]: v for v in ep.production_variants}
    new = ep._process_production_variants(cfg.production_variants)
    if st.get("retain"):
        for v in new:
            prev = old.get(v["VariantName"])
            if prev is None:
                continue
            if "DesiredInstanceCount" not in st["exclude"] and prev.get("DesiredInstanceCount") is not None:
                v["CurrentInstanceCount"] = v["DesiredInstanceCount"] = prev["DesiredInstanceCount"]
            if "DesiredWeight" not in st["exclude"] and prev.get("DesiredWeight") is not None:
                v["CurrentWeight"] = v["DesiredWeight"] = prev["DesiredWeight"]
    ep.endpoint_config_name = target
    ep.production_variants = new
    ep.data_capture_config = cfg.data_capture_config


def _describe_endpoint(self: Any, endpoint_name: str) -> dict[str, Any]:
    ep = self.endpoints.get(endpoint_name)
    st = _state(self).get(endpoint_name)
    if ep is not None and st is not None and ep.endpoint_status in ("Creating", "Updating"):
        if st["polls"] <= 0:
            _finish(self, ep, st)
        else:
            st["polls"] -= 1
    out = dict(_orig["describe_endpoint"](self, endpoint_name))
    if st is not None:
        if st.get("pending") and ep is not None and ep.endpoint_status == "Updating":
            out["PendingDeploymentSummary"] = {"EndpointConfigName": st["pending"]}
        if st.get("deployment"):
            out["LastDeploymentConfig"] = st["deployment"]
    return out


def _update_weights(self: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]) -> str:
    ep = self.endpoints.get(endpoint_name)
    if ep is not None and ep.endpoint_status != "InService":
        raise ValidationError(message=f'Cannot update in-progress endpoint "{ep.arn}".')
    counts = {
        v["VariantName"]: (v.get("CurrentInstanceCount"), v.get("DesiredInstanceCount"))
        for v in (ep.production_variants if ep else [])
    }
    arn = _orig["update_endpoint_weights_and_capacities"](self, endpoint_name, desired_weights_and_capacities)
    asked = {d["VariantName"] for d in desired_weights_and_capacities if d.get("DesiredInstanceCount")}
    for v in ep.production_variants:
        if v["VariantName"] not in asked:
            v["CurrentInstanceCount"], v["DesiredInstanceCount"] = counts[v["VariantName"]]
    ep.endpoint_status = "Updating"
    _state(self)[endpoint_name] = {"polls": FAKE.polls, "pending": None, "deployment": None}
    return arn


def _resp_update_endpoint(self: Any) -> ActionResult:
    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        deployment_config=self._get_param("DeploymentConfig"),
        retain=bool(self._get_param("RetainAllVariantProperties")),
        exclude=self._get_param("ExcludeRetainedVariantProperties"),
    )
    return ActionResult({"EndpointArn": arn})


def _statistic(self: Any, stat: str) -> Any:
    m = re.fullmatch(r"p(\d+(?:\.\d+)?)", stat)
    if m is None:
        return _orig["get_statistics_for_type"](self, stat)
    values = sorted(float(v) for v in self.metric_single_values_list)
    if not values:
        return None
    rank = max(1, math.ceil(float(m.group(1)) / 100.0 * len(values)))
    return values[rank - 1]


def _invoke(self: Any) -> Any:
    name = self._get_params().get("EndpointName") or self.path.split("/")[2]
    ep = sagemaker_backends[self.current_account][self.region].endpoints.get(name)
    if ep is None:
        return (
            400,
            {"Content-Type": "application/x-amz-json-1.1"},
            json.dumps(
                {
                    "__type": "ValidationError",
                    "message": f"Endpoint {name} of account {self.current_account} not found.",
                }
            ),
        )
    status, headers, body = _orig["invoke"](self)
    if headers.get("x-Amzn-Invoked-Production-Variant") == "invoked_production_variant":
        target = self.headers.get("X-Amzn-SageMaker-Target-Variant")
        variants = sorted(ep.production_variants, key=lambda v: -(v.get("CurrentWeight") or 0))
        headers["x-Amzn-Invoked-Production-Variant"] = target or variants[0]["VariantName"]
        headers["Content-Type"] = "application/json"
        body = json.dumps({"predictions": [0]})
    return status, headers, body


_orig: dict[str, Any] = {}
_PATCHES = {
    "create_model": _create_model,
    "create_endpoint_config": _create_endpoint_config,
    "create_endpoint": _create_endpoint,
    "update_endpoint": _update_endpoint,
    "describe_endpoint": _describe_endpoint,
    "update_endpoint_weights_and_capacities": _update_weights,
}


def install() -> None:
    """Patch moto's backend and response classes (idempotent)."""
    if _orig:
        return
    for name, fn in _PATCHES.items():
        _orig[name] = getattr(SageMakerModelBackend, name, None)
        setattr(SageMakerModelBackend, name, fn)
    _orig["resp_update_endpoint"] = getattr(SageMakerResponse, "update_endpoint", None)
    SageMakerResponse.update_endpoint = _resp_update_endpoint  # type: ignore[attr-defined]
    _orig["invoke"] = SageMakerRuntimeResponse.invoke_endpoint
    SageMakerRuntimeResponse.invoke_endpoint = _invoke  # type: ignore[method-assign]
    _orig["get_statistics_for_type"] = Statistics.get_statistics_for_type
    Statistics.get_statistics_for_type = _statistic  # type: ignore[method-assign]


def uninstall() -> None:
    for name in _PATCHES:
        if _orig.get(name) is not None:
            setattr(SageMakerModelBackend, name, _orig[name])
        else:
            delattr(SageMakerModelBackend, name)
    if _orig.get("resp_update_endpoint") is not None:
        SageMakerResponse.update_endpoint = _orig["resp_update_endpoint"]
    else:
        del SageMakerResponse.update_endpoint
    Statistics.get_statistics_for_type = _orig["get_statistics_for_type"]  # type: ignore[method-assign]
    SageMakerRuntimeResponse.invoke_endpoint = _orig["invoke"]  # type: ignore[method-assign]
    _orig.clear()
