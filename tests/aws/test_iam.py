"""deployer_aws.permissions() covers every operation the provider's tests sent, and nothing more.

Runs last (tests/aws/conftest.py orders it); the "nothing more" half needs the whole aws suite.
"""

from __future__ import annotations

import json

import deployer_aws
import pytest
from deployer_aws.iam import OPERATIONS, actions

from .conftest import RECORDED

pytestmark = pytest.mark.timeout(30)

NOT_EXERCISED_OFFLINE: set[str] = set()
"""Operations in the table that no offline test can send (none today)."""


def test_policy_covers_every_recorded_operation() -> None:
    if not RECORDED:
        pytest.skip("run with the rest of tests/aws to record operations")
    missing = sorted(RECORDED - set(OPERATIONS))
    assert not missing, f"add these to deployer_aws.iam.OPERATIONS: {missing}"
    policy = deployer_aws.permissions()
    granted = {a for st in policy["Statement"] for a in st["Action"]}
    needed = {a for op in RECORDED for a in OPERATIONS[op]}
    assert needed <= granted


def test_policy_holds_nothing_more(request: pytest.FixtureRequest) -> None:
    files = {item.path.name for item in request.session.items if "aws" in item.path.parts}
    if not {"test_sagemaker.py", "test_store.py", "test_native_and_faults.py"} <= files:
        pytest.skip("needs the whole aws suite")
    unused = sorted(set(OPERATIONS) - RECORDED - NOT_EXERCISED_OFFLINE)
    assert not unused, f"the policy grants operations the provider never sends: {unused}"
    policy = deployer_aws.permissions(bucket="b", role_arn="arn:aws:iam::123456789012:role/x")
    granted = {a for st in policy["Statement"] for a in st["Action"]}
    assert granted == actions()
    json.dumps(policy)
