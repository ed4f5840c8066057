"""A content-addressed artifact store on the local filesystem, holding models as plain directories.

Layout ``<root>/sha256/<digest>/`` holds the model's files and its ``deployer-manifest.json`` (whose
sha256 is the digest); an :class:`~deployer.records.ArtifactRef`'s ``uri`` is that directory, and the
local provider serves it as it is: nothing is packed or unpacked (``layout = "tree"``).

``put`` takes a model directory (:meth:`deployer.artifacts.Model.stage`), checks the manifest against
the digest and copies each file, verifying its sha256 in the same read, into a temporary directory
that is renamed into place. Files are copied, not hard-linked: a link would share the inode with the
user's file, and rewriting the model in place (``joblib.dump`` to the same path) would change the
bytes of a live release. Safe for concurrent writers (atomic rename; the loser's copy is dropped).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import ClassVar

from deployer.artifacts import MANIFEST_NAME, unpack
from deployer.digests import copy_hashing
from deployer.errors import DigestMismatchError, StorageError
from deployer.protocols import ProgressFn
from deployer.records import ArtifactRef
from deployer.scratch import scratch


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise StorageError(f"not a sha256 hex digest: {digest!r}")
    return digest


class LocalArtifactStore:
    """Model directories under ``root``. Blocking; safe for concurrent writers."""

    layout: ClassVar[str] = "tree"

    def __init__(self, root: Path, cache: Path | None = None) -> None:
        self.root = Path(root)
        self.cache = Path(cache) if cache is not None else self.root.parent / "cache"
        """Where archives named by URI are unpacked (``<cache>/<digest>``)."""

    def _dir(self, digest: str) -> Path:
        return self.root / "sha256" / _check_digest(digest)

    def _ref(self, digest: str, path: Path) -> ArtifactRef:
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return ArtifactRef(digest=digest, uri=str(path.resolve()), size=size)

    def find(self, digest: str) -> ArtifactRef | None:
        path = self._dir(digest)
        manifest = path / MANIFEST_NAME
        try:
            files = json.loads(manifest.read_bytes()).get("files", [])
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        size = sum(int(f.get("size", 0)) for f in files) + manifest.stat().st_size
        return ArtifactRef(digest=digest, uri=str(path.resolve()), size=size)

    def put(
        self, path: Path, digest: str, on_progress: ProgressFn | None = None, sha256: str | None = None
    ) -> ArtifactRef:
        """Store the model directory ``path`` (see the module docstring). ``sha256`` is unused: the
        manifest names every file's digest."""
        found = self.find(digest)
        if found is not None:
            return found
        src = Path(path)
        dest = self._dir(digest)
        try:
            manifest = (src / MANIFEST_NAME).read_bytes()
            if hashlib.sha256(manifest).hexdigest() != digest:
                raise DigestMismatchError(f"the manifest in {src} does not hash to {digest}")
            files = json.loads(manifest)["files"]
            total = sum(int(f["size"]) for f in files) + len(manifest)
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                if on_progress is not None:
                    on_progress(done[0], total)

            with scratch("put", under=self.root) as work:
                tree = work / "tree"
                tree.mkdir()
                for f in files:
                    target = tree / f["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    actual = copy_hashing(src / f["path"], target, advance)
                    if actual != f["sha256"]:
                        raise DigestMismatchError(
                            f"{f['path']} hashes to {actual}, not {f['sha256']}",
                            hint="the model changed while it was stored; deploy again",
                        )
                    os.chmod(target, int(f["mode"]))
                (tree / MANIFEST_NAME).write_bytes(manifest)
                advance(len(manifest))
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(tree, dest)
                except OSError:
                    if self.find(digest) is None:
                        raise
        except (KeyError, ValueError) as e:
            raise StorageError(f"{src} is not a model directory with a valid {MANIFEST_NAME}: {e}") from e
        except DigestMismatchError:
            raise
        except OSError as e:
            raise StorageError(f"cannot store artifact {digest[:12]}: {e}") from e
        found = self.find(digest)
        assert found is not None
        return found

    def get(self, ref: ArtifactRef, dest: Path) -> Path:
        """Copy the model directory to ``dest`` (verifying each file against the manifest)."""
        src = self._dir(ref.digest)
        if not (src / MANIFEST_NAME).exists():
            raise StorageError(f"artifact {ref.digest[:12]} is not in the store at {self.root}")
        dest = Path(dest)
        staged = LocalArtifactStore(dest.parent / f".{dest.name}.get")
        try:
            staged.put(src, ref.digest)
            shutil.rmtree(dest, ignore_errors=True)
            os.rename(staged._dir(ref.digest), dest)
        finally:
            shutil.rmtree(staged.root, ignore_errors=True)
        return dest

    def model_dir(self, ref: ArtifactRef) -> Path:
        """The directory to serve ``ref`` from: the store entry itself, or (an archive by URI, from before
        stores held trees) its tree unpacked under ``<cache>/<digest>``."""
        uri = Path(ref.uri)
        if uri.is_dir():
            return uri
        if (self._dir(ref.digest) / MANIFEST_NAME).exists():
            return self._dir(ref.digest)
        return unpack(uri, self.cache / ref.digest, ref.digest)

    def delete(self, digest: str) -> None:
        """Remove the entry and its unpacked tree, if any. Idempotent."""
        shutil.rmtree(self._dir(digest), ignore_errors=True)
        shutil.rmtree(self.cache / digest, ignore_errors=True)

    def evict(self, digests: set[str]) -> None:
        """Remove the entries of ``digests`` (no ledger row names them any more). Idempotent."""
        for digest in digests:
            self.delete(digest)
