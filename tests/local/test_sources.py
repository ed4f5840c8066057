"""Models from where they live: ``model.uri`` over https (with a digest) and from S3 (moto), deployed
locally and answering real predictions; downloaded once, verified, and never kept when wrong."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml

import deployer
from deployer.config import load_spec
from deployer.errors import DigestMismatchError, SpecError
from deployer.sources import fetch

from .conftest import train

pytestmark = pytest.mark.timeout(180)
ROWS = np.array([[0.5, 0.1, -0.2, 0.3], [-2.0, 0.0, 0.3, 0.1]])


class _Files:
    """A tiny static file server on 127.0.0.1 that counts GETs per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.gets: dict[str, int] = {}
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                files.gets[self.path] = files.gets.get(self.path, 0) + 1
                body = files.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def files() -> Iterator[_Files]:
    f = _Files()
    yield f
    f.close()


@pytest.fixture()
def model_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "m.joblib"
    joblib.dump(train(0), path)
    return path.read_bytes()


def _spec(tmp_path: Path, name: str, model: dict[str, str]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "model": {"flavor": "sklearn", **model}}))
    return path


def _leftovers(home: Path) -> list[Path]:
    return sorted((home / "sources").glob(".download-*"))


def test_https_model_with_digest_deploys_serves_and_downloads_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: _Files, model_bytes: bytes
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    files.files["/models/churn.joblib"] = model_bytes
    digest = hashlib.sha256(model_bytes).hexdigest()
    spec = _spec(tmp_path, "remote", {"uri": f"{files.url}/models/churn.joblib", "digest": f"sha256:{digest}"})
    ep = deployer.apply(spec)
    try:
        assert ep.predict(ROWS) == train(0).predict(ROWS).tolist()
        again = deployer.apply(spec)
        assert again.last is not None and again.last.outcome == "unchanged"
        assert files.gets == {"/models/churn.joblib": 1}, "an unchanged redeploy must not download again"
        assert (home / "sources" / "sha256" / digest / "churn.joblib").read_bytes() == model_bytes
        assert _leftovers(home) == []
    finally:
        ep.destroy()


def test_https_digest_mismatch_is_refused_and_nothing_kept(tmp_path: Path, files: _Files, model_bytes: bytes) -> None:
    files.files["/m.joblib"] = model_bytes
    with pytest.raises(DigestMismatchError, match="nothing was kept"):
        fetch(f"{files.url}/m.joblib", "0" * 64, tmp_path)
    assert not (tmp_path / "sources" / "sha256").exists() or not any((tmp_path / "sources" / "sha256").iterdir())
    assert _leftovers(tmp_path) == []


def test_https_without_digest_and_malformed_mlflow_uris_are_refused_offline(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("x")
    with pytest.raises(SpecError, match="needs model.digest"):
        load_spec(_spec(tmp_path, "ep-a", {"uri": "https://example.com/m.joblib"}))
    with pytest.raises(SpecError, match="models:/NAME/VERSION"):
        load_spec(_spec(tmp_path, "ep-b", {"uri": "models:/churn"}))
    with pytest.raises(SpecError, match="unsupported model.uri scheme 'ftp'"):
        load_spec(_spec(tmp_path, "ep-c", {"uri": "ftp://host/m.joblib"}))
    with pytest.raises(SpecError, match="model.digest is for model.uri"):
        load_spec(_spec(tmp_path, "ep-d", {"path": str(tmp_path / "m"), "digest": "sha256:" + "0" * 64}))


def test_s3_model_deploys_and_an_unchanged_object_is_not_downloaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_bytes: bytes
) -> None:
    moto = pytest.importorskip("moto")
    import boto3

    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket="models", Key="churn/v1/model.joblib", Body=model_bytes)
        uri = "s3://models/churn/v1/model.joblib"

        first = fetch(uri, None, tmp_path / "home")
        second = fetch(uri, None, tmp_path / "home")
        assert first.downloaded and not second.downloaded and first.digest == second.digest
        assert first.path.read_bytes() == model_bytes

        other = tmp_path / "other.joblib"
        joblib.dump(train(1, flip=True), other)
        s3.put_object(Bucket="models", Key="churn/v1/model.joblib", Body=other.read_bytes())
        changed = fetch(uri, None, tmp_path / "home")
        assert changed.downloaded and changed.digest != first.digest

        with pytest.raises(DigestMismatchError):
            fetch(uri, first.digest, tmp_path / "home2")

        ep = deployer.apply(_spec(tmp_path, "from-s3", {"uri": uri}))
        try:
            assert ep.predict(ROWS) == train(1, flip=True).predict(ROWS).tolist()
        finally:
            ep.destroy()
