"""Blob artifact store: ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX/sha256/DIGEST/model.tar.gz``.

``find`` is one Get Blob Properties that also checks the ``sha256`` metadata. ``put`` skips a digest
already there; otherwise it reads the file once, hashing sha256 while it stages blocks in parallel
(each block sent with its Content-MD5, which the service verifies before it keeps the block:
https://learn.microsoft.com/rest/api/storageservices/put-block), and commits the block list with the
``sha256`` metadata and index tags only when the bytes hash to the digest
(https://learn.microsoft.com/rest/api/storageservices/put-block-list). A mismatch commits nothing:
uncommitted blocks are discarded by the service, no blob appears. (A whole-file Content-MD5 is not
stored: the service would not check it on commit, and it cost a tenth of the upload throughput; ``get``
verifies the sha256 instead.)
"""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from deployer.digests import HashingReader
from deployer.errors import DigestMismatchError, NotFoundError, StorageError
from deployer.protocols import ProgressFn
from deployer.records import ArtifactRef
from deployer_azure import _sdk
from deployer_azure.errors import azure_errors, translate
from deployer_azure.options import AzureOptions

FILENAME = "model.tar.gz"
DIGEST_META = "sha256"
BYTES_META = "contentsha256"
"""Metadata naming the sha256 of the blob's bytes (the archive), which ``get`` verifies; ``sha256`` names the
artifact (its manifest's digest). Blob metadata names are C# identifiers: no dash."""
MANAGED_TAG = {"deployer-managed": "true"}


class BlobArtifactStore:
    """Content-addressed artifacts in one Blob container (see the module docstring)."""

    def __init__(self, clients: _sdk.Clients, options: AzureOptions) -> None:
        self._clients = clients
        self.options = options
        self.container = options.container
        self.prefix = options.prefix.strip("/")
        self.tags = {**MANAGED_TAG, **{_tag_key(k): v for k, v in options.tags.items()}}
        self._container_checked = False
        self.calls = 0
        """Blob requests sent by this store (benchmarks count them)."""

    # -- layout -------------------------------------------------------------------------------
    def key(self, digest: str, filename: str = FILENAME) -> str:
        return "/".join(p for p in (self.prefix, "sha256", digest, filename) if p)

    def _blob(self, digest: str, filename: str = FILENAME) -> Any:
        return self._clients.blob().get_blob_client(self.container, self.key(digest, filename))

    def uri(self, digest: str, filename: str = FILENAME) -> str:
        return str(self._blob(digest, filename).url)

    # -- protocol -----------------------------------------------------------------------------
    def find(self, digest: str, filename: str = FILENAME) -> ArtifactRef | None:
        """One Get Blob Properties. A blob whose ``sha256`` metadata differs counts as absent."""
        blob = self._blob(digest, filename)
        self.calls += 1
        try:
            props = blob.get_blob_properties()
        except _sdk.ResourceNotFoundError:
            return None
        except _sdk.HttpResponseError as exc:
            raise self._storage_error(exc, "GetBlobProperties") from exc
        if (props.metadata or {}).get(DIGEST_META) != digest:
            return None
        return ArtifactRef(digest=digest, uri=str(blob.url), size=int(props.size))

    def put(
        self,
        path: Path,
        digest: str,
        on_progress: ProgressFn | None = None,
        sha256: str | None = None,
        filename: str = FILENAME,
    ) -> ArtifactRef:
        """Upload unless present; hash while staging blocks; commit only bytes that match ``sha256`` (the
        archive's digest; ``digest`` when None)."""
        path = Path(path)
        found = self.find(digest, filename)
        if found is not None:
            if on_progress:
                on_progress(found.size, found.size)
            return found
        self._ensure_container()
        size = path.stat().st_size
        blob = self._blob(digest, filename)
        block = self.options.block_size_mb * 1024 * 1024
        ids: list[str] = []
        done = [0]
        lock = threading.Lock()

        def stage(block_id: str, data: bytes) -> None:
            blob.stage_block(block_id, data, length=len(data), validate_content=True)
            with lock:
                done[0] += len(data)
                self.calls += 1
                now = done[0]
            if on_progress:
                on_progress(now, size)

        limit = self.options.upload_concurrency
        pending: set[Future[None]] = set()
        run = uuid.uuid4().hex[:8]  # block ids of one upload never collide with another's
        with ThreadPoolExecutor(max_workers=limit) as pool, open(path, "rb") as raw:
            f = HashingReader(raw, path)
            try:
                for n, data in enumerate(iter(lambda: f.read(block), b"")):
                    block_id = base64.b64encode(f"{run}-{n:08d}".encode()).decode()
                    ids.append(block_id)
                    pending.add(pool.submit(stage, block_id, data))
                    if len(pending) >= limit * 2:  # bound the bytes held in memory
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            fut.result()
                for fut in pending:
                    fut.result()
            except _sdk.HttpResponseError as exc:
                raise self._storage_error(exc, "PutBlock") from exc
            except (_sdk.ServiceRequestError, _sdk.ServiceResponseError) as exc:
                raise translate(exc, "PutBlock") from exc
            actual = f.hexdigest(size)
        if actual != (sha256 or digest):
            raise DigestMismatchError(
                f"{path} hashes to {actual}, not {sha256 or digest}; nothing was committed",
                hint="the file changed while uploading or the digest is wrong; package again",
            )
        settings = _sdk.ContentSettings(content_type="application/gzip")
        meta = {DIGEST_META: digest, **({BYTES_META: sha256} if sha256 and sha256 != digest else {})}
        with azure_errors("PutBlockList"):
            blob.commit_block_list(ids, content_settings=settings, metadata=meta, tags=self.tags)
        self.calls += 1
        if not ids and on_progress:
            on_progress(0, 0)
        return ArtifactRef(digest=digest, uri=str(blob.url), size=size)

    def get(self, ref: ArtifactRef, dest: Path) -> Path:
        """Download in parallel ranges, hash while writing, verify the digest."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob = self._clients.blob().get_blob_client(self.container, self._key_of(ref.uri))
        sha = hashlib.sha256()
        try:
            stream = blob.download_blob(max_concurrency=self.options.upload_concurrency)
            with open(dest, "wb") as out:
                for chunk in stream.chunks():
                    sha.update(chunk)
                    out.write(chunk)
        except _sdk.HttpResponseError as exc:
            dest.unlink(missing_ok=True)
            raise self._storage_error(exc, "GetBlob") from exc
        want = (stream.properties.metadata or {}).get(BYTES_META, ref.digest)
        if sha.hexdigest() != want:
            dest.unlink(missing_ok=True)
            raise DigestMismatchError(f"{ref.uri} hashes to {sha.hexdigest()}, not {want}")
        return dest

    def delete(self, digest: str, filename: str = FILENAME) -> None:
        """Idempotent: a missing blob is already deleted."""
        try:
            self._blob(digest, filename).delete_blob()
        except _sdk.ResourceNotFoundError:
            return
        except _sdk.HttpResponseError as exc:
            raise self._storage_error(exc, "DeleteBlob") from exc

    # -- helpers ------------------------------------------------------------------------------
    def put_bytes(self, data: bytes, digest: str, filename: str) -> ArtifactRef:
        """A small content-addressed object (the generated scoring script); skipped when present."""
        found = self.find(digest, filename)
        if found is not None:
            return found
        if hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatchError(f"bytes for {filename} do not hash to {digest}")
        self._ensure_container()
        blob = self._blob(digest, filename)
        with azure_errors("PutBlob"):
            blob.upload_blob(
                data, overwrite=True, metadata={DIGEST_META: digest}, tags=self.tags, validate_content=True
            )
        self.calls += 1
        return ArtifactRef(digest=digest, uri=str(blob.url), size=len(data))

    def _key_of(self, uri: str) -> str:
        marker = f"/{self.container}/"
        if marker not in uri:
            raise StorageError(f"{uri} is not in container {self.container!r}")
        return uri.split(marker, 1)[1]

    def _ensure_container(self) -> None:
        if self._container_checked:
            return
        try:
            self._clients.blob().create_container(self.container)
        except _sdk.ResourceExistsError:
            pass
        except _sdk.HttpResponseError as exc:
            raise self._storage_error(exc, "CreateContainer") from exc
        self.calls += 1
        self._container_checked = True

    def _storage_error(self, exc: Exception, op: str) -> Exception:
        err = translate(exc, op)
        if isinstance(err, NotFoundError):
            return StorageError(
                f"container {self.container!r} or its storage account is missing ({op})",
                hint="check provider_options.storage_account and container",
            )
        return err


def _tag_key(key: str) -> str:
    """Blob index tag keys allow letters, digits and ``+-./:=_`` (no spaces kept here)."""
    return "".join(c if c.isalnum() or c in "+-./:=_" else "_" for c in key)[:128]
