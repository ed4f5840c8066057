"""Conditional-write objects in a table of the SQLite ledger: what the SQLite ledger keeps its leases in,
so both ledgers share one lease implementation (:mod:`deployer.ledgers.lease`)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path

TABLE = "CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, data BLOB NOT NULL, version TEXT NOT NULL)"


class SqliteObjects:
    """:class:`~deployer.protocols.LedgerObjects` on the ``leases`` table of an open ledger database.

    Each call is one statement, atomic under SQLite's own locking, on a connection of its own per thread
    (autocommit), so a lease renewal never joins the ledger's open transaction.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.uri = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []

    @property
    def db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            self._all.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._local = threading.local()

    def read(self, key: str) -> tuple[bytes, str] | None:
        row = self.db.execute("SELECT data, version FROM leases WHERE key=?", (key,)).fetchone()
        return (bytes(row[0]), row[1]) if row else None

    def create(self, key: str, data: bytes) -> str | None:
        version = uuid.uuid4().hex
        cur = self.db.execute("INSERT OR IGNORE INTO leases VALUES (?,?,?)", (key, data, version))
        return version if cur.rowcount == 1 else None

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        new = uuid.uuid4().hex
        cur = self.db.execute(
            "UPDATE leases SET data=?, version=? WHERE key=? AND version=?", (data, new, key, version)
        )
        return new if cur.rowcount == 1 else None

    def delete(self, key: str, version: str | None = None) -> bool:
        if version is None:
            self.db.execute("DELETE FROM leases WHERE key=?", (key,))
            return True
        cur = self.db.execute("DELETE FROM leases WHERE key=? AND version=?", (key, version))
        return cur.rowcount == 1 or self.read(key) is None

    def list(self, prefix: str) -> list[str]:
        rows = self.db.execute("SELECT key FROM leases WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix))
        return [r[0] for r in rows]
