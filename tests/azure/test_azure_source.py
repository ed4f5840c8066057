"""``model.uri: az://...`` and ``https://<account>.blob.core.windows.net/...`` on Azurite, through the
source check every remote source runs (deployed locally with real predictions; an unchanged blob
moves no bytes, counted on the wire; a rewritten blob, new ETag, is downloaded; a digest mismatch
keeps nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport
from conftest import ACCOUNT

from deployer.errors import SpecError
from deployer.sources import fetch
from deployer.testing.sources import check_remote_source


@pytest.mark.timeout(90)
def test_blob_model_deploys_serves_and_an_unchanged_blob_moves_no_bytes(
    azurite: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import BlobServiceClient

    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    container = BlobServiceClient.from_connection_string(azurite).get_container_client("models")
    if not container.exists():
        container.create_container()
    reads: list[str] = []
    send = RequestsTransport.send

    def counting(self: Any, request: Any, **kw: Any) -> Any:
        if request.method == "GET" and "/models/" in request.url and "comp=" not in request.url:
            reads.append(request.url)  # Get Blob: content, not properties (HEAD)
        return send(self, request, **kw)

    monkeypatch.setattr(RequestsTransport, "send", counting)
    uri = f"az://{ACCOUNT}/models/churn/model.joblib"
    check_remote_source(
        uri,
        put=lambda data: container.upload_blob("churn/model.joblib", data, overwrite=True),
        reads=lambda: len(reads),
        tmp_path=tmp_path,
        missing=f"az://{ACCOUNT}/models/nothing-here.joblib",
    )
    by_url = fetch(f"https://{ACCOUNT}.blob.core.windows.net/models/churn/model.joblib", None, home)
    assert by_url.digest == fetch(uri, None, home).digest, "both URI forms name the same blob"
    with pytest.raises(SpecError, match="does not name a blob"):
        fetch(f"az://{ACCOUNT}/models", None, home)
