"""Fixtures for the gcp provider: gcp-storage-emulator and the Vertex AI fake on 127.0.0.1 (free ports),
short SDK retries, and a record of every API method the tests send (checked against
deployer_gcp.iam by test_iam.py, which runs last)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from deployer_gcp import _sdk

from deployer.testing import ConformanceTarget

from .fake_server import FakeServer
from .fake_vertex import VertexFake

PROJECT = "deployer-test"
REGION = "us-central1"
BUCKET = "deployer-models"
SERVING_IMAGE = "us-docker.pkg.dev/deployer-test/deployer/serving:1"
"""A custom image: the fake serves it with deployer's own serving code (flavor from DEPLOYER_FLAVOR)."""


@dataclass
class Emulator:
    """gcp-storage-emulator's address and what went over the wire to it."""

    url: str
    faults: list[int] = field(default_factory=list)
    """HTTP statuses answered, one each, to the next resumable-upload chunk PUTs after the first chunk."""
    sent: list[tuple[str, str, int]] = field(default_factory=list)
    """(method, Content-Range, body bytes) of every upload request sent to the emulator."""


RECORDED: set[str] = set()
"""API methods the cloud side received: Vertex / Monitoring from the fake, Cloud Storage from the wire."""

_STORAGE_PATHS = (
    ("GET", re.compile(r"/storage/v1/b/[^/]+/o/.+"), "storage.objects.get"),
    ("GET", re.compile(r"/download/storage/v1/b/[^/]+/o/.+"), "storage.objects.get"),
    ("GET", re.compile(r"/storage/v1/b/[^/]+/o$"), "storage.objects.list"),
    ("POST", re.compile(r"/upload/storage/v1/b/[^/]+/o$"), "storage.objects.insert"),
    ("PUT", re.compile(r"/upload/storage/v1/b/[^/]+/o$"), "storage.objects.insert"),
    ("DELETE", re.compile(r"/storage/v1/b/[^/]+/o/.+"), "storage.objects.delete"),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda it: "gcp" in str(it.fspath) and "test_iam.py" in str(it.fspath))


@pytest.fixture(scope="session")
def storage_emulator() -> Iterator[Emulator]:
    """gcp-storage-emulator in this process on a free port; stopped (its thread is not a daemon) at the end."""
    from gcp_storage_emulator.server import create_server

    srv = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    srv.start()
    url = f"http://127.0.0.1:{srv._api._httpd.server_address[1]}"
    wire = Emulator(url)
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    orig_send = requests.Session.send

    def send(self: Any, request: Any, **kw: Any) -> Any:
        if request.url.startswith(url):
            path = request.path_url.split("?")[0]
            for method, pattern, name in _STORAGE_PATHS:
                if request.method == method and pattern.fullmatch(path):
                    RECORDED.add(name)
                    break
            if "/upload/" in path:
                rng = request.headers.get("Content-Range", "")
                wire.sent.append((request.method, rng, len(request.body or b"")))
                if wire.faults and request.method == "PUT" and not rng.startswith("bytes 0-"):
                    return _error_response(request, wire.faults.pop(0))
        return orig_send(self, request, **kw)

    requests.Session.send = send  # type: ignore[method-assign]
    try:
        yield wire
    finally:
        requests.Session.send = orig_send  # type: ignore[method-assign]
        srv.stop()
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old


def _error_response(request: Any, status: int) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps({"error": {"code": status, "message": "injected"}}).encode()
    resp.headers["Content-Type"] = "application/json"
    resp.request = request
    resp.url = request.url
    return resp


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sdk, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(_sdk, "RETRY_MAX_S", 0.05)
    monkeypatch.setattr(_sdk, "RETRY_DEADLINE_S", 5.0)
    for k in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def vertex(storage_emulator: Emulator, tmp_path: Path) -> Iterator[FakeServer]:
    from google.cloud import storage

    fake = VertexFake(PROJECT, REGION, tmp_path / "served", storage.Client(project=PROJECT))
    with FakeServer(fake) as server:
        yield server
    RECORDED.update(k for k, n in fake.calls.items() if n)


def options(server: FakeServer, **extra: Any) -> dict[str, Any]:
    return {
        "bucket": BUCKET,
        "api_endpoint": server.url,
        "monitoring_endpoint": server.monitoring.url,
        "image": SERVING_IMAGE,
        **extra,
    }


@pytest.fixture
def gcp_target(vertex: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConformanceTarget:
    """Specs for the gcp provider on the fakes, with a private DEPLOYER_HOME and ledger."""
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    return ConformanceTarget(
        target={"provider": "gcp", "project": PROJECT, "region": REGION},
        ledger_path=tmp_path / "ledger.db",
        provider_options=options(vertex),
        resources={"instance_type": "n1-standard-2"},
        real_predictions=True,
    )
