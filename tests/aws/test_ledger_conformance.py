"""The ledger conformance suite (deployer.testing.ledgers) on S3: the shared ledger on moto over HTTP."""

from __future__ import annotations

import uuid

import boto3
import pytest

from deployer.testing.ledger_objects import CloudStoreTiming
from deployer.testing.ledgers import LedgerConformance

from .helpers import REGION
from .test_ledger_objects import LEDGER_BUCKET, atomic_conditional_writes  # noqa: F401 - a fixture


class TestS3Ledger(CloudStoreTiming, LedgerConformance):
    @pytest.fixture
    def ledger_state(
        self, moto_server: str, monkeypatch: pytest.MonkeyPatch, atomic_conditional_writes: None  # noqa: F811
    ) -> str:
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
        if LEDGER_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=LEDGER_BUCKET)
        return f"s3://{LEDGER_BUCKET}/{uuid.uuid4().hex}"
