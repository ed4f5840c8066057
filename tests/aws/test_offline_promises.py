"""What the aws provider promises about the network and what it tells the user.

* A region typo is refused offline with the nearest region botocore knows, exit 2.
* ``plan``'s checks make no network call: a spec with ``image`` set is validated without a connection.
* The printed invocation URL follows ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``.
* ``observe`` reports replicas per release (per production variant).
* A deploy or a plan whose SageMaker endpoint is unreachable shows ``retrying`` within seconds.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from deployer_aws import validation
from deployer_aws.provider import AwsProvider

from deployer.errors import SpecError
from deployer.records import ArtifactRef, Traffic
from deployer.spec import Resources, Spec
from deployer.testing import make_model

from .helpers import BUCKET, REGION, ROLE, SKLEARN_CONTAINER, release, wait

pytestmark = pytest.mark.timeout(150)


def _spec_text(model: Path, region: str = REGION, image: str | None = None) -> str:
    opts = f"bucket: {BUCKET}, role_arn: '{ROLE}', sklearn_version: '{SKLEARN_CONTAINER}'"
    if image:
        opts += f", image: '{image}'"
    return (
        "name: churn\n"
        f"target: {{provider: aws, region: {region}}}\n"
        f"model: {{path: {model}, flavor: sklearn}}\n"
        "resources: {instance_type: ml.m5.large, replicas: 1}\n"
        f"provider_options: {{{opts}}}\n"
    )


def _write_spec(tmp: Path, **kw: Any) -> Path:
    path = tmp / "churn.yaml"
    path.write_text(_spec_text(make_model(tmp / "models", 1), **kw))
    return path


def _cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DEPLOYER_HOME": str(tmp / "home"), **extra}


class ConnectionRecorder:
    """A TCP listener on 127.0.0.1 that records every connection and closes it at once."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def recorder() -> Iterator[ConnectionRecorder]:
    rec = ConnectionRecorder()
    yield rec
    rec.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- region --------------------------------------------------------------------------------------


def test_a_region_typo_names_the_nearest_region_before_any_call(recorder: ConnectionRecorder, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, region="eu-wst-1")
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", "plan", str(spec)],
        env=_cli_env(tmp_path, AWS_ENDPOINT_URL=recorder.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown region 'eu-wst-1', did you mean eu-west-1" in proc.stderr
    assert "image" not in proc.stderr
    assert recorder.connections == 0


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"])
def test_known_regions_in_every_partition_pass(region: str) -> None:
    assert validation.check_region(region) == region


def test_an_unknown_region_without_a_near_name_says_only_unknown() -> None:
    with pytest.raises(SpecError) as e:
        validation.check_region("xx-nowhere-9")
    assert e.value.field == "target.region" and "did you mean" not in str(e.value)


# -- offline validation with an image ------------------------------------------------------------


def test_validating_a_spec_with_an_image_makes_no_connection(
    recorder: ConnectionRecorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything ``plan`` checks before it reads the endpoint runs without a connection."""
    from deployer import api

    monkeypatch.setenv("AWS_ENDPOINT_URL", recorder.url)
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/deployer-serving:1.0"
    spec = Spec.model_validate(
        {
            "name": "churn",
            "target": {"provider": "aws", "region": REGION},
            "model": {"path": str(make_model(tmp_path / "models", 1)), "flavor": "sklearn"},
            "resources": {"instance_type": "ml.m5.large"},
            "provider_options": {"bucket": BUCKET, "role_arn": ROLE, "image": image},
        }
    )
    provider = api.make_provider(spec.target, spec.provider_options)
    provider.validate(spec)
    api.check_strategy(spec, provider.capabilities)
    assert recorder.connections == 0


def test_plan_offline_with_an_image_makes_no_connection_and_plans_the_first_release(
    recorder: ConnectionRecorder, tmp_path: Path
) -> None:
    """``plan --offline``: no call to SageMaker or S3 at all (the ledger is judged instead)."""
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/deployer-serving:1.0"
    spec = _write_spec(tmp_path, image=image)
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", "plan", "--offline", str(spec)],
        env=_cli_env(tmp_path, AWS_ENDPOINT_URL=recorder.url, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "r0001" in proc.stdout
    assert "upload" in proc.stdout
    assert recorder.connections == 0


# -- URL -----------------------------------------------------------------------------------------


def test_the_printed_url_follows_aws_endpoint_url(
    server_provider: AwsProvider, moto_server: str, artifact_on_server: ArtifactRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wait(server_provider, server_provider.deploy_release(release("r0001", artifact_on_server), Traffic()))
    observed = server_provider.observe("churn")
    assert observed is not None and observed.url == f"{moto_server}/endpoints/churn/invocations"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:1/runtime/")
    observed = server_provider.observe("churn")
    assert observed is not None and observed.url == "http://127.0.0.1:1/runtime/endpoints/churn/invocations"


def test_the_printed_url_is_the_public_one_without_an_override(provider: AwsProvider, artifact: ArtifactRef) -> None:
    wait(provider, provider.deploy_release(release("r0001", artifact), Traffic()))
    observed = provider.observe("churn")
    assert observed is not None
    assert observed.url == f"https://runtime.sagemaker.{REGION}.amazonaws.com/endpoints/churn/invocations"


@pytest.fixture
def artifact_on_server(server_provider: AwsProvider, tmp_path: Path) -> ArtifactRef:
    from deployer import artifacts

    packaged = artifacts.package(make_model(tmp_path / "model", 1), tmp_path / "pkg")
    return server_provider.store().put(packaged.path, packaged.digest, sha256=packaged.sha256)


# -- replicas per release ------------------------------------------------------------------------


def test_observe_reports_replicas_per_release(provider: AwsProvider, artifact: ArtifactRef) -> None:
    three = release("r0001", artifact, resources=Resources(instance_type="ml.m5.large", replicas=3))
    one = release("r0002", artifact, resources=Resources(instance_type="ml.m5.large", replicas=1))
    assert wait(provider, provider.deploy_release(three, Traffic())).state == "succeeded"
    assert wait(provider, provider.deploy_release(one, Traffic.all_to("r0001"))).state == "succeeded"
    observed = provider.observe("churn")
    assert observed is not None
    assert {rid: r.replicas for rid, r in observed.releases.items()} == {"r0001": 3, "r0002": 1}
    counts = {
        v["VariantName"]: v["CurrentInstanceCount"]
        for v in boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName="churn")[
            "ProductionVariants"
        ]
    }
    assert counts == {"r0001": 3, "r0002": 1}


# -- progress when SageMaker cannot be reached ---------------------------------------------------


@pytest.mark.parametrize("command", ["deploy", "plan"])
def test_an_unreachable_sagemaker_shows_retrying_within_seconds(moto_server: str, tmp_path: Path, command: str) -> None:
    """S3 answers (moto), SageMaker's URL is a loopback port nobody listens on: the command says so."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    boto3.client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(Bucket=BUCKET)
    dead = f"http://127.0.0.1:{_free_port()}"
    env = _cli_env(tmp_path, AWS_ENDPOINT_URL=dead, AWS_ENDPOINT_URL_S3=moto_server)
    log = tmp_path / "deploy.log"
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer", command, str(_write_spec(tmp_path))],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        seen = ""
        while time.monotonic() - start < 100 and proc.poll() is None:  # silent, it would end after 120 s
            seen = log.read_text()
            if "retrying" in seen:
                break
            time.sleep(0.2)
        seen = log.read_text()
        assert "retrying provider call" in seen, seen
        assert "DescribeEndpoint: Could not connect to the endpoint URL" in seen
        # the first retry is reported with most of the call's 120 s deadline left, however busy the machine
        first = re.search(r"attempt 1, (\d+)s left", seen)
        assert first is not None and int(first.group(1)) >= 100, seen
    finally:
        proc.kill()
        proc.wait(timeout=10)
