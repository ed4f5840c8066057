"""The ledger conformance suite (deployer.testing.ledgers) on Cloud Storage: the shared ledger on the in-repo
JSON API fake that honours generation preconditions."""

from __future__ import annotations

import uuid

import pytest

from deployer.testing.ledger_objects import CloudStoreTiming
from deployer.testing.ledgers import LedgerConformance

from .fake_gcs_ledger import FakeGcs
from .test_ledger_objects import LEDGER_BUCKET, fake, gcs_server  # noqa: F401 - fixtures


class TestGcsLedger(CloudStoreTiming, LedgerConformance):
    @pytest.fixture
    def ledger_state(self, fake: FakeGcs) -> str:  # noqa: F811 - the fixture imported above
        return f"gs://{LEDGER_BUCKET}/{uuid.uuid4().hex}"
