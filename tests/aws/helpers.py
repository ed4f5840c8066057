"""Helpers shared by the aws tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse
from deployer_aws.options import AwsOptions
from deployer_aws.provider import AwsProvider

from deployer.ledger import Ledger
from deployer.protocols import ProviderContext
from deployer.records import ArtifactRef, Operation, OperationStatus, Release
from deployer.spec import Target

REGION = "us-east-1"
BUCKET = "deployer-models"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
SKLEARN_CONTAINER = "1.4-2-py312"
TEST_OPTIONS = {"bucket": BUCKET, "role_arn": ROLE, "sklearn_version": SKLEARN_CONTAINER}
"""The tests' models are pickled with this project's lock (scikit-learn 1.9, numpy 2), which no tagged
prebuilt container ships, so ``validate`` would refuse them: the tests name the container explicitly
(the fake runs the handler with the test environment's libraries)."""


def ledger_rows(path: Path, endpoint: str) -> dict[str, Any]:
    """The ledger's release rows of ``endpoint`` by id."""
    ledger = Ledger(path)
    try:
        return {r.id: r for r in ledger.releases(endpoint)}
    finally:
        ledger.close()


def make_provider(tmp_path: Path, **options: Any) -> AwsProvider:
    opts = AwsOptions(**{**TEST_OPTIONS, **options})
    ctx = ProviderContext(target=Target(provider="aws", region=REGION), options=opts, home=tmp_path)
    return AwsProvider(ctx)


def release(rid: str, artifact: ArtifactRef, endpoint: str = "churn", **kw: Any) -> Release:
    return Release(id=rid, endpoint=endpoint, fingerprint=f"fp-{rid}", artifact=artifact, **kw)


def wait(provider: AwsProvider, op: Operation, limit: int = 20) -> OperationStatus:
    """What the core's wait loop does, without sleeping."""
    status = provider.poll(op)
    for _ in range(limit):
        if status.terminal:
            return status
        status = provider.poll(op)
    return status


class Raw:
    """A raw HTTP body for AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def raw_error(url: str, status: int, code: str, message: str = "injected") -> AWSResponse:
    """A JSON-protocol error (SageMaker, Application Auto Scaling, CloudWatch)."""
    body = json.dumps({"__type": code, "message": message}).encode()
    return AWSResponse(url, status, {"Content-Type": "application/x-amz-json-1.1"}, Raw(body))


def s3_slow_down(url: str) -> AWSResponse:
    """What S3 sends when it throttles: 503 SlowDown (HEAD responses carry no body)."""
    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    return AWSResponse(url, 503, {"Content-Type": "application/xml"}, Raw(body))
