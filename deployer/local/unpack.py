"""Extract a packaged artifact (tar.gz) into a cache directory keyed by its digest.

The digest is verified in the same read as the extraction; a mismatch deletes the partial tree
and raises :class:`~deployer.errors.DigestMismatchError`. Extraction uses tarfile's ``data``
filter (no absolute paths, no links out of the tree, no device files).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path
from typing import IO

from deployer.errors import DigestMismatchError, StorageError


class _HashingReader:
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self.raw.read(n)
        self.hash.update(chunk)
        return chunk

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def unpack(archive: Path, digest: str, cache: Path) -> Path:
    """Return ``cache/<digest>``, extracting ``archive`` into it first unless it is there already."""
    dest = cache / digest
    if dest.is_dir():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{digest}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with open(archive, "rb") as raw:
            reader = _HashingReader(raw)
            with tarfile.open(fileobj=reader, mode="r|gz") as tar:  # type: ignore[call-overload]
                tar.extractall(tmp, filter="data")
            reader.drain()
        if reader.hash.hexdigest() != digest:
            raise DigestMismatchError(f"{archive} hashes to {reader.hash.hexdigest()}, not {digest}")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    except FileNotFoundError as e:
        raise StorageError(f"artifact {archive} does not exist") from e
    except (OSError, tarfile.TarError) as e:
        raise StorageError(f"cannot extract {archive}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
