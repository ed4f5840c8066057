"""``model.uri: gs://...`` on gcp-storage-emulator: deployed locally and answering real predictions;
an unchanged object is never downloaded again (counted on the wire), a new generation is, and a
digest mismatch keeps nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests
import yaml
from sklearn.linear_model import LogisticRegression

import deployer
from deployer.config import load_spec
from deployer.errors import DigestMismatchError, NotFoundError, SpecError
from deployer.sources import fetch

from .conftest import BUCKET, PROJECT, Emulator

pytestmark = pytest.mark.timeout(90)
ROWS = np.array([[0.5, 0.1, -0.2, 0.3], [-2.0, 0.0, 0.3, 0.1]])


def _model(path: Path, flip: bool) -> LogisticRegression:
    rng = np.random.RandomState(0)
    x = rng.randn(100, 4)
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, 1 - y if flip else y)
    joblib.dump(model, path)
    return model


def _downloads(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> list[str]:
    """Object media reads sent to the emulator from now on."""
    seen: list[str] = []
    send = requests.Session.send

    def counting(self: Any, request: Any, **kw: Any) -> Any:
        if request.url.startswith(emulator.url) and "/download/storage/v1/" in request.url:
            seen.append(request.path_url)
        return send(self, request, **kw)

    monkeypatch.setattr(requests.Session, "send", counting)
    return seen


def test_gs_model_deploys_serves_and_an_unchanged_object_moves_no_bytes(
    storage_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import storage

    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    blob = storage.Client(project=PROJECT).bucket(BUCKET).blob("sources/churn/model.joblib")
    local = tmp_path / "model.joblib"
    first_model = _model(local, flip=False)
    blob.upload_from_filename(str(local))
    uri = f"gs://{BUCKET}/sources/churn/model.joblib"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "from-gcs", "model": {"uri": uri}}))
    downloads = _downloads(monkeypatch, storage_emulator)

    ep = deployer.apply(spec)
    try:
        assert ep.predict(ROWS) == first_model.predict(ROWS).tolist()
        assert len(downloads) == 1
        again = deployer.apply(spec)
        assert again.last is not None and again.last.outcome == "unchanged"
        assert len(downloads) == 1, "an unchanged object is not downloaded again"
        assert len(list((home / "local" / "artifacts" / "sha256").iterdir())) == 1, "nor stored again"
    finally:
        ep.destroy()

    first = fetch(uri, None, home)
    assert not first.downloaded and len(downloads) == 1
    second_model = _model(local, flip=True)
    blob.upload_from_filename(str(local))  # a new generation under the same name
    changed = fetch(uri, None, home)
    assert changed.downloaded and changed.digest != first.digest and len(downloads) == 2
    assert joblib.load(changed.path).predict(ROWS).tolist() == second_model.predict(ROWS).tolist()

    with pytest.raises(DigestMismatchError):
        fetch(uri, first.digest, tmp_path / "elsewhere")
    assert not any((tmp_path / "elsewhere" / "sources").glob("sha256/*"))
    assert not any((tmp_path / "elsewhere" / "sources").glob(".download-*"))

    with pytest.raises(NotFoundError, match="does not exist"):
        fetch(f"gs://{BUCKET}/sources/nothing-here.joblib", None, home)
    (tmp_path / "bucket-only.yaml").write_text(yaml.safe_dump({"name": "b-only", "model": {"uri": f"gs://{BUCKET}"}}))
    with pytest.raises(SpecError, match="does not name an object"):
        deployer.apply(tmp_path / "bucket-only.yaml")
    assert load_spec(spec).model.uri == uri
