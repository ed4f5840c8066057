"""deployer_aws.permissions() grants what the aws tests' calls needed, and nothing more.

Runs last (tests/aws/conftest.py orders it) and reads the operations every other aws test sent
(recorded to a file by a botocore event hook). The IAM action each operation needs is derived here
from the Service Authorization Reference, independently of the policy's own table:
https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
"""

from __future__ import annotations

import json
from pathlib import Path

import deployer_aws
import pytest
from deployer_aws.iam import EXTRA

pytestmark = pytest.mark.timeout(30)

PREFIX = {"sagemaker-runtime": "sagemaker"}
"""IAM service prefix where it differs from botocore's service name."""
NOT_ONE_TO_ONE = {
    # S3: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
    "s3:HeadObject": {"s3:GetObject", "s3:ListBucket"},  # ListBucket turns a missing key's 403 into 404
    "s3:CreateMultipartUpload": {"s3:PutObject", "s3:PutObjectTagging"},
    "s3:UploadPart": {"s3:PutObject"},
    "s3:CompleteMultipartUpload": {"s3:PutObject"},
    "s3:PutObject": {"s3:PutObject", "s3:PutObjectTagging"},  # the artifact carries tags
    "s3:HeadBucket": {"s3:ListBucket"},
    "s3:ListObjectsV2": {"s3:ListBucket"},
    "s3:PutPublicAccessBlock": {"s3:PutBucketPublicAccessBlock"},
    "s3:PutBucketEncryption": {"s3:PutEncryptionConfiguration"},
    # creating a tagged SageMaker resource also needs AddTags (SageMaker's "Tagging" IAM page)
    "sagemaker:CreateModel": {"sagemaker:CreateModel", "sagemaker:AddTags"},
    "sagemaker:CreateEndpointConfig": {"sagemaker:CreateEndpointConfig", "sagemaker:AddTags"},
    "sagemaker:CreateEndpoint": {"sagemaker:CreateEndpoint", "sagemaker:AddTags"},
    "cloudwatch:PutMetricAlarm": {"cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"},
}
KMS = {"kms:GenerateDataKey", "kms:Decrypt"}
"""S3 writes with SSE-KMS: https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html"""


def _recorded(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def needed_actions(lines: list[str]) -> set[str]:
    out: set[str] = set()
    for line in lines:
        op, _, extra = line.partition(" ")
        service, name = op.split(":", 1)
        out |= NOT_ONE_TO_ONE.get(op, {f"{PREFIX.get(service, service)}:{name}"})
        if extra == "sse=aws:kms":
            out |= KMS
    return out


def _granted(policy: dict[str, object]) -> set[str]:
    return {a for st in policy["Statement"] for a in st["Action"]}  # type: ignore[attr-defined, index]


def test_policy_grants_what_the_calls_needed(operations_file: Path, request: pytest.FixtureRequest) -> None:
    files = {item.path.name for item in request.session.items if "aws" in item.path.parts}
    if not {"test_sagemaker.py", "test_store.py", "test_native_and_faults.py", "test_engine_native.py",
            "test_ledger_objects.py"} <= files:
        pytest.skip("needs the whole aws suite")
    lines = _recorded(operations_file)
    assert any("sse=aws:kms" in line for line in lines), "the store tests upload with SSE-KMS"
    needed = needed_actions(lines)
    granted = _granted(deployer_aws.permissions(kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k"))
    missing = sorted(needed - granted)
    assert not missing, f"the policy lacks actions the calls needed: {missing}"
    unused = sorted(granted - needed - set(EXTRA))
    assert not unused, f"the policy grants actions no call needed: {unused}"
    assert granted >= KMS
    json.dumps(deployer_aws.permissions(bucket="b", role_arn="arn:aws:iam::123456789012:role/x"))


def test_kms_actions_only_with_a_key() -> None:
    plain = _granted(deployer_aws.permissions())
    assert not plain & KMS
    policy = deployer_aws.permissions(region="eu-west-1", kms_key_arn="arn:aws:kms:eu-west-1:1:key/k")
    kms = [st for st in policy["Statement"] if st["Sid"] == "ArtifactEncryptionKey"]
    assert kms and set(kms[0]["Action"]) == KMS and kms[0]["Resource"] == ["arn:aws:kms:eu-west-1:1:key/k"]
    assert kms[0]["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}


def test_the_ledger_prefix_is_granted_with_a_state_uri() -> None:
    """The shared ledger's calls (tests/aws/test_ledger_objects.py) on its prefix only; none without --state."""
    assert not {st["Sid"] for st in deployer_aws.permissions()["Statement"]} & {"LedgerObjects", "LedgerList"}
    assert "LedgerObjects" not in {st["Sid"] for st in deployer_aws.permissions(state="gs://b/p")["Statement"]}
    policy = deployer_aws.permissions(bucket="models", state="s3://team-state/deployer/ledger/")
    by_sid = {st["Sid"]: st for st in policy["Statement"]}
    objects, listing = by_sid["LedgerObjects"], by_sid["LedgerList"]
    assert objects["Resource"] == ["arn:aws:s3:::team-state/deployer/ledger/*"]
    assert set(objects["Action"]) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}  # untagged PutObject
    assert listing["Resource"] == ["arn:aws:s3:::team-state"]
    assert set(listing["Action"]) == needed_actions(["s3:ListObjectsV2"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["deployer/ledger/*"]}}
