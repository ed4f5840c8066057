"""Typed, frozen records that cross the boundary between the core and a provider.

No ``dict[str, Any]`` goes in or out of a provider except ``Operation.ref`` (string values
only, so an Operation serialises to JSON and can be polled again after a crash).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deployer.spec import Autoscaling, Flavor, Resources


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArtifactRef(_Record):
    """A model stored content-addressed under ``<root>/sha256/<digest>/`` (``digest``: the sha256 of its
    manifest, see :mod:`deployer.artifacts`); ``uri`` is the stored directory or ``model.tar.gz``."""

    digest: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    uri: str
    size: int = Field(..., ge=0)


class Release(_Record):
    """An immutable version of what an endpoint serves. ``id`` sorts in creation order ("r0001")."""

    id: str = Field(..., pattern=r"^r\d{4,}$")
    endpoint: str
    fingerprint: str
    artifact: ArtifactRef | None = None
    flavor: Flavor = "sklearn"
    entrypoint: str | None = None
    image: str | None = None
    resources: Resources = Field(default_factory=Resources)
    autoscaling: Autoscaling | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict, description="Provider options, validated by the provider.")


class Traffic(_Record):
    """Weights by release id; they sum to 100. An empty endpoint has no weights.

    ``mirror`` is shadow traffic: release id -> percent of requests *copied* to that release. A mirrored
    release's answers never reach callers (its errors only feed its own metrics and gates). A release is
    either weighted or mirrored, never both; mirrors total at most 100 (providers may allow less: Azure ML
    allows 50 in all, and says so in ``validate``). Providers without shadow traffic have
    ``capabilities.shadow`` False with the reason.
    """

    weights: dict[str, int] = Field(default_factory=dict)
    mirror: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_zero(cls, data: Any) -> Any:
        """A release at 0% carries no traffic: it is left out, so equal splits compare equal."""
        if isinstance(data, dict):
            for key in ("weights", "mirror"):
                if isinstance(data.get(key), dict):
                    data = {**data, key: {k: v for k, v in data[key].items() if v != 0}}
        return data

    @model_validator(mode="after")
    def _sum(self) -> Traffic:
        if self.weights:
            if any(w < 0 for w in self.weights.values()):
                raise ValueError("traffic weights must not be negative")
            if sum(self.weights.values()) != 100:
                raise ValueError(f"traffic weights must sum to 100, got {sum(self.weights.values())}")
        if self.mirror:
            if any(not 0 < w <= 100 for w in self.mirror.values()):
                raise ValueError("mirror percentages must be between 1 and 100")
            if sum(self.mirror.values()) > 100:
                raise ValueError(f"mirror percentages must total at most 100, got {sum(self.mirror.values())}")
            both = sorted(set(self.mirror) & set(self.weights))
            if both:
                raise ValueError(f"release(s) {', '.join(both)} cannot be both weighted and mirrored")
        return self

    @classmethod
    def all_to(cls, release_id: str) -> Traffic:
        return cls(weights={release_id: 100})

    @classmethod
    def split(cls, new: str, new_weight: int, old: str | None) -> Traffic:
        if old is None or new_weight >= 100:
            return cls.all_to(new)
        return cls(weights={old: 100 - new_weight, new: new_weight})

    def live(self) -> list[str]:
        return sorted(r for r, w in self.weights.items() if w > 0)

    def primary(self) -> str | None:
        """The release with the most traffic (ties: the older id)."""
        if not self.weights:
            return None
        return sorted(self.weights.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


ReleaseStatus = Literal["creating", "ready", "updating", "failed", "retiring"]


class ObservedRelease(_Record):
    """One release as the provider sees it.

    ``fingerprint`` is read from the resource itself (a tag or label the provider wrote when it created
    it), never from the ledger: it is how the core tells its own releases from ones another ledger made.
    None only when the resource carries no fingerprint (it was not made by deployer).
    """

    id: str
    status: ReleaseStatus
    replicas: int = 0
    fingerprint: str | None = None
    message: str | None = None


class Observed(_Record):
    """What the provider sees for an endpoint right now."""

    endpoint: str
    url: str | None = None
    status: Literal["creating", "ready", "updating", "failed", "degraded"] = "ready"
    releases: dict[str, ObservedRelease] = Field(default_factory=dict)
    traffic: Traffic = Field(default_factory=Traffic)
    replicas: int = 0
    meta: dict[str, str] = Field(default_factory=dict, description="Provider facts for the ledger (pid, port, arn).")


OperationKind = Literal["deploy_release", "route", "scale", "retire_release", "destroy", "native_rollout"]


class Operation(_Record):
    """A started provider change. Serialisable: the engine journals it and can poll it after a crash."""

    kind: OperationKind
    provider: str
    endpoint: str
    release: str | None = None
    ref: dict[str, str] = Field(default_factory=dict, description="Provider handle: ids, names, expected state.")
    started_at: float = Field(default_factory=time.time)
    done: bool = Field(False, description="True when the change completed inside the call (nothing to poll).")


class OperationStatus(_Record):
    state: Literal["running", "succeeded", "failed"]
    message: str | None = None
    progress: float | None = Field(None, ge=0, le=1)

    @property
    def terminal(self) -> bool:
        return self.state != "running"


class Metrics(_Record):
    """Aggregates for one release over a window. ``requests == 0`` means nothing to judge."""

    release: str
    window_s: float
    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    custom: dict[str, float] = Field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return None if self.requests == 0 else self.errors / self.requests


class Response(_Record):
    status: int
    body: Any = None
    release: str | None = None
    latency_ms: float | None = None


class Capabilities(_Record):
    """What a provider can do; every False comes with a reason in ``unsupported``."""

    traffic_split: bool = True
    autoscaling: bool = True
    scale_to_zero: bool = False
    metrics: bool = True
    native_rollout: bool = False
    container_images: bool = True
    shadow: bool = False
    """Mirrored (shadow) traffic through ``Traffic.mirror``."""
    metrics_granularity_s: float = Field(0.0, ge=0)
    """Smallest period the metrics source resolves (60 for CloudWatch's one-minute datapoints); 0 = per request."""
    metrics_delay_s: float = Field(0.0, ge=0)
    """How long after a request its datapoint can appear in ``metrics`` (publication delay); 0 = at once."""
    unsupported: dict[str, str] = Field(default_factory=dict)

    def reason(self, feature: str) -> str:
        return self.unsupported.get(feature, f"the provider does not support {feature}")
