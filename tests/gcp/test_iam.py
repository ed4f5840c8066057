"""`deployer iam-policy gcp` against the API methods the gcp tests actually sent (this module runs last)."""

from __future__ import annotations

import pytest
from deployer_gcp.iam import OPERATIONS, permissions

from .conftest import RECORDED

NOT_EXERCISED_OFFLINE: set[str] = set()


def test_policy_covers_every_recorded_method() -> None:
    if not RECORDED:
        pytest.skip("run with the other gcp tests: nothing was recorded")
    missing = sorted(RECORDED - set(OPERATIONS))
    assert not missing, f"methods with no permissions in deployer_gcp.iam: {missing}"
    exact = set(permissions()["custom_role"]["includedPermissions"])
    assert {p for op in RECORDED for p in OPERATIONS[op]} <= exact


def test_policy_holds_nothing_more(request: pytest.FixtureRequest) -> None:
    if len(RECORDED) < 10:
        pytest.skip("run with the other gcp tests: too little was recorded to judge")
    unused = sorted(set(OPERATIONS) - RECORDED - NOT_EXERCISED_OFFLINE)
    assert not unused, f"permissions for methods no test sends: {unused}"
