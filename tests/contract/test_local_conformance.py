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
def test_artifacts_beyond_keep_releases_are_pruned_but_rollback_targets_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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


@pytest.mark.timeout(120)
def test_gradual_rollback_steps_traffic_back_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deployer.errors import GateFailedError
    from deployer.rollout import rollback_steps
    from deployer.spec import Strategy
    from deployer.testing import Harness, make_model

    strategy = {
        "type": "canary",
        "rollback": "gradual",
        "steps": [{"weight": 10, "bake_s": 0.5}, {"weight": 50, "bake_s": 0.5}, {"weight": 100, "bake_s": 0}],
    }
    assert rollback_steps(Strategy.model_validate(strategy), 50) == [10, 0]
    assert rollback_steps(Strategy.model_validate({**strategy, "rollback": "snap"}), 50) == [0]

    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    ct = ConformanceTarget(target={"provider": "local"}, ledger_path=tmp_path / "ledger.db")
    h = Harness(ct.ledger_path)
    v1 = ct.spec("gradual", make_model(tmp_path / "m", 1))
    gates = [{"type": "callable", "function": "deployer.testing.gatefns:fail_from_half"}]
    try:
        h.deploy(v1)
        h.events.clear()
        with pytest.raises(GateFailedError):
            h.deploy(ct.spec("gradual", make_model(tmp_path / "m", 2), strategy=strategy, gates=gates))
        routes = [e.weights for e in h.events if e.kind == "traffic.changed"]
        assert routes == [
            {"r0001": 90, "r0002": 10},
            {"r0001": 50, "r0002": 50},
            {"r0001": 90, "r0002": 10},
            {"r0001": 100},
        ], routes
    finally:
        h.destroy(v1)
