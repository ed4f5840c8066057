"""An in-memory provider that honours the whole Provider contract, with fault injection.

It is the platform the engine's property-based tests run against (thousands of rollouts a minute,
no processes, no sockets), so it is as strict as the contract in :mod:`deployer.protocols`:

* **Changes take polls.** ``deploy_release`` leaves the release ``creating`` and ``scale`` leaves it
  ``updating`` for ``pending_polls`` polls of the returned operation; an operation reloaded after a
  crash polls on. :meth:`MemoryWorld.maintenance` makes a release ``updating`` for some observes, as
  platform maintenance or autoscaling does: it still serves.
* **Resources say what they serve.** Each release keeps the fingerprint it was made with; observe
  reports it; ``deploy_release`` of an existing id with another fingerprint is a ``ConflictError``.
* **Refuses what the contract forbids.** Routing to a release that is not ready, weights or mirrors
  naming unknown releases, retiring a release that carries traffic (``ConflictError``), deploying an
  artifact the store does not hold (``StorageError``).
* **Shadow traffic.** ``capabilities.shadow`` is True: ``Traffic.mirror`` is kept and observed.
* **An artifact store** (:class:`MemoryStore`) keyed by digest, checked on ``put``.
* **Faults.** ``world.faults`` (a :class:`FaultPlan`) is consulted at every provider and store call,
  before or after the call takes effect, and raises a typed error, ``KeyboardInterrupt`` or
  :class:`~deployer.testing.harness.Crash` (the process is killed) at the planned call numbers.

The state lives in a :class:`MemoryWorld` shared by every provider built on it, as a cloud outlives
the process that called it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from deployer.errors import ConflictError, DigestMismatchError, NotFoundError, StorageError
from deployer.records import (
    ArtifactRef,
    Capabilities,
    Metrics,
    Observed,
    ObservedRelease,
    Operation,
    OperationKind,
    OperationStatus,
    Release,
    ReleaseStatus,
    Response,
    Traffic,
)
from deployer.spec import Autoscaling, Spec

WRITE_CALLS = ("deploy_release", "route", "scale", "retire_release", "destroy", "store.put", "store.delete")
"""The calls that change the platform or the store."""

CAPABILITIES = Capabilities(traffic_split=True, autoscaling=True, metrics=True, shadow=True)

T = TypeVar("T")

Fault = Callable[[str], BaseException]
"""Builds the exception a planned fault raises, given the call's name."""


@dataclass
class FaultPlan:
    """Raise at planned call numbers (1-based, counting the calls named ``call`` (a name like ``"route"``
    or ``"store.delete"``, or a tuple of names), or every provider and store call when it is None).

    ``at[n] = (when, fault)``: ``when`` is ``"before"`` (the call is refused: nothing happened) or
    ``"after"`` (the call took effect, then its answer was lost or the process died).
    """

    at: dict[int, tuple[str, Fault]] = field(default_factory=dict)
    call: str | tuple[str, ...] | None = None
    calls: int = 0
    fired: list[str] = field(default_factory=list)

    def check(self, name: str, when: str) -> None:
        if self.call is not None and name not in ((self.call,) if isinstance(self.call, str) else self.call):
            return
        if when == "before":
            self.calls += 1
        planned = self.at.get(self.calls)
        if planned is not None and planned[0] == when:
            del self.at[self.calls]
            error = planned[1](name)
            self.fired.append(f"{type(error).__name__} {when} {name}")
            raise error


@dataclass
class MemRelease:
    id: str
    fingerprint: str
    digest: str | None
    status: ReleaseStatus = "creating"
    pending: int = 0
    autoscaling: Autoscaling | None = None
    replicas: int = 1
    maintenance: int = 0


@dataclass
class MemEndpoint:
    name: str
    releases: dict[str, MemRelease] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)


@dataclass
class MemoryWorld:
    """The platform's state, shared by every provider built on it."""

    pending_polls: int = 3
    endpoints: dict[str, MemEndpoint] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    error_rate: dict[str, float] = field(default_factory=dict)
    """Per release id: the share of requests that fail (metrics and invoke)."""
    faults: FaultPlan | None = None
    calls: Counter[str] = field(default_factory=Counter)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def call(self, name: str, when: str) -> None:
        if when == "before":
            self.calls[name] += 1
        if self.faults is not None:
            self.faults.check(name, when)

    def maintenance(self, endpoint: str, release: str, observes: int) -> None:
        """The platform updates ``release`` (scaling, patching): ``updating`` for ``observes`` observes."""
        ep = self.endpoints.get(endpoint)
        if ep is not None and release in ep.releases and ep.releases[release].status == "ready":
            ep.releases[release].maintenance = observes

    def new_op(self, kind: OperationKind, endpoint: str, release: str | None, polls: int) -> Operation:
        op_id = f"op-{next(self._ids)}"
        self.ops[op_id] = {"polls": polls, "release": release, "endpoint": endpoint, "kind": kind}
        return Operation(
            kind=kind,
            provider="memory",
            endpoint=endpoint,
            release=release,
            ref={"op": op_id},
            done=polls == 0,
        )


class MemoryStore:
    """Content-addressed blobs in the world (``memory://sha256/<digest>``)."""

    def __init__(self, world: MemoryWorld) -> None:
        self.world = world

    def _checked(self, name: str, fn: Callable[[], T]) -> T:
        self.world.call(f"store.{name}", "before")
        out = fn()
        self.world.call(f"store.{name}", "after")
        return out

    def _ref(self, digest: str) -> ArtifactRef:
        return ArtifactRef(digest=digest, uri=f"memory://sha256/{digest}", size=len(self.world.blobs[digest]))

    def find(self, digest: str) -> ArtifactRef | None:
        return self._checked("find", lambda: self._ref(digest) if digest in self.world.blobs else None)

    def put(self, path: Path, digest: str, on_progress: Any = None, sha256: str | None = None) -> ArtifactRef:
        def put() -> ArtifactRef:
            data = Path(path).read_bytes()
            if hashlib.sha256(data).hexdigest() != (sha256 or digest):
                raise DigestMismatchError(f"{path} does not hash to sha256:{digest[:12]}")
            self.world.blobs[digest] = data
            return self._ref(digest)

        return self._checked("put", put)

    def get(self, ref: ArtifactRef, dest: Path) -> Path:
        def get() -> Path:
            if ref.digest not in self.world.blobs:
                raise StorageError(f"artifact sha256:{ref.digest[:12]} is not stored")
            Path(dest).write_bytes(self.world.blobs[ref.digest])
            return Path(dest)

        return self._checked("get", get)

    def delete(self, digest: str) -> None:
        self._checked("delete", lambda: self.world.blobs.pop(digest, None))


class MemoryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemoryProvider:
    """The Provider contract over a :class:`MemoryWorld`. See the module docstring."""

    name: ClassVar[str] = "memory"
    Options: ClassVar[type[BaseModel]] = MemoryOptions
    capabilities: Capabilities = CAPABILITIES

    def __init__(self, world: MemoryWorld) -> None:
        self.world = world
        self._store = MemoryStore(world)

    def _call(self, name: str, fn: Callable[[], T]) -> T:
        self.world.call(name, "before")
        out = fn()
        self.world.call(name, "after")
        return out

    def _endpoint(self, name: str) -> MemEndpoint:
        ep = self.world.endpoints.get(name)
        if ep is None:
            raise NotFoundError(f"endpoint {name!r} does not exist")
        return ep

    # ---- the contract ---------------------------------------------------------------------

    def validate(self, spec: Spec) -> None:
        return None

    def store(self) -> MemoryStore:
        return self._store

    def observe(self, endpoint: str) -> Observed | None:
        return self._call("observe", lambda: self._observe(endpoint))

    def _observe(self, endpoint: str) -> Observed | None:
        ep = self.world.endpoints.get(endpoint)
        if ep is None:
            return None
        releases = {}
        for rel in ep.releases.values():
            status: ReleaseStatus = rel.status
            if rel.maintenance > 0 and status == "ready":
                rel.maintenance -= 1
                status = "updating"
            releases[rel.id] = ObservedRelease(
                id=rel.id, status=status, replicas=rel.replicas, fingerprint=rel.fingerprint
            )
        busy = any(r.status != "ready" for r in releases.values())
        return Observed(
            endpoint=endpoint,
            url=f"memory://{endpoint}",
            status="updating" if busy else "ready",
            releases=releases,
            traffic=ep.traffic,
            replicas=sum(r.replicas for r in releases.values()),
        )

    def deploy_release(self, release: Release, traffic: Traffic) -> Operation:
        return self._call("deploy_release", lambda: self._deploy(release, traffic))

    def _deploy(self, release: Release, traffic: Traffic) -> Operation:
        digest = release.artifact.digest if release.artifact else None
        if digest is None or digest not in self.world.blobs:
            raise StorageError(f"release {release.id}: its artifact is not in the store")
        ep = self.world.endpoints.setdefault(release.endpoint, MemEndpoint(release.endpoint))
        found = ep.releases.get(release.id)
        if found is not None and found.fingerprint != release.fingerprint:
            raise ConflictError(
                f"{release.endpoint}/{release.id} exists with fingerprint {found.fingerprint[:12]}",
                hint=f"another ledger made it: `deployer adopt {release.endpoint} --spec SPEC`",
            )
        if found is None:
            replicas = release.autoscaling.min if release.autoscaling else release.resources.replicas
            found = MemRelease(release.id, release.fingerprint, digest, pending=self.world.pending_polls)
            found.replicas = replicas
            ep.releases[release.id] = found
            if found.pending == 0:
                found.status = "ready"
        if not ep.traffic.weights:
            ep.traffic = traffic if traffic.weights else Traffic.all_to(release.id)
        return self.world.new_op("deploy_release", release.endpoint, release.id, found.pending)

    def route(self, endpoint: str, traffic: Traffic) -> Operation:
        return self._call("route", lambda: self._route(endpoint, traffic))

    def _route(self, endpoint: str, traffic: Traffic) -> Operation:
        ep = self._endpoint(endpoint)
        for rid in [*traffic.weights, *traffic.mirror]:
            rel = ep.releases.get(rid)
            if rel is None:
                raise NotFoundError(f"traffic names {rid}, which {endpoint!r} does not serve")
            if rel.status not in ("ready", "updating"):
                raise ConflictError(f"{endpoint}/{rid} is {rel.status}: only a ready release takes traffic")
        ep.traffic = traffic
        return self.world.new_op("route", endpoint, None, 1)

    def scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        return self._call("scale", lambda: self._scale(endpoint, release, autoscaling))

    def _scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        rel = self._endpoint(endpoint).releases.get(release)
        if rel is None:
            raise NotFoundError(f"{endpoint}/{release} does not exist")
        if rel.autoscaling != autoscaling:
            rel.autoscaling = autoscaling
            rel.replicas = autoscaling.min
            if rel.status == "ready":
                rel.status, rel.pending = "updating", self.world.pending_polls
        return self.world.new_op("scale", endpoint, release, rel.pending)

    def retire_release(self, endpoint: str, release: str) -> Operation:
        return self._call("retire_release", lambda: self._retire(endpoint, release))

    def _retire(self, endpoint: str, release: str) -> Operation:
        ep = self.world.endpoints.get(endpoint)
        if ep is not None and release in ep.releases:
            if ep.traffic.weights.get(release) or ep.traffic.mirror.get(release):
                raise ConflictError(f"{endpoint}/{release} carries traffic: route it away before retiring it")
            del ep.releases[release]
        return self.world.new_op("retire_release", endpoint, release, 0)

    def destroy(self, endpoint: str) -> Operation:
        return self._call("destroy", lambda: self._destroy(endpoint))

    def _destroy(self, endpoint: str) -> Operation:
        self.world.endpoints.pop(endpoint, None)
        return self.world.new_op("destroy", endpoint, None, 0)

    def poll(self, op: Operation) -> OperationStatus:
        return self._call("poll", lambda: self._poll(op))

    def _poll(self, op: Operation) -> OperationStatus:
        state = self.world.ops.get(op.ref.get("op", ""))
        if state is None:
            return OperationStatus(state="failed", message=f"unknown operation {op.ref}")
        if state["polls"] > 0:
            state["polls"] -= 1
        if state["polls"] > 0:
            return OperationStatus(state="running")
        ep = self.world.endpoints.get(state["endpoint"])
        rel = ep.releases.get(state["release"]) if ep and state["release"] else None
        if state["kind"] in ("deploy_release", "scale"):
            if rel is None:
                return OperationStatus(state="failed", message=f"{state['release']} is gone")
            rel.status, rel.pending = "ready", 0
        return OperationStatus(state="succeeded")

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        def read() -> Metrics:
            requests = 100
            errors = round(requests * self.world.error_rate.get(release, 0.0))
            return Metrics(release=release, window_s=window_s, requests=requests, errors=errors, p50_ms=5, p99_ms=20)

        return self._call("metrics", read)

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        def answer() -> Response:
            ep = self._endpoint(endpoint)
            rid = release or ep.traffic.primary()
            if rid is None or rid not in ep.releases:
                return Response(status=404, body={"error": f"{endpoint} serves no release {rid}"})
            if self.world.error_rate.get(rid, 0.0) >= 1.0:
                return Response(status=500, body={"error": "model failed"}, release=rid)
            return Response(status=200, body={"predictions": [0 for _ in payload], "release": rid}, release=rid)

        return self._call("invoke", answer)
