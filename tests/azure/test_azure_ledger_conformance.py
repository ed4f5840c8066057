"""The ledger conformance suite (deployer.testing.ledgers) on Blob storage: the shared ledger on Azurite."""

from __future__ import annotations

import uuid

import pytest
from azure.storage.blob import BlobServiceClient
from conftest import ACCOUNT

from deployer.testing.ledger_objects import CloudStoreTiming
from deployer.testing.ledgers import LedgerConformance


class TestBlobLedger(CloudStoreTiming, LedgerConformance):
    @pytest.fixture
    def ledger_state(self, azurite: str, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
        container = f"ledger-{uuid.uuid4().hex[:16]}"
        BlobServiceClient.from_connection_string(azurite).create_container(container)
        return f"az://{ACCOUNT}/{container}/shared"
