"""The shared ledger's objects in Cloud Storage: :class:`~deployer.protocols.LedgerObjects` at ``gs://BUCKET/PREFIX``.

Registered as the ``gs`` entry point of ``deployer.ledgers``. The version is the object's generation
(https://cloud.google.com/storage/docs/metadata#generation-number): every write makes a new one. Writes are
one ``objects.insert`` with ``ifGenerationMatch`` (``0``: only if no live object; ``N``: only if the live
object is generation ``N``), deletes one ``objects.delete`` with it; a lost precondition is ``412``
(https://cloud.google.com/storage/docs/request-preconditions), the contract's ``None`` / ``False``. A read is
one media download whose ``x-goog-generation`` header gives the version of exactly the bytes read.
Everything else goes through :func:`deployer_gcp.errors.translate`.

Where it differs from the contract: a conditional write is retried by the library on 429 / 5xx; a write
whose response was lost and whose retry then finds its own generation reports the precondition lost. The
caller re-reads.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from deployer.errors import NotFoundError, SpecError, StorageError
from deployer_gcp import _sdk
from deployer_gcp.errors import translate

MAX_RESULTS = 1000
"""objects.list returns at most 1,000 items a page (https://cloud.google.com/storage/docs/json_api/v1/objects/list)."""

PRECONDITION_FAILED = 412


def lost(exc: BaseException) -> bool:
    """412 Precondition Failed: the generation the request named is not the live one."""
    return isinstance(exc, _sdk.GoogleAPICallError) and exc.code == PRECONDITION_FAILED


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/prefix`` -> (bucket, prefix without slashes at either end)."""
    parts = urlsplit(uri)
    if parts.scheme != "gs" or not parts.netloc or parts.query or parts.fragment:
        raise SpecError("state.uri", f"{uri!r} is not a Cloud Storage ledger location", fix="use gs://BUCKET/PREFIX")
    return parts.netloc, parts.path.strip("/")


class GcsLedgerObjects:
    """Ledger objects under one Cloud Storage prefix (Application Default Credentials; anonymous against
    ``STORAGE_EMULATOR_HOST``). ``page_size`` caps items per objects.list page. Construction makes no call."""

    def __init__(self, uri: str, *, page_size: int = MAX_RESULTS) -> None:
        self.uri = uri
        self.bucket, self.prefix = split_uri(uri)
        self.page_size = page_size
        self._clients = _sdk.Clients(None, None)

    def _blob(self, key: str) -> Any:
        if not key or key.startswith("/"):
            raise ValueError(f"ledger object keys are relative and not empty: {key!r}")
        name = f"{self.prefix}/{key}" if self.prefix else key
        return self._clients.storage().bucket(self.bucket).blob(name)

    def _error(self, exc: BaseException, operation: str) -> Exception:
        err = translate(exc, operation)
        if isinstance(err, NotFoundError):  # an object's absence is answered before this: the bucket is missing
            return StorageError(
                f"the ledger bucket {self.bucket!r} does not exist",
                hint=f"create it (gcloud storage buckets create gs://{self.bucket}) or fix the state URI {self.uri}",
            )
        return err

    def _write(self, key: str, data: bytes, generation: int) -> str | None:
        blob = self._blob(key)
        try:
            blob.upload_from_string(
                data,
                content_type="application/octet-stream",
                if_generation_match=generation,
                retry=_sdk.storage_retry(),
            )
        except _sdk.GoogleAPIError as exc:
            if lost(exc):
                return None
            raise self._error(exc, "objects.insert") from exc
        return str(blob.generation)

    # -- LedgerObjects ------------------------------------------------------------------------
    def read(self, key: str) -> tuple[bytes, str] | None:
        blob = self._blob(key)
        try:
            data = blob.download_as_bytes(retry=_sdk.storage_retry())
        except _sdk.NotFound:  # no such object (or bucket: the first write says which)
            return None
        except _sdk.GoogleAPIError as exc:
            raise self._error(exc, "objects.get") from exc
        return bytes(data), str(blob.generation)

    def create(self, key: str, data: bytes) -> str | None:
        return self._write(key, data, 0)

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        return self._write(key, data, int(version))

    def delete(self, key: str, version: str | None = None) -> bool:
        blob = self._blob(key)
        try:
            blob.delete(if_generation_match=int(version) if version is not None else None, retry=_sdk.storage_retry())
        except _sdk.NotFound:
            return True
        except _sdk.GoogleAPIError as exc:
            if lost(exc):
                return False
            raise self._error(exc, "objects.delete") from exc
        return True

    def list(self, prefix: str) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            blobs = self._clients.storage().list_blobs(
                self.bucket, prefix=base + prefix, page_size=self.page_size, retry=_sdk.storage_retry()
            )
            keys = [str(b.name)[len(base) :] for b in blobs]
        except _sdk.GoogleAPIError as exc:
            raise self._error(exc, "objects.list") from exc
        return sorted(keys)


__all__ = ["GcsLedgerObjects", "split_uri"]
