"""The contracts between the core and its back-ends.

A provider translates a handful of primitives into one platform's calls. The core (plan, engine,
rollout, gates, ledger) builds every user verb from them, so a new cloud needs only these.

General rules for every method of :class:`Provider`:

* **Never sleeps, never waits.** A change is *started* and an :class:`~deployer.records.Operation`
  returned; the core's one wait loop (:mod:`deployer.waiting`) calls :meth:`Provider.poll` until it
  is terminal. A change that completes inside the call returns ``Operation(done=True)``.
* **Idempotent.** Every mutating call may be repeated with the same arguments after a crash, a
  timeout or a retry, and must converge to the same state without error ("retire" or "destroy"
  on something already gone succeeds).
* **Typed errors.** Platform errors are translated, in one place per provider and by error code,
  into :mod:`deployer.errors`: :class:`~deployer.errors.TransientError` for throttling, 5xx and
  timeouts (the core retries those with backoff inside the deadline), :class:`AuthError`,
  :class:`QuotaError`, :class:`NotFoundError`, :class:`ConflictError` otherwise. Raised ``from``
  the original exception.
* **No printing.** Progress is reported through the ``on_progress`` callbacks the core passes.
* **Names.** Resources are named from the endpoint name and release id only, so the core can
  always find and clean up what a crashed process started.
* **Resources say what they serve.** Every resource made for a release carries the release's
  fingerprint (and, where it holds model bytes, the artifact digest) in a tag, label or its name.
  :meth:`Provider.observe` reports that fingerprint per release (read from the resource, not assumed),
  and a mutating call that finds a resource of the expected name carrying another fingerprint raises
  :class:`~deployer.errors.ConflictError` naming it: release ids restart per ledger, so a name alone
  never proves ownership. The core refuses to change an endpoint that serves releases its ledger
  does not know (``ConflictError``; ``deployer adopt`` takes such an endpoint over explicitly).
* **"updating" is not "lost".** A release that exists but is being changed by the platform
  (autoscaling, maintenance) is reported ``updating``, never omitted.
* **Metrics arrive late.** ``capabilities.metrics_granularity_s`` / ``metrics_delay_s`` state the
  metrics source's resolution and publication delay; the core aligns gate windows to them and refuses,
  offline, a bake too short to judge.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from deployer.records import (
    ArtifactRef,
    Capabilities,
    Metrics,
    Observed,
    Operation,
    OperationStatus,
    Release,
    Response,
    Traffic,
)
from deployer.spec import Autoscaling, Spec, Target

if TYPE_CHECKING:
    from deployer.ledgers.rows import EndpointRow, Lease, OperationRow, ReleaseRow

ProgressFn = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while an artifact moves."""


class ProviderContext(BaseModel):
    """What a provider is constructed with."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    target: Target
    options: BaseModel
    home: Path
    """The deployer home directory (state, caches); providers keep local state below ``home/<name>``."""


@runtime_checkable
class ArtifactStore(Protocol):
    """Content-addressed store for models, keyed by the artifact digest (the sha256 of the model's
    manifest, see :mod:`deployer.artifacts`).

    Layout: ``<root>/sha256/<digest>/...``. A digest names exactly one model, so ``put`` of a digest
    already present is a no-op that moves no bytes. ``layout`` (a class attribute; ``"archive"`` when
    absent) says what ``put`` takes: ``"archive"`` a packed ``model.tar.gz``, ``"tree"`` a model
    directory holding its manifest. Packing happens in :func:`deployer.artifacts.upload`, only when
    :meth:`find` finds nothing. A store may also offer ``evict(digests: set[str]) -> None``, which
    drops local entries and unpacked trees no ledger row names (called after ``destroy``).
    """

    def find(self, digest: str) -> ArtifactRef | None:
        """Return the stored artifact for ``digest``, or None. One cheap metadata call; no bytes move."""
        ...

    def put(
        self, path: Path, digest: str, on_progress: ProgressFn | None = None, sha256: str | None = None
    ) -> ArtifactRef:
        """Store the packed model at ``path`` under the artifact ``digest``; return its ref.

        Skips the upload when :meth:`find` finds it. ``sha256`` is the digest of the archive's bytes
        (``digest`` itself when None): the store hashes the bytes in the same read as the upload and
        raises :class:`~deployer.errors.DigestMismatchError` (deleting the partial object) when they
        differ. A ``"tree"`` store verifies each file against the manifest instead. Blocking;
        idempotent; raises StorageError / TransientError.
        """
        ...

    def get(self, ref: ArtifactRef, dest: Path) -> Path:
        """Download ``ref`` to ``dest`` and verify its digest. Blocking; raises DigestMismatchError."""
        ...

    def delete(self, digest: str) -> None:
        """Delete the artifact. Idempotent: deleting a missing digest succeeds."""
        ...


@runtime_checkable
class Provider(Protocol):
    """One platform's implementation of the deployment primitives.

    Constructed as ``ProviderClass(ctx: ProviderContext)``; construction makes no network call.
    ``Options`` is the provider's typed options model, validated from ``spec.provider_options``.
    An optional class attribute ``retire_failed_default: bool`` (True when absent: idle cloud compute is
    billed) is what ``strategy.retire_failed`` means when the spec leaves it unset.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    capabilities: Capabilities

    def validate(self, spec: Spec) -> None:
        """Offline checks: names, regions, instance types, option combinations. No network.

        Raises :class:`~deployer.errors.SpecError` naming the field and the fix, or
        :class:`~deployer.errors.CapabilityError` with the reason.
        """
        ...

    def store(self) -> ArtifactStore:
        """The artifact store releases are uploaded to (S3, GCS, Blob, a local directory)."""
        ...

    def observe(self, endpoint: str) -> Observed | None:
        """What exists for ``endpoint`` now, or None when nothing does. Read-only; a few cheap calls."""
        ...

    def deploy_release(self, release: Release, traffic: Traffic) -> Operation:
        """Start serving ``release`` beside what already runs, creating the endpoint if needed.

        ``traffic`` is the weighting to hold while it comes up (the new release is at 0 unless the
        endpoint is empty, where it gets 100). The release is *ready* when the operation succeeds.
        Idempotent by ``(release.endpoint, release.id)``.
        """
        ...

    def route(self, endpoint: str, traffic: Traffic) -> Operation:
        """Set the traffic weights and the mirror (shadow) percentages. Every release named must be ready.

        Idempotent. A ``traffic.mirror`` on a provider whose ``capabilities.shadow`` is False raises
        :class:`~deployer.errors.CapabilityError` with the reason.
        """
        ...

    def scale(self, endpoint: str, release: str, autoscaling: Autoscaling) -> Operation:
        """Set replica bounds and the autoscaling target for ``release``. Idempotent.

        Providers without per-release scaling apply it endpoint-wide and say so in their docs.
        """
        ...

    def retire_release(self, endpoint: str, release: str) -> Operation:
        """Stop serving ``release`` and free its compute (it must carry 0 traffic). Artifacts stay.
        Idempotent: retiring an unknown release succeeds."""
        ...

    def destroy(self, endpoint: str) -> Operation:
        """Remove the endpoint and every release's compute. Artifacts stay. Idempotent."""
        ...

    def poll(self, op: Operation) -> OperationStatus:
        """One cheap status read for ``op``; never sleeps. Works on an Operation reloaded from the ledger."""
        ...

    def metrics(self, endpoint: str, release: str, window_s: float) -> Metrics:
        """Requests, errors and latency of ``release`` over the last ``window_s`` seconds.

        Zero requests is reported as such (``requests=0``); the gate decides that is inconclusive.
        """
        ...

    def invoke(self, endpoint: str, payload: Any, release: str | None = None) -> Response:
        """Send one prediction request. With ``release``, target that release directly where the
        platform allows it (smoke gates); otherwise through the traffic split."""
        ...


class NativeRollout(Protocol):
    """Optional: a provider whose platform runs a guarded rollout itself (``capabilities.native_rollout``).

    ``rollout_native`` starts the rollout of ``release`` replacing ``baseline`` with the platform's own
    traffic shifting and alarms; ``poll`` on the returned operation reports ``failed`` with the
    platform's reason when the platform rolled back, never ``succeeded``.
    """

    def rollout_native(self, release: Release, baseline: str | None, spec: Spec) -> Operation: ...


EventFn = Callable[[Any], None]


@runtime_checkable
class LedgerObjects(Protocol):
    """Object storage with conditional writes: the one primitive a shared (remote) ledger needs.

    A cloud package implements it with its own SDK (S3 ``PutObject`` with ``If-None-Match: *`` /
    ``If-Match``, GCS ``ifGenerationMatch``, Blob ``If-None-Match: *`` / ``If-Match``) and registers the
    class under the ``deployer.ledgers`` entry point group, keyed by URI scheme (``s3``, ``gs``, ``az``).
    The core builds the ledger's records, journal and lease on top; it never imports a cloud SDK.

    Constructed as ``Cls(uri)`` where ``uri`` is the ledger location (``s3://bucket/prefix``,
    ``gs://bucket/prefix``, ``az://account/container/prefix``); credentials and emulator endpoints come
    from the SDK's usual environment (``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``,
    ``AZURE_STORAGE_CONNECTION_STRING``...). Construction makes no network call.

    Keys are ``/``-separated paths relative to the URI's prefix. ``version`` is the store's opaque token
    for one written content (an ETag, or a GCS generation as a string): a new write always yields a new
    token. Every method blocks for one or a few calls and raises the typed errors of
    :mod:`deployer.errors` (``AuthError``, ``TransientError``, ``StorageError``); a lost precondition is
    not an error but the documented ``None`` / ``False`` result.
    """

    uri: str

    def read(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and version, or None when it does not exist."""
        ...

    def create(self, key: str, data: bytes) -> str | None:
        """Write ``key`` only if it does not exist; return the new version, or None when it already
        existed (nothing written)."""
        ...

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        """Overwrite ``key`` only if its current version is ``version``; return the new version, or None
        when the object changed or vanished since (nothing written)."""
        ...

    def delete(self, key: str, version: str | None = None) -> bool:
        """Delete ``key`` (only if still at ``version`` when given). True when deleted or already gone,
        False when the version no longer matched (nothing deleted)."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, sorted; all pages read."""
        ...


@runtime_checkable
class LedgerStore(Protocol):
    """The release ledger: what the engine, guard, adoption, the API and the CLI read and write.

    Two implementations: :class:`deployer.ledger.Ledger` (SQLite, the embedded default) and
    :class:`deployer.ledgers.objects.ObjectLedger` (shared, on any :class:`LedgerObjects`). Pick one with
    :func:`deployer.ledgers.select.open_store` (``--state``, ``DEPLOYER_STATE``, ``spec.state``).

    * **Blocking, complete.** Every write has landed (durably, visible to every other process sharing the
      ledger) when the method returns; no method sleeps except to back off a lost conditional write.
    * **Atomic.** Each write is all-or-nothing; the writes inside one :meth:`transaction` block land
      together or not at all. Concurrent writers never lose or duplicate each other's rows: a write that
      loses a race is re-applied on the newer state, never written over it.
    * **Locked writers.** The engine writes an endpoint only while holding its :meth:`lock` (a lease,
      :mod:`deployer.ledgers.lease`); a holder whose renewal found its lease taken over (or removed by
      ``unlock --force``) gets ``LockedError`` on its next write. Reads need no lock.
    * **Errors.** :class:`~deployer.errors.LockedError` naming the holder, ``LedgerError`` (cannot answer:
      damaged, unreachable, too contended), ``NoPreviousReleaseError``; a remote store's ``AuthError`` /
      ``TransientError`` / ``StorageError`` pass through.
    * **Audit.** Every row carries the actor (``$DEPLOYER_ACTOR`` or ``user@host``) and wall time.
    """

    actor: str

    @property
    def path(self) -> str | Path:
        """Where the ledger is (a file or a URI), for messages and ``--state`` hints."""
        ...

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[Any]:
        """A block whose writes land together or not at all."""
        ...

    # locking
    def lock(self, endpoint: str, purpose: str = "deploy") -> AbstractContextManager[str]:
        """Hold ``endpoint``'s lease for the block (renewed in the background); ``LockedError`` naming the
        holder when another live holder has it. Yields the lease token."""
        ...

    def lease(self, endpoint: str) -> Lease | None:
        """The lease as stored (possibly expired), or None."""
        ...

    def lock_holder(self, endpoint: str) -> str | None:
        """The holder while the lease is live, else None."""
        ...

    def force_unlock(self, endpoint: str) -> Lease | None:
        """Remove the lease whoever holds it and journal who did (``deployer unlock --force``)."""
        ...

    # endpoints
    def upsert_endpoint(self, name: str, provider: str, target: dict[str, Any]) -> None: ...
    def set_endpoint_facts(self, name: str, *, url: str | None, meta: dict[str, str]) -> None: ...
    def set_traffic(self, name: str, traffic: Traffic) -> None: ...
    def mark_destroyed(self, name: str) -> None: ...
    def endpoint(self, name: str) -> EndpointRow | None: ...
    def endpoints(self) -> list[EndpointRow]: ...

    # releases
    def next_release_id(self, endpoint: str) -> str: ...
    def add_release(self, release: Release, *, spec_hash: str) -> ReleaseRow: ...
    def adopt_release(self, release: Release, *, status: str, running: bool, reason: str, spec_hash: str) -> None: ...
    def update_release_record(self, release: Release) -> None: ...
    def set_release(
        self,
        endpoint: str,
        release_id: str,
        *,
        status: str | None = None,
        running: bool | None = None,
        outcome: str | None = None,
        reason: str | None = None,
        evidence: list[dict[str, Any]] | None = None,
        finished: bool = False,
        autoscaling: Autoscaling | None = None,
    ) -> None: ...
    def release(self, endpoint: str, release_id: str) -> ReleaseRow | None: ...
    def releases(self, endpoint: str) -> list[ReleaseRow]:
        """Every release of ``endpoint``, oldest first."""
        ...

    def live_release(self, endpoint: str) -> ReleaseRow | None: ...
    def in_flight(self, endpoint: str) -> ReleaseRow | None: ...
    def rollback_target(self, endpoint: str, exclude: str | None = None) -> ReleaseRow: ...

    # journal
    def journal(
        self,
        endpoint: str,
        release: str | None,
        step: str,
        phase: str,
        *,
        operation: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Append one journal entry; return its id (increasing per endpoint)."""
        ...

    def operations(self, endpoint: str, limit: int = 1000) -> list[OperationRow]:
        """The newest ``limit`` journal entries of ``endpoint``, oldest first."""
        ...

    def load(self, history: dict[str, Any]) -> None:
        """Write an endpoint exported by :func:`deployer.ledgers.transfer.export` verbatim (ids, actors,
        times, evidence); ``ConflictError`` when this ledger already has a history for it."""
        ...

    # artifacts
    def prunable_artifacts(self, endpoint: str, keep: int) -> list[tuple[str, str]]: ...
    def mark_pruned(self, endpoint: str, digest: str) -> None: ...
    def referenced_digests(self, keep: int) -> set[str]: ...
    def unnamed_digests(self, endpoint: str) -> set[str]:
        """Digests of ``endpoint``'s unpruned artifacts that no release of another live endpoint names."""
        ...
