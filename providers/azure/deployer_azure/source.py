"""``az://account/container/blob`` and ``https://<account>.blob.core.windows.net/container/blob``
model sources (``model.uri``), registered as the ``az`` entry point of ``deployer.sources``.

The version tag is the blob's ETag (with its size), read with one Get Blob Properties; the service
gives a blob a new ETag on every write
(https://learn.microsoft.com/rest/api/storageservices/get-blob-properties). The download is a Get
Blob sent with ``If-Match`` that ETag, so the bytes kept are the ones the tag names: a blob replaced
between the two calls answers 412 (https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations)
and is reported as transient, never cached under the old tag.

Credentials: ``AZURE_STORAGE_CONNECTION_STRING`` when it is for the URI's account (Azurite, a shared
key), otherwise the Azure credential (``DefaultAzureCredential``, or ``DEPLOYER_AZURE_TOKEN``) against
``https://<account>.blob.core.windows.net``. Nothing is stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from deployer.errors import ConflictError, NotFoundError, SpecError, TransientError
from deployer.sources import ProgressFn, split_object
from deployer_azure import _sdk
from deployer_azure.errors import azure_errors

EXAMPLE = "az://ACCOUNT/CONTAINER/path/to/model.joblib"


def parse(uri: str) -> tuple[str, str, str]:
    """(account, container, blob name) of either URI form."""
    parts = urlsplit(uri)
    if parts.scheme == "az":
        account, rest = split_object(uri, EXAMPLE)
    else:
        account = (parts.hostname or "").split(".", 1)[0]
        rest = parts.path.lstrip("/")
    container, _, name = unquote(rest).partition("/")
    if not account or not container or not name or name.endswith("/"):
        raise SpecError("model.uri", f"{uri} does not name a blob", fix=f"use {EXAMPLE}")
    return account, container, name


def _connection_account(conn: str) -> str | None:
    fields = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return fields.get("AccountName")


class BlobSource:
    """Reads models from Azure Blob Storage (see the module docstring)."""

    def __init__(self) -> None:
        self._services: dict[str, Any] = {}
        self._seen: dict[str, tuple[str, int]] = {}
        """uri -> (ETag, size) read by :meth:`version`: what :meth:`download` reads."""

    def _blob(self, uri: str) -> Any:
        account, container, name = parse(uri)
        service = self._services.get(account)
        if service is None:
            conn = os.environ.get(_sdk.STORAGE_ENV)
            clients = _sdk.Clients("", "", "", storage_account=account)
            if conn and _connection_account(conn) != account:  # the connection string is for another account
                service = _sdk.BlobServiceClient(
                    f"https://{account}.blob.core.windows.net", credential=clients.cred, user_agent=_sdk.USER_AGENT
                )
            else:
                service = clients.blob()
            self._services[account] = service
        return service.get_blob_client(container, name)

    def version(self, uri: str) -> str | None:
        blob = self._blob(uri)
        with azure_errors("GetBlobProperties"):
            try:
                props = blob.get_blob_properties()
            except _sdk.ResourceNotFoundError as e:
                raise NotFoundError(f"{uri} does not exist", hint="check model.uri (az storage blob list)") from e
        self._seen[uri] = (str(props.etag), int(props.size or 0))
        return f"{props.etag}:{props.size}"

    def download(self, uri: str, dest: Path, on_progress: ProgressFn | None = None) -> Path:
        if uri not in self._seen:
            self.version(uri)
        etag, size = self._seen[uri]
        target = dest / Path(parse(uri)[2]).name

        def progress(done: int, total: int | None) -> None:
            if on_progress:
                on_progress(done, total or size or done)

        try:
            with open(target, "wb") as f, azure_errors("GetBlob"):
                stream = self._blob(uri).download_blob(
                    etag=etag, match_condition=_sdk.MatchConditions.IfNotModified, progress_hook=progress
                )
                stream.readinto(f)
        except ConflictError as e:
            raise TransientError(f"{uri} was replaced while it was read (ETag {etag} is gone); deploy again") from e
        return target
