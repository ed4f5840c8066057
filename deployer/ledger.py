"""The release ledger: append-only history of releases and operations per endpoint, in SQLite.

The ledger is the source of rollback targets and the audit trail. It lives at
``$DEPLOYER_HOME/ledger.db`` (see :mod:`deployer.paths`), or where ``spec.state.path`` says, in WAL
mode so readers (``status``, ``history``) never block a deploy.

Release lifecycle (``releases.status``)::

    deploying ──► live ──► superseded ──► (rollback target while its artifact is kept)
        │           └────► rolled_back      (traffic moved away by a rollback)
        └────► failed                       (a step or gate failed; evidence attached)
        └────► abandoned                    (a crashed rollout replaced by a different spec)

``running`` says whether the release still has compute on the provider; ``autoscaling`` is the
autoscaling last applied to it (so an unchanged re-apply compares with the row, not the journal).

Every engine step is journaled twice in ``operations``: ``started`` (with the provider Operation
once known) before it is sent, and ``done`` / ``failed`` after. Audit fields on every row: actor,
time, and on releases the spec hash and artifact digest.

One lock per endpoint, a lease (:mod:`deployer.ledgers.lease`, a row in ``leases``): a second writer
gets :class:`LockedError` naming the holder; an expired lease, or one whose holder provably died on
this machine, is taken over and the takeover journaled with both holders.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deployer.errors import LedgerError, NoPreviousReleaseError
from deployer.ledgers.rows import EndpointRow, Lease, OperationRow, ReleaseRow
from deployer.records import Release, Traffic
from deployer.secrets import private_file
from deployer.spec import Autoscaling

__all__ = ["EndpointRow", "Ledger", "OperationRow", "ReleaseRow", "actor"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY, provider TEXT NOT NULL, target TEXT NOT NULL,
    url TEXT, meta TEXT NOT NULL DEFAULT '{}', traffic TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL, updated_at REAL NOT NULL, destroyed_at REAL,
    mirror TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS releases (
    endpoint TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    fingerprint TEXT NOT NULL, spec_hash TEXT NOT NULL, artifact_digest TEXT,
    release TEXT NOT NULL, status TEXT NOT NULL, running INTEGER NOT NULL DEFAULT 0,
    actor TEXT NOT NULL, created_at REAL NOT NULL, finished_at REAL,
    outcome TEXT, reason TEXT, evidence TEXT NOT NULL DEFAULT '[]',
    artifact_pruned INTEGER NOT NULL DEFAULT 0,
    autoscaling TEXT,
    PRIMARY KEY (endpoint, id)
);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, release TEXT,
    step TEXT NOT NULL, phase TEXT NOT NULL, operation TEXT, detail TEXT,
    actor TEXT NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_endpoint ON operations(endpoint, id);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, data BLOB NOT NULL, version TEXT NOT NULL);
"""


def actor() -> str:
    """Who acts: ``$DEPLOYER_ACTOR`` or ``user@host``."""
    explicit = os.environ.get("DEPLOYER_ACTOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Ledger:
    """SQLite ledger. One instance per process; cheap to open."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_file(self.path)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            self.db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.Error as e:
            raise LedgerError(
                f"cannot open the ledger at {self.path}: {e}", hint="check the path and its permissions"
            ) from e
        self.actor = actor()
        from deployer.ledgers.lease import Leases
        from deployer.ledgers.sqlite_objects import SqliteObjects

        self._lease_objects = SqliteObjects(self.path)
        self.leases = Leases(self._lease_objects, lambda ep: ep, self.actor, self.journal)

    def close(self) -> None:
        self._lease_objects.close()
        self.db.close()

    def _migrate(self) -> None:
        """Bring a ledger file written by an older deployer up to this schema (idempotent, race-safe:
        the columns are re-read inside the write transaction, so two processes never add one twice).

        ``releases.autoscaling`` is filled from the newest journaled ``scale`` of each release;
        ``endpoints.mirror`` starts empty.
        """

        def columns(table: str) -> set[str]:
            return {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}

        if "autoscaling" in columns("releases") and "mirror" in columns("endpoints"):
            return
        with self._tx() as db:
            if "mirror" not in columns("endpoints"):
                db.execute("ALTER TABLE endpoints ADD COLUMN mirror TEXT NOT NULL DEFAULT '{}'")
            if "autoscaling" in columns("releases"):
                return
            db.execute("ALTER TABLE releases ADD COLUMN autoscaling TEXT")
            rows = db.execute(
                "SELECT endpoint, release, detail FROM operations WHERE step LIKE 'scale%' AND phase='done' "
                "AND release IS NOT NULL AND detail IS NOT NULL ORDER BY id"
            ).fetchall()
            for endpoint, rid, detail in rows:  # oldest first: the newest scale of a release wins
                applied = json.loads(detail).get("autoscaling")
                if applied is not None:
                    db.execute(
                        "UPDATE releases SET autoscaling=? WHERE endpoint=? AND id=?",
                        (json.dumps(applied, sort_keys=True), endpoint, rid),
                    )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes in the block land together or not at all (a kill in between changes nothing)."""
        with self._tx() as db:
            yield db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- locking -------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, endpoint: str, purpose: str = "deploy") -> Iterator[str]:
        """Hold the endpoint's lease for the block; raise :class:`LockedError` naming the holder."""
        with self.leases.hold(endpoint, purpose) as lease:
            yield lease.token

    def lease(self, endpoint: str) -> Lease | None:
        """The endpoint's lease as stored (it may have expired), or None."""
        return self.leases.current(endpoint)

    def lock_holder(self, endpoint: str) -> str | None:
        """Who holds the endpoint's lock while the lease is live, else None."""
        got = self.leases.current(endpoint)
        return got.holder if got is not None and got.live(time.time()) else None

    def force_unlock(self, endpoint: str) -> Lease | None:
        """Remove the lock whoever holds it, journaled (``deployer unlock --force``); the old lease or None."""
        return self.leases.force_release(endpoint)

    # ---- endpoints -----------------------------------------------------------------------

    def upsert_endpoint(self, name: str, provider: str, target: dict[str, Any]) -> None:
        now = time.time()
        self.db.execute(
            "INSERT INTO endpoints(name, provider, target, created_at, updated_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET provider=excluded.provider, target=excluded.target, "
            "updated_at=excluded.updated_at, destroyed_at=NULL",
            (name, provider, json.dumps(target, sort_keys=True), now, now),
        )

    def set_endpoint_facts(self, name: str, *, url: str | None, meta: dict[str, str]) -> None:
        self.db.execute(
            "UPDATE endpoints SET url=?, meta=?, updated_at=? WHERE name=?",
            (url, json.dumps(meta, sort_keys=True), time.time(), name),
        )

    def set_traffic(self, name: str, traffic: Traffic) -> None:
        """Record the weights and the mirror (shadow) percentages last routed."""
        self.db.execute(
            "UPDATE endpoints SET traffic=?, mirror=?, updated_at=? WHERE name=?",
            (_json(traffic.weights), _json(traffic.mirror), time.time(), name),
        )

    def mark_destroyed(self, name: str) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE endpoints SET destroyed_at=?, traffic='{}', mirror='{}', url=NULL WHERE name=?", (now, name)
            )
            db.execute("UPDATE releases SET running=0 WHERE endpoint=?", (name,))

    def endpoint(self, name: str) -> EndpointRow | None:
        r = self.db.execute(
            "SELECT name, provider, target, url, meta, traffic, created_at, updated_at, destroyed_at, mirror "
            "FROM endpoints WHERE name=?",
            (name,),
        ).fetchone()
        if r is None:
            return None
        return EndpointRow(
            name=r[0],
            provider=r[1],
            target=json.loads(r[2]),
            url=r[3],
            meta=json.loads(r[4]),
            traffic=Traffic(weights=json.loads(r[5]), mirror=json.loads(r[9])),
            created_at=r[6],
            updated_at=r[7],
            destroyed_at=r[8],
        )

    def endpoints(self) -> list[EndpointRow]:
        names = [r[0] for r in self.db.execute("SELECT name FROM endpoints ORDER BY name")]
        return [e for n in names if (e := self.endpoint(n)) is not None]

    # ---- releases ------------------------------------------------------------------------

    def next_release_id(self, endpoint: str) -> str:
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM releases WHERE endpoint=?", (endpoint,)).fetchone()
        return f"r{row[0] + 1:04d}"

    def add_release(self, release: Release, *, spec_hash: str) -> ReleaseRow:
        seq = int(release.id[1:])
        digest = release.artifact.digest if release.artifact else None
        self.db.execute(
            "INSERT INTO releases(endpoint, id, seq, fingerprint, spec_hash, artifact_digest, release, status, "
            "running, actor, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                release.endpoint,
                release.id,
                seq,
                release.fingerprint,
                spec_hash,
                digest,
                release.model_dump_json(),
                "deploying",
                0,
                self.actor,
                time.time(),
            ),
        )
        row = self.release(release.endpoint, release.id)
        assert row is not None
        return row

    def adopt_release(self, release: Release, *, status: str, running: bool, reason: str, spec_hash: str) -> None:
        """Record a release found on the endpoint (``deployer adopt``), replacing a row of the same id.

        The row says what the endpoint serves now (its observed fingerprint); the caller journals what
        the row said before.
        """
        self.db.execute(
            "INSERT INTO releases(endpoint, id, seq, fingerprint, spec_hash, artifact_digest, release, status, "
            "running, actor, created_at, finished_at, outcome, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(endpoint, id) DO UPDATE SET fingerprint=excluded.fingerprint, spec_hash=excluded.spec_hash, "
            "artifact_digest=excluded.artifact_digest, release=excluded.release, status=excluded.status, "
            "running=excluded.running, actor=excluded.actor, outcome=excluded.outcome, reason=excluded.reason, "
            "artifact_pruned=0, autoscaling=NULL, evidence='[]'",
            (
                release.endpoint,
                release.id,
                int(release.id[1:]),
                release.fingerprint,
                spec_hash,
                release.artifact.digest if release.artifact else None,
                release.model_dump_json(),
                status,
                int(running),
                self.actor,
                time.time(),
                time.time(),
                "adopted",
                reason,
            ),
        )

    def update_release_record(self, release: Release) -> None:
        """Store the release record again (after upload fills in the artifact's stored URI)."""
        self.db.execute(
            "UPDATE releases SET release=?, artifact_digest=? WHERE endpoint=? AND id=?",
            (
                release.model_dump_json(),
                release.artifact.digest if release.artifact else None,
                release.endpoint,
                release.id,
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
        sets: list[str] = []
        args: list[Any] = []
        if autoscaling is not None:
            sets.append("autoscaling=?")
            args.append(json.dumps(autoscaling.model_dump(mode="json"), sort_keys=True))
        for col, val in (("status", status), ("outcome", outcome), ("reason", reason)):
            if val is not None:
                sets.append(f"{col}=?")
                args.append(val)
        if running is not None:
            sets.append("running=?")
            args.append(int(running))
        if evidence is not None:
            sets.append("evidence=?")
            args.append(json.dumps(evidence, default=str))
        if finished:
            sets.append("finished_at=?")
            args.append(time.time())
        if sets:
            self.db.execute(
                f"UPDATE releases SET {', '.join(sets)} WHERE endpoint=? AND id=?", (*args, endpoint, release_id)
            )

    def release(self, endpoint: str, release_id: str) -> ReleaseRow | None:
        r = self.db.execute("SELECT * FROM releases WHERE endpoint=? AND id=?", (endpoint, release_id)).fetchone()
        return _release_row(r) if r else None

    def releases(self, endpoint: str) -> list[ReleaseRow]:
        rows = self.db.execute("SELECT * FROM releases WHERE endpoint=? ORDER BY seq", (endpoint,)).fetchall()
        return [_release_row(r) for r in rows]

    def live_release(self, endpoint: str) -> ReleaseRow | None:
        r = self.db.execute(
            "SELECT * FROM releases WHERE endpoint=? AND status='live' ORDER BY seq DESC LIMIT 1", (endpoint,)
        ).fetchone()
        return _release_row(r) if r else None

    def in_flight(self, endpoint: str) -> ReleaseRow | None:
        """A release whose rollout was started and never finished (a crash)."""
        r = self.db.execute(
            "SELECT * FROM releases WHERE endpoint=? AND status='deploying' ORDER BY seq DESC LIMIT 1", (endpoint,)
        ).fetchone()
        return _release_row(r) if r else None

    def rollback_target(self, endpoint: str, exclude: str | None = None) -> ReleaseRow:
        """The newest release that was live and good before the current one and can serve again: it still
        runs, or its artifact was not pruned (``strategy.keep_releases``)."""
        rows = self.db.execute(
            "SELECT * FROM releases WHERE endpoint=? AND status='superseded' AND id != ? "
            "AND (running=1 OR artifact_pruned=0) ORDER BY seq DESC LIMIT 1",
            (endpoint, exclude or ""),
        ).fetchone()
        if rows is None:
            raise NoPreviousReleaseError(
                f"endpoint {endpoint!r} has no earlier good release to roll back to",
                hint="deploy a release first, or name one with --to",
            )
        return _release_row(rows)

    # ---- operations (journal) ------------------------------------------------------------

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
        """Append one journal row (inside the caller's transaction, if any)."""
        self.leases.check(endpoint)
        cur = self.db.execute(
            "INSERT INTO operations(endpoint, release, step, phase, operation, detail, actor, at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (
                endpoint,
                release,
                step,
                phase,
                json.dumps(operation) if operation else None,
                json.dumps(detail, default=str) if detail else None,
                self.actor,
                time.time(),
            ),
        )
        return int(cur.lastrowid or 0)

    def operations(self, endpoint: str, limit: int = 1000) -> list[OperationRow]:
        rows = self.db.execute(
            "SELECT * FROM operations WHERE endpoint=? ORDER BY id DESC LIMIT ?", (endpoint, limit)
        ).fetchall()
        return [
            OperationRow(
                id=r[0],
                endpoint=r[1],
                release=r[2],
                step=r[3],
                phase=r[4],
                operation=json.loads(r[5]) if r[5] else None,
                detail=json.loads(r[6]) if r[6] else None,
                actor=r[7],
                at=r[8],
            )
            for r in reversed(rows)
        ]

    def load(self, history: dict[str, Any]) -> None:
        """Write an exported endpoint (:mod:`deployer.ledgers.transfer`) verbatim: ids, actors, times,
        evidence. Journal ids are kept where free in this file, else renumbered in order."""
        e = history["endpoint"]
        if self.endpoint(e["name"]) is not None or self.releases(e["name"]):
            from deployer.errors import ConflictError

            raise ConflictError(
                f"endpoint {e['name']!r} already has a history in {self.path}",
                hint="pull into another --state, or use the history already here",
            )
        with self._tx() as db:
            db.execute(
                "INSERT INTO endpoints(name, provider, target, url, meta, traffic, created_at, updated_at, "
                "destroyed_at, mirror) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    e["name"],
                    e["provider"],
                    json.dumps(e["target"], sort_keys=True),
                    e["url"],
                    json.dumps(e["meta"], sort_keys=True),
                    _json(e["traffic"]),
                    e["created_at"],
                    e["updated_at"],
                    e["destroyed_at"],
                    _json(e["mirror"]),
                ),
            )
            for r in history["releases"]:
                db.execute(
                    "INSERT INTO releases VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        e["name"],
                        r["id"],
                        r["seq"],
                        r["fingerprint"],
                        r["spec_hash"],
                        r["artifact_digest"],
                        json.dumps(r["release"]),
                        r["status"],
                        int(r["running"]),
                        r["actor"],
                        r["created_at"],
                        r["finished_at"],
                        r["outcome"],
                        r["reason"],
                        json.dumps(r["evidence"], default=str),
                        int(r["artifact_pruned"]),
                        json.dumps(r["autoscaling"], sort_keys=True) if r["autoscaling"] else None,
                    ),
                )
            ids = [o["id"] for o in history["journal"]]
            taken = (
                ids
                and db.execute(
                    f"SELECT 1 FROM operations WHERE id IN ({','.join('?' * len(ids))}) LIMIT 1", ids
                ).fetchone()
            )
            for o in history["journal"]:
                db.execute(
                    "INSERT INTO operations(id, endpoint, release, step, phase, operation, detail, actor, at) "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        None if taken else o["id"],
                        e["name"],
                        o["release"],
                        o["step"],
                        o["phase"],
                        json.dumps(o["operation"]) if o["operation"] else None,
                        json.dumps(o["detail"], default=str) if o["detail"] else None,
                        o["actor"],
                        o["at"],
                    ),
                )

    def prunable_artifacts(self, endpoint: str, keep: int) -> list[tuple[str, str]]:
        """(release id, digest) pairs of ``endpoint`` whose artifacts may be deleted.

        Kept: the newest ``keep`` releases that are live, superseded (rollback targets) or deploying, on
        every endpoint; any release still running; any digest one of those uses. Already pruned: skipped.
        """
        keep_digests = self.referenced_digests(keep)
        running = {r[0] for r in self.db.execute("SELECT artifact_digest FROM releases WHERE running=1")}
        rows = self.db.execute(
            "SELECT id, artifact_digest FROM releases WHERE endpoint=? AND artifact_pruned=0 "
            "AND artifact_digest IS NOT NULL AND running=0 ORDER BY seq",
            (endpoint,),
        ).fetchall()
        return [(rid, d) for rid, d in rows if d not in keep_digests and d not in running]

    def mark_pruned(self, endpoint: str, digest: str) -> None:
        self.db.execute(
            "UPDATE releases SET artifact_pruned=1 WHERE endpoint=? AND artifact_digest=?", (endpoint, digest)
        )

    def unnamed_digests(self, endpoint: str) -> set[str]:
        """Digests of ``endpoint``'s (unpruned) artifacts that no release of another, not destroyed,
        endpoint names: what a destroyed endpoint leaves for nobody."""
        mine = self.db.execute(
            "SELECT DISTINCT artifact_digest FROM releases WHERE endpoint=? AND artifact_pruned=0 "
            "AND artifact_digest IS NOT NULL",
            (endpoint,),
        ).fetchall()
        named = self.db.execute(
            "SELECT DISTINCT r.artifact_digest FROM releases r JOIN endpoints e ON e.name = r.endpoint "
            "WHERE r.endpoint != ? AND e.destroyed_at IS NULL AND r.artifact_digest IS NOT NULL",
            (endpoint,),
        ).fetchall()
        return {d for (d,) in mine} - {d for (d,) in named}

    def referenced_digests(self, keep: int) -> set[str]:
        """Artifact digests the ledger still names as rollback targets or live, per endpoint the newest ``keep``."""
        out: set[str] = set()
        for (ep,) in self.db.execute("SELECT DISTINCT endpoint FROM releases").fetchall():
            rows = self.db.execute(
                "SELECT artifact_digest FROM releases WHERE endpoint=? AND status IN ('live','superseded','deploying') "
                "AND artifact_digest IS NOT NULL ORDER BY seq DESC LIMIT ?",
                (ep, keep),
            ).fetchall()
            out.update(r[0] for r in rows)
        return out


def _release_row(r: tuple[Any, ...]) -> ReleaseRow:
    return ReleaseRow(
        endpoint=r[0],
        id=r[1],
        seq=r[2],
        fingerprint=r[3],
        spec_hash=r[4],
        artifact_digest=r[5],
        release=Release.model_validate_json(r[6]),
        status=r[7],
        running=bool(r[8]),
        actor=r[9],
        created_at=r[10],
        finished_at=r[11],
        outcome=r[12],
        reason=r[13],
        evidence=json.loads(r[14]),
        autoscaling=Autoscaling.model_validate_json(r[16]) if r[16] else None,
        artifact_pruned=bool(r[15]),
    )


def _json(shares: dict[str, int]) -> str:
    return json.dumps(shares, sort_keys=True)
