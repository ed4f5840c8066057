"""SageMaker names, request bodies, status sets and the few calls the provider makes.

Mapping: a *release* is a SageMaker Model ``{endpoint}-{release}`` served by a production variant.
The variant is named after the release id, except after a native (deployment guardrails) rollout,
which keeps the old variant name as AWS requires: so the release a variant serves is read from its
model name, and its fingerprint from the EndpointConfig's tags (``deployer:fingerprint:<variant>``),
never from the variant name. An EndpointConfig holds one variant per live release; every change of
the release set makes a new config (configs are immutable) named from the endpoint, the release ids
and a hash of its content and fingerprints, so re-sending the same change finds the same config.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from deployer.errors import ConflictError, NotFoundError
from deployer.records import OperationStatus, Release
from deployer_aws import _sdk
from deployer_aws.errors import aws_errors
from deployer_aws.options import AwsOptions

NAME_MAX = 63
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
DEFAULT_INSTANCE_TYPE = "ml.m5.large"

# DescribeEndpoint.EndpointStatus, declared as data (the core's wait loop only sees our verdicts).
RUNNING_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
FAILED_STATES = frozenset({"Failed", "UpdateRollbackFailed", "OutOfService"})
READY_STATES = frozenset({"InService"})
BUSY_STATES = RUNNING_STATES
"""An endpoint in these states refuses UpdateEndpoint; the provider answers ConflictError."""


FINGERPRINT_TAG = "deployer:fingerprint"
ARTIFACT_TAG = "deployer:artifact"
RELEASE_TAG = "deployer:release"
ENDPOINT_TAG = "deployer:endpoint"


def model_name(endpoint: str, release: str) -> str:
    return f"{endpoint}-{release}"


def release_of_model(endpoint: str, model: str) -> str | None:
    """The release id a model name ``{endpoint}-{release}`` encodes (None for a foreign model)."""
    m = re.fullmatch(rf"{re.escape(endpoint)}-(r\d{{4,}})", model)
    return m.group(1) if m else None


def variant_tag(variant: str) -> str:
    """The EndpointConfig tag key holding the fingerprint of the release ``variant`` serves."""
    return f"{FINGERPRINT_TAG}:{variant}"


def config_name(
    endpoint: str, variants: list[dict[str, Any]], extra: dict[str, Any], fingerprints: dict[str, str]
) -> str:
    """``{endpoint}-{r0001-r0002}-{hash8}``; ``{endpoint}-n{count}-{hash8}`` when that is too long.

    The ids are the releases the variants serve; the hash covers the body and the fingerprints
    (variant -> fingerprint), so two ledgers' releases of the same id never share a config.
    """
    body = json.dumps({"variants": variants, "extra": extra, "fp": fingerprints}, sort_keys=True, default=str)
    digest = hashlib.sha256(body.encode()).hexdigest()[:8]
    ids = [release_of_model(endpoint, v["ModelName"]) or v["VariantName"] for v in variants]
    name = f"{endpoint}-{'-'.join(ids)}-{digest}"
    if len(name) > NAME_MAX:
        name = f"{endpoint}-n{len(ids)}-{digest}"
    return name


def is_config_of(endpoint: str, name: str) -> bool:
    return re.fullmatch(rf"{re.escape(endpoint)}-(?:(?:r\d{{4,}}-)+|n\d+-)[0-9a-f]{{8}}", name) is not None


def is_model_of(endpoint: str, name: str) -> bool:
    return re.fullmatch(rf"{re.escape(endpoint)}-r\d{{4,}}", name) is not None


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def initial_count(release: Release) -> int:
    if release.autoscaling is not None and release.autoscaling.min >= 1:
        return max(release.autoscaling.min, min(release.resources.replicas, release.autoscaling.max))
    return release.resources.replicas


def variant_body(release: Release, weight: float, opts: AwsOptions, variant: str | None = None) -> dict[str, Any]:
    """One ProductionVariant for ``release`` (named ``variant``, by default the release id)."""
    v: dict[str, Any] = {
        "VariantName": variant or release.id,
        "ModelName": model_name(release.endpoint, release.id),
        "InitialVariantWeight": float(weight),
    }
    if opts.serverless is not None:
        sc: dict[str, Any] = {
            "MemorySizeInMB": opts.serverless.memory_mb,
            "MaxConcurrency": opts.serverless.max_concurrency,
        }
        if opts.serverless.provisioned_concurrency:
            sc["ProvisionedConcurrency"] = opts.serverless.provisioned_concurrency
        v["ServerlessConfig"] = sc
    else:
        v["InstanceType"] = release.resources.instance_type or DEFAULT_INSTANCE_TYPE
        v["InitialInstanceCount"] = initial_count(release)
    return v


def carry_variant(existing: dict[str, Any], weight: float) -> dict[str, Any]:
    """A variant of the current config, kept as it is with a new initial weight."""
    keep = {k: v for k, v in existing.items() if k not in ("InitialVariantWeight",)}
    keep["InitialVariantWeight"] = float(weight)
    return keep


def config_extras(opts: AwsOptions) -> dict[str, Any]:
    """Endpoint-config fields other than variants; part of every config so they survive updates."""
    extra: dict[str, Any] = {}
    if opts.data_capture is not None:
        dc = opts.data_capture
        body: dict[str, Any] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": dc.sampling_percent,
            "DestinationS3Uri": dc.destination,
            "CaptureOptions": (
                [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
                if dc.mode == "InputAndOutput"
                else [{"CaptureMode": dc.mode}]
            ),
        }
        if dc.kms_key_id:
            body["KmsKeyId"] = dc.kms_key_id
        extra["DataCaptureConfig"] = body
    if opts.kms_key_id and opts.serverless is None:
        extra["KmsKeyId"] = opts.kms_key_id
    return extra


def normalise_weights(variants: list[dict[str, Any]], key: str = "CurrentWeight") -> dict[str, int]:
    """SageMaker weights are relative floats; deployer's are integers summing to 100 (zeros left out)."""
    raw = {v["VariantName"]: float(v.get(key) or 0.0) for v in variants}
    total = sum(raw.values())
    if total <= 0:
        return {}
    scaled = {k: w * 100.0 / total for k, w in raw.items()}
    out = {k: int(s) for k, s in scaled.items()}
    short = 100 - sum(out.values())
    for k in sorted(scaled, key=lambda k: (-(scaled[k] - out[k]), k))[:short]:
        out[k] += 1
    return {k: w for k, w in out.items() if w}


@dataclass(frozen=True)
class Variant:
    """One production variant of an EndpointConfig and the release it serves."""

    name: str
    release: str
    fingerprint: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class Layout:
    """What an EndpointConfig serves: variant name -> :class:`Variant` (read from the config and its tags)."""

    config: str
    variants: dict[str, Variant]

    def variant_of(self, release: str) -> str | None:
        return next((v.name for v in self.variants.values() if v.release == release), None)

    def release_of(self, variant: str) -> str:
        found = self.variants.get(variant)
        return found.release if found else variant

    def by_release(self) -> dict[str, Variant]:
        return {v.release: v for v in self.variants.values()}

    def fingerprint(self, release: str) -> str | None:
        found = self.by_release().get(release)
        return found.fingerprint if found else None


@dataclass(frozen=True)
class EndpointView:
    """The parts of DescribeEndpoint the provider reasons about."""

    name: str
    status: str
    config: str
    pending_config: str | None
    variants: list[dict[str, Any]]
    failure: str | None
    arn: str

    @classmethod
    def parse(cls, d: dict[str, Any]) -> EndpointView:
        pending = d.get("PendingDeploymentSummary") or {}
        return cls(
            name=d["EndpointName"],
            status=d["EndpointStatus"],
            config=d.get("EndpointConfigName", ""),
            pending_config=pending.get("EndpointConfigName"),
            variants=list(d.get("ProductionVariants") or []),
            failure=d.get("FailureReason"),
            arn=d.get("EndpointArn", ""),
        )

    @property
    def variant_names(self) -> list[str]:
        return sorted(v["VariantName"] for v in self.variants)

    def weights(self) -> dict[str, int]:
        return normalise_weights(self.variants)


def verdict(view: EndpointView | None, expect_config: str | None) -> OperationStatus:
    """Judge one DescribeEndpoint for an operation that should end on ``expect_config``.

    InService on a *different* config means SageMaker rolled the update back (it does so silently
    when new instances fail health checks or a rollback alarm fires): that is a failure.
    """
    if view is None:
        return OperationStatus(state="failed", message="the endpoint does not exist")
    if view.status in FAILED_STATES:
        return OperationStatus(state="failed", message=f"endpoint {view.status}: {view.failure or 'no reason given'}")
    if view.status in RUNNING_STATES:
        return OperationStatus(state="running", message=f"endpoint {view.status}")
    if expect_config and view.config != expect_config:
        why = f": {view.failure}" if view.failure else ""
        return OperationStatus(
            state="failed",
            message=f"SageMaker rolled back: endpoint serves {view.config}, not {expect_config}{why}",
        )
    return OperationStatus(state="succeeded", progress=1.0)


class SageMaker:
    """Thin wrappers over the SageMaker calls; every botocore error leaves translated."""

    def __init__(self, clients: _sdk.Clients) -> None:
        self._clients = clients
        self._layouts: dict[str, Layout] = {}

    @property
    def sm(self) -> Any:
        return self._clients.client("sagemaker")

    def describe_endpoint(self, name: str) -> EndpointView | None:
        try:
            with aws_errors("DescribeEndpoint"):
                return EndpointView.parse(self.sm.describe_endpoint(EndpointName=name))
        except NotFoundError:
            return None

    def describe_config(self, name: str) -> dict[str, Any] | None:
        try:
            with aws_errors("DescribeEndpointConfig"):
                return dict(self.sm.describe_endpoint_config(EndpointConfigName=name))
        except NotFoundError:
            return None

    def model_tags(self, name: str) -> dict[str, str] | None:
        """The tags of model ``name`` (DescribeModel + ListTags), or None when there is no such model."""
        try:
            with aws_errors("DescribeModel"):
                arn = self.sm.describe_model(ModelName=name)["ModelArn"]
        except NotFoundError:
            return None
        return self.tags(arn)

    def tags(self, arn: str) -> dict[str, str]:
        with aws_errors("ListTags"):
            page = self.sm.list_tags(ResourceArn=arn, MaxResults=100)
        return {t["Key"]: t["Value"] for t in page.get("Tags", [])}

    def layout(self, endpoint: str, config: str) -> Layout:
        """What ``config`` serves: one DescribeEndpointConfig + one ListTags, cached (configs are immutable)."""
        found = self._layouts.get(config)
        if found is not None:
            return found
        body = self.describe_config(config)
        if body is None:
            raise NotFoundError(f"endpoint config {config} is gone", hint="destroy and deploy the endpoint again")
        tags = self.tags(body["EndpointConfigArn"])
        variants = {
            v["VariantName"]: Variant(
                name=v["VariantName"],
                release=release_of_model(endpoint, v.get("ModelName", "")) or v["VariantName"],
                fingerprint=tags.get(variant_tag(v["VariantName"])),
                body=dict(v),
            )
            for v in body.get("ProductionVariants", [])
        }
        layout = Layout(config=config, variants=variants)
        self._layouts[config] = layout
        return layout

    def create_model(self, name: str, container: dict[str, Any], opts: AwsOptions, tags: dict[str, str]) -> None:
        """CreateModel (SageMaker refuses duplicate names: check with :meth:`model_exists` first)."""
        body: dict[str, Any] = {"ModelName": name, "PrimaryContainer": container, "Tags": tag_list(tags)}
        if opts.role_arn:
            body["ExecutionRoleArn"] = opts.role_arn
        if opts.vpc is not None:
            body["VpcConfig"] = {
                "Subnets": list(opts.vpc.subnets),
                "SecurityGroupIds": list(opts.vpc.security_groups),
            }
        if opts.network_isolation:
            body["EnableNetworkIsolation"] = True
        with aws_errors("CreateModel"):
            self.sm.create_model(**body)

    def ensure_config(
        self, name: str, variants: list[dict[str, Any]], extra: dict[str, Any], tags: dict[str, str]
    ) -> None:
        """CreateEndpointConfig unless it exists; an existing one must carry the same fingerprints."""
        found = self.describe_config(name)
        if found is not None:
            have = self.tags(found["EndpointConfigArn"])
            theirs = {k: v for k, v in have.items() if k.startswith(FINGERPRINT_TAG + ":")}
            ours = {k: v for k, v in tags.items() if k.startswith(FINGERPRINT_TAG + ":")}
            if theirs != ours:
                raise ConflictError(
                    f"endpoint config {name} exists with other fingerprints ({theirs}, expected {ours})",
                    hint="another ledger deploys this endpoint: use its ledger, or `deployer adopt` it",
                )
            return
        with aws_errors("CreateEndpointConfig"):
            self.sm.create_endpoint_config(
                EndpointConfigName=name, ProductionVariants=variants, Tags=tag_list(tags), **extra
            )

    def create_endpoint(self, name: str, config: str, tags: dict[str, str]) -> None:
        with aws_errors("CreateEndpoint"):
            self.sm.create_endpoint(EndpointName=name, EndpointConfigName=config, Tags=tag_list(tags))

    def update_endpoint(self, name: str, config: str, deployment: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config}
        if deployment is not None:
            body["DeploymentConfig"] = deployment
        else:
            # Keep autoscaled instance counts; take weights and data capture from the new config.
            body["RetainAllVariantProperties"] = True
            body["ExcludeRetainedVariantProperties"] = [
                {"VariantPropertyType": "DesiredWeight"},
                {"VariantPropertyType": "DataCaptureConfig"},
            ]
        with aws_errors("UpdateEndpoint"):
            self.sm.update_endpoint(**body)

    def set_weights(self, name: str, weights: dict[str, float]) -> None:
        with aws_errors("UpdateEndpointWeightsAndCapacities"):
            self.sm.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": k, "DesiredWeight": float(w)} for k, w in sorted(weights.items())
                ],
            )

    def delete_endpoint(self, name: str) -> None:
        try:
            with aws_errors("DeleteEndpoint"):
                self.sm.delete_endpoint(EndpointName=name)
        except NotFoundError:
            pass

    def delete_config(self, name: str) -> None:
        try:
            with aws_errors("DeleteEndpointConfig"):
                self.sm.delete_endpoint_config(EndpointConfigName=name)
        except NotFoundError:
            pass

    def delete_model(self, name: str) -> None:
        try:
            with aws_errors("DeleteModel"):
                self.sm.delete_model(ModelName=name)
        except NotFoundError:
            pass

    def list_names(self, kind: str, contains: str) -> list[str]:
        """Names of models ("Models") or endpoint configs ("EndpointConfigs") containing ``contains``."""
        op = {
            "Models": ("list_models", "ListModels", "ModelName"),
            "EndpointConfigs": ("list_endpoint_configs", "ListEndpointConfigs", "EndpointConfigName"),
        }[kind]
        out: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"NameContains": contains, "MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            with aws_errors(op[1]):
                page = getattr(self.sm, op[0])(**kwargs)
            out += [item[op[2]] for item in page.get(kind, [])]
            token = page.get("NextToken")
            if not token:
                return out
