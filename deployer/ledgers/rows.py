"""The ledger's records as its readers see them: endpoints, releases, journal entries and leases.

Plain frozen dataclasses shared by every :class:`~deployer.protocols.LedgerStore`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from deployer.records import Release, Traffic
from deployer.spec import Autoscaling


@dataclass(frozen=True)
class ReleaseRow:
    """A release as the ledger knows it."""

    endpoint: str
    id: str
    seq: int
    fingerprint: str
    spec_hash: str
    artifact_digest: str | None
    release: Release
    status: str
    running: bool
    actor: str
    created_at: float
    finished_at: float | None
    outcome: str | None
    reason: str | None
    evidence: list[dict[str, Any]]
    autoscaling: Autoscaling | None = None
    """The autoscaling last applied to this release (None: never scaled)."""
    artifact_pruned: bool = False
    """Its artifact was deleted (``strategy.keep_releases``): it can no longer serve again unless running."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "running": self.running,
            "fingerprint": self.fingerprint,
            "spec_hash": self.spec_hash,
            "artifact_digest": self.artifact_digest,
            "actor": self.actor,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome,
            "reason": self.reason,
            "evidence": self.evidence,
            "autoscaling": self.autoscaling.model_dump(mode="json") if self.autoscaling else None,
        }


@dataclass(frozen=True)
class EndpointRow:
    name: str
    provider: str
    target: dict[str, Any]
    url: str | None
    meta: dict[str, str]
    traffic: Traffic
    created_at: float
    updated_at: float
    destroyed_at: float | None


@dataclass(frozen=True)
class OperationRow:
    id: int
    endpoint: str
    release: str | None
    step: str
    phase: str
    operation: dict[str, Any] | None
    detail: dict[str, Any] | None
    actor: str
    at: float


@dataclass(frozen=True)
class Lease:
    """Who holds an endpoint's lock, and until when."""

    token: str
    actor: str
    host: str
    machine: str
    pid: int
    started: str
    operation: str
    acquired_at: float
    expires_at: float

    @property
    def holder(self) -> str:
        until = time.strftime("%H:%M:%SZ", time.gmtime(self.expires_at))
        return f"{self.actor} pid {self.pid} ({self.operation}), lease until {until}"

    def live(self, now: float) -> bool:
        return self.expires_at > now

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def dump(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def load(cls, data: bytes) -> Lease:
        return cls(**json.loads(data))
