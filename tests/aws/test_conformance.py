"""deployer's conformance kit against the aws provider on moto (+ deployer_aws.testing)."""

from __future__ import annotations

import pytest

from deployer.testing import ConformanceTarget, ProviderConformance


class TestAwsConformance(ProviderConformance):
    @pytest.fixture
    def conformance_target(self, aws_target: ConformanceTarget) -> ConformanceTarget:
        return aws_target
