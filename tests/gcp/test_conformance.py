"""deployer's conformance kit against the gcp provider on the Vertex AI fake and gcp-storage-emulator."""

from __future__ import annotations

import pytest

from deployer.testing import ConformanceTarget, ProviderConformance


class TestGcpConformance(ProviderConformance):
    @pytest.fixture
    def conformance_target(self, gcp_target: ConformanceTarget) -> ConformanceTarget:
        return gcp_target
