"""``model.uri: gs://...`` on gcp-storage-emulator, through the source check every remote source runs
(deployed locally with real predictions; an unchanged object moves no bytes, counted on the wire; a
new generation is downloaded; a digest mismatch keeps nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from deployer.errors import SpecError
from deployer.sources import fetch
from deployer.testing.sources import check_remote_source

from .conftest import BUCKET, PROJECT, Emulator


@pytest.mark.timeout(90)
def test_gs_model_deploys_serves_and_an_unchanged_object_moves_no_bytes(
    storage_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import storage

    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    blob = storage.Client(project=PROJECT).bucket(BUCKET).blob("sources/churn/model.joblib")
    media: list[str] = []
    send = requests.Session.send

    def counting(self: Any, request: Any, **kw: Any) -> Any:
        if request.url.startswith(storage_emulator.url) and "/download/storage/v1/" in request.url:
            media.append(request.path_url)
        return send(self, request, **kw)

    monkeypatch.setattr(requests.Session, "send", counting)
    check_remote_source(
        f"gs://{BUCKET}/sources/churn/model.joblib",
        put=lambda data: blob.upload_from_string(data),
        reads=lambda: len(media),
        tmp_path=tmp_path,
        missing=f"gs://{BUCKET}/sources/nothing-here.joblib",
    )
    with pytest.raises(SpecError, match="does not name an object"):
        fetch(f"gs://{BUCKET}", None, tmp_path / "home")
