"""Fixtures for the aws provider: moto in-process with deployer_aws.testing's SageMaker additions, dummy credentials,
zero botocore backoff, and a recorder of every operation the provider's own clients send, written
to a file (test_iam.py, which runs last, checks deployer_aws.permissions() against it)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.retries.standard
import pytest
from deployer_aws import testing as fakes
from deployer_aws.provider import AwsProvider
from deployer_aws.testing import OfflineAws
from moto import mock_aws

from deployer import artifacts
from deployer.records import ArtifactRef
from deployer.testing import ConformanceTarget, make_model

from .helpers import BUCKET, REGION, TEST_OPTIONS, make_provider

OPERATIONS_FILE = "aws-operations.txt"
"""One line per call the provider's clients (user agent 'mldeployer-aws') sent: ``service:Operation``,
followed by `` sse=aws:kms`` for an S3 write encrypted with KMS."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the IAM coverage check must see every other test's calls
    items.sort(key=lambda it: "test_iam.py" in str(it.fspath))


@pytest.fixture(scope="session")
def operations_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / OPERATIONS_FILE


@pytest.fixture(scope="session", autouse=True)
def _record_operations(operations_file: Path) -> Iterator[None]:
    orig = boto3.session.Session.client
    lock = threading.Lock()

    def client(self: Any, *args: Any, **kwargs: Any) -> Any:
        c = orig(self, *args, **kwargs)
        cfg = kwargs.get("config")
        if cfg is not None and "mldeployer-aws" in (cfg.user_agent_extra or ""):

            def record(model: Any, params: Any = None, **_: Any) -> None:
                line = f"{model.service_model.service_name}:{model.name}"
                headers = params.get("headers", {}) if isinstance(params, dict) else {}  # the serialised request
                if headers.get("x-amz-server-side-encryption") == "aws:kms":
                    line += " sse=aws:kms"
                with lock, open(operations_file, "a") as fh:
                    fh.write(line + "\n")

            c.meta.events.register("before-call.*.*", record)
        return c

    boto3.session.Session.client = client  # type: ignore[method-assign]
    yield
    boto3.session.Session.client = orig  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)


@pytest.fixture
def sagemaker_fake() -> Iterator[fakes.SageMakerFake]:
    fakes.install()
    fakes.FAKE.reset()
    yield fakes.FAKE
    fakes.FAKE.reset()


@pytest.fixture
def aws(sagemaker_fake: fakes.SageMakerFake) -> Iterator[None]:
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def provider(aws: None, tmp_path: Path) -> AwsProvider:
    return make_provider(tmp_path)


@pytest.fixture
def artifact(provider: AwsProvider, tmp_path: Path) -> ArtifactRef:
    """A real packaged model (4 features): the fake's InvokeEndpoint runs it."""
    packaged = artifacts.package(make_model(tmp_path / "model", 1), tmp_path / "pkg")
    return provider.store().put(packaged.path, packaged.digest, sha256=packaged.sha256)


@pytest.fixture(scope="session")
def offline_aws() -> Iterator[OfflineAws]:
    """moto over real HTTP on loopback, as ``python -m deployer_aws.testing`` runs it (same process, so
    the fake's switches apply)."""
    with fakes.running(region=REGION) as aws:
        yield aws


@pytest.fixture(scope="session")
def moto_server(offline_aws: OfflineAws) -> str:
    return offline_aws.url


@pytest.fixture
def server_provider(
    moto_server: str, sagemaker_fake: fakes.SageMakerFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AwsProvider:
    """A provider talking HTTP to moto. Faults injected in ``before-send`` then never reach moto,
    as with a real throttled request (in-process moto would still execute the call)."""
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    boto3.client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(Bucket=BUCKET)
    return make_provider(tmp_path)


@pytest.fixture
def aws_target(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConformanceTarget:
    """Specs for the aws provider on in-process moto, with a private DEPLOYER_HOME and ledger."""
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    return ConformanceTarget(
        target={"provider": "aws", "region": REGION},
        ledger_path=tmp_path / "ledger.db",
        provider_options=TEST_OPTIONS,
        resources={"instance_type": "ml.m5.large"},
        real_predictions=True,
    )
