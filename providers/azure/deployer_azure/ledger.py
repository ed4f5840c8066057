"""The shared ledger's objects in Blob storage: :class:`~deployer.protocols.LedgerObjects` at
``az://ACCOUNT/CONTAINER/PREFIX`` (or ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX``).

Registered as the ``az`` entry point of ``deployer.ledgers``. The version is the blob's ETag, new on every
write. Every write is one Put Blob (https://learn.microsoft.com/rest/api/storageservices/put-blob) with a
conditional header (https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations):
``If-None-Match: *`` creates (the service answers ``409 BlobAlreadyExists`` when the blob exists),
``If-Match: <ETag>`` replaces (``412 ConditionNotMet`` when it changed); Delete Blob takes ``If-Match`` too
(Azurite answers ``412`` for a blob that is gone as well, so a refused delete is told from "already gone"
by one read).
Those answers are the contract's ``None`` / ``False``, told apart by the ``x-ms-error-code``
(https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes); everything else goes through
:func:`deployer_azure.errors.translate`.

Credentials: ``AZURE_STORAGE_CONNECTION_STRING`` when set (its account must be the URI's), otherwise
``DefaultAzureCredential`` on the account's URL (the role needs the Blob data actions of
``deployer iam-policy azure``). Where it differs from the contract: a write whose response was lost and
whose retry then finds its own blob reports the precondition lost; the caller re-reads.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from deployer.errors import SpecError, StorageError
from deployer_azure import _sdk
from deployer_azure.errors import error_code, translate

EXISTS = frozenset({"BlobAlreadyExists", "ConditionNotMet"})
"""A create that lost: the blob exists (409), or a concurrent write won the If-None-Match (412)."""
CHANGED = frozenset({"ConditionNotMet", "BlobNotFound"})
"""A replace that lost: the ETag is not the blob's (412), or the blob is gone (404)."""
MAX_RESULTS = 5000
"""List Blobs returns at most 5,000 a page (https://learn.microsoft.com/rest/api/storageservices/list-blobs)."""
HOST_SUFFIX = ".blob.core.windows.net"
FIX = "use az://ACCOUNT/CONTAINER/PREFIX or https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX"


def split_uri(uri: str) -> tuple[str, str, str]:
    """``az://account/container/prefix`` or the https form -> (account, container, prefix)."""
    parts = urlsplit(uri)
    if parts.scheme == "az":
        account, path = parts.netloc, parts.path
    elif parts.scheme == "https" and parts.netloc.endswith(HOST_SUFFIX):
        account, path = parts.netloc[: -len(HOST_SUFFIX)], parts.path
    else:
        raise SpecError("state.uri", f"{uri!r} is not a Blob storage ledger location", fix=FIX)
    container, _, prefix = path.lstrip("/").partition("/")
    if not account or not container or parts.query or parts.fragment:
        raise SpecError("state.uri", f"{uri!r} names no storage account and container", fix=FIX)
    return account, container, prefix.strip("/")


def connection_account(conn: str) -> str:
    """The ``AccountName`` of a connection string (nothing else of it is read)."""
    fields = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return fields.get("AccountName", "")


class BlobLedgerObjects:
    """Ledger objects under one container prefix. ``page_size`` caps blobs per List Blobs page.
    Construction makes no call and imports no SDK."""

    def __init__(self, uri: str, *, page_size: int = MAX_RESULTS) -> None:
        self.uri = uri
        self.account, self.container, self.prefix = split_uri(uri)
        self.page_size = page_size
        conn = os.environ.get(_sdk.STORAGE_ENV)
        if conn and connection_account(conn) != self.account:
            raise SpecError(
                "state.uri",
                f"the ledger is in storage account {self.account!r} but {_sdk.STORAGE_ENV} connects to "
                f"{connection_account(conn)!r}",
                fix=f"unset {_sdk.STORAGE_ENV} or name its account in the state URI",
            )
        self._clients = _sdk.Clients("", "", "", storage_account=self.account)

    def _container(self) -> Any:
        return self._clients.blob().get_container_client(self.container)

    def _blob(self, key: str) -> Any:
        if not key or key.startswith("/"):
            raise ValueError(f"ledger object keys are relative and not empty: {key!r}")
        return self._container().get_blob_client(f"{self.prefix}/{key}" if self.prefix else key)

    def _error(self, exc: BaseException, operation: str) -> Exception:
        if error_code(exc) == "ContainerNotFound":
            return StorageError(
                f"the ledger container {self.container!r} does not exist in storage account {self.account!r}",
                hint=f"create it (az storage container create -n {self.container}) or fix the state URI {self.uri}",
            )
        return translate(exc, operation)

    def _put(self, key: str, data: bytes, lost: frozenset[str], **condition: Any) -> str | None:
        try:
            out = self._blob(key).upload_blob(data, blob_type="BlockBlob", **condition)
        except _sdk.HttpResponseError as exc:
            if error_code(exc) in lost:
                return None
            raise self._error(exc, "Put Blob") from exc
        except (_sdk.ServiceRequestError, _sdk.ServiceResponseError) as exc:
            raise translate(exc, "Put Blob") from exc
        return str(out["etag"])

    # -- LedgerObjects ------------------------------------------------------------------------
    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            download = self._blob(key).download_blob()
            data = download.readall()
        except _sdk.HttpResponseError as exc:
            if error_code(exc) == "BlobNotFound":
                return None
            raise self._error(exc, "Get Blob") from exc
        except (_sdk.ServiceRequestError, _sdk.ServiceResponseError) as exc:
            raise translate(exc, "Get Blob") from exc
        return bytes(data), str(download.properties.etag)

    def create(self, key: str, data: bytes) -> str | None:
        return self._put(key, data, EXISTS, overwrite=False)

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        match = _sdk.MatchConditions.IfNotModified
        return self._put(key, data, CHANGED, overwrite=True, etag=version, match_condition=match)

    def delete(self, key: str, version: str | None = None) -> bool:
        condition: dict[str, Any] = {}
        if version is not None:
            condition = {"etag": version, "match_condition": _sdk.MatchConditions.IfNotModified}
        try:
            self._blob(key).delete_blob(**condition)
        except _sdk.HttpResponseError as exc:
            code = error_code(exc)
            if code == "BlobNotFound":
                return True
            if code == "ConditionNotMet":  # If-Match fails on a blob that is gone too (Azurite): which is it?
                return self.read(key) is None
            raise self._error(exc, "Delete Blob") from exc
        except (_sdk.ServiceRequestError, _sdk.ServiceResponseError) as exc:
            raise translate(exc, "Delete Blob") from exc
        return True

    def list(self, prefix: str) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            blobs = self._container().list_blobs(name_starts_with=base + prefix, results_per_page=self.page_size)
            keys = [str(b.name)[len(base) :] for b in blobs]
        except _sdk.HttpResponseError as exc:
            raise self._error(exc, "List Blobs") from exc
        except (_sdk.ServiceRequestError, _sdk.ServiceResponseError) as exc:
            raise translate(exc, "List Blobs") from exc
        return sorted(keys)


__all__ = ["BlobLedgerObjects", "split_uri"]
