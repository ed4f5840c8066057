"""Streaming sha256: the one file hasher, the one hashing reader and the per-file digest cache.

Every part that names bytes by their digest uses these: the artifact manifest (:mod:`deployer.artifacts`),
the stores that verify bytes in the same read as the upload or copy (local, S3, GCS, Blob) and remote
sources. :class:`DigestCache` remembers a file's digest by ``(path, size, mtime_ns, inode)`` in the
deployer home, so a model that did not change is never read again to learn what it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Stream a file through sha256 (1 MiB reads; constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_hashing(src: Path, dest: Path, on_chunk: object = None) -> str:
    """Copy ``src`` to ``dest`` (fsynced) and return the sha256 of the bytes copied, in one read.

    ``on_chunk`` (``(n) -> None``) is told the size of every chunk written.
    """
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
            if callable(on_chunk):
                on_chunk(len(chunk))
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


class HashingReader:
    """Read-only file wrapper that hashes each byte the first time it is read.

    Uploaders (s3transfer, google-resumable-media, tarfile) read a seekable file in order but may
    seek back to re-send a part; bytes below the high-water mark are not hashed twice. A read that
    skips ahead leaves a gap, and :meth:`hexdigest` then re-reads the file (``path``) instead.
    ``on_read(offset)`` is told the end of every read. ``close`` leaves the real file open: the caller
    owns it.
    """

    def __init__(self, f: IO[bytes], path: Path | None = None, on_read: Callable[[int], None] | None = None) -> None:
        self._f = f
        self._path = path
        self._on_read = on_read
        self._h = hashlib.sha256()
        self._lock = threading.Lock()
        self.mark = 0
        """How many leading bytes have been hashed."""
        self.gap = False

    def read(self, size: int = -1) -> bytes:
        with self._lock:
            pos = self._f.tell()
            data = self._f.read(size)
            end = pos + len(data)
            if pos > self.mark:
                self.gap = True
            elif end > self.mark:
                self._h.update(memoryview(data)[self.mark - pos :])
                self.mark = end
        if self._on_read is not None and data:
            self._on_read(end)
        return data

    def drain(self) -> None:
        """Read (and hash) the rest of the file."""
        while self.read(CHUNK):
            pass

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Uploaders close what they read; the caller owns the real file."""

    def hexdigest(self, size: int | None = None) -> str:
        """The sha256 of the file: of the bytes read when they covered it (``size`` bytes), else re-read."""
        if not self.gap and (size is None or self.mark == size):
            return self._h.hexdigest()
        if self._path is None:
            raise ValueError("the read skipped ahead and there is no path to re-read")
        return sha256_file(self._path)


class DigestCache:
    """sha256 of files, remembered by ``(path, size, mtime_ns, inode)`` in a small SQLite file.

    A file whose stat matches its row is not read; any change of size, mtime or inode (a rewrite, a
    ``touch``, a replace by rename) reads it once more. Safe for concurrent processes (WAL, a busy
    timeout, last writer wins: every writer writes a true digest). ``reads`` counts files hashed by
    this instance, ``bytes_read`` their bytes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.reads = 0
        self.bytes_read = 0
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                    " inode INTEGER, sha256 TEXT, at REAL)"
                )
            except sqlite3.Error:
                return None  # an unwritable home only costs the cache, never the deploy
            self._db = db
        return self._db

    def sha256(self, path: Path) -> str:
        """The digest of ``path``, read from the cache when its stat still matches, else hashed and stored."""
        real = os.path.realpath(path)
        st = os.stat(real)
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        db = self._conn()
        if db is not None:
            try:
                row = db.execute("SELECT size, mtime_ns, inode, sha256 FROM digests WHERE path=?", (real,)).fetchone()
            except sqlite3.Error:
                row = None
            if row is not None and tuple(row[:3]) == key:
                return str(row[3])
        digest = sha256_file(Path(real))
        self.reads += 1
        self.bytes_read += st.st_size
        after = os.stat(real)
        if db is not None and (after.st_size, after.st_mtime_ns, after.st_ino) == key:
            with contextlib.suppress(sqlite3.Error):
                db.execute(
                    "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?)", (real, *key, digest, time.time())
                )
        return digest

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
