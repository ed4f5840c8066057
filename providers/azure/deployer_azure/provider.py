"""``AzureProvider``: releases as Azure ML managed online deployments behind one managed online endpoint.

Differences from the protocol worth knowing (the rest is as documented in deployer.protocols):

* A release is a deployment named after its id (``r0001``) with a registered model version
  (``<endpoint>:<n>``); both carry the release fingerprint and artifact digest in their tags.
* ``deploy_release`` on a new endpoint first creates the endpoint; ``poll`` then starts the deployment
  (the one write ``poll`` ever sends, idempotent by name). Every long-running write's azure-core
  continuation token is in ``Operation.ref`` and kept under ``<home>/azure/`` until it finishes, so a
  ``deploy_release`` repeated after a crash resumes the same Azure operation.
* ``route`` sets ``traffic`` and ``mirror_traffic`` in one endpoint update. Azure mirrors to at most one
  deployment, at most 50%, never to one with live traffic.
* ``scale`` writes an Azure Monitor autoscale setting for the deployment (completes inside the call).
* ``retire_release`` refuses a release that still carries live or mirrored traffic (Azure refuses to
  delete it too): route first.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from deployer.config import spec_error
from deployer.errors import CapabilityError, ConflictError, ProviderError, SpecError, StorageError, TransientError
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
from deployer.spec import Autoscaling, Spec, Target
from deployer_azure import _sdk, bodies, monitor, scoring
from deployer_azure.errors import azure_errors
from deployer_azure.iam import permissions as role_permissions
from deployer_azure.online import (
    ENDPOINT_STATUS,
    FINGERPRINT_TAG,
    RELEASE_STATUS,
    RUNNING,
    Online,
    TokenBook,
    text,
)
from deployer_azure.options import AzureOptions
from deployer_azure.store import BlobArtifactStore

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
"""Online endpoint and deployment names: 3-32 characters, a letter first, letters, digits and hyphens,
no hyphen last (https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas#azure-machine-learning-online-endpoints-and-batch-endpoints)."""
MIRROR_MAX = 50
"""Azure mirrors at most 50% of requests in all, to one deployment, never one with live traffic
(https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints#test-the-deployment-with-mirrored-traffic)."""
REGION_RE = re.compile(r"^[a-z]+[a-z0-9]*$")


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
        container_images=False,
        shadow=True,
        metrics_granularity_s=monitor.GRANULARITY_S if granularity is None else granularity,
        metrics_delay_s=monitor.DELAY_S if delay is None else delay,
        unsupported={
            "scale_to_zero": "managed online deployments keep at least one instance",
            "native_rollout": "Azure ML has no guarded rollout of its own; deployer's canary drives traffic",
            "container_images": "flavor 'container' (an image of your own) is not deployed on Azure ML; build an "
            "image with `deployer build` and set provider_options.serving_image",
        },
    )


def _options(raw: Any) -> AzureOptions:
    if isinstance(raw, AzureOptions):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(exclude_unset=True)
    return AzureOptions.model_validate(raw or {})


def workspace_of(target: Target) -> tuple[str, str]:
    """``(resource_group, workspace)`` from ``target.workspace`` ('rg/ws' or 'ws' with ``resource_group``)."""
    ws = target.workspace or ""
    if "/" in ws:
        rg, _, name = ws.partition("/")
        return rg, name
    return target.resource_group or "", ws


class AzureProvider:
    """Deploys releases to Azure ML managed online endpoints; artifacts on Blob storage. Construction is offline."""

    name: ClassVar[str] = "azure"
    Options: ClassVar[type[BaseModel]] = AzureOptions
    permissions = staticmethod(role_permissions)
    """``deployer iam-policy azure``: a custom role definition with the actions the provider's calls need."""

    def __init__(self, ctx: ProviderContext, *, transport: Any = None, credential: Any = None) -> None:
        self.ctx = ctx
        self.options = _options(ctx.options)
        self.capabilities = capabilities(self.options)
        rg, ws = workspace_of(ctx.target)
        self._clients = _sdk.Clients(
            ctx.target.subscription or "",
            rg,
            ws,
            storage_account=self.options.storage_account,
            credential=credential,
            transport=transport,
        )
        self._online = Online(self._clients)
        self._tokens = TokenBook(ctx.home / "azure" / "operations.json")
        self._store: BlobArtifactStore | None = None
        self._assets: dict[str, tuple[str, str]] = {}
        self._auth: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return self.ctx.target.region or ""

    # -- offline ------------------------------------------------------------------------------
    def validate(self, spec: Spec) -> None:
        try:
            opts = AzureOptions.model_validate(spec.provider_options)
        except ValidationError as exc:
            err = spec_error(exc)
            raise SpecError(
                f"provider_options.{err.field}".rstrip("."),
                err.message.split(": ", 1)[-1],
                fix=err.fix or "see the options table in docs/providers/azure.md",
            ) from exc
        t = spec.target
        if not t.subscription:
            raise SpecError("target.subscription", "an Azure subscription id is needed", fix="set target.subscription")
        rg, ws = workspace_of(t)
        if not ws:
            raise SpecError(
                "target.workspace", "no Azure ML workspace", fix="set target.workspace: RESOURCE_GROUP/WORKSPACE"
            )
        if not rg:
            raise SpecError(
                "target.resource_group", "no resource group", fix="set target.resource_group or workspace: RG/WORKSPACE"
            )
        if not t.region or not REGION_RE.fullmatch(t.region):
            raise SpecError("target.region", f"an Azure region is needed, got {t.region!r}", fix="e.g. region: eastus")
        if not NAME_RE.fullmatch(spec.name):
            raise SpecError(
                "name",
                f"{spec.name!r} is not a valid Azure ML online endpoint name: 3-32 characters, a letter first, "
                "then letters, digits or hyphens, not ending in a hyphen",
                fix="rename the endpoint (e.g. 'churn-prod')",
            )
        if not opts.storage_account and not _storage_from_env():
            raise SpecError(
                "provider_options.storage_account",
                "no storage account for artifacts",
                fix="set provider_options.storage_account (or AZURE_STORAGE_CONNECTION_STRING)",
            )
        if spec.model.flavor == "container" or (spec.model.flavor != "sklearn" and not opts.serving_image):
            raise CapabilityError(
                f"flavor {spec.model.flavor!r}: the azure provider generates scoring for sklearn models only; "
                "other flavors run in a serving image",
                hint="build one with `deployer build SPEC --tag REGISTRY/NAME:TAG --push` and set "
                "provider_options.serving_image to it",
            )
        if spec.autoscaling is not None and (spec.autoscaling.scale_to_zero or spec.autoscaling.min == 0):
            raise CapabilityError(f"scale_to_zero: {self.capabilities.reason('scale_to_zero')}")
        if spec.strategy.native:
            raise CapabilityError(f"native rollout: {self.capabilities.reason('native_rollout')}")
        shadow = spec.strategy.shadow
        if shadow is not None and shadow.percent > MIRROR_MAX:
            raise SpecError(
                "strategy.shadow.percent",
                f"Azure ML mirrors at most {MIRROR_MAX}% of requests, got {shadow.percent}",
                fix=f"set strategy.shadow.percent to {MIRROR_MAX} or less",
            )

    def store(self) -> BlobArtifactStore:
        if self._store is None:
            self._store = BlobArtifactStore(self._clients, self.options)
        return self._store

    # -- reads --------------------------------------------------------------------------------
    def observe(self, endpoint: str) -> Observed | None:
        """GET the endpoint and list its deployments; fingerprints come from the deployments' tags."""
        ep = self._online.endpoint(endpoint)
        if ep is None:
            return None
        props = ep.properties
        releases: dict[str, ObservedRelease] = {}
        for d in self._online.deployments(endpoint):
            state = text(d.properties.provisioning_state) or "Succeeded"
            releases[d.name] = ObservedRelease(
                id=d.name,
                status=RELEASE_STATUS.get(state, "updating"),
                replicas=int(d.sku.capacity or 0) if d.sku else 0,
                fingerprint=(d.tags or {}).get(FINGERPRINT_TAG),
                message=state if state in ("Failed", "Canceled") else None,
            )
        status = ENDPOINT_STATUS.get(text(props.provisioning_state) or "Succeeded", "updating")
        return Observed(
            endpoint=endpoint,
            url=props.scoring_uri,
            status=status,
            releases=releases,
            traffic=Traffic(weights=dict(props.traffic or {}), mirror=dict(props.mirror_traffic or {})),
            replicas=sum(r.replicas for r in releases.values()),
            meta={"id": str(ep.id), "auth_mode": text(props.auth_mode), "location": str(ep.location)},
        )

    def poll(self, op: Operation) -> OperationStatus:
        """One status read of the saved operation (plus, for a new endpoint, the deployment it waits for)."""
        if op.done:
            return OperationStatus(state="succeeded", progress=1.0)
        token = op.ref.get("token")
        state = self._online.status(token) if token else "Succeeded"
        if state in RUNNING:
            return OperationStatus(state="running", message=f"{op.ref.get('what', op.kind)} {state}")
        if state != "Succeeded":
            self._tokens.drop(op.ref.get("key", ""))
            return OperationStatus(state="failed", message=f"{op.ref.get('what', op.kind)} {state}")
        if op.kind == "deploy_release":
            return self._poll_deployment(op)
        if op.kind in ("retire_release", "destroy"):
            self._tokens.drop(op.ref.get("key", ""))
            return OperationStatus(state="succeeded", progress=1.0)
        if op.kind == "route":
            return self._poll_route(op)
        return OperationStatus(state="succeeded", progress=1.0)

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        return monitor.read_metrics(self._clients, endpoint, release, window_s)

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        """POST to the endpoint's scoring URI with its key or token; ``release`` sets ``azureml-model-deployment``."""
        uri, auth = self._scoring_auth(endpoint)
        body = payload if isinstance(payload, bytes | bytearray) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {auth}"}
        if release:
            headers["azureml-model-deployment"] = release
        start = time.perf_counter()
        with azure_errors("Score"):
            resp = self._clients.scorer().send_request(_sdk.request("POST", uri, headers=headers, content=bytes(body)))
        latency = (time.perf_counter() - start) * 1000
        text = resp.text()
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        answered = resp.headers.get("azureml-model-deployment") or release
        if isinstance(parsed, dict) and answered and "release" not in parsed:
            parsed = {**parsed, "release": answered}
        return Response(status=resp.status_code, body=parsed, release=answered, latency_ms=latency)

    # -- writes -------------------------------------------------------------------------------
    def deploy_release(self, release: Release, traffic: Traffic) -> Operation:
        ep = release.endpoint
        body = self._deployment_body(release)
        key = f"{ep}/{release.id}"
        endpoint = self._online.endpoint(ep)
        if endpoint is None:
            token = self._online.put_endpoint(ep, self._endpoint_body(ep))
            self._tokens.put(f"{ep}/endpoint", token)
            return self._op("deploy_release", ep, release.id, token, "endpoint", body=json.dumps(body.as_dict()))
        if text(endpoint.properties.provisioning_state) in RUNNING:  # a crash while the endpoint was created
            saved = self._tokens.get(f"{ep}/endpoint")
            return self._op("deploy_release", ep, release.id, saved, "endpoint", body=json.dumps(body.as_dict()))
        found = self._online.deployment(ep, release.id)
        if found is not None:
            self._check_owner(found, release)
            state = text(found.properties.provisioning_state)
            if state == "Succeeded":
                self._tokens.drop(key)
                return self._op("deploy_release", ep, release.id, None, "deployment", done=True)
            if state in RUNNING:
                return self._op("deploy_release", ep, release.id, self._tokens.get(key), "deployment")
        token = self._online.put_deployment(ep, release.id, body)
        self._tokens.put(key, token)
        return self._op("deploy_release", ep, release.id, token, "deployment")

    def route(self, endpoint: str, traffic: Traffic) -> Operation:
        self.check_traffic(traffic)
        ep = self._online.endpoint(endpoint)
        if ep is None:
            raise ProviderError(f"endpoint {endpoint} does not exist", hint="deploy a release first")
        props = ep.properties
        have = Traffic(weights=dict(props.traffic or {}), mirror=dict(props.mirror_traffic or {}))
        state = text(props.provisioning_state)
        if have == traffic and state == "Succeeded":
            return self._op("route", endpoint, None, None, "traffic", done=True)
        if state in RUNNING:  # Azure takes one endpoint update at a time: the core retries with backoff
            raise TransientError(f"endpoint {endpoint} is {state}; traffic waits for it", code="EndpointBusy")
        names = {d.name for d in self._online.deployments(endpoint)}
        missing = sorted((set(traffic.weights) | set(traffic.mirror)) - names)
        if missing:
            raise ConflictError(
                f"endpoint {endpoint} has no deployment {', '.join(missing)}", hint="deploy the release first"
            )
        body = self._endpoint_body(endpoint, ep)
        body.properties.traffic = {n: traffic.weights.get(n, 0) for n in sorted(names)}
        body.properties.mirror_traffic = dict(sorted(traffic.mirror.items()))
        token = self._online.put_endpoint(endpoint, body)
        wanted = json.dumps({"weights": traffic.weights, "mirror": traffic.mirror}, sort_keys=True)
        return self._op("route", endpoint, None, token, "traffic", traffic=wanted)

    def scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        if autoscaling.scale_to_zero or autoscaling.min == 0:
            raise CapabilityError(f"scale_to_zero: {self.capabilities.reason('scale_to_zero')}")
        body = monitor.autoscale_body(
            self._clients, endpoint, release, autoscaling, self.location, self.options.autoscale_cpu_percent
        )
        monitor.put_autoscale(self._clients, monitor.setting_name(endpoint, release), body)
        return self._op("scale", endpoint, release, None, "autoscale", done=True)

    def retire_release(self, endpoint: str, release: str) -> Operation:
        ep = self._online.endpoint(endpoint)
        if ep is not None:
            props = ep.properties
            if (props.traffic or {}).get(release, 0) or (props.mirror_traffic or {}).get(release, 0):
                raise ConflictError(
                    f"release {release} still receives traffic on {endpoint}",
                    hint="route its traffic to another release first",
                )
        monitor.delete_autoscale(self._clients, monitor.setting_name(endpoint, release))
        token = self._online.delete_deployment(endpoint, release) if ep is not None else None
        if token is None:
            return self._op("retire_release", endpoint, release, None, "deployment delete", done=True)
        return self._op("retire_release", endpoint, release, token, "deployment delete")

    def destroy(self, endpoint: str) -> Operation:
        for d in self._online.deployments(endpoint):
            monitor.delete_autoscale(self._clients, monitor.setting_name(endpoint, d.name))
        token = self._online.delete_endpoint(endpoint)
        with self._lock:
            self._auth.pop(endpoint, None)
        if token is None:
            return self._op("destroy", endpoint, None, None, "endpoint delete", done=True)
        return self._op("destroy", endpoint, None, token, "endpoint delete")

    # -- checks -------------------------------------------------------------------------------
    @staticmethod
    def check_traffic(traffic: Traffic) -> None:
        """Azure's mirror rules, before any call (the service refuses the same)."""
        if not traffic.mirror:
            return
        if sum(traffic.mirror.values()) > MIRROR_MAX:
            raise SpecError(
                "traffic.mirror",
                f"Azure ML mirrors at most {MIRROR_MAX}% in all, got {sum(traffic.mirror.values())}",
                fix=f"mirror {MIRROR_MAX}% or less",
            )
        if len(traffic.mirror) > 1:
            raise SpecError(
                "traffic.mirror", "Azure ML mirrors to one deployment at a time", fix="mirror a single release"
            )
        live = sorted(set(traffic.mirror) & set(traffic.weights))
        if live:
            raise SpecError(
                "traffic.mirror",
                f"release {', '.join(live)} has live traffic and cannot also be mirrored",
                fix="mirror a release that has no live traffic",
            )

    def _check_owner(self, found: Any, release: Release) -> None:
        have = (found.tags or {}).get(FINGERPRINT_TAG)
        if have != release.fingerprint:
            raise ConflictError(
                f"deployment {release.id} on {release.endpoint} serves fingerprint {have}, not "
                f"{release.fingerprint}: another ledger made it",
                hint="deploy from the ledger that owns this endpoint, or take it over with `deployer adopt`",
            )

    # -- bodies -------------------------------------------------------------------------------
    def _endpoint_body(self, endpoint: str, current: Any = None) -> Any:
        return bodies.endpoint(self.options, self.location, endpoint, current)

    def _deployment_body(self, release: Release) -> Any:
        """Register the release's assets (model, scoring code, environment) and build its deployment."""
        opts = _options(release.options) if release.options else self.options
        if release.artifact is None:
            raise StorageError(f"release {release.id} has no artifact", hint="upload the model first")
        tags = bodies.release_tags(release, opts)
        model_id = self._online.ensure_model(release.endpoint, str(int(release.id[1:])), release.artifact.uri, tags)
        if opts.serving_image:
            inference, env_version = scoring.image_environment(opts.serving_image)
            env_id = self._online.ensure_environment(env_version, opts.serving_image, None, inference)
            return bodies.deployment(release, opts, self.location, model_id=model_id, code_id=None, env_id=env_id)
        code_id, env_id = self._scoring_assets(release, opts)
        return bodies.deployment(release, opts, self.location, model_id=model_id, code_id=code_id, env_id=env_id)

    def _scoring_assets(self, release: Release, opts: AzureOptions) -> tuple[str, str]:
        """The code asset (generated scoring script in Blob) and environment ids, registered once each."""
        versions = scoring.runtime_versions(release)
        conda, env_version = scoring.environment(versions, opts.image)
        data, digest = scoring.script()
        key = f"{digest}/{env_version}/{opts.environment}"
        with self._lock:
            cached = self._assets.get(key)
        if cached is not None:
            return cached
        ref = self.store().put_bytes(data, digest, scoring.SCRIPT_NAME)
        code_id = self._online.ensure_code(digest[:32], ref.uri.rsplit("/", 1)[0] + "/")
        env_id = opts.environment or self._online.ensure_environment(env_version, opts.image, conda)
        with self._lock:
            self._assets[key] = (code_id, env_id)
        return code_id, env_id

    # -- polling ------------------------------------------------------------------------------
    def _poll_deployment(self, op: Operation) -> OperationStatus:
        ep, rel = op.endpoint, op.release or ""
        found = self._online.deployment(ep, rel)
        if found is None:
            if op.ref.get("what") != "endpoint":
                return OperationStatus(state="failed", message=f"deployment {rel} disappeared")
            endpoint = self._online.endpoint(ep)
            state = text(endpoint.properties.provisioning_state) if endpoint is not None else "missing"
            if state in RUNNING:
                return OperationStatus(state="running", message=f"endpoint {state}")
            if state != "Succeeded":
                return OperationStatus(state="failed", message=f"endpoint {ep} {state}")
            self._tokens.drop(f"{ep}/endpoint")
            # the endpoint is ready: start the deployment (idempotent by name)
            body = _sdk.rest.OnlineDeployment(json.loads(op.ref["body"]))
            self._tokens.put(f"{ep}/{rel}", self._online.put_deployment(ep, rel, body))
            return OperationStatus(state="running", message=f"endpoint ready; deployment {rel} started")
        state = text(found.properties.provisioning_state)
        if state in RUNNING:
            return OperationStatus(state="running", message=f"deployment {rel} {state}")
        self._tokens.drop(f"{ep}/{rel}")
        if state == "Succeeded":
            return OperationStatus(state="succeeded", progress=1.0)
        return OperationStatus(state="failed", message=f"deployment {rel} {state}")

    def _poll_route(self, op: Operation) -> OperationStatus:
        want = json.loads(op.ref["traffic"])
        obs = self.observe(op.endpoint)
        if obs is None:
            return OperationStatus(state="failed", message=f"endpoint {op.endpoint} disappeared")
        if obs.traffic.weights == want["weights"] and obs.traffic.mirror == want["mirror"]:
            return OperationStatus(state="succeeded", progress=1.0)
        return OperationStatus(state="running", message=f"traffic {obs.traffic.weights} -> {want['weights']}")

    def _op(
        self,
        kind: OperationKind,
        endpoint: str,
        release: str | None,
        token: str | None,
        what: str,
        *,
        done: bool = False,
        **extra: str,
    ) -> Operation:
        ref = {"what": what, "key": f"{endpoint}/{release}", **extra}
        if token:
            ref["token"] = token
        return Operation(kind=kind, provider=self.name, endpoint=endpoint, release=release, ref=ref, done=done)

    # -- scoring ------------------------------------------------------------------------------
    def _scoring_auth(self, endpoint: str) -> tuple[str, str]:
        """The scoring URI and a key or token for it, cached per endpoint in memory only."""
        with self._lock:
            cached = self._auth.get(endpoint)
        if cached is not None:
            return cached
        ep = self._online.endpoint(endpoint)
        if ep is None or not ep.properties.scoring_uri:
            raise ProviderError(f"endpoint {endpoint} has no scoring URI yet", hint="deploy a release first")
        mode = text(ep.properties.auth_mode)
        if mode == "Key":
            secret = self._online.keys(endpoint)
        elif mode == "AMLToken":
            secret = self._online.token(endpoint)
        else:
            secret = self._clients.cred.get_token("https://ml.azure.com/.default").token
        pair = (str(ep.properties.scoring_uri), secret)
        with self._lock:
            self._auth[endpoint] = pair
        return pair


def _storage_from_env() -> bool:
    import os

    return bool(os.environ.get("AZURE_STORAGE_CONNECTION_STRING"))
