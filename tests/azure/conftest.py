"""Fixtures for the azure provider: Azurite (npm) for Blob, the in-repo ARM fake (tests/azure/armfake.py) for
Azure ML and Azure Monitor, both on 127.0.0.1 with free ports and started and stopped here.

The provider reaches them the way a user's configuration would: ``AZURE_STORAGE_CONNECTION_STRING`` for
Blob and ``DEPLOYER_AZURE_ENDPOINT_URL`` (+ ``DEPLOYER_AZURE_TOKEN``) for ARM, so the same fixtures serve
in-process tests and the CLI in a subprocess. Every operation the provider's clients send is recorded
(ARM by the fake, Blob by a hook on azure-core's transport) for test_iam.py, which runs last.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from armfake import ArmFake, Server
from azure.core.pipeline.transport import RequestsTransport

from deployer.testing import ConformanceTarget

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_VERSION = "3.35.0"
AZURITE_HOME = Path(os.environ.get("DEPLOYER_AZURITE_HOME", Path.home() / ".cache" / "deployer-azurite"))
SUB = "00000000-0000-0000-0000-000000000000"
TARGET = {"provider": "azure", "region": "eastus", "subscription": SUB, "workspace": "rg/ws"}
RECORDED: set[str] = set()
"""'service:METHOD resource' sent by the provider's clients (ARM from the fake, Blob from the transport hook)."""
BLOB_PORT: list[int] = []
BLOCK_MD5: list[bool] = []
"""For each Put Block the provider sent: whether it carried Content-MD5 (the service verifies it)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda it: "tests/azure/test_azure_iam.py" in str(it.fspath))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azurite_binary() -> Path:
    """``azurite-blob`` from the cache, installed with npm when missing (as .ci/run does)."""
    binary = AZURITE_HOME / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is needed to install azurite")
        AZURITE_HOME.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", f"azurite@{AZURITE_VERSION}"],
            cwd=AZURITE_HOME,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
        )
    return binary


def blob_operation(method: str, url: str) -> str:
    """Classify a Blob REST request (https://learn.microsoft.com/rest/api/storageservices/blob-service-rest-api)."""
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    if q.get("restype") == "container":
        return f"blob:{method} container"
    comp = q.get("comp")
    if comp in ("block", "blocklist"):
        return f"blob:{method} {comp}"
    return f"blob:{method} blob"


def start_azurite(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Azurite's blob service on a free port, logging to ``log``; returns the process and the connection string."""
    binary = azurite_binary()
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"azurite did not start; see {log}") from None
            time.sleep(0.05)
    BLOB_PORT.append(port)
    conn = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    return proc, conn


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, by its pid."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service for the session; yields the connection string."""
    proc, conn = start_azurite(tmp_path_factory.mktemp("azurite") / "azurite.log")
    yield conn
    stop(proc)


@pytest.fixture(scope="session", autouse=True)
def _record_blob_operations() -> Iterator[None]:
    orig = RequestsTransport.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        ours = "mldeployer-azure" in request.headers.get("User-Agent", "")  # the provider's clients only
        if ours and BLOB_PORT and f"127.0.0.1:{BLOB_PORT[0]}" in request.url:
            op = blob_operation(request.method, request.url)
            RECORDED.add(op)
            if op == "blob:PUT block":
                BLOCK_MD5.append(bool(request.headers.get("Content-MD5")))
        return orig(self, request, **kwargs)

    RequestsTransport.send = send  # type: ignore[method-assign]
    yield
    RequestsTransport.send = orig  # type: ignore[method-assign]


def fetch_blob(conn: str) -> Any:
    from azure.storage.blob import BlobClient

    def fetch(url: str) -> bytes:
        data: bytes = (
            BlobClient.from_blob_url(url, credential={"account_name": ACCOUNT, "account_key": KEY})
            .download_blob()
            .readall()
        )
        return data

    return fetch


@pytest.fixture(scope="session")
def arm_server() -> Iterator[Server]:
    with Server(ArmFake()) as server:
        yield server


@pytest.fixture
def arm(arm_server: Server, azurite: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ArmFake]:
    """A fresh fake behind the shared server, and the environment that points the provider at it."""
    fake = ArmFake(fetch=fetch_blob(azurite))
    arm_server.fake = fake
    monkeypatch.setenv("DEPLOYER_AZURE_ENDPOINT_URL", arm_server.url)
    monkeypatch.setenv("DEPLOYER_AZURE_TOKEN", "fake-arm-token")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    yield fake
    RECORDED.update(fake.recorded)
    fake.close()


@pytest.fixture
def azure_target(arm: ArmFake, tmp_path: Path) -> ConformanceTarget:
    return ConformanceTarget(
        target=TARGET,
        ledger_path=tmp_path / "ledger.db",
        provider_options={"container": "models"},
        resources={"instance_type": "Standard_DS3_v2"},
        real_predictions=True,
    )
