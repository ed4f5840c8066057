"""``AwsProvider``: releases as SageMaker production variants behind one endpoint.

Differences from the protocol worth knowing (the rest is as documented in deployer.protocols):

* ``deploy_release`` / ``retire_release`` make a new EndpointConfig and call UpdateEndpoint; an
  endpoint that is already updating answers :class:`ConflictError` (SageMaker allows one update at
  a time) unless it is updating to exactly the requested config, which is then simply returned.
* ``poll`` succeeds only when the endpoint is InService *on the expected EndpointConfig*: SageMaker
  rolls a failed update back silently, which is reported as ``failed`` with its FailureReason.
* ``scale`` completes inside the call (Application Auto Scaling upserts); ``Operation.done`` is True.
* Retiring the last release is refused (an endpoint needs one variant): destroy the endpoint instead.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from deployer.errors import CapabilityError, ConflictError, NotFoundError, SpecError, StorageError
from deployer.protocols import ProviderContext
from deployer.records import (
    Capabilities,
    Metrics,
    Observed,
    ObservedRelease,
    Operation,
    OperationKind,
    OperationStatus,
    Release,
    Response,
    Traffic,
)
from deployer.spec import Autoscaling, MetricGate, Spec
from deployer_aws import _sdk, guardrails, images
from deployer_aws import metrics as cw_metrics
from deployer_aws.errors import aws_errors, error_code, translate
from deployer_aws.iam import permissions as iam_permissions
from deployer_aws.options import AwsOptions
from deployer_aws.sagemaker import (
    BUSY_STATES,
    FAILED_STATES,
    NAME_RE,
    EndpointView,
    SageMaker,
    carry_variant,
    config_extras,
    config_name,
    is_config_of,
    is_model_of,
    model_name,
    normalise_weights,
    variant_body,
    verdict,
)
from deployer_aws.scaling import Scaling
from deployer_aws.store import S3ArtifactStore

REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_STATUS = {
    "Creating": "creating",
    "InService": "ready",
    "Updating": "updating",
    "SystemUpdating": "updating",
    "RollingBack": "updating",
    "Deleting": "updating",
    "Failed": "failed",
    "OutOfService": "failed",
    "UpdateRollbackFailed": "failed",
}


def capabilities(opts: AwsOptions) -> Capabilities:
    unsupported = {
        "scale_to_zero": "SageMaker real-time variants keep at least one instance; "
        "scale to zero needs inference components, which deployer does not use"
    }
    if opts.serverless is not None:
        unsupported["autoscaling"] = "serverless endpoints scale by concurrency (serverless.max_concurrency)"
        unsupported["native_rollout"] = "SageMaker deployment guardrails do not support serverless endpoints"
    return Capabilities(
        traffic_split=True,
        autoscaling=opts.serverless is None,
        scale_to_zero=False,
        metrics=True,
        native_rollout=opts.serverless is None,
        container_images=True,
        unsupported=unsupported,
    )


def _options(raw: Any) -> AwsOptions:
    if isinstance(raw, AwsOptions):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(exclude_unset=True)
    return AwsOptions.model_validate(raw or {})


class AwsProvider:
    """Deploys releases to SageMaker real-time endpoints; artifacts in S3. Construction is offline."""

    name: ClassVar[str] = "aws"
    Options: ClassVar[type[BaseModel]] = AwsOptions
    permissions = staticmethod(iam_permissions)
    """``deployer iam-policy aws``: the least-privilege policy for the calls this provider makes."""

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.options = _options(ctx.options)
        self.capabilities = capabilities(self.options)
        self._clients = _sdk.Clients(ctx.target.region, self.options.profile)
        self._sm = SageMaker(self._clients)
        self._scaling = Scaling(self._clients)
        self._store: S3ArtifactStore | None = None
        self._custom_metrics: set[str] = set()

    # -- offline ------------------------------------------------------------------------------
    def validate(self, spec: Spec) -> None:
        try:
            opts = AwsOptions.model_validate(spec.provider_options)
        except ValidationError as exc:
            e = exc.errors()[0]
            loc = ".".join(str(p) for p in e["loc"])
            raise SpecError(
                f"provider_options.{loc}" if loc else "provider_options",
                e["msg"],
                fix="see the options table in docs/providers/aws.md",
            ) from exc
        region = spec.target.region
        if not region or not REGION_RE.fullmatch(region):
            raise SpecError("target.region", f"an AWS region is needed, got {region!r}", fix="e.g. region: us-east-1")
        if not opts.bucket:
            raise SpecError("provider_options.bucket", "no S3 bucket for artifacts", fix="set provider_options.bucket")
        if not opts.role_arn:
            raise SpecError(
                "provider_options.role_arn",
                "SageMaker needs an execution role",
                fix="set provider_options.role_arn to a role SageMaker can assume (see docs)",
            )
        longest = model_name(spec.name, "r999999")
        if not NAME_RE.fullmatch(spec.name) or len(longest) > 63:
            raise SpecError(
                "name",
                "SageMaker names are at most 63 letters, digits and hyphens",
                fix="shorten the endpoint name",
            )
        for k in {**spec.tags, **opts.tags}:
            if k.lower().startswith("aws:"):
                raise SpecError("tags", f"tag key {k!r} uses the reserved prefix 'aws:'")
        flavor = spec.model.flavor
        if flavor == "sklearn" and not opts.image:
            if images.sklearn_image(region, opts.sklearn_version) is None:
                raise SpecError(
                    "target.region",
                    f"no prebuilt scikit-learn image is known for {region}",
                    fix="set provider_options.image to a serving image in your ECR",
                )
            if opts.network_isolation:
                raise SpecError(
                    "provider_options.network_isolation",
                    "the scikit-learn container downloads its handler from S3, which isolation blocks",
                    fix="set provider_options.image to an image with the handler built in",
                )
        if flavor in ("onnx", "python") and not opts.image:
            raise SpecError(
                "provider_options.image",
                f"flavor {flavor!r} needs a serving image on SageMaker",
                fix="push the deployer serving image to ECR and set provider_options.image",
            )
        if opts.serverless is not None:
            if spec.resources.instance_type:
                raise SpecError(
                    "resources.instance_type",
                    "serverless endpoints take no instance type",
                    fix="remove resources.instance_type or provider_options.serverless",
                )
            if spec.autoscaling is not None:
                raise CapabilityError(f"autoscaling: {capabilities(opts).reason('autoscaling')}")
        else:
            itype = spec.resources.instance_type
            if itype is not None and itype not in _sdk.instance_types():
                raise SpecError(
                    "resources.instance_type",
                    f"{itype!r} is not a SageMaker hosting instance type",
                    fix="use an ml.* type such as ml.m5.large",
                )
        if spec.autoscaling is not None and (spec.autoscaling.scale_to_zero or spec.autoscaling.min == 0):
            raise CapabilityError(f"scale_to_zero: {capabilities(opts).reason('scale_to_zero')}")
        if spec.strategy.native:
            if opts.serverless is not None:
                raise CapabilityError(f"native rollout: {capabilities(opts).reason('native_rollout')}")
            guardrails.check(spec.strategy)
        if opts.data_capture is not None and opts.serverless is not None:
            raise SpecError("provider_options.data_capture", "serverless endpoints do not support data capture")
        self._custom_metrics |= {g.custom_metric for g in spec.gates if isinstance(g, MetricGate) and g.custom_metric}

    def store(self) -> S3ArtifactStore:
        if self._store is None:
            self._store = S3ArtifactStore(self._clients, self.options, {"deployer:managed": "true"})
        return self._store

    # -- reads --------------------------------------------------------------------------------
    def observe(self, endpoint: str) -> Observed | None:
        """One DescribeEndpoint (fingerprints live in the ledger, not here)."""
        view = self._sm.describe_endpoint(endpoint)
        if view is None:
            return None
        status = _STATUS.get(view.status, "updating")
        releases = {
            v["VariantName"]: ObservedRelease(
                id=v["VariantName"],
                status="ready" if status == "ready" else status,
                replicas=int(v.get("CurrentInstanceCount") or 0),
                message=view.failure if status == "failed" else None,
            )
            for v in view.variants
        }
        region = self._clients.region
        return Observed(
            endpoint=endpoint,
            status=status,
            url=f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{endpoint}/invocations",
            releases=releases,
            traffic=Traffic(weights=view.weights()),
            replicas=sum(r.replicas for r in releases.values()),
            meta={
                "arn": view.arn,
                "endpoint_config": view.config,
                "region": region,
                **({"failure_reason": view.failure} if view.failure else {}),
            },
        )

    def poll(self, op: Operation) -> OperationStatus:
        """One DescribeEndpoint; never sleeps."""
        if op.done:
            return OperationStatus(state="succeeded", progress=1.0)
        view = self._sm.describe_endpoint(op.endpoint)
        if op.kind == "destroy":
            if view is None:
                return OperationStatus(state="succeeded", progress=1.0)
            if view.status == "Deleting":
                return OperationStatus(state="running", message="endpoint Deleting")
            return OperationStatus(state="failed", message=f"endpoint still {view.status}: {view.failure or ''}")
        if op.kind == "route":
            status = verdict(view, None)
            if status.state != "succeeded" or view is None:
                return status
            want = {k: v for k, v in json.loads(op.ref["weights"]).items() if v}
            if view.weights() == want and _desired(view) == want:
                return status
            return OperationStatus(state="running", message=f"weights {view.weights()} -> {want}")
        return verdict(view, op.ref.get("endpoint_config"))

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        """One GetMetricData call for every metric of the variant."""
        custom = sorted(self._custom_metrics | set(self.options.custom_metrics))
        req = cw_metrics.request(endpoint, release, window_s, custom, self.options.metrics_namespace)
        with aws_errors("GetMetricData"):
            resp = self._clients.client("cloudwatch").get_metric_data(**req)
        return cw_metrics.parse(resp.get("MetricDataResults", []), release, window_s, custom)

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        body = payload if isinstance(payload, bytes | bytearray) else json.dumps(payload).encode()
        kwargs: dict[str, Any] = {
            "EndpointName": endpoint,
            "Body": body,
            "ContentType": "application/json",
            "Accept": "application/json",
        }
        if release:
            kwargs["TargetVariant"] = release
        start = time.perf_counter()
        try:
            resp = self._clients.client("sagemaker-runtime").invoke_endpoint(**kwargs)
        except _sdk.ClientError as exc:
            if error_code(exc) == "ModelError":  # the container answered with an error status
                data = exc.response
                return Response(
                    status=int(data.get("OriginalStatusCode") or 500),
                    body=data.get("OriginalMessage"),
                    release=release,
                    latency_ms=(time.perf_counter() - start) * 1000,
                )
            raise translate(exc, "InvokeEndpoint") from exc
        except _sdk.BotoCoreError as exc:
            raise translate(exc, "InvokeEndpoint") from exc
        raw = resp["Body"].read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return Response(
            status=200,
            body=parsed,
            release=resp.get("InvokedProductionVariant") or release,
            latency_ms=(time.perf_counter() - start) * 1000,
        )

    # -- writes -------------------------------------------------------------------------------
    def deploy_release(self, release: Release, traffic: Traffic) -> Operation:
        opts = self._opts(release)
        self._ensure_model(release, opts)
        ep = release.endpoint
        view = self._sm.describe_endpoint(ep)
        if view is None:
            variants = [variant_body(release, 100, opts)]
            return self._create(release, variants, opts, "deploy_release")
        if release.id in view.variant_names and view.status not in BUSY_STATES | FAILED_STATES:
            return self._op("deploy_release", ep, release.id, {"endpoint_config": view.config}, done=True)
        pending = self._check_busy(view, release.id, want_present=True)
        if pending is not None:
            return self._op("deploy_release", ep, release.id, {"endpoint_config": pending})
        current = self._config_variants(view.config)
        weights = dict(traffic.weights) if traffic.weights else view.weights()
        if not any(weights.get(v["VariantName"], 0) for v in current):
            weights = {release.id: 100}
        variants = [carry_variant(v, weights.get(v["VariantName"], 0)) for v in current]
        variants.append(variant_body(release, weights.get(release.id, 0), opts))
        return self._update(ep, release.id, variants, opts, "deploy_release")

    def rollout_native(self, release: Release, baseline: str | None, spec: Spec) -> Operation:
        """Blue/green UpdateEndpoint with SageMaker's traffic shifting and alarm-driven auto-rollback."""
        opts = self._opts(release)
        self._ensure_model(release, opts)
        ep = release.endpoint
        variants = [variant_body(release, 1, opts)]
        view = self._sm.describe_endpoint(ep)
        if view is None:
            return self._create(release, variants, opts, "native_rollout")
        cfg = config_name(ep, variants, config_extras(opts))
        if view.config == cfg and view.status not in BUSY_STATES:
            return self._op("native_rollout", ep, release.id, {"endpoint_config": cfg}, done=True)
        if view.status in BUSY_STATES:
            if cfg in (view.pending_config, view.config):
                return self._op("native_rollout", ep, release.id, {"endpoint_config": cfg})
            raise ConflictError(
                f"endpoint {ep} is {view.status}; one update at a time",
                hint="wait for the running operation, then retry",
            )
        alarms = list(opts.rollback_alarms)
        cw = self._clients.client("cloudwatch")
        for body in guardrails.gate_alarms(spec, ep, release.id):
            with aws_errors("PutMetricAlarm"):
                cw.put_metric_alarm(**body, Tags=[{"Key": k, "Value": v} for k, v in sorted(opts.tags.items())])
            alarms.append(body["AlarmName"])
        self._sm.ensure_config(cfg, variants, config_extras(opts), self._tags(release, opts))
        self._sm.update_endpoint(ep, cfg, deployment=guardrails.deployment_config(spec.strategy, alarms))
        return self._op(
            "native_rollout",
            ep,
            release.id,
            {"endpoint_config": cfg, "baseline": baseline or "", "alarms": ",".join(alarms)},
        )

    def route(self, endpoint: str, traffic: Traffic) -> Operation:
        if not traffic.weights:
            raise ConflictError("route needs weights that sum to 100")
        view = self._require(endpoint)
        if view.status in BUSY_STATES | FAILED_STATES:
            raise ConflictError(f"endpoint {endpoint} is {view.status}", hint="wait for it to be InService")
        missing = sorted(set(traffic.weights) - set(view.variant_names))
        if missing:
            raise NotFoundError(
                f"releases {missing} are not on endpoint {endpoint}",
                hint="deploy them before routing traffic to them",
            )
        want = {k: v for k, v in traffic.weights.items() if v}
        ref = {"weights": json.dumps(dict(sorted(traffic.weights.items())))}
        if view.weights() == want and _desired(view) == want:
            return self._op("route", endpoint, None, ref, done=True)
        self._sm.set_weights(endpoint, {v: traffic.weights.get(v, 0) for v in view.variant_names})
        return self._op("route", endpoint, None, ref)

    def scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        if not self.capabilities.autoscaling:
            raise CapabilityError(f"autoscaling: {self.capabilities.reason('autoscaling')}")
        view = self._require(endpoint)
        if release not in view.variant_names:
            raise NotFoundError(f"release {release} is not on endpoint {endpoint}")
        self._scaling.apply(endpoint, release, autoscaling, self.options.metrics_namespace)
        return self._op(
            "scale", endpoint, release, {"resource_id": f"endpoint/{endpoint}/variant/{release}"}, done=True
        )

    def retire_release(self, endpoint: str, release: str) -> Operation:
        view = self._sm.describe_endpoint(endpoint)
        if view is None or (release not in view.variant_names and view.status not in BUSY_STATES):
            self._scaling.remove(endpoint, [release])
            return self._op("retire_release", endpoint, release, {}, done=True)
        pending = self._check_busy(view, release, want_present=False)
        if pending is not None:
            return self._op("retire_release", endpoint, release, {"endpoint_config": pending})
        if view.variant_names == [release]:
            raise ConflictError(f"{release} is the last release of {endpoint}", hint="destroy the endpoint instead")
        weights = view.weights()
        if weights.get(release, 0) > 0:
            raise ConflictError(
                f"{release} still carries {weights[release]}% of traffic",
                hint="route its traffic to another release first",
            )
        self._scaling.remove(endpoint, [release])
        self._delete_alarms(endpoint, release)
        variants = [
            carry_variant(v, weights.get(v["VariantName"], 0))
            for v in self._config_variants(view.config)
            if v["VariantName"] != release
        ]
        return self._update(endpoint, release, variants, self.options, "retire_release")

    def destroy(self, endpoint: str) -> Operation:
        """Delete the endpoint, its autoscaling targets, alarms, configs and models. Idempotent."""
        view = self._sm.describe_endpoint(endpoint)
        if view is not None:
            self._scaling.remove(endpoint, view.variant_names)
            if view.status != "Deleting":
                self._sm.delete_endpoint(endpoint)
        self._delete_alarms(endpoint, None)
        for name in self._sm.list_names("EndpointConfigs", endpoint):
            if is_config_of(endpoint, name):
                self._sm.delete_config(name)
        for name in self._sm.list_names("Models", endpoint):
            if is_model_of(endpoint, name):
                self._sm.delete_model(name)
        return self._op("destroy", endpoint, None, {}, done=view is None)

    # -- helpers ------------------------------------------------------------------------------
    def _opts(self, release: Release) -> AwsOptions:
        return AwsOptions.model_validate(release.options) if release.options else self.options

    def _op(
        self, kind: OperationKind, endpoint: str, release: str | None, ref: dict[str, str], done: bool = False
    ) -> Operation:
        return Operation(kind=kind, provider=self.name, endpoint=endpoint, release=release, ref=ref, done=done)

    def _tags(self, release: Release, opts: AwsOptions) -> dict[str, str]:
        return {
            **opts.tags,
            **release.tags,
            "deployer:endpoint": release.endpoint,
            "deployer:release": release.id,
            "deployer:fingerprint": release.fingerprint,
        }

    def _require(self, endpoint: str) -> EndpointView:
        view = self._sm.describe_endpoint(endpoint)
        if view is None:
            raise NotFoundError(f"endpoint {endpoint} does not exist in {self._clients.region}")
        return view

    def _config_variants(self, name: str) -> list[dict[str, Any]]:
        cfg = self._sm.describe_config(name)
        if cfg is None:
            raise NotFoundError(f"endpoint config {name} is gone", hint="destroy and deploy the endpoint again")
        return list(cfg["ProductionVariants"])

    def _check_busy(self, view: EndpointView, release: str, want_present: bool) -> str | None:
        """For a busy endpoint: the pending config when it already does what we want, else ConflictError."""
        if view.status in FAILED_STATES:
            raise ConflictError(
                f"endpoint {view.name} is {view.status}: {view.failure or ''}",
                hint="destroy the endpoint and deploy again",
            )
        if view.status not in BUSY_STATES:
            return None
        target = view.pending_config
        if target:
            cfg = self._sm.describe_config(target)
            names = {v["VariantName"] for v in (cfg or {}).get("ProductionVariants", [])}
            if (release in names) == want_present:
                return target
        raise ConflictError(
            f"endpoint {view.name} is {view.status}; SageMaker allows one update at a time",
            hint="wait for the running operation, then retry",
        )

    def _create(
        self, release: Release, variants: list[dict[str, Any]], opts: AwsOptions, kind: OperationKind
    ) -> Operation:
        extra = config_extras(opts)
        cfg = config_name(release.endpoint, variants, extra)
        tags = self._tags(release, opts)
        self._sm.ensure_config(cfg, variants, extra, tags)
        self._sm.create_endpoint(release.endpoint, cfg, {**opts.tags, "deployer:endpoint": release.endpoint})
        return self._op(kind, release.endpoint, release.id, {"endpoint_config": cfg})

    def _update(
        self,
        endpoint: str,
        release: str,
        variants: list[dict[str, Any]],
        opts: AwsOptions,
        kind: OperationKind,
    ) -> Operation:
        extra = config_extras(opts)
        cfg = config_name(endpoint, variants, extra)
        self._sm.ensure_config(cfg, variants, extra, {**opts.tags, "deployer:endpoint": endpoint})
        self._sm.update_endpoint(endpoint, cfg)
        return self._op(kind, endpoint, release, {"endpoint_config": cfg})

    def _ensure_model(self, release: Release, opts: AwsOptions) -> None:
        """CreateModel for the release unless it exists (one DescribeModel when it does)."""
        name = model_name(release.endpoint, release.id)
        if self._sm.model_exists(name):
            return
        region = self._clients.region
        container: dict[str, Any] = {}
        if release.flavor == "container":
            container["Image"] = release.image
            if release.artifact is not None:
                container["ModelDataUrl"] = release.artifact.uri
        else:
            if release.artifact is None:
                raise StorageError(f"release {release.id} has no artifact", hint="upload the model first")
            container["ModelDataUrl"] = release.artifact.uri
            if release.flavor == "sklearn" and not opts.image:
                container["Image"] = images.sklearn_image(region, opts.sklearn_version)
                blob, digest = images.inference_bundle()
                ref = self.store().put_bytes(blob, digest, images.BUNDLE)
                container["Environment"] = images.sklearn_environment(ref.uri, region)
            else:
                container["Image"] = opts.image or release.image
                env: dict[str, str] = {"DEPLOYER_FLAVOR": release.flavor}
                if release.entrypoint:
                    env["DEPLOYER_ENTRYPOINT"] = release.entrypoint
                container["Environment"] = env
        self._sm.create_model(name, container, opts, self._tags(release, opts))

    def _delete_alarms(self, endpoint: str, release: str | None) -> None:
        cw = self._clients.client("cloudwatch")
        prefix = guardrails.alarm_name(endpoint, release, "") if release else f"deployer-{endpoint}-"
        with aws_errors("DescribeAlarms"):
            found = cw.describe_alarms(AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"])
        pattern = re.compile(rf"deployer-{re.escape(endpoint)}-r\d{{4,}}-(p99|error-rate)")
        names = [a["AlarmName"] for a in found.get("MetricAlarms", []) if pattern.fullmatch(a["AlarmName"])]
        if names:
            with aws_errors("DeleteAlarms"):
                cw.delete_alarms(AlarmNames=names)


def _desired(view: EndpointView) -> dict[str, int]:
    return normalise_weights(view.variants, "DesiredWeight")
