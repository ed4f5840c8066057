"""deployer's conformance kit against the azure provider: Azurite for Blob, tests/azure/armfake.py for Azure ML."""

from __future__ import annotations

import pytest

from deployer.testing import ConformanceTarget, ProviderConformance


class TestAzureConformance(ProviderConformance):
    @pytest.fixture
    def conformance_target(self, azure_target: ConformanceTarget) -> ConformanceTarget:
        return azure_target
