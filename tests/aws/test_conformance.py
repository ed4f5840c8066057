"""deployer's conformance kit against the aws provider on moto (+ tests/aws/fakes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.testing import ConformanceTarget, ProviderConformance

from .helpers import BUCKET, REGION, ROLE


class TestAwsConformance(ProviderConformance):
    @pytest.fixture
    def conformance_target(self, aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
        monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
        return ConformanceTarget(
            target={"provider": "aws", "region": REGION},
            ledger_path=tmp_path / "ledger.db",
            provider_options={"bucket": BUCKET, "role_arn": ROLE},
            resources={"instance_type": "ml.m5.large"},
            real_predictions=False,
        )
