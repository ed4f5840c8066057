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


def test_the_ledger_prefix_with_a_state_uri() -> None:
    """The ledger's methods (tests/gcp/test_ledger_objects.py) are in the custom role; --state names its prefix."""
    from deployer_gcp.iam import LEDGER_PERMISSIONS

    ledger_methods = ("storage.objects.get", "storage.objects.insert", "storage.objects.delete", "storage.objects.list")
    assert {p for m in ledger_methods for p in OPERATIONS[m]} == set(LEDGER_PERMISSIONS)
    assert "ledger" not in permissions() and "ledger" not in permissions(state="s3://b/p")
    ledger = permissions(state="gs://team-state/deployer/ledger/")["ledger"]
    assert ledger["location"] == "gs://team-state/deployer/ledger/"
    assert 'startsWith("projects/_/buckets/team-state/objects/deployer/ledger/")' in ledger["condition"]
    assert set(ledger["permissions"]) <= set(permissions()["custom_role"]["includedPermissions"])
