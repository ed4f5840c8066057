"""``deployer iam-policy azure`` covers exactly the operations the provider's tests sent (this file runs last)."""

from __future__ import annotations

import pytest
from conftest import RECORDED
from deployer_azure import iam


@pytest.mark.timeout(10)
def test_role_covers_exactly_the_recorded_operations() -> None:
    if len(RECORDED) < 10:
        pytest.skip("run with the rest of tests/azure: the operations are recorded by the other tests")
    table = set(iam.OPERATIONS)
    assert RECORDED - table == set(), f"operations sent but not in the role: {sorted(RECORDED - table)}"
    assert table - RECORDED == set(), f"role entries no test exercised: {sorted(table - RECORDED)}"
    role = iam.permissions()
    assert set(role["Actions"]) | set(role["DataActions"]) == iam.actions()


@pytest.mark.timeout(10)
def test_the_role_in_the_docs_is_the_one_printed() -> None:
    import json
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "providers" / "azure.md").read_text()
    block = re.search(r"## Required permissions.*?```json\n(.*?)```", doc, re.S)
    assert block is not None
    assert json.loads(block.group(1)) == iam.permissions()
