"""Makes moto's SageMaker backend behave like SageMaker where the aws provider depends on it.

moto 5.2 has no UpdateEndpoint, accepts duplicate names, has endpoints InService at once and checks
few request fields. Here, following the API reference:

* Every SageMaker request is parsed against botocore's own service model (the input shape of its
  operation, with botocore's ParamValidator) and refused with ValidationException when it does not fit.
* CreateModel / CreateEndpointConfig / CreateEndpoint refuse an existing name (ValidationException:
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModel.html "Model names must be unique").
* CreateEndpoint starts ``Creating``; UpdateEndpoint and UpdateEndpointWeightsAndCapacities go
  ``Updating``; each becomes ``InService`` after ``SageMakerFake.polls`` DescribeEndpoint calls
  (4 by default: SageMaker takes minutes, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpoint.html).
  While it updates, DescribeEndpoint shows the old config plus ``PendingDeploymentSummary``.
* UpdateEndpoint needs an existing endpoint and config, refuses an endpoint that is not InService
  ("Cannot update in-progress endpoint"), stores DeploymentConfig (shown as ``LastDeploymentConfig``),
  honours RetainAllVariantProperties for instance counts, and in ``rollback`` mode ends InService on
  the *old* config with a FailureReason, as SageMaker does when new instances fail or an auto-rollback
  alarm fires. A guarded update (DeploymentConfig with a BlueGreen or Rolling policy) must keep the old
  variant names and must not touch a variant that is still a scalable target (see ``_guarded_rules``).
* UpdateEndpointWeightsAndCapacities keeps instance counts that the request leaves out.

sagemaker-runtime and CloudWatch: see deployer_aws/testing/runtime.py (the model runs for real; its
invocations reach CloudWatch after the publication delay). moto's GetMetricData answers percentile
statistics (``p99``) with null; CloudWatch computes them. Here ``pNN`` is the nearest-rank percentile
of the raw values put in the period.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.cloudwatch.models import CloudWatchBackend, Statistics
from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from deployer_aws import _sdk
from deployer_aws._sdk import ParamValidator
from deployer_aws.testing.runtime import Runtime, decode_body, model_error

DEFAULT_POLLS = 4


@dataclass
class SageMakerFake:
    """Switches the tests flip. One instance, reset before every test."""

    polls: int = DEFAULT_POLLS
    rollback_reason: str | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)
    runtime: Runtime = field(default_factory=Runtime)

    def reset(self) -> None:
        self.runtime.close()
        self.polls, self.rollback_reason, self.updates = DEFAULT_POLLS, None, []
        self.runtime = Runtime()


FAKE = SageMakerFake()


_SAGEMAKER_MODEL = _sdk.service_model("sagemaker")


def _json_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    """A JSON-protocol error as AWS sends it (moto reads the HTTP status from the ``status`` header)."""
    headers = {"Content-Type": "application/x-amz-json-1.1", "status": str(status)}
    return status, headers, json.dumps({"__type": code, "message": message})


def _call_action(self: Any) -> Any:
    """Parse the request with botocore's SageMaker model before moto sees it (ValidationException)."""
    action = self._get_action()
    try:
        shape = _SAGEMAKER_MODEL.operation_model(action).input_shape
        params = json.loads(self.body or "{}")
    except Exception as exc:
        return _json_error(400, "ValidationException", f"{action}: {exc}")
    report = ParamValidator().validate(params, shape) if shape is not None else None
    if report is not None and report.has_errors():
        return _json_error(400, "ValidationException", report.generate_report())
    return _orig["call_action"](self)


def _state(backend: Any) -> dict[str, dict[str, Any]]:
    if not hasattr(backend, "_deployer_fake"):
        backend._deployer_fake = {}
    return backend._deployer_fake


def _arn(backend: Any, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:{kind}/{name}"


def _create_model(self: Any, **kwargs: Any) -> Any:
    name = str(kwargs.get("model_name"))
    if name in self._models:
        raise ValidationError(message=f'Cannot create already existing model "{_arn(self, "model", name)}".')
    return _orig["create_model"](self, **kwargs)


def _create_endpoint_config(self: Any, **kwargs: Any) -> Any:
    name = str(kwargs.get("endpoint_config_name"))
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
    _guarded_rules(self, ep, self.endpoint_configs[endpoint_config_name], deployment_config)
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


def _scalable_variants(backend: Any, endpoint: str) -> set[str]:
    """Variants of ``endpoint`` registered with Application Auto Scaling in the same account/region."""
    aas = applicationautoscaling_backends[backend.account_id][backend.region_name]
    targets = aas.targets.get("sagemaker:variant:DesiredInstanceCount", {})
    prefix = f"endpoint/{endpoint}/variant/"
    return {rid[len(prefix) :] for rid in targets if rid.startswith(prefix)}


def _guarded_rules(self: Any, ep: FakeEndpoint, cfg: Any, deployment: dict[str, Any] | None) -> None:
    old = {v["VariantName"]: v for v in self.endpoint_configs[ep.endpoint_config_name].production_variants}
    new = {v["VariantName"]: v for v in cfg.production_variants}
    scalable = _scalable_variants(self, ep.endpoint_name) & set(old)
    guarded = deployment is not None and ("BlueGreenUpdatePolicy" in deployment or "RollingUpdatePolicy" in deployment)
    if guarded:
        # "When doing a blue/green or rolling deployment, your new endpoint configuration must have the
        # same variant name as the old endpoint configuration."
        # https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-exclusions.html
        if set(new) != set(old):
            raise ValidationError(
                message=f"The variant names {sorted(new)} of the new endpoint configuration do not match the "
                f"variant names {sorted(old)} of the endpoint; a deployment configuration needs the same names."
            )
        # An autoscaled variant must be deregistered before a guarded update and registered again after
        # it: https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green.html and
        # https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-update-endpoint.html
        if scalable:
            raise ValidationError(
                message=f"Variant(s) {sorted(scalable)} of endpoint {ep.endpoint_name} are registered as scalable "
                "targets; deregister them before updating with a deployment configuration."
            )
    # "If the update would change the instance type for any model that is a target for auto scaling,
    # the update fails." https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-update-endpoint.html
    for name in scalable & set(new):
        if new[name].get("InstanceType") != old[name].get("InstanceType"):
            raise ValidationError(
                message=f"Variant {name} is a scalable target; its instance type cannot change in an update."
            )


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
    backend = sagemaker_backends[self.current_account][self.region]
    ep = backend.endpoints.get(name)
    if ep is None:
        return _json_error(400, "ValidationError", f"Endpoint {name} of account {self.current_account} not found.")
    # InvokeEndpoint needs an InService endpoint (ValidationError otherwise):
    # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html
    if ep.endpoint_status not in ("InService", "Updating", "SystemUpdating"):
        return _json_error(400, "ValidationError", f"Endpoint {name} is {ep.endpoint_status}.")
    runtime = FAKE.runtime
    variant = runtime.pick_variant(ep.production_variants, self.headers.get("X-Amzn-SageMaker-Target-Variant"))
    if variant is None:
        return _json_error(400, "ValidationError", "no variant can serve this request")
    cfg = backend.endpoint_configs[ep.endpoint_config_name]
    model_name = next(v["ModelName"] for v in cfg.production_variants if v["VariantName"] == variant["VariantName"])
    start = time.perf_counter()
    status, content_type, body = runtime.invoke(
        self.current_account,
        backend._models[model_name],
        decode_body(self.body),
        self.headers.get("Content-Type", "application/json"),
        self.headers.get("Accept", "application/json"),
    )
    runtime.record(name, variant["VariantName"], status, (time.perf_counter() - start) * 1000.0)
    if status >= 400:
        return model_error(status, body, ep.arn)
    headers = {"Content-Type": content_type, "x-Amzn-Invoked-Production-Variant": variant["VariantName"]}
    return 200, headers, body


def _get_metric_data(self: Any, *args: Any, **kwargs: Any) -> Any:
    FAKE.runtime.publish(self)
    return _orig["get_metric_data"](self, *args, **kwargs)


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
    _orig["call_action"] = SageMakerResponse.call_action
    SageMakerResponse.call_action = _call_action  # type: ignore[method-assign]
    _orig["get_metric_data"] = CloudWatchBackend.get_metric_data
    CloudWatchBackend.get_metric_data = _get_metric_data  # type: ignore[method-assign]
    _orig["get_statistics_for_type"] = Statistics.get_statistics_for_type
    Statistics.get_statistics_for_type = _statistic  # type: ignore[method-assign]


def uninstall() -> None:
    for name in _PATCHES:
        if _orig.get(name) is not None:
            setattr(SageMakerModelBackend, name, _orig[name])
        else:
            delattr(SageMakerModelBackend, name)
    if _orig.get("resp_update_endpoint") is not None:
        SageMakerResponse.update_endpoint = _orig["resp_update_endpoint"]  # type: ignore[attr-defined]
    else:
        del SageMakerResponse.update_endpoint  # type: ignore[attr-defined]
    Statistics.get_statistics_for_type = _orig["get_statistics_for_type"]  # type: ignore[method-assign]
    SageMakerRuntimeResponse.invoke_endpoint = _orig["invoke"]  # type: ignore[method-assign]
    SageMakerResponse.call_action = _orig["call_action"]  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = _orig["get_metric_data"]  # type: ignore[method-assign]
    _orig.clear()
