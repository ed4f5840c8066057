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


@pytest.mark.timeout(240)
def test_artifacts_beyond_keep_releases_are_pruned_but_rollback_targets_stay(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from deployer.ledger import Ledger
    from deployer.testing import Harness, make_model

    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    ct = ConformanceTarget(target={"provider": "local"}, ledger_path=tmp_path / "ledger.db")
    h = Harness(ct.ledger_path)
    specs = [ct.spec("prune", make_model(tmp_path / "m", seed), strategy={"keep_releases": 2}) for seed in range(4)]
    try:
        for s in specs:
            h.deploy(s)
        ledger = Ledger(ct.ledger_path)
        rows = {r.id: r for r in ledger.releases("prune")}
        ledger.close()
        store = h.recorder.store() if h.recorder else None
        assert store is not None
        present = {rid: store.find(r.artifact_digest or "") is not None for rid, r in rows.items()}
        assert present == {"r0001": False, "r0002": False, "r0003": True, "r0004": True}, present
        assert h.rollback(specs[0]).release == "r0003"  # the rollback target's artifact was kept
    finally:
        h.destroy(specs[0])
