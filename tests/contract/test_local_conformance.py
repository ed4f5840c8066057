"""The conformance suite on the built-in local provider (the reference implementation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.testing import ConformanceTarget, ProviderConformance


class TestLocalConformance(ProviderConformance):
    @pytest.fixture
    def conformance_target(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConformanceTarget:
        monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
        return ConformanceTarget(target={"provider": "local"}, ledger_path=tmp_path / "ledger.db")
