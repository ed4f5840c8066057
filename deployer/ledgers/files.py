"""``file://`` ledger objects: a directory (local, or a shared NFS mount) with real conditional writes.

The reference :class:`~deployer.protocols.LedgerObjects` and the test double every shared-ledger test
runs on. Each object is one file whose first line is its version (``<counter>-<content hash>-<nonce>``,
never reused, so a delete-then-create cannot revive an old token) and the rest its bytes.

* ``create``: the bytes go to a temporary file that is then hard-linked into place; ``link`` fails when
  the name exists, so exactly one of several racing creators wins, across processes and hosts.
* ``replace`` / ``delete``: under a POSIX record lock (``fcntl.lockf``, honoured by NFSv4) on the key's
  lock file, the current version is compared and the new file renamed over the old one (atomic).

Durability is SQLite's ``synchronous=NORMAL``: a write survives the process that made it (and reaches the
NFS server on close); a power cut of the machine may lose the last writes, never tear one.

Limits: the directory's filesystem must honour ``link`` atomicity and POSIX locks (local disks, NFSv4
with locking; not SMB without byte-range locks, not eventually consistent FUSE mounts of buckets).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from deployer.errors import StorageError

_TMP = ".tmp"
_LOCKS = ".locks"
_in_process = threading.Lock()
"""POSIX record locks are per process: threads of one process also take this lock."""


class FileObjects:
    """``file:///abs/dir`` (or a plain directory path) as :class:`~deployer.protocols.LedgerObjects`.

    Construction touches nothing; the directory is made by the first write.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        parts = urlsplit(uri)
        if parts.scheme != "file":
            path = uri
        else:  # file:///abs/dir; file://./dir and file://dir read as the relative path people mean
            host = "" if parts.netloc in ("", "localhost") else parts.netloc
            path = unquote(host + parts.path)
        self.root = Path(path).expanduser()

    # ---- reads ---------------------------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, str] | None:
        return self._read(key)

    def _read(self, key: str) -> tuple[bytes, str] | None:
        try:
            raw = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read {key} in {self.uri}: {e}", hint="check the ledger directory") from e
        version, _, data = raw.partition(b"\n")
        return data, version.decode()

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        if not self.root.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d not in (_TMP, _LOCKS)]
            rel = Path(dirpath).relative_to(self.root)
            for f in filenames:
                key = (rel / f).as_posix() if rel.parts else f
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    # ---- conditional writes ----------------------------------------------------------------------

    def create(self, key: str, data: bytes) -> str | None:
        version = _version(1, data)
        with self._staged(version, data) as tmp:
            dest = self._path(key)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(tmp, dest)
            except FileExistsError:
                return None
        return version

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        with self._locked(key):
            current = self._read(key)
            if current is None or current[1] != version:
                return None
            new = _version(int(version.split("-", 1)[0]) + 1, data)
            with self._staged(new, data) as tmp:
                os.replace(tmp, self._path(key))
            return new

    def delete(self, key: str, version: str | None = None) -> bool:
        with self._locked(key):
            current = self._read(key)
            if current is None:
                return True
            if version is not None and current[1] != version:
                return False
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()
            return True

    # ---- helpers ---------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/") or key.split("/")[0] in (_TMP, _LOCKS):
            raise StorageError(f"invalid ledger key {key!r}", hint="keys are relative paths below the ledger")
        return self.root / key

    @contextlib.contextmanager
    def _staged(self, version: str, data: bytes) -> Iterator[Path]:
        """A temporary file holding ``version`` and ``data`` beside the objects; always removed after."""
        tmpdir = self.root / _TMP
        tmpdir.mkdir(parents=True, exist_ok=True)
        tmp = tmpdir / uuid.uuid4().hex
        try:
            with open(tmp, "wb") as f:
                f.write(version.encode() + b"\n" + data)
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lockdir = self.root / _LOCKS
        lockdir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        with _in_process, open(lockdir / name, "a+b") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(f, fcntl.LOCK_UN)


def _version(counter: int, data: bytes) -> str:
    return f"{counter}-{hashlib.sha256(data).hexdigest()[:16]}-{uuid.uuid4().hex[:8]}"
