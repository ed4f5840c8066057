"""Resources say what they serve: tags on every SageMaker resource, checked on reuse and read by observe."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
from deployer_aws.provider import AwsProvider

from deployer.errors import ConflictError
from deployer.records import ArtifactRef, Traffic
from deployer.testing import ConformanceTarget, Harness, make_model

from .helpers import REGION, ledger_rows, release, wait

pytestmark = pytest.mark.timeout(120)


def sm() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


def tags(arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sm().list_tags(ResourceArn=arn)["Tags"]}


def test_every_resource_carries_the_fingerprint(provider: AwsProvider, artifact: ArtifactRef) -> None:
    assert wait(provider, provider.deploy_release(release("r0001", artifact), Traffic())).state == "succeeded"
    model = tags(sm().describe_model(ModelName="churn-r0001")["ModelArn"])
    assert model["deployer:fingerprint"] == "fp-r0001" and model["deployer:release"] == "r0001"
    assert model["deployer:artifact"] == artifact.digest and model["deployer:endpoint"] == "churn"
    ep = sm().describe_endpoint(EndpointName="churn")
    cfg = sm().describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    assert tags(cfg["EndpointConfigArn"])["deployer:fingerprint:r0001"] == "fp-r0001"
    assert tags(ep["EndpointArn"])["deployer:endpoint"] == "churn"
    observed = provider.observe("churn")
    assert observed is not None and observed.releases["r0001"].fingerprint == "fp-r0001"


def test_a_model_of_another_ledger_is_a_conflict(provider: AwsProvider, artifact: ArtifactRef) -> None:
    wait(provider, provider.deploy_release(release("r0001", artifact), Traffic()))
    theirs = release("r0001", artifact).model_copy(update={"fingerprint": "fp-other-ledger"})
    with pytest.raises(ConflictError, match="churn-r0001.*fp-r0001"):
        provider.deploy_release(theirs, Traffic())
    observed = provider.observe("churn")
    assert observed is not None and observed.releases["r0001"].fingerprint == "fp-r0001"


def test_a_config_of_another_ledger_is_a_conflict(provider: AwsProvider, artifact: ArtifactRef) -> None:
    """The model check runs first; a config of the expected name is checked on its own too."""
    body = {"VariantName": "r0001", "ModelName": "churn-r0001", "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}  # fmt: skip
    provider._ensure_model(release("r0001", artifact), provider.options)
    provider._sm.ensure_config("churn-r0001-abcdef12", [body], {}, {"deployer:fingerprint:r0001": "fp-a"})
    with pytest.raises(ConflictError, match="other fingerprints"):
        provider._sm.ensure_config("churn-r0001-abcdef12", [body], {}, {"deployer:fingerprint:r0001": "fp-b"})


def test_two_ledgers_one_endpoint(aws_target: ConformanceTarget, tmp_path: Path) -> None:
    """Two CI runs with fresh ledgers: the second must not report 'deployed r0001' over the first."""
    first = Harness(aws_target.ledger_path)
    assert first.deploy(aws_target.spec("churn", make_model(tmp_path / "a", 1))).release == "r0001"
    other = dataclasses.replace(aws_target, ledger_path=tmp_path / "other-ledger.db")
    second = Harness(other.ledger_path)
    with pytest.raises(ConflictError, match="r0001"):
        second.deploy(other.spec("churn", make_model(tmp_path / "b", 2)))
    mine = ledger_rows(aws_target.ledger_path, "churn")["r0001"]
    assert first.recorder is not None
    observed = first.recorder.observe("churn")
    assert observed is not None and observed.releases["r0001"].fingerprint == mine.fingerprint
    assert observed.traffic.weights == {"r0001": 100}


def test_unchanged_redeploy_reads(aws_target: ConformanceTarget, tmp_path: Path) -> None:
    """An unchanged re-apply writes nothing and reads little: counted per SageMaker operation."""
    spec = aws_target.spec("churn", make_model(tmp_path / "m", 1))
    Harness(aws_target.ledger_path).deploy(spec)
    sent: Counter[str] = Counter()

    def count(provider: AwsProvider) -> None:
        for service in ("sagemaker", "s3", "cloudwatch", "application-autoscaling"):
            provider._clients.client(service).meta.events.register(
                "before-call.*.*", lambda model, **_: sent.update([model.name])
            )

    h = Harness(aws_target.ledger_path)
    h.setup = count
    assert h.deploy(spec).outcome == "unchanged"
    assert h.recorder is not None and h.recorder.writes == 0
    # one DescribeEndpoint per observe, plus the serving config's layout once (it is cached)
    assert sent["DescribeEndpointConfig"] == 1 and sent["ListTags"] == 1
    assert sent["DescribeEndpoint"] <= 2
    assert not {k for k in sent if k.startswith(("Create", "Update", "Delete", "Put"))}
