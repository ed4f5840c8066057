"""A content-addressed artifact store on the local filesystem.

Layout ``<root>/sha256/<digest>/model.tar.gz``; an :class:`~deployer.records.ArtifactRef`'s ``uri``
is the absolute path of that file. Differs from the protocol only in being a plain copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from deployer.errors import DigestMismatchError, StorageError
from deployer.protocols import ProgressFn
from deployer.records import ArtifactRef

_CHUNK = 1 << 20
_NAME = "model.tar.gz"


def _copy_hashing(src: Path, dest: Path, on_progress: ProgressFn | None = None) -> str:
    total = src.stat().st_size
    done = 0
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


class LocalArtifactStore:
    """Artifacts under ``root``. Blocking; safe for concurrent writers (atomic rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise StorageError(f"not a sha256 hex digest: {digest!r}")
        return self.root / "sha256" / digest / _NAME

    def find(self, digest: str) -> ArtifactRef | None:
        path = self._path(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        return ArtifactRef(digest=digest, uri=str(path.resolve()), size=size)

    def put(self, path: Path, digest: str, on_progress: ProgressFn | None = None) -> ArtifactRef:
        found = self.find(digest)
        if found is not None:
            return found
        dest = self._path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{_NAME}.{os.getpid()}.{id(self)}.tmp")
        try:
            actual = _copy_hashing(Path(path), tmp, on_progress)
            if actual != digest:
                raise DigestMismatchError(
                    f"{path} hashes to {actual}, not {digest}", hint="repackage the model; the file changed"
                )
            os.replace(tmp, dest)
        except OSError as e:
            raise StorageError(f"cannot store artifact {digest[:12]}: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
        return ArtifactRef(digest=digest, uri=str(dest.resolve()), size=dest.stat().st_size)

    def get(self, ref: ArtifactRef, dest: Path) -> Path:
        src = Path(ref.uri)
        if not src.exists():
            src = self._path(ref.digest)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / _NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            actual = _copy_hashing(src, tmp)
            if actual != ref.digest:
                raise DigestMismatchError(f"stored artifact {src} hashes to {actual}, not {ref.digest}")
            os.replace(tmp, dest)
        except FileNotFoundError as e:
            raise StorageError(f"artifact {ref.digest[:12]} is not in the store at {self.root}") from e
        except OSError as e:
            raise StorageError(f"cannot read artifact {ref.digest[:12]}: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def delete(self, digest: str) -> None:
        shutil.rmtree(self._path(digest).parent, ignore_errors=True)
