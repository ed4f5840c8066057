"""SageMaker takes minutes: a process that dies while the endpoint is Creating or Updating resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from deployer_aws.provider import AwsProvider

from deployer.ledger import Ledger
from deployer.records import ArtifactRef, Traffic
from deployer.testing import ConformanceTarget, Crash, Harness, make_model

from .helpers import REGION, release, wait

pytestmark = pytest.mark.timeout(180)


def _killer(operation: str, after: int) -> Any:
    """Set up a provider whose process dies right after the ``after``-th ``operation`` returned."""

    def setup(provider: AwsProvider) -> None:
        seen = {"n": 0}

        def die(**_: Any) -> None:
            seen["n"] += 1
            if seen["n"] == after:
                raise Crash(f"killed after {operation} #{after}")

        provider._clients.client("sagemaker").meta.events.register(f"after-call.sagemaker.{operation}", die)

    return setup


@pytest.mark.parametrize(
    "operation, after",
    [("CreateEndpoint", 1), ("DescribeEndpoint", 4)],
    ids=["response-of-create-lost", "killed-while-creating"],
)
def test_kill_during_creating_then_rerun_converges(
    aws_target: ConformanceTarget, tmp_path: Path, sagemaker_fake: Any, operation: str, after: int
) -> None:
    sagemaker_fake.polls = 10
    spec = aws_target.spec("churn", make_model(tmp_path / "m", 1))
    dying = Harness(aws_target.ledger_path)
    dying.setup = _killer(operation, after)
    with pytest.raises(Crash):
        dying.deploy(spec)
    sm = boto3.client("sagemaker", region_name=REGION)
    assert sm.describe_endpoint(EndpointName="churn")["EndpointStatus"] == "Creating"

    again = Harness(aws_target.ledger_path)
    out = again.deploy(spec)
    assert out.outcome in ("deployed", "resumed") and out.release == "r0001"
    assert sm.describe_endpoint(EndpointName="churn")["EndpointStatus"] == "InService"
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1
    ledger = Ledger(aws_target.ledger_path)
    try:
        live = ledger.live_release("churn")
    finally:
        ledger.close()
    assert live is not None and live.id == "r0001"
    assert again.recorder is not None
    assert again.recorder.invoke("churn", [[0.1] * 4]).body["release"] == "r0001"


def test_deploy_release_while_creating_resumes(
    provider: AwsProvider, artifact: ArtifactRef, sagemaker_fake: Any
) -> None:
    sagemaker_fake.polls = 10
    first = provider.deploy_release(release("r0001", artifact), Traffic())
    again = provider.deploy_release(release("r0001", artifact), Traffic())  # the first response was lost
    assert again.ref == first.ref and not again.done
    assert wait(provider, again).state == "succeeded"
