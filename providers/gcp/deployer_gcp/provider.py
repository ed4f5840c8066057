"""``GcpProvider``: releases as Vertex AI models deployed on one Vertex AI endpoint per deployer endpoint.

Differences from the protocol worth knowing (the rest is as documented in deployer.protocols):

* ``deploy_release`` creates what is missing (the Endpoint, the release's Model version) and returns
  an Operation on those long-running operations; the DeployModel is sent by the ``poll`` that finds
  them done. The DeployModel operation's id is written on the Model version's labels, so a process
  killed mid-deploy re-attaches to the same operation instead of starting a second one.
  ``Operation.ref["lro"]`` holds the operation name being polled.
* ``route`` is one synchronous UpdateEndpoint (traffic split keyed by deployed-model id);
  ``Operation.done`` is True.
* ``invoke`` with a release cannot target it (Vertex has no per-model predict on a shared endpoint):
  it sends requests through the split until that release answers (at most ``TARGET_TRIES``).
* ``retire_release`` undeploys (the Model version stays, so a rollback redeploys without uploading);
  ``destroy`` removes the split, undeploys everything, then deletes the Endpoint and the Model.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from deployer.errors import CapabilityError, ConflictError, NotFoundError, ProviderError, SpecError, StorageError
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
from deployer.spec import Autoscaling, Spec
from deployer_gcp import _sdk, containers, vertex
from deployer_gcp import metrics as monitoring
from deployer_gcp.errors import gcp_errors
from deployer_gcp.iam import permissions as iam_permissions
from deployer_gcp.options import LABEL_KEY_RE, LABEL_VALUE_RE, GcpOptions
from deployer_gcp.store import GcsArtifactStore

REGION_RE = re.compile(r"^[a-z]+-[a-z]+\d+$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
MACHINE_RE = re.compile(r"^[a-z0-9]+-[a-z0-9-]+$")
TARGET_TRIES = 50


def capabilities(opts: Any = None) -> Capabilities:
    """What the provider can do; ``opts`` may override the metrics lateness (an emulator, or measured)."""
    granularity = getattr(opts, "metrics_granularity_s", None)
    delay = getattr(opts, "metrics_delay_s", None)
    return Capabilities(
        traffic_split=True,
        autoscaling=True,
        scale_to_zero=False,
        metrics=True,
        native_rollout=False,
        container_images=True,
        shadow=False,
        metrics_granularity_s=monitoring.GRANULARITY_S if granularity is None else granularity,
        metrics_delay_s=monitoring.METRICS_DELAY_S if delay is None else delay,
        unsupported={
            "scale_to_zero": "Vertex AI v1 dedicated resources keep min_replica_count >= 1",
            "native_rollout": "Vertex AI endpoints have no guarded rollout of their own; deployer runs it",
            "shadow": "Vertex AI endpoints cannot mirror requests to a deployed model",
            "custom_autoscaling_metric": "Vertex AI autoscales on CPU / accelerator utilisation or request count only",
        },
    )


def _options(raw: Any) -> GcpOptions:
    if isinstance(raw, GcpOptions):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(exclude_unset=True)
    return GcpOptions.model_validate(raw or {})


class GcpProvider:
    """Deploys releases to Vertex AI endpoints; artifacts in GCS. Construction is offline."""

    name: ClassVar[str] = "gcp"
    Options: ClassVar[type[BaseModel]] = GcpOptions
    permissions = staticmethod(iam_permissions)
    """``deployer iam-policy gcp``: the roles and the exact permissions the calls this provider makes need."""

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.options = _options(ctx.options)
        self.capabilities = capabilities(self.options)
        self._clients = _sdk.Clients(
            ctx.target.project,
            ctx.target.region,
            self.options.credentials_file,
            self.options.api_endpoint,
            self.options.monitoring_endpoint,
        )
        self._vx = _sdk.Vertex(self._clients)
        self._store: GcsArtifactStore | None = None
        self._started: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- offline ------------------------------------------------------------------------------
    def validate(self, spec: Spec) -> None:
        try:
            opts = GcpOptions.model_validate(spec.provider_options)
        except ValidationError as exc:
            e = exc.errors()[0]
            loc = ".".join(str(p) for p in e["loc"])
            raise SpecError(
                f"provider_options.{loc}" if loc else "provider_options",
                e["msg"],
                fix="see the options table in docs/providers/gcp.md",
            ) from exc
        t = spec.target
        if not t.project or not PROJECT_RE.fullmatch(t.project):
            raise SpecError(
                "target.project", f"a GCP project id is needed, got {t.project!r}", fix="project: my-project"
            )
        if not t.region or not REGION_RE.fullmatch(t.region):
            raise SpecError(
                "target.region", f"a Vertex AI region is needed, got {t.region!r}", fix="region: us-central1"
            )
        if not opts.bucket:
            raise SpecError("provider_options.bucket", "no GCS bucket for artifacts", fix="set provider_options.bucket")
        for k, v in spec.tags.items():
            if not LABEL_KEY_RE.fullmatch(k) or not LABEL_VALUE_RE.fullmatch(v.lower()):
                raise SpecError(
                    f"tags.{k}",
                    "GCP labels are at most 63 lowercase letters, digits, '_' and '-' (keys start with a letter)",
                    fix="rename the tag",
                )
        machine = opts.machine_type or spec.resources.instance_type
        if machine and not MACHINE_RE.fullmatch(machine):
            raise SpecError("resources.instance_type", f"{machine!r} is not a Compute Engine machine type",
                            fix="use a type such as n1-standard-4")
        if spec.resources.gpus and opts.accelerator is None:
            raise SpecError("provider_options.accelerator", "resources.gpus needs an accelerator type on Vertex AI",
                            fix="set provider_options.accelerator: {type: NVIDIA_TESLA_T4, count: 1}")
        self._validate_image(spec, opts)
        auto = spec.autoscaling
        if auto is not None:
            if auto.scale_to_zero or auto.min == 0:
                raise CapabilityError(f"autoscaling.scale_to_zero: {self.capabilities.reason('scale_to_zero')}")
            if auto.target_metric == "custom":
                reason = self.capabilities.reason("custom_autoscaling_metric")
                raise CapabilityError(f"autoscaling.custom_metric: {reason}")
            if auto.target_metric == "cpu_utilization" and not 1 <= auto.target_value <= 100:
                raise SpecError("autoscaling.target_value", "CPU utilisation targets are percentages (1-100)")
        if spec.strategy.shadow is not None:
            raise CapabilityError(f"strategy.shadow: {self.capabilities.reason('shadow')}")

    def _validate_image(self, spec: Spec, opts: GcpOptions) -> None:
        flavor = spec.model.flavor
        if flavor in ("onnx", "python") and not opts.image:
            raise SpecError("provider_options.image", f"flavor {flavor!r} needs a serving image on Vertex AI",
                            fix="push the deployer serving image to Artifact Registry and set provider_options.image")
        if flavor != "sklearn" or opts.image:
            return
        version = opts.sklearn_version or containers.minor(containers.model_versions().get("sklearn", ""))
        if containers.sklearn_image(spec.target.region or "", version) is None:
            raise SpecError(
                "provider_options.sklearn_version",
                f"Vertex AI has no prebuilt container for scikit-learn {version or '(not installed)'}; "
                f"it has {', '.join(containers.SKLEARN_VERSIONS)}",
                fix="set provider_options.image to a serving image, or package the model with a listed "
                "scikit-learn version and set sklearn_version",
            )

    def store(self) -> GcsArtifactStore:
        if self._store is None:
            self._store = GcsArtifactStore(self._clients, self.options, {"deployer-managed": "true"})
        return self._store

    # -- reads --------------------------------------------------------------------------------
    def _endpoint_name(self, endpoint: str) -> str:
        return f"{self._clients.parent}/endpoints/{endpoint}"

    def _model_name(self, endpoint: str) -> str:
        return f"{self._clients.parent}/models/{endpoint}"

    def _view(self, endpoint: str) -> vertex.EndpointView | None:
        with gcp_errors("endpoints.get"):
            ep = self._vx.get_endpoint(self._endpoint_name(endpoint))
        if ep is None:
            return None
        owner = ep.get("labels", {}).get(vertex.L_ENDPOINT)
        if owner != endpoint:
            raise ConflictError(
                f"Vertex endpoint {endpoint} exists but was not made by deployer for {endpoint!r} (label {owner!r})",
                hint="choose another endpoint name, or delete that endpoint",
            )
        return vertex.EndpointView.parse(ep)

    def observe(self, endpoint: str) -> Observed | None:
        """One GetEndpoint: releases and fingerprints from the deployed models' display names."""
        view = self._view(endpoint)
        if view is None:
            return None
        releases = {
            rid: ObservedRelease(id=rid, status="ready", replicas=d.min_replicas, fingerprint=d.fingerprint)
            for rid, d in view.deployed.items()
        }
        return Observed(
            endpoint=endpoint,
            url=f"{self._clients.base_url}/v1/{view.name}:predict",
            status="ready",
            releases=releases,
            traffic=Traffic(weights=view.weights) if view.weights else Traffic(),
            replicas=sum(r.replicas for r in releases.values()),
            meta={"endpoint": view.name, "project": self._clients.project, "region": self._clients.region},
        )

    def poll(self, op: Operation) -> OperationStatus:
        """One GetOperation per operation in ``ref["lro"]``. When they are done, the next step of a
        multi-step change is started here (the DeployModel after its prerequisites, the Endpoint delete
        after the undeploys) and its first status returned."""
        return self._poll(op, 0)

    def _poll(self, op: Operation, depth: int) -> OperationStatus:
        if op.done:
            return OperationStatus(state="succeeded", progress=1.0)
        for name in filter(None, op.ref.get("lro", "").split(",")):
            with gcp_errors("operations.get"):
                st = self._vx.get_operation(name)
            if "error" in st:
                return OperationStatus(state="failed", message=f"{name}: {st['error']['message']}")
            if not st["done"]:
                return OperationStatus(state="running", message=f"{op.ref.get('phase', op.kind)}: {name}")
        phase = op.ref.get("phase")
        if phase not in ("prepare", "destroy"):
            return OperationStatus(state="succeeded", progress=1.0)
        if depth >= 3:  # each step made progress; the next poll goes on
            return OperationStatus(state="running", message=f"{phase}: next step started")
        if phase == "prepare":
            release = Release.model_validate_json(op.ref["release"])
            nxt = self._deploy_release(release, Traffic.model_validate_json(op.ref["traffic"]), again=False)
        else:
            nxt = self.destroy(op.endpoint)
        return self._poll(nxt, depth + 1)

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        """One GetEndpoint and four ListTimeSeries calls."""
        view = self._require(endpoint)
        dep = view.deployed.get(release)
        if dep is None:
            return Metrics(release=release, window_s=window_s)
        return monitoring.read(self._clients, endpoint, dep.id, release, window_s)

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        instances = payload.get("instances") if isinstance(payload, dict) else payload
        name = self._endpoint_name(endpoint)
        by_id: dict[str, str] | None = None
        resp: Response | None = None
        for _ in range(TARGET_TRIES if release else 1):
            start = time.perf_counter()
            try:
                with gcp_errors("endpoints.predict"):
                    out = self._vx.predict(name, list(instances or []))
            except ProviderError as exc:
                if exc.code not in ("BadRequest", "FailedPrecondition"):  # the container answered with an error
                    raise
                return Response(status=400, body=exc.message, release=release)
            if by_id is None:
                view = self._require(endpoint)
                by_id = {d.id: rid for rid, d in view.deployed.items()}
            served = by_id.get(str(out.get("deployed_model_id", "")))
            body = {"predictions": out.get("predictions", []), "release": served}
            resp = Response(status=200, body=body, release=served, latency_ms=(time.perf_counter() - start) * 1000)
            if release is None or served == release:
                return resp
        assert resp is not None
        return resp

    # -- writes -------------------------------------------------------------------------------
    def deploy_release(self, release: Release, traffic: Traffic) -> Operation:
        return self._deploy_release(release, traffic, again=True)

    def _deploy_release(self, release: Release, traffic: Traffic, again: bool) -> Operation:
        """``again``: a DeployModel of this release that ended in an error is sent again (a new attempt);
        otherwise (a poll continuing the same attempt) the failed operation is returned, so it is reported."""
        opts = self._opts(release)
        ep = release.endpoint
        view = self._view(ep)
        if view is not None and release.id in view.deployed:
            self._check_fingerprint(release, view.deployed[release.id].fingerprint, "deployed model")
            return self._op("deploy_release", ep, release.id, {}, done=True)
        with gcp_errors("models.listVersions"):
            versions = self._vx.list_model_versions(self._model_name(ep))
        version = vertex.find_version(versions, release.id)
        if version is not None:
            self._check_fingerprint(release, version.get("labels", {}).get(vertex.L_FINGERPRINT), "model version")
        pending = []
        if view is None:
            body = vertex.endpoint_body(ep, opts, release.tags)
            try:
                pending.append(
                    self._once(f"create:{ep}", lambda: self._vx.create_endpoint(ep, body), "endpoints.create")
                )
            except ConflictError:  # being created (by a run that was killed): wait for it to appear
                pending.append("")
        if version is None:
            try:
                pending.append(self._once(
                    f"upload:{ep}:{release.id}", lambda: self._upload(release, opts, bool(versions)), "models.upload"
                ))
            except ConflictError:  # the parent model is being created (by a killed run): wait for it
                pending.append("")
        if pending:
            ref = {"phase": "prepare", "lro": ",".join(filter(None, pending)), "release": release.model_dump_json(),
                   "traffic": traffic.model_dump_json()}
            return self._op("deploy_release", ep, release.id, ref)
        assert view is not None and version is not None
        return self._deploy(release, traffic, view, version, opts, again)

    def _deploy(self, release: Release, traffic: Traffic, view: vertex.EndpointView, version: dict[str, Any],
                opts: GcpOptions, again: bool) -> Operation:
        ep = release.endpoint
        running = version.get("labels", {}).get(vertex.L_DEPLOY_OP)
        if running:  # a DeployModel for this release may be in flight: re-attach to it
            name = f"{view.name}/operations/{running}"
            with gcp_errors("operations.get"):
                st = self._vx.get_operation(name)
            if not st["done"] or ("error" in st and not again):
                return self._op("deploy_release", ep, release.id, {"phase": "deploy", "lro": name})
            if "error" not in st:  # it finished after ``view`` was read, or the release was undeployed since
                fresh = self._view(ep)
                if fresh is not None and release.id in fresh.deployed:
                    return self._op("deploy_release", ep, release.id, {}, done=True)
        weights = {r: w for r, w in traffic.weights.items() if r in view.deployed or r == release.id}
        if not any(weights.values()):
            weights = {release.id: 100} if not view.weights else dict(view.weights)
        split = view.split(weights, new=release.id)
        body = vertex.deployed_model_body(release, vertex.version_name(version), opts)
        with gcp_errors("endpoints.deployModel"):
            name = self._vx.deploy_model(view.name, body, split, timeout=opts.deploy_request_timeout_s)
        labels = {**version.get("labels", {}), vertex.L_DEPLOY_OP: name.rsplit("/", 1)[1]}
        with gcp_errors("models.update"):
            self._vx.set_model_labels(vertex.version_name(version), labels)
        return self._op("deploy_release", ep, release.id, {"phase": "deploy", "lro": name})

    def _upload(self, release: Release, opts: GcpOptions, has_parent: bool) -> str:
        if release.artifact is None and release.flavor != "container":
            raise StorageError(f"release {release.id} has no artifact", hint="upload the model first")
        custom = bool(opts.image) or release.flavor != "sklearn"
        image = opts.image or release.image
        if not custom:
            version = opts.sklearn_version or containers.minor(containers.model_versions(release).get("sklearn", ""))
            image = containers.sklearn_image(self._clients.region, version)
        if not image:
            raise SpecError(
                "provider_options.image", "no serving image for this release", fix="set provider_options.image"
            )
        artifact_dir = self.store().model_dir(release.artifact) if release.artifact else ""
        body = vertex.model_body(release, artifact_dir, image, custom, opts)
        parent = self._model_name(release.endpoint) if has_parent else None
        return self._vx.upload_model(release.endpoint, body, parent)

    def route(self, endpoint: str, traffic: Traffic) -> Operation:
        if traffic.mirror:
            raise CapabilityError(f"traffic.mirror: {self.capabilities.reason('shadow')}")
        if not traffic.weights:
            raise ConflictError("route needs weights that sum to 100")
        view = self._require(endpoint)
        missing = sorted(set(traffic.weights) - set(view.deployed))
        if missing:
            raise NotFoundError(f"releases {missing} are not deployed on {endpoint}",
                                hint="deploy them before routing traffic to them")
        ref = {"weights": traffic.model_dump_json()}
        if view.weights != {k: v for k, v in traffic.weights.items() if v}:
            with gcp_errors("endpoints.update"):
                self._vx.set_traffic(view.name, view.split(traffic.weights))
        return self._op("route", endpoint, None, ref, done=True)

    def scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        if autoscaling.scale_to_zero or autoscaling.min == 0:
            raise CapabilityError(f"scale_to_zero: {self.capabilities.reason('scale_to_zero')}")
        view = self._require(endpoint)
        dep = view.deployed.get(release)
        if dep is None:
            raise NotFoundError(f"release {release} is not deployed on {endpoint}")
        specs = vertex.metric_specs(autoscaling)
        if (dep.min_replicas, dep.max_replicas, dep.metric_specs) == (autoscaling.min, autoscaling.max, specs):
            return self._op("scale", endpoint, release, {}, done=True)
        body = {"id": dep.id, "dedicated_resources": {"min_replica_count": autoscaling.min,
                                                      "max_replica_count": autoscaling.max,
                                                      "autoscaling_metric_specs": specs}}
        fields = ("min_replica_count", "max_replica_count", "autoscaling_metric_specs")
        paths = [f"dedicated_resources.{p}" for p in fields]
        with gcp_errors("endpoints.mutateDeployedModel"):
            name = self._vx.mutate_deployed_model(view.name, body, paths)
        return self._op("scale", endpoint, release, {"phase": "scale", "lro": name})

    def retire_release(self, endpoint: str, release: str) -> Operation:
        view = self._view(endpoint)
        if view is None or release not in view.deployed:
            return self._op("retire_release", endpoint, release, {}, done=True)
        if view.weights.get(release, 0) > 0:
            raise ConflictError(f"{release} still carries {view.weights[release]}% of traffic",
                                hint="route its traffic to another release first")
        dep = view.deployed[release]
        split = view.split(view.weights)
        name = self._once(f"undeploy:{endpoint}:{dep.id}",
                          lambda: self._vx.undeploy_model(view.name, dep.id, split), "endpoints.undeployModel")
        return self._op("retire_release", endpoint, release, {"phase": "retire", "lro": name})

    def destroy(self, endpoint: str) -> Operation:
        """Empty the split, undeploy every model, then delete the Endpoint and the Model. Idempotent."""
        view = self._view(endpoint)
        lros: list[str] = []
        if view is not None and view.deployed:
            if view.weights:
                with gcp_errors("endpoints.update"):
                    self._vx.set_traffic(view.name, {})
            for dep in view.deployed.values():
                lros.append(self._once(f"undeploy:{endpoint}:{dep.id}",
                                       lambda d=dep: self._vx.undeploy_model(view.name, d.id, {}),
                                       "endpoints.undeployModel"))
        elif view is not None:
            lros.append(self._once(f"delete:{endpoint}", lambda: self._vx.delete_endpoint(view.name),
                                   "endpoints.delete"))
        else:
            with gcp_errors("models.delete"):
                deleting = self._once(f"delete-model:{endpoint}",
                                      lambda: self._vx.delete_model(self._model_name(endpoint)) or "",
                                      "models.delete")
            if not deleting:
                return self._op("destroy", endpoint, None, {}, done=True)
            lros.append(deleting)
        return self._op("destroy", endpoint, None, {"phase": "destroy", "lro": ",".join(lros)})

    # -- helpers ------------------------------------------------------------------------------
    def _once(self, key: str, start: Any, what: str) -> str:
        """Start an operation unless this process already started one for ``key`` that is still running."""
        with self._lock:
            known = self._started.get(key)
        if known:
            with gcp_errors("operations.get"):
                st = self._vx.get_operation(known)
            if not st["done"]:
                return known
        with gcp_errors(what):
            name = str(start())
        with self._lock:
            self._started[key] = name
        return name

    def _check_fingerprint(self, release: Release, found: str | None, what: str) -> None:
        if found != vertex.label_value(release.fingerprint):
            raise ConflictError(
                f"{release.endpoint}: the {what} of {release.id} serves fingerprint {found!r}, "
                f"not {release.fingerprint!r}: another ledger deployed it",
                hint=f"use the ledger that deployed {release.endpoint}, or take it over with `deployer adopt`",
            )

    def _require(self, endpoint: str) -> vertex.EndpointView:
        view = self._view(endpoint)
        if view is None:
            raise NotFoundError(f"endpoint {endpoint} does not exist in {self._clients.parent}")
        return view

    def _opts(self, release: Release) -> GcpOptions:
        return GcpOptions.model_validate(release.options) if release.options else self.options

    def _op(
        self, kind: OperationKind, endpoint: str, release: str | None, ref: dict[str, str], done: bool = False
    ) -> Operation:
        return Operation(kind=kind, provider=self.name, endpoint=endpoint, release=release, ref=ref, done=done)
