"""The typed spec: the desired state of one endpoint.

A :class:`Spec` is loaded from YAML (:mod:`deployer.config`) or built in Python. Every model
forbids unknown fields, so a typo is an error that names the field instead of a silent no-op.
Validation here is offline and provider-neutral; each provider adds its own offline checks in
``Provider.validate`` and its own typed ``Options`` model for ``provider_options``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,46}[a-z0-9]$")
"""Endpoint names: 2-48 chars, lowercase letters, digits and hyphens, starting with a letter.
The intersection of what SageMaker, Vertex AI and Azure ML accept, so a spec moves between clouds."""

Flavor = Literal["sklearn", "onnx", "python", "container"]


def _clear(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in options.items()}


def _http_url(v: SecretStr) -> SecretStr:
    if not v.get_secret_value().startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    """Where the endpoint lives: a provider and its location."""

    provider: str = Field("local", description="Provider name: local, aws, gcp, azure or a plugin's name.")
    region: str | None = Field(None, description="Cloud region (aws, gcp, azure).")
    project: str | None = Field(None, description="GCP project id.")
    workspace: str | None = Field(
        None, description="Azure ML workspace name, or 'resource_group/workspace' (then resource_group may be omitted)."
    )
    subscription: str | None = Field(None, description="Azure subscription id.")
    resource_group: str | None = Field(None, description="Azure resource group of the workspace.")

    @field_validator("provider")
    @classmethod
    def _provider_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", v):
            raise ValueError("provider names are lowercase words like 'local' or 'aws'")
        return v


class ModelSource(_Model):
    """What to serve: a local path, a URI, an in-memory object, or a container image."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    path: str | None = Field(None, description="Local file or directory holding the model.")
    uri: str | None = Field(
        None,
        description="Remote model: s3://, gs://, az://, https:// (with digest), or MLflow models:/ and runs:/ "
        "(the flavor then comes from its MLmodel file); downloaded once and cached.",
    )
    digest: str | None = Field(
        None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="Expected sha256 of the model at model.uri ('sha256:<hex>'); required for http(s) URIs.",
    )
    flavor: Flavor = Field("sklearn", description="How the model is loaded and called.")
    entrypoint: str | None = Field(
        None, description="For flavor 'python': 'module:Class' whose load(path) returns an object with predict(rows)."
    )
    image: str | None = Field(None, description="For flavor 'container': the serving image.")
    obj: SkipJsonSchema[Any] = Field(None, exclude=True, description="An in-memory model object (Python API only).")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if self.flavor == "container":
            if not self.image:
                raise ValueError("flavor 'container' needs 'image'; set model.image to the serving image")
            return self
        given = [n for n in ("path", "uri", "obj") if getattr(self, n) is not None]
        if not given:
            raise ValueError("set one of model.path or model.uri (or pass a model object to deployer.deploy)")
        if len(given) > 1:
            raise ValueError(f"set only one of {', '.join(given)}")
        if self.uri is not None:
            from deployer.sources import check_uri

            check_uri(self.uri, self.digest)
        elif self.digest is not None:
            raise ValueError("model.digest is for model.uri; remove it or set model.uri")
        if self.flavor == "python" and not self.entrypoint:
            raise ValueError("flavor 'python' needs 'entrypoint' as 'module:Class'")
        if self.entrypoint is not None and not re.fullmatch(r"[\w.]+:[\w]+", self.entrypoint):
            raise ValueError("entrypoint must look like 'package.module:ClassName'")
        return self


class Resources(_Model):
    """Compute for each replica of a release."""

    instance_type: str | None = Field(None, description="Cloud machine type (e.g. ml.m5.large).")
    replicas: int = Field(1, ge=1, le=1000, description="Initial replica count (local: worker processes).")
    cpu: float | None = Field(None, gt=0, description="CPUs per replica where the provider asks for it.")
    memory_mb: int | None = Field(None, gt=0, description="Memory per replica in MiB.")
    gpus: int = Field(0, ge=0, description="Accelerators per replica.")


class Autoscaling(_Model):
    """Replica bounds and the metric autoscaling tracks."""

    min: int = Field(1, ge=0, description="Fewest replicas (0 only with scale_to_zero).")
    max: int = Field(1, ge=1, le=1000, description="Most replicas.")
    target_metric: Literal["invocations_per_replica", "cpu_utilization", "custom"] = "invocations_per_replica"
    target_value: float = Field(100.0, gt=0, description="Target value of the tracked metric.")
    custom_metric: str | None = Field(None, description="Metric name when target_metric is 'custom'.")
    scale_to_zero: bool = False
    scale_in_cooldown_s: int = Field(300, ge=0)
    scale_out_cooldown_s: int = Field(60, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); make min <= max")
        if self.min == 0 and not self.scale_to_zero:
            raise ValueError("min 0 needs scale_to_zero: true")
        if self.target_metric == "custom" and not self.custom_metric:
            raise ValueError("target_metric 'custom' needs custom_metric")
        return self


class CanaryStep(_Model):
    weight: int = Field(..., gt=0, le=100, description="Percent of traffic on the new release.")
    bake_s: float = Field(60.0, ge=0, description="Seconds to hold at this weight while gates run.")


class ShadowPhase(_Model):
    """Before any live traffic moves: copy a share of requests to the candidate and judge it on them."""

    percent: int = Field(..., gt=0, le=100, description="Percent of requests copied to the candidate.")
    bake_s: float = Field(60.0, ge=0, description="Seconds of mirrored traffic the gates judge.")


class Strategy(_Model):
    """How traffic moves from the live release to the new one."""

    type: Literal["all-at-once", "blue-green", "canary", "linear"] = "all-at-once"
    steps: list[CanaryStep] = Field(default_factory=list, description="canary: the weights, ascending, ending at 100.")
    step_percent: int = Field(10, gt=0, le=100, description="linear: percent added per step.")
    interval_s: float = Field(60.0, ge=0, description="linear: seconds between steps.")
    bake_s: float = Field(
        0.0, ge=0, description="blue-green: seconds to hold after the switch with instant switch-back."
    )
    rollback: Literal["snap", "gradual"] = Field("snap", description="Roll back in one route, or step back down.")
    retire_failed: bool | None = Field(
        None,
        description="Retire a failed candidate's resources; false keeps it running at 0% for inspection. "
        "Default: the provider's (clouds retire, local keeps).",
    )
    keep_releases: int = Field(3, ge=1, le=100, description="Releases whose artifacts are kept as rollback targets.")
    keep_previous_warm: bool = Field(
        False, description="Keep the previous release running at 0% after promotion, so a rollback is one route."
    )
    native: bool = Field(False, description="Use the provider's own guarded rollout where it has one (aws).")
    shadow: ShadowPhase | None = Field(
        None, description="Mirror a share of requests to the candidate first; its answers never reach callers."
    )
    ready_timeout_s: float = Field(1800.0, gt=0, description="Deadline for a release to become ready.")

    @model_validator(mode="after")
    def _steps(self) -> Strategy:
        if self.type == "canary":
            if not self.steps:
                raise ValueError("canary needs steps, e.g. [{weight: 10}, {weight: 50}, {weight: 100}]")
            weights = [s.weight for s in self.steps]
            if weights != sorted(set(weights)):
                raise ValueError(f"canary step weights must rise strictly, got {weights}")
            if weights[-1] != 100:
                raise ValueError(f"the last canary step must reach weight 100, got {weights[-1]}")
        elif self.steps:
            raise ValueError(f"steps are only for strategy 'canary', not {self.type!r}")
        return self

    def weights(self) -> list[tuple[int, float]]:
        """The traffic steps as (weight on the new release, bake seconds), ending at 100."""
        if self.type == "canary":
            return [(s.weight, s.bake_s) for s in self.steps]
        if self.type == "linear":
            out, w = [], 0
            while w < 100:
                w = min(100, w + self.step_percent)
                out.append((w, self.interval_s))
            return out
        if self.type == "blue-green":
            return [(100, self.bake_s)]
        return [(100, 0.0)]


class _Gate(_Model):
    name: str | None = Field(None, description="Name shown in events and evidence.")
    failure_limit: int = Field(1, ge=1, description="Failed evaluations before the gate fails the rollout.")
    successes_required: int = Field(1, ge=1, description="Consecutive passes needed for the gate to pass.")
    min_samples: int = Field(1, ge=0, description="Requests needed before a metric is judged.")
    inconclusive: Literal["fail", "wait", "pass"] = Field(
        "wait", description="What an inconclusive evaluation does at the end of a bake: fail, keep waiting, or pass."
    )


class MetricGate(_Gate):
    """Threshold on the candidate's metric, optionally relative to the baseline release."""

    type: Literal["metric"] = "metric"
    metric: Literal["error_rate", "p99_ms", "p50_ms", "requests", "custom"]
    custom_metric: str | None = None
    max: float | None = None
    min: float | None = None
    baseline_delta: float | None = Field(None, description="Pass while candidate <= baseline + delta.")

    @model_validator(mode="after")
    def _bound(self) -> MetricGate:
        if self.max is None and self.min is None and self.baseline_delta is None:
            raise ValueError("a metric gate needs max, min or baseline_delta")
        if self.metric == "custom" and not self.custom_metric:
            raise ValueError("metric 'custom' needs custom_metric")
        return self


class SmokeGate(_Gate):
    """Send a payload to the candidate and check the status and, optionally, the output."""

    type: Literal["smoke"] = "smoke"
    payload: Any
    expect_status: int = 200
    expect_schema: dict[str, Any] | None = Field(None, description="JSON schema the response body must match.")
    min_samples: int = Field(0, ge=0)


class CallableGate(_Gate):
    """A user function ``module:function(context) -> bool | GateResult``."""

    type: Literal["callable"] = "callable"
    function: str = Field(..., pattern=r"^[\w.]+:[\w]+$")
    min_samples: int = Field(0, ge=0)


class WebhookGate(_Gate):
    """POST the context to a URL; 2xx passes."""

    type: Literal["webhook"] = "webhook"
    url: SecretStr = Field(
        ..., description="http(s) URL; a secret: only its scheme and host are ever stored or shown."
    )
    timeout_s: float = Field(5.0, gt=0)
    min_samples: int = Field(0, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr) -> SecretStr:
        return _http_url(v)


Gate = Annotated[MetricGate | SmokeGate | CallableGate | WebhookGate, Field(discriminator="type")]


class Batching(_Model):
    """Adaptive micro-batching: concurrent requests to one release share one ``predict`` call."""

    enabled: bool | None = Field(
        None,
        description="None: on for sklearn and onnx, off for python unless the model class sets batchable = True.",
    )
    max_batch: int = Field(64, ge=1, le=4096, description="Most rows in one predict call.")
    max_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="Least a queued request waits for its release's running batch before a second batch starts "
        "beside it (the wait is also at least 4x the release's usual batch time).",
    )


class Serving(_Model):
    """How the model server runs the model (local provider; packaged with the artifact)."""

    batching: Batching = Field(default_factory=Batching, description="Adaptive micro-batching of concurrent requests.")
    timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Per-request prediction timeout (504); a worker stuck for twice it is recycled.",
    )
    max_body_mb: float = Field(10.0, gt=0, le=1024, description="Largest request body (413 above).")
    compile: Literal["none", "onnx"] = Field(
        "none",
        description="onnx: convert an sklearn model with skl2onnx when packaging and serve the graph "
        "if it reproduces model.predict on probe rows (else the model itself serves, and the reason is reported).",
    )


_STATE_SCHEMES = {"s3": "s3", "gcs": "gs", "azblob": "az", "file": "file"}


class StateBackend(_Model):
    """Where the ledger lives: a SQLite file on this machine, or a shared ledger in object storage."""

    type: Literal["sqlite", "s3", "gcs", "azblob", "file"] = "sqlite"
    path: str | None = Field(None, description="SQLite file (type sqlite); default $DEPLOYER_HOME/ledger.db.")
    uri: str | None = Field(
        None,
        description="Shared ledger location: s3://bucket/prefix, gs://bucket/prefix, az://account/container/prefix "
        "or file:///shared/dir (the scheme must match type).",
    )

    @model_validator(mode="after")
    def _where(self) -> StateBackend:
        if self.type == "sqlite":
            if self.uri is not None:
                raise ValueError("state.uri is for shared ledgers; set state.type (s3, gcs, azblob, file) or use path")
            return self
        scheme = _STATE_SCHEMES[self.type]
        if self.path is not None:
            raise ValueError(f"state.path is for type sqlite; a {self.type} ledger takes state.uri")
        if not self.uri:
            raise ValueError(f"state.type {self.type} needs state.uri, e.g. {scheme}://bucket/deployer")
        if not self.uri.startswith(f"{scheme}://"):
            raise ValueError(f"state.uri of a {self.type} ledger must start with {scheme}://, got {self.uri!r}")
        return self

    @classmethod
    def named(cls, state: str | None) -> StateBackend:
        """The backend a ``--state`` value names: a URI of a known scheme, else a SQLite path."""
        for kind, scheme in _STATE_SCHEMES.items():
            if state and state.startswith(f"{scheme}://"):
                return cls(type=kind, uri=state)
        return cls(path=state)

    def where(self) -> str | None:
        """What names the ledger (``--state`` form): the file path or the URI; None for the default."""
        return self.uri if self.type != "sqlite" else self.path


class Spec(_Model):
    """The desired state of one endpoint."""

    name: str = Field(..., description="Endpoint name: lowercase letters, digits, hyphens; 2-48 chars.")
    target: Target = Field(default_factory=Target)
    model: ModelSource
    resources: Resources = Field(default_factory=Resources)
    autoscaling: Autoscaling | None = None
    strategy: Strategy = Field(default_factory=Strategy)
    gates: list[Gate] = Field(default_factory=list)
    serving: Serving = Field(
        default_factory=Serving, description="How the model server runs the model: batching, limits, ONNX compilation."
    )
    tags: dict[str, str] = Field(default_factory=dict)
    state: StateBackend = Field(default_factory=StateBackend)
    notify_webhook: SecretStr | None = Field(
        None,
        description="Slack-compatible webhook called on rollback and promotion; a secret: only its scheme "
        "and host are ever stored or shown.",
    )
    provider_options: dict[str, Any] = Field(
        default_factory=dict, description="The provider's own typed options (see each provider's Options model)."
    )

    @field_validator("notify_webhook")
    @classmethod
    def _notify(cls, v: SecretStr | None) -> SecretStr | None:
        return None if v is None else _http_url(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v):
            raise ValueError(
                "use 2-48 lowercase letters, digits and hyphens, starting with a letter and not ending with '-'"
            )
        return v

    @model_validator(mode="after")
    def _compile_flavor(self) -> Spec:
        if self.serving.compile == "onnx" and self.model.flavor != "sklearn":
            raise ValueError(f"serving.compile 'onnx' converts sklearn models; model.flavor is {self.model.flavor!r}")
        return self

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k or len(k) > 128 or len(val) > 256:
                raise ValueError(f"tag {k!r}: keys are 1-128 chars and values at most 256")
        return v

    def runtime_fingerprint(self, artifact_digest: str | None) -> str:
        """Hash of everything that makes a release different: artifact, runtime, resources, options.

        Traffic strategy, gates and tags are not part of it: changing them does not need a new release.
        Provider options are, secret ones included (only ever as part of this hash), so rotating a
        token is a deploy that takes effect.
        """
        body = {
            "artifact": artifact_digest,
            "flavor": self.model.flavor,
            "entrypoint": self.model.entrypoint,
            "image": self.model.image,
            "uri": self.model.uri if artifact_digest is None else None,
            "resources": self.resources.model_dump(mode="json"),
            "provider_options": _clear(self.provider_options),
        }
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def spec_hash(self) -> str:
        """Hash of the whole spec as written (for the audit trail)."""
        return hashlib.sha256(orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
