"""``AwsProvider``: releases as SageMaker production variants behind one endpoint.

Differences from the protocol worth knowing (the rest is as documented in deployer.protocols):

* Every Model, EndpointConfig and Endpoint carries tags: ``deployer:endpoint``; models also
  ``deployer:release``, ``deployer:fingerprint`` and ``deployer:artifact`` (the digest); configs
  ``deployer:fingerprint:<variant>`` per variant. A model or config of the expected name with another
  fingerprint is a :class:`ConflictError` (another ledger made it). ``observe`` reads the releases and
  fingerprints from the serving config: one DescribeEndpoint, plus one DescribeEndpointConfig and one
  ListTags the first time a config is seen (configs are immutable, so that is cached).
* ``deploy_release`` / ``retire_release`` make a new EndpointConfig and call UpdateEndpoint; an
  endpoint that is Creating or Updating answers :class:`EndpointBusyError` (a conflict the core waits
  out) unless it is already going to a config that does what was asked, which is then resumed.
* ``poll`` succeeds only when the endpoint is InService *on the expected EndpointConfig*: SageMaker
  rolls a failed update back silently, which is reported as ``failed`` with its FailureReason.
* ``scale`` completes inside the call (Application Auto Scaling upserts); ``Operation.done`` is True.
* Retiring the last release is refused (an endpoint needs one variant): destroy the endpoint instead.
* ``metrics`` reads whole published minutes: the window ends ``metrics_delay_s`` before now, floored
  to the minute.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel

from deployer.errors import CapabilityError, ConflictError, NotFoundError
from deployer.protocols import ProviderContext
from deployer.records import (
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
from deployer_aws import _sdk, guardrails, models, validation
from deployer_aws import metrics as cw_metrics
from deployer_aws.capabilities import METRICS_DELAY_S, capabilities
from deployer_aws.errors import EndpointBusyError, aws_errors, error_code, translate
from deployer_aws.iam import permissions as iam_permissions
from deployer_aws.options import AwsOptions
from deployer_aws.sagemaker import (
    BUSY_STATES,
    ENDPOINT_TAG,
    FAILED_STATES,
    EndpointView,
    Layout,
    SageMaker,
    Variant,
    carry_variant,
    config_extras,
    config_name,
    is_config_of,
    is_model_of,
    model_name,
    normalise_weights,
    variant_body,
    variant_tag,
    verdict,
)
from deployer_aws.scaling import Scaling
from deployer_aws.store import S3ArtifactStore

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


def _options(raw: Any) -> AwsOptions:
    if isinstance(raw, AwsOptions):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(exclude_unset=True)
    return AwsOptions.model_validate(raw or {})


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
        self.utcnow: Callable[[], dt.datetime] = _utcnow
        """Wall clock for metric windows (tests inject the clock their fake CloudWatch publishes on)."""

    # -- offline ------------------------------------------------------------------------------
    def validate(self, spec: Spec) -> None:
        validation.validate(spec, capabilities(validation.options(spec)))
        self._custom_metrics |= {g.custom_metric for g in spec.gates if isinstance(g, MetricGate) and g.custom_metric}

    def store(self) -> S3ArtifactStore:
        if self._store is None:
            self._store = S3ArtifactStore(self._clients, self.options, {"deployer:managed": "true"})
        return self._store

    # -- reads --------------------------------------------------------------------------------
    def observe(self, endpoint: str) -> Observed | None:
        """One DescribeEndpoint (+ the serving config's layout the first time it is seen)."""
        view = self._sm.describe_endpoint(endpoint)
        if view is None:
            return None
        status = _STATUS.get(view.status, "updating")
        layout = self._layout(view)
        releases: dict[str, ObservedRelease] = {}
        for v in view.variants:
            known = layout.variants.get(v["VariantName"])
            rid = known.release if known else v["VariantName"]
            releases[rid] = ObservedRelease(
                id=rid,
                status="ready" if status == "ready" else status,
                replicas=int(v.get("CurrentInstanceCount") or 0),
                fingerprint=known.fingerprint if known else None,
                message=view.failure if status == "failed" else None,
            )
        region = self._clients.region
        return Observed(
            endpoint=endpoint,
            status=status,
            url=invocation_url(region, endpoint),
            releases=releases,
            traffic=Traffic(weights=_by_release(layout, view.weights())),
            replicas=sum(r.replicas for r in releases.values()),
            meta={
                "arn": view.arn,
                "endpoint_config": view.config,
                "region": region,
                **({"failure_reason": view.failure} if view.failure else {}),
            },
        )

    def poll(self, op: Operation) -> OperationStatus:
        """One DescribeEndpoint; never sleeps. A finished native rollout hands autoscaling back."""
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
        status = verdict(view, op.ref.get("endpoint_config"))
        if op.kind == "native_rollout" and status.terminal and op.ref.get("variant"):
            self._hand_back_scaling(op, succeeded=status.state == "succeeded")
        return status

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        """One GetMetricData call for every metric of the variant serving ``release``.

        The window covers whole published minutes: it ends ``metrics_delay_s`` before now, floored to
        the minute, and spans ``window_s`` rounded up to minutes.
        """
        custom = sorted(self._custom_metrics | set(self.options.custom_metrics))
        variant = self._variant_or_none(endpoint, release) or release
        now = self.utcnow() - dt.timedelta(seconds=METRICS_DELAY_S)
        req = cw_metrics.request(endpoint, variant, window_s, custom, self.options.metrics_namespace, now=now)
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
            kwargs["TargetVariant"] = self._variant_or_none(endpoint, release) or release
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
        served = resp.get("InvokedProductionVariant")
        if isinstance(parsed, dict) and parsed.get("release"):
            served = parsed["release"]  # the container says which release it is
        return Response(
            status=200,
            body=parsed,
            release=served or release,
            latency_ms=(time.perf_counter() - start) * 1000,
        )

    # -- writes -------------------------------------------------------------------------------
    def deploy_release(self, release: Release, traffic: Traffic) -> Operation:
        opts = self._opts(release)
        self._ensure_model(release, opts)
        ep = release.endpoint
        view = self._sm.describe_endpoint(ep)
        if view is None:
            new = Variant(release.id, release.id, release.fingerprint, variant_body(release, 100, opts))
            return self._create(release, [new], opts, "deploy_release")
        layout = self._layout(view)
        have = layout.by_release().get(release.id)
        if have is not None:
            models.check_variant(ep, have, release)
            if view.status not in BUSY_STATES | FAILED_STATES:
                return self._op("deploy_release", ep, release.id, {"endpoint_config": view.config}, done=True)
        pending = self._check_busy(view, release, want_present=True)
        if pending is not None:
            return self._op("deploy_release", ep, release.id, {"endpoint_config": pending})
        weights = dict(traffic.weights) if traffic.weights else _by_release(layout, view.weights())
        if not any(weights.get(v.release, 0) for v in layout.variants.values()):
            weights = {release.id: 100}
        variants = [
            Variant(v.name, v.release, v.fingerprint, carry_variant(v.body, weights.get(v.release, 0)))
            for v in layout.variants.values()
        ]
        variants.append(
            Variant(
                release.id, release.id, release.fingerprint, variant_body(release, weights.get(release.id, 0), opts)
            )
        )
        return self._update(ep, release.id, variants, opts, "deploy_release")

    def rollout_native(self, release: Release, baseline: str | None, spec: Spec) -> Operation:
        """A guarded (blue/green) UpdateEndpoint with SageMaker's traffic shifting and alarm-driven
        auto-rollback, as the deployment guardrails pages require it:

        * the new config keeps the old variant name ("your new endpoint configuration must have the same
          variant name as the old endpoint configuration":
          https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-exclusions.html), so the
          release is read from the variant's model, never from its name;
        * the gate alarms watch that variant;
        * an autoscaled variant is deregistered as a scalable target first (SageMaker refuses the update
          otherwise: https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-update-endpoint.html)
          and :meth:`poll` registers it again when the rollout ends: the new release's autoscaling after a
          promotion, the old target and policies after a rollback.
        """
        opts = self._opts(release)
        self._ensure_model(release, opts)
        ep = release.endpoint
        view = self._sm.describe_endpoint(ep)
        if view is None:
            new = Variant(release.id, release.id, release.fingerprint, variant_body(release, 1, opts))
            return self._create(release, [new], opts, "native_rollout")
        layout = self._layout(view)
        have = layout.by_release().get(release.id)
        if have is not None:
            models.check_variant(ep, have, release)
        if len(layout.variants) != 1:
            raise ConflictError(
                f"a native rollout replaces the single variant of {ep}, which serves {sorted(layout.by_release())}",
                hint="route all traffic to one release and retire the others, or set strategy.native: false",
            )
        variant = next(iter(layout.variants))
        new = Variant(variant, release.id, release.fingerprint, variant_body(release, 1, opts, variant=variant))
        extra = config_extras(opts)
        cfg = config_name(ep, [new.body], extra, {variant: release.fingerprint})
        if view.config == cfg and view.status not in BUSY_STATES:
            return self._op("native_rollout", ep, release.id, {"endpoint_config": cfg}, done=True)
        if view.status in BUSY_STATES:
            if cfg in (view.pending_config, view.config):
                return self._op("native_rollout", ep, release.id, {"endpoint_config": cfg})
            raise EndpointBusyError(f"endpoint {ep} is {view.status}; one update at a time", hint="wait and retry")
        saved = self._scaling.snapshot(ep, variant)
        if saved is not None:
            self._scaling.remove(ep, [variant])
        alarms = list(opts.rollback_alarms)
        cw = self._clients.client("cloudwatch")
        for body in guardrails.gate_alarms(spec, ep, release.id, variant):
            with aws_errors("PutMetricAlarm"):
                cw.put_metric_alarm(**body, Tags=[{"Key": k, "Value": v} for k, v in sorted(opts.tags.items())])
            alarms.append(body["AlarmName"])
        self._sm.ensure_config(cfg, [new.body], extra, self._config_tags(ep, [new], opts))
        self._sm.update_endpoint(ep, cfg, deployment=guardrails.deployment_config(spec.strategy, alarms))
        auto = release.autoscaling or spec.autoscaling
        ref = {
            "endpoint_config": cfg,
            "baseline": baseline or "",
            "alarms": ",".join(alarms),
            "variant": variant,
            "restore": json.dumps(saved) if saved else "",
            "autoscaling": auto.model_dump_json() if auto else "",
        }
        return self._op("native_rollout", ep, release.id, ref)

    def route(self, endpoint: str, traffic: Traffic) -> Operation:
        if traffic.mirror:
            raise CapabilityError(f"shadow traffic: {self.capabilities.reason('shadow')}")
        if not traffic.weights:
            raise ConflictError("route needs weights that sum to 100")
        view = self._require(endpoint)
        if view.status in BUSY_STATES:
            raise EndpointBusyError(f"endpoint {endpoint} is {view.status}", hint="wait for it to be InService")
        if view.status in FAILED_STATES:
            raise ConflictError(f"endpoint {endpoint} is {view.status}", hint="destroy and deploy it again")
        layout = self._layout(view)
        served = layout.by_release()
        missing = sorted(set(traffic.weights) - set(served))
        if missing:
            raise NotFoundError(
                f"releases {missing} are not on endpoint {endpoint}",
                hint="deploy them before routing traffic to them",
            )
        want = {served[r].name: w for r, w in traffic.weights.items() if w}
        ref = {"weights": json.dumps(dict(sorted(want.items())))}
        if view.weights() == want and _desired(view) == want:
            return self._op("route", endpoint, None, ref, done=True)
        self._sm.set_weights(endpoint, {v: want.get(v, 0) for v in view.variant_names})
        return self._op("route", endpoint, None, ref)

    def scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        if not self.capabilities.autoscaling:
            raise CapabilityError(f"autoscaling: {self.capabilities.reason('autoscaling')}")
        variant = self._variant_or_none(endpoint, release)
        if variant is None:
            raise NotFoundError(f"release {release} is not on endpoint {endpoint}")
        self._scaling.apply(endpoint, variant, autoscaling, self.options.metrics_namespace)
        return self._op(
            "scale", endpoint, release, {"resource_id": f"endpoint/{endpoint}/variant/{variant}"}, done=True
        )

    def retire_release(self, endpoint: str, release: str) -> Operation:
        """Idempotent: a release that is not on the endpoint (a failed candidate SageMaker already rolled
        back, or one retired before) only loses its leftover scaling target and alarms."""
        view = self._sm.describe_endpoint(endpoint)
        layout = self._layout(view) if view is not None else None
        variant = layout.variant_of(release) if layout is not None else None
        if view is None or layout is None or (variant is None and view.status not in BUSY_STATES):
            if view is None or release not in (view.variant_names if view else []):
                self._scaling.remove(endpoint, [release])
            self._delete_alarms(endpoint, release)
            return self._op("retire_release", endpoint, release, {}, done=True)
        pending = self._check_busy(view, None, want_present=False, release_id=release)
        if pending is not None:
            return self._op("retire_release", endpoint, release, {"endpoint_config": pending})
        assert variant is not None
        if len(layout.variants) == 1:
            raise ConflictError(f"{release} is the last release of {endpoint}", hint="destroy the endpoint instead")
        weights = view.weights()
        if weights.get(variant, 0) > 0:
            raise ConflictError(
                f"{release} still carries {weights[variant]}% of traffic",
                hint="route its traffic to another release first",
            )
        self._scaling.remove(endpoint, [variant])
        self._delete_alarms(endpoint, release)
        variants = [
            Variant(v.name, v.release, v.fingerprint, carry_variant(v.body, weights.get(v.name, 0)))
            for v in layout.variants.values()
            if v.name != variant
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

    def _layout(self, view: EndpointView) -> Layout:
        """What the endpoint's current config serves (an endpoint without a readable config: its variants)."""
        try:
            return self._sm.layout(view.name, view.config)
        except NotFoundError:
            bodies = {
                v["VariantName"]: Variant(v["VariantName"], v["VariantName"], None, dict(v)) for v in view.variants
            }
            return Layout(config=view.config, variants=bodies)

    def _variant_or_none(self, endpoint: str, release: str) -> str | None:
        view = self._sm.describe_endpoint(endpoint)
        return self._layout(view).variant_of(release) if view is not None else None

    def _config_tags(self, endpoint: str, variants: list[Variant], opts: AwsOptions) -> dict[str, str]:
        tags = {**opts.tags, ENDPOINT_TAG: endpoint}
        tags.update({variant_tag(v.name): v.fingerprint for v in variants if v.fingerprint})
        return tags

    def _require(self, endpoint: str) -> EndpointView:
        view = self._sm.describe_endpoint(endpoint)
        if view is None:
            raise NotFoundError(f"endpoint {endpoint} does not exist in {self._clients.region}")
        return view

    def _check_busy(
        self, view: EndpointView, release: Release | None, want_present: bool, release_id: str | None = None
    ) -> str | None:
        """For a busy endpoint: the config it is going to when that already does what we want
        (a crash or a lost response during Creating/Updating resumes), else EndpointBusyError."""
        if view.status in FAILED_STATES:
            raise ConflictError(
                f"endpoint {view.name} is {view.status}: {view.failure or ''}",
                hint="destroy the endpoint and deploy again",
            )
        if view.status not in BUSY_STATES:
            return None
        rid = release.id if release is not None else release_id
        target = view.pending_config or (view.config if view.status == "Creating" else None)
        if target:
            layout = self._sm.layout(view.name, target)
            have = layout.by_release().get(rid or "")
            if release is not None and have is not None:
                models.check_variant(view.name, have, release)
            if (have is not None) == want_present:
                return target
        raise EndpointBusyError(
            f"endpoint {view.name} is {view.status}; SageMaker allows one update at a time",
            hint="wait for the running operation, then retry",
        )

    def _create(self, release: Release, variants: list[Variant], opts: AwsOptions, kind: OperationKind) -> Operation:
        extra = config_extras(opts)
        bodies = [v.body for v in variants]
        cfg = config_name(release.endpoint, bodies, extra, {v.name: v.fingerprint or "" for v in variants})
        self._sm.ensure_config(cfg, bodies, extra, self._config_tags(release.endpoint, variants, opts))
        self._sm.create_endpoint(release.endpoint, cfg, {**opts.tags, ENDPOINT_TAG: release.endpoint})
        return self._op(kind, release.endpoint, release.id, {"endpoint_config": cfg})

    def _update(
        self, endpoint: str, release: str, variants: list[Variant], opts: AwsOptions, kind: OperationKind
    ) -> Operation:
        extra = config_extras(opts)
        bodies = [v.body for v in variants]
        cfg = config_name(endpoint, bodies, extra, {v.name: v.fingerprint or "" for v in variants})
        self._sm.ensure_config(cfg, bodies, extra, self._config_tags(endpoint, variants, opts))
        self._sm.update_endpoint(endpoint, cfg)
        return self._op(kind, endpoint, release, {"endpoint_config": cfg})

    def _hand_back_scaling(self, op: Operation, succeeded: bool) -> None:
        variant = op.ref["variant"]
        if succeeded and op.ref.get("autoscaling"):
            auto = Autoscaling.model_validate_json(op.ref["autoscaling"])
            self._scaling.apply(op.endpoint, variant, auto, self.options.metrics_namespace)
        elif not succeeded and op.ref.get("restore"):
            self._scaling.restore(op.endpoint, variant, json.loads(op.ref["restore"]))

    def _ensure_model(self, release: Release, opts: AwsOptions) -> None:
        """CreateModel for the release unless it exists; an existing one must carry its fingerprint
        (DescribeModel + ListTags when it does)."""
        name = model_name(release.endpoint, release.id)
        found = self._sm.model_tags(name)
        if found is not None:
            models.check_model(name, found, release)
            return
        container = models.container(release, opts, self._clients.region, self.store)
        self._sm.create_model(name, container, opts, models.tags(release, opts))

    def _delete_alarms(self, endpoint: str, release: str | None) -> None:
        guardrails.delete_alarms(self._clients.client("cloudwatch"), endpoint, release)


def invocation_url(region: str, endpoint: str) -> str:
    """Where InvokeEndpoint goes: the sagemaker-runtime endpoint the environment sets, else the public one."""
    base = _sdk.endpoint_override("sagemaker-runtime") or f"https://runtime.sagemaker.{region}.amazonaws.com"
    return f"{base.rstrip('/')}/endpoints/{endpoint}/invocations"


def _by_release(layout: Layout, weights: dict[str, int]) -> dict[str, int]:
    return {layout.release_of(variant): w for variant, w in weights.items()}


def _desired(view: EndpointView) -> dict[str, int]:
    return normalise_weights(view.variants, "DesiredWeight")
