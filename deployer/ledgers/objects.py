"""The shared ledger on object storage: :class:`~deployer.protocols.LedgerStore` on any
:class:`~deployer.protocols.LedgerObjects` (S3, GCS, Blob, ``file://``).

Layout below the ledger URI, per endpoint ``NAME``:

``endpoints/NAME/head.json``
    The endpoint's snapshot: its row, every release, traffic, the journal's tail and the next journal
    id. Every change is one ``replace`` at the version read (``create`` for the first), so a writer
    that lost a race is told (``None``), re-reads the new head and re-applies its change: an append is
    never overwritten, never lost, never duplicated. A :meth:`ObjectLedger.transaction` block batches
    all its changes into that one conditional write.
``endpoints/NAME/journal/NNNNNNNNNN.json``
    Compacted journal: when the tail passes :data:`TAIL_MAX` entries its oldest :data:`CHUNK` go to an
    immutable chunk object (``create``) named by its first id, and leave the head in the same write.
``endpoints/NAME/lease.json``
    The endpoint lock (:mod:`deployer.ledgers.lease`).

Reads are one ``read`` of the head (``status``, ``history``); old journal chunks are read only when
asked for and are cached in memory by key (they never change). A transaction spanning several
endpoints commits one endpoint after another (the engine's transactions touch one).
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from deployer.errors import ConflictError, LedgerError, NoPreviousReleaseError
from deployer.ledger import actor
from deployer.ledgers.lease import Leases
from deployer.ledgers.rows import EndpointRow, Lease, OperationRow, ReleaseRow
from deployer.protocols import LedgerObjects
from deployer.records import Release, Traffic
from deployer.spec import Autoscaling

TAIL_MAX = 100
"""Journal entries kept in the head before the oldest :data:`CHUNK` are compacted."""
CHUNK = 50
RETRIES = 200
"""Conditional writes lost in a row before a change gives up (8 racing writers need a few)."""

State = dict[str, Any]
Change = Callable[[State], Any]


@dataclass
class _Pending:
    """One endpoint's changes inside a transaction: the head as read, and the changes applied to a copy."""

    read: bytes
    version: str | None
    work: State
    changes: list[Change]


EMPTY = b'{"chunks":[],"endpoint":null,"next_op":1,"ops":[],"releases":[]}'
"""The head of an endpoint the ledger has never written."""


def _plain(value: Any) -> Any:
    """``value`` as the JSON it is stored as (so a read-back compares equal to what was written)."""
    return json.loads(json.dumps(value, default=str))


class ObjectLedger:
    """The ledger on ``objects``; cheap to construct, no call until used."""

    def __init__(self, objects: LedgerObjects) -> None:
        self.objects = objects
        self.path = objects.uri
        self.actor = actor()
        self.leases = Leases(objects, lambda ep: f"endpoints/{ep}/lease.json", self.actor, self.journal)
        self._tx: dict[str, _Pending] | None = None
        self._chunks: dict[str, list[dict[str, Any]]] = {}
        self._parsed: dict[str, tuple[str | None, State]] = {}
        self.calls = 0
        """Store calls made (read, create, replace, list): the benchmark's and tests' counter."""

    def close(self) -> None:
        """Nothing to release: every call is complete when it returns."""

    # ---- heads -----------------------------------------------------------------------------------

    def _head_key(self, name: str) -> str:
        return f"endpoints/{name}/head.json"

    def _read_head(self, name: str) -> tuple[bytes, str | None]:
        self.calls += 1
        got = self.objects.read(self._head_key(name))
        return (EMPTY, None) if got is None else got

    def _state(self, name: str) -> State:
        """The head for reading only: parsed once per version (a status reads it several times)."""
        if self._tx is not None and name in self._tx:
            return self._tx[name].work
        raw, version = self._read_head(name)
        cached = self._parsed.get(name)
        if cached is None or cached[0] != version:
            cached = self._parsed[name] = (version, json.loads(raw))
        return cached[1]

    def _change(self, name: str, change: Change) -> Any:
        """Apply ``change`` to the endpoint's head: now (one conditional write, re-applied on a lost race),
        or at the end of the enclosing transaction."""
        self.leases.check(name)
        if self._tx is not None:
            if name not in self._tx:
                raw, version = self._read_head(name)
                self._tx[name] = _Pending(raw, version, json.loads(raw), [])
            pending = self._tx[name]
            pending.changes.append(change)
            return change(pending.work)
        return self._commit(name, [change], None)[0]

    def _commit(self, name: str, changes: list[Change], first: tuple[bytes, str | None] | None) -> list[Any]:
        for attempt in range(RETRIES):
            raw, version = first if first is not None else self._read_head(name)
            first = None
            state = json.loads(raw)
            committed = int(state["next_op"])
            results = [change(state) for change in changes]
            self._compact(name, state, committed)
            data = json.dumps(state, separators=(",", ":")).encode()
            self.calls += 1
            if version is None:
                written = self.objects.create(self._head_key(name), data)
            else:
                written = self.objects.replace(self._head_key(name), data, version)
            if written is not None:
                return results
            self.leases.check(name)
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise LedgerError(
            f"the ledger head of {name!r} changed {RETRIES} times while writing",
            hint="too many writers at once; retry",
        )

    def _compact(self, name: str, state: State, committed: int) -> None:
        """Move the oldest journal entries to immutable chunks while the tail is long. Only entries below
        ``committed`` (already in a written head, so fixed forever) go to a chunk: a write that then loses
        its race leaves a chunk the winner would write identically."""
        while len(state["ops"]) > TAIL_MAX and state["ops"][CHUNK - 1]["id"] < committed:
            self._compact_one(name, state)

    def _compact_one(self, name: str, state: State) -> None:
        ops = state["ops"]
        chunk, rest = ops[:CHUNK], ops[CHUNK:]
        key = f"endpoints/{name}/journal/{chunk[0]['id']:010d}.json"
        data = json.dumps(chunk, separators=(",", ":")).encode()
        self.calls += 1
        if self.objects.create(key, data) is None:
            self.calls += 1
            got = self.objects.read(key)
            if got is None or json.loads(got[0]) != chunk:
                raise LedgerError(f"journal chunk {key} holds other entries", hint="the ledger is damaged")
        state["ops"] = rest
        state["chunks"] = [*state["chunks"], chunk[0]["id"]]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All changes in the block land in one conditional write per endpoint, or none do."""
        if self._tx is not None:
            yield
            return
        self._tx = {}
        try:
            yield
            batch, self._tx = self._tx, None
            for name, pending in batch.items():
                if pending.changes:
                    self._commit(name, pending.changes, (pending.read, pending.version))
        finally:
            self._tx = None

    # ---- locking ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, endpoint: str, purpose: str = "deploy") -> Iterator[str]:
        with self.leases.hold(endpoint, purpose) as lease:
            yield lease.token

    def lease(self, endpoint: str) -> Lease | None:
        self.calls += 1
        return self.leases.current(endpoint)

    def lock_holder(self, endpoint: str) -> str | None:
        got = self.lease(endpoint)
        return got.holder if got is not None and got.live(time.time()) else None

    def force_unlock(self, endpoint: str) -> Lease | None:
        return self.leases.force_release(endpoint)

    # ---- endpoints -------------------------------------------------------------------------------

    def upsert_endpoint(self, name: str, provider: str, target: dict[str, Any]) -> None:
        now = time.time()
        target = _plain(target)

        def change(s: State) -> None:
            old = s["endpoint"] or {
                "name": name,
                "url": None,
                "meta": {},
                "traffic": {},
                "mirror": {},
                "created_at": now,
            }
            s["endpoint"] = {**old, "provider": provider, "target": target, "updated_at": now, "destroyed_at": None}

        self._change(name, change)

    def set_endpoint_facts(self, name: str, *, url: str | None, meta: dict[str, str]) -> None:
        now = time.time()
        self._change(name, _endpoint_update(url=url, meta=dict(meta), updated_at=now))

    def set_traffic(self, name: str, traffic: Traffic) -> None:
        upd = _endpoint_update(traffic=dict(traffic.weights), mirror=dict(traffic.mirror), updated_at=time.time())
        self._change(name, upd)

    def mark_destroyed(self, name: str) -> None:
        now = time.time()

        def change(s: State) -> None:
            _endpoint_update(destroyed_at=now, traffic={}, mirror={}, url=None)(s)
            for r in s["releases"]:
                r["running"] = False

        self._change(name, change)

    def endpoint(self, name: str) -> EndpointRow | None:
        e = self._state(name)["endpoint"]
        return _endpoint_row(e) if e else None

    def endpoints(self) -> list[EndpointRow]:
        self.calls += 1
        names = sorted({k.split("/")[1] for k in self.objects.list("endpoints/") if k.endswith("/head.json")})
        return [e for n in names if (e := self.endpoint(n)) is not None]

    # ---- releases --------------------------------------------------------------------------------

    def next_release_id(self, endpoint: str) -> str:
        seqs = [r["seq"] for r in self._state(endpoint)["releases"]]
        return f"r{max(seqs, default=0) + 1:04d}"

    def add_release(self, release: Release, *, spec_hash: str) -> ReleaseRow:
        rec = _release_dict(release, spec_hash, "deploying", False, self.actor, time.time())

        def change(s: State) -> None:
            if any(r["id"] == release.id for r in s["releases"]):
                raise LedgerError(f"release {release.id} of {release.endpoint!r} already exists", hint="retry")
            s["releases"].append(rec)

        self._change(release.endpoint, change)
        return _release_row(release.endpoint, rec)

    def adopt_release(self, release: Release, *, status: str, running: bool, reason: str, spec_hash: str) -> None:
        now = time.time()
        rec = _release_dict(release, spec_hash, status, running, self.actor, now)
        rec.update(finished_at=now, outcome="adopted", reason=reason)

        def change(s: State) -> None:
            old = next((r for r in s["releases"] if r["id"] == release.id), None)
            if old is None:
                s["releases"].append(rec)
                s["releases"].sort(key=lambda r: r["seq"])
            else:  # like SQLite's upsert: created_at and finished_at of the old row stay
                old.update({k: v for k, v in rec.items() if k not in ("created_at", "finished_at")})

        self._change(release.endpoint, change)

    def update_release_record(self, release: Release) -> None:
        self._change(
            release.endpoint,
            _release_update(
                release.id,
                release=release.model_dump(mode="json"),
                artifact_digest=release.artifact.digest if release.artifact else None,
            ),
        )

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
    ) -> None:
        fields: dict[str, Any] = {
            k: v
            for k, v in (("status", status), ("outcome", outcome), ("reason", reason), ("running", running))
            if v is not None
        }
        if autoscaling is not None:
            fields["autoscaling"] = autoscaling.model_dump(mode="json")
        if evidence is not None:
            fields["evidence"] = _plain(evidence)
        if finished:
            fields["finished_at"] = time.time()
        if fields:
            self._change(endpoint, _release_update(release_id, **fields))

    def release(self, endpoint: str, release_id: str) -> ReleaseRow | None:
        rec = next((r for r in self._state(endpoint)["releases"] if r["id"] == release_id), None)
        return _release_row(endpoint, rec) if rec else None

    def releases(self, endpoint: str) -> list[ReleaseRow]:
        return [_release_row(endpoint, r) for r in sorted(self._state(endpoint)["releases"], key=lambda r: r["seq"])]

    def _newest(self, endpoint: str, keep: Callable[[dict[str, Any]], bool]) -> ReleaseRow | None:
        recs = [r for r in self._state(endpoint)["releases"] if keep(r)]
        return _release_row(endpoint, max(recs, key=lambda r: r["seq"])) if recs else None

    def live_release(self, endpoint: str) -> ReleaseRow | None:
        return self._newest(endpoint, lambda r: r["status"] == "live")

    def in_flight(self, endpoint: str) -> ReleaseRow | None:
        return self._newest(endpoint, lambda r: r["status"] == "deploying")

    def rollback_target(self, endpoint: str, exclude: str | None = None) -> ReleaseRow:
        row = self._newest(
            endpoint,
            lambda r: (
                r["status"] == "superseded"
                and r["id"] != (exclude or "")
                and (r["running"] or not r["artifact_pruned"])
            ),
        )
        if row is None:
            raise NoPreviousReleaseError(
                f"endpoint {endpoint!r} has no earlier good release to roll back to",
                hint="deploy a release first, or name one with --to",
            )
        return row

    # ---- journal ---------------------------------------------------------------------------------

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
        entry = {
            "release": release,
            "step": step,
            "phase": phase,
            "operation": _plain(operation) if operation else None,
            "detail": _plain(detail) if detail else None,
            "actor": self.actor,
            "at": time.time(),
        }

        def change(s: State) -> int:
            op_id = int(s["next_op"])
            s["ops"].append({"id": op_id, **entry})
            s["next_op"] = op_id + 1
            return op_id

        result: int = self._change(endpoint, change)
        return result

    def operations(self, endpoint: str, limit: int = 1000) -> list[OperationRow]:
        state = self._state(endpoint)
        ops: list[dict[str, Any]] = list(state["ops"])
        for first in reversed(state["chunks"]):
            if len(ops) >= limit:
                break
            ops = self._chunk(endpoint, first) + ops
        return [_op_row(endpoint, o) for o in ops[-limit:]] if limit > 0 else []

    def _chunk(self, endpoint: str, first: int) -> list[dict[str, Any]]:
        key = f"endpoints/{endpoint}/journal/{first:010d}.json"
        if key not in self._chunks:
            self.calls += 1
            got = self.objects.read(key)
            if got is None:
                raise LedgerError(f"journal chunk {key} is missing from {self.path}", hint="the ledger is damaged")
            self._chunks[key] = json.loads(got[0])
        return self._chunks[key]

    def load(self, history: dict[str, Any]) -> None:
        """Write an exported endpoint (:mod:`deployer.ledgers.transfer`) verbatim: ids, actors, times,
        evidence. One ``create``: refused (ConflictError) when the endpoint already has a head here."""
        name = history["endpoint"]["name"]
        ops = [{k: v for k, v in o.items() if k != "endpoint"} for o in history["journal"]]
        releases = [{k: v for k, v in r.items() if k != "endpoint"} for r in history["releases"]]
        state = {
            "endpoint": history["endpoint"],
            "releases": releases,
            "ops": ops,
            "next_op": max((o["id"] for o in ops), default=0) + 1,
            "chunks": [],
        }
        conflict = ConflictError(
            f"endpoint {name!r} already has a history in {self.path}",
            hint="pull it from there instead, or push to another ledger",
        )
        if self._read_head(name)[1] is not None:
            raise conflict
        self._compact(name, state, int(state["next_op"]))
        self.calls += 1
        data = json.dumps(state, separators=(",", ":")).encode()
        if self.objects.create(self._head_key(name), data) is None:
            raise conflict

    # ---- artifacts -------------------------------------------------------------------------------

    def prunable_artifacts(self, endpoint: str, keep: int) -> list[tuple[str, str]]:
        keep_digests = self.referenced_digests(keep)
        heads = [self._state(e.name) for e in self.endpoints()]
        running = {r["artifact_digest"] for s in heads for r in s["releases"] if r["running"]}
        rows = [
            r
            for r in sorted(self._state(endpoint)["releases"], key=lambda r: r["seq"])
            if not r["artifact_pruned"] and r["artifact_digest"] and not r["running"]
        ]
        return [(r["id"], r["artifact_digest"]) for r in rows if r["artifact_digest"] not in keep_digests | running]

    def mark_pruned(self, endpoint: str, digest: str) -> None:
        def change(s: State) -> None:
            for r in s["releases"]:
                if r["artifact_digest"] == digest:
                    r["artifact_pruned"] = True

        self._change(endpoint, change)

    def unnamed_digests(self, endpoint: str) -> set[str]:
        mine = {
            r["artifact_digest"]
            for r in self._state(endpoint)["releases"]
            if r["artifact_digest"] and not r["artifact_pruned"]
        }
        named: set[str] = set()
        for e in self.endpoints():
            if e.name != endpoint and e.destroyed_at is None:
                named.update(r["artifact_digest"] for r in self._state(e.name)["releases"] if r["artifact_digest"])
        return mine - named

    def referenced_digests(self, keep: int) -> set[str]:
        out: set[str] = set()
        for e in self.endpoints():
            recs = sorted(self._state(e.name)["releases"], key=lambda r: -r["seq"])
            named = [
                r["artifact_digest"]
                for r in recs
                if r["status"] in ("live", "superseded", "deploying") and r["artifact_digest"]
            ]
            out.update(named[:keep])
        return out


# ---- records <-> JSON ----------------------------------------------------------------------------


def _endpoint_update(**fields: Any) -> Change:
    def change(s: State) -> None:
        if s["endpoint"] is not None:
            s["endpoint"].update(fields)

    return change


def _release_update(release_id: str, **fields: Any) -> Change:
    def change(s: State) -> None:
        for r in s["releases"]:
            if r["id"] == release_id:
                r.update(fields)

    return change


def _release_dict(release: Release, spec_hash: str, status: str, running: bool, who: str, at: float) -> dict[str, Any]:
    return {
        "id": release.id,
        "seq": int(release.id[1:]),
        "fingerprint": release.fingerprint,
        "spec_hash": spec_hash,
        "artifact_digest": release.artifact.digest if release.artifact else None,
        "release": release.model_dump(mode="json"),
        "status": status,
        "running": running,
        "actor": who,
        "created_at": at,
        "finished_at": None,
        "outcome": None,
        "reason": None,
        "evidence": [],
        "artifact_pruned": False,
        "autoscaling": None,
    }


def _release_row(endpoint: str, r: dict[str, Any]) -> ReleaseRow:
    return ReleaseRow(
        endpoint=endpoint,
        id=r["id"],
        seq=r["seq"],
        fingerprint=r["fingerprint"],
        spec_hash=r["spec_hash"],
        artifact_digest=r["artifact_digest"],
        release=Release.model_validate(r["release"]),
        status=r["status"],
        running=bool(r["running"]),
        actor=r["actor"],
        created_at=r["created_at"],
        finished_at=r["finished_at"],
        outcome=r["outcome"],
        reason=r["reason"],
        evidence=r["evidence"],
        autoscaling=Autoscaling.model_validate(r["autoscaling"]) if r["autoscaling"] else None,
        artifact_pruned=bool(r["artifact_pruned"]),
    )


def _endpoint_row(e: dict[str, Any]) -> EndpointRow:
    return EndpointRow(
        name=e["name"],
        provider=e["provider"],
        target=e["target"],
        url=e["url"],
        meta=e["meta"],
        traffic=Traffic(weights=e["traffic"], mirror=e["mirror"]),
        created_at=e["created_at"],
        updated_at=e["updated_at"],
        destroyed_at=e["destroyed_at"],
    )


def _op_row(endpoint: str, o: dict[str, Any]) -> OperationRow:
    return OperationRow(
        id=o["id"],
        endpoint=endpoint,
        release=o["release"],
        step=o["step"],
        phase=o["phase"],
        operation=o["operation"],
        detail=o["detail"],
        actor=o["actor"],
        at=o["at"],
    )
