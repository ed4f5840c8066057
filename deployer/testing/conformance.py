"""The provider conformance suite: the behaviour every provider must show through the engine.

Subclass :class:`ProviderConformance` and supply the ``conformance_target`` fixture. Each test
deploys its own endpoint and destroys it at the end.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deployer.errors import ConflictError, GateFailedError, LockedError, NoPreviousReleaseError
from deployer.ledger import Ledger
from deployer.spec import Autoscaling, Spec
from deployer.testing.harness import Crash, Harness, crash_after


def make_model(dest: Path, seed: int = 0, n_features: int = 4) -> Path:
    """Train a tiny LogisticRegression and save it with joblib; different seeds give different bytes."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, n_features))
    y = (x[:, 0] + 0.1 * seed > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"model-{seed}.joblib"
    joblib.dump(model, path)
    return path


@dataclass
class ConformanceTarget:
    """How to build specs for the provider under test.

    ``target`` and ``provider_options`` go into every spec. ``real_predictions`` says whether
    ``invoke`` answers with the model's real output (false for platforms faked offline).
    ``resources`` lets a cloud provider set an instance type.
    """

    target: dict[str, Any]
    ledger_path: Path
    provider_options: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    real_predictions: bool = True
    n_features: int = 4
    cleanup: Callable[[], None] | None = None

    def spec(self, name: str, model: Path, **extra: Any) -> Spec:
        data: dict[str, Any] = {
            "name": name,
            "target": self.target,
            "model": {"path": str(model), "flavor": "sklearn"},
            "resources": {**self.resources, **extra.pop("resources", {})},
            "provider_options": self.provider_options,
            "state": {"path": str(self.ledger_path)},
            **extra,
        }
        return Spec.model_validate(data)


class ProviderConformance:
    """Behaviour every provider must show. Override the ``conformance_target`` fixture."""

    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:  # pragma: no cover - overridden
        raise NotImplementedError("supply a conformance_target fixture")

    @pytest.fixture
    def ct(self, conformance_target: ConformanceTarget, tmp_path: Path) -> Any:
        made: list[tuple[Harness, Spec]] = []

        class Ctx:
            target = conformance_target
            models = tmp_path / "models"

            @staticmethod
            def new(seed: int = 0, **extra: Any) -> tuple[Harness, Spec]:
                name = f"cf-{uuid.uuid4().hex[:8]}"
                model = make_model(tmp_path / "models", seed, conformance_target.n_features)
                spec = conformance_target.spec(name, model, **extra)
                h = Harness(conformance_target.ledger_path)
                made.append((h, spec))
                return h, spec

            @staticmethod
            def respec(spec: Spec, seed: int, **extra: Any) -> Spec:
                model = make_model(tmp_path / "models", seed, conformance_target.n_features)
                return conformance_target.spec(spec.name, model, **extra)

        yield Ctx
        for h, spec in made:
            with contextlib.suppress(Exception):  # best-effort cleanup
                h.destroy(spec)

    def _live(self, path: Path, name: str) -> str | None:
        ledger = Ledger(path)
        try:
            row = ledger.live_release(name)
            return row.id if row else None
        finally:
            ledger.close()

    # ---- the suite ---------------------------------------------------------------------------

    @pytest.mark.timeout(120)
    def test_deploy_then_predict(self, ct: Any) -> None:
        h, spec = ct.new()
        out = h.deploy(spec)
        assert out.outcome == "deployed" and out.release == "r0001"
        assert h.recorder is not None and h.recorder.calls["store.put"] == 1
        resp = h.recorder.invoke(spec.name, [[0.5] * ct.target.n_features])
        assert resp.status == 200
        if ct.target.real_predictions:
            body = resp.body
            assert body["predictions"] in ([0], [1]) and body["release"] == "r0001"

    @pytest.mark.timeout(120)
    def test_unchanged_redeploy_writes_nothing(self, ct: Any) -> None:
        h, spec = ct.new()
        h.deploy(spec)
        out = h.deploy(spec)
        rec = h.recorder
        assert rec is not None
        assert out.outcome == "unchanged"
        assert rec.writes == 0, rec.calls
        assert rec.calls["store.put"] == 0 and rec.bytes_uploaded == 0

    @pytest.mark.timeout(180)
    def test_v1_v2_rollback(self, ct: Any) -> None:
        h, spec = ct.new(seed=1)
        h.deploy(spec)
        v2 = ct.respec(spec, seed=2)
        assert h.deploy(v2).release == "r0002"
        out = h.rollback(spec)
        assert out.release == "r0001" and out.outcome == "rolled_back"
        obs = h.recorder.observe(spec.name) if h.recorder else None
        assert obs is not None and obs.traffic.weights == {"r0001": 100}
        ledger = Ledger(ct.target.ledger_path)
        try:
            rows = {r.id: r for r in ledger.releases(spec.name)}
        finally:
            ledger.close()
        assert rows["r0001"].status == "live" and rows["r0002"].status == "rolled_back"
        assert rows["r0001"].outcome == rows["r0002"].outcome == "succeeded"
        assert all(r.actor for r in rows.values())
        if ct.target.real_predictions and h.recorder:
            assert h.recorder.invoke(spec.name, [[0.5] * ct.target.n_features]).body["release"] == "r0001"

    @pytest.mark.timeout(120)
    def test_rollback_without_previous_release(self, ct: Any) -> None:
        h, spec = ct.new()
        h.deploy(spec)
        with pytest.raises(NoPreviousReleaseError):
            h.rollback(spec)

    @pytest.mark.timeout(120)
    def test_scale(self, ct: Any) -> None:
        h, spec = ct.new()
        h.deploy(spec)
        out = h.scale(spec, Autoscaling(min=2, max=3))
        assert out.outcome == "scaled"
        assert h.recorder is not None and h.recorder.calls["scale"] == 1

    @pytest.mark.timeout(120)
    def test_destroy_is_idempotent(self, ct: Any) -> None:
        h, spec = ct.new()
        h.deploy(spec)
        h.destroy(spec)
        h.destroy(spec)
        assert h.recorder is not None and h.recorder.observe(spec.name) is None

    @pytest.mark.timeout(120)
    def test_lock_contention(self, ct: Any) -> None:
        h, spec = ct.new()
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            ledger = Ledger(ct.target.ledger_path)
            with ledger.lock(spec.name, "deploy"):
                holding.set()
                release.wait(30)
            ledger.close()

        t = threading.Thread(target=hold)
        t.start()
        holding.wait(10)
        try:
            with pytest.raises(LockedError) as err:
                h.deploy(spec)
            assert "pid" in err.value.holder
        finally:
            release.set()
            t.join()
        assert h.deploy(spec).outcome == "deployed"

    @pytest.mark.timeout(240)
    def test_two_ledgers_on_one_endpoint(self, ct: Any, tmp_path: Path) -> None:
        """A second ledger is refused (ConflictError naming the release it does not know) before any write;
        ``adopt`` then takes the endpoint over; nothing is served that the ledger does not name."""
        from deployer import api

        h, spec = ct.new(seed=1)
        h.deploy(spec)
        other = tmp_path / "second-machine" / "ledger.db"
        spec2 = ct.respec(spec, seed=2)
        spec2 = Spec.model_validate({**spec2.model_dump(), "state": {"path": str(other)}})
        h2 = Harness(other)
        try:
            with pytest.raises(ConflictError) as err:
                h2.deploy(spec2)
            assert "r0001" in str(err.value) and f"deployer adopt {spec.name}" in str(err.value)
            assert h2.recorder is not None and h2.recorder.writes == 0
            adopted = api.adopt(spec.name, spec=spec2)
            assert adopted.outcome == "adopted" and adopted.release == "r0001" and adopted.notes
            out = h2.deploy(spec2)
            assert out.outcome == "deployed" and out.release == "r0002"
            obs = h2.recorder.observe(spec.name) if h2.recorder else None
            assert obs is not None and obs.traffic.weights == {"r0002": 100}
            ledger = Ledger(other)
            try:
                known = {r.id: r.fingerprint for r in ledger.releases(spec.name)}
            finally:
                ledger.close()
            for rid, rel in obs.releases.items():
                assert rid in known and rel.fingerprint in (None, known[rid]), (rid, rel, known)
            if ct.target.real_predictions and h2.recorder:
                body = h2.recorder.invoke(spec.name, [[0.5] * ct.target.n_features]).body
                assert body["release"] == "r0002"
            with pytest.raises(ConflictError):  # the first ledger is now the stranger
                h.deploy(spec)
        finally:
            with contextlib.suppress(Exception):
                h2.destroy(spec2)

    @pytest.mark.timeout(300)
    def test_crash_after_every_step_converges(self, ct: Any) -> None:
        h, spec = ct.new(seed=1)
        h.deploy(spec)
        v2 = ct.respec(
            spec,
            seed=2,
            strategy={"type": "canary", "steps": [{"weight": 50, "bake_s": 0}, {"weight": 100, "bake_s": 0}]},
        )
        k = 1
        while True:
            try:
                h.deploy(v2, on_event=crash_after(k))
            except Crash:
                out = h.deploy(v2)
                assert out.outcome in ("deployed", "resumed", "unchanged"), (k, out)
                obs = h.recorder.observe(spec.name) if h.recorder else None
                assert obs is not None and obs.traffic.weights == {out.release: 100}, (k, obs)
                assert self._live(ct.target.ledger_path, spec.name) == out.release
                h.rollback(spec, to="r0001")
                k += 1
                continue
            break
        assert k > 5, "the rollout should have had several journaled steps"

    @pytest.mark.timeout(180)
    def test_transient_faults_are_retried(self, ct: Any) -> None:
        h, spec = ct.new()
        h.fault_rate = 0.3
        out = h.deploy(spec)
        assert out.outcome == "deployed"
        assert h.recorder is not None and h.recorder.faults > 0

    @pytest.mark.timeout(180)
    def test_canary_with_passing_gates_promotes(self, ct: Any) -> None:
        h, spec = ct.new(seed=1)
        h.deploy(spec)
        gates = [
            {"type": "callable", "function": "deployer.testing.gatefns:always_pass"},
            {"type": "smoke", "payload": [[0.1] * ct.target.n_features]},
        ]
        strategy = {"type": "canary", "steps": [{"weight": 10, "bake_s": 0.5}, {"weight": 100, "bake_s": 0}]}
        out = h.deploy(ct.respec(spec, seed=2, strategy=strategy, gates=gates))
        assert out.outcome == "deployed" and self._live(ct.target.ledger_path, spec.name) == "r0002"

    @pytest.mark.timeout(180)
    def test_canary_with_failing_gate_rolls_back(self, ct: Any) -> None:
        h, spec = ct.new(seed=1)
        h.deploy(spec)
        gates = [{"type": "callable", "function": "deployer.testing.gatefns:always_fail"}]
        strategy = {"type": "canary", "steps": [{"weight": 10, "bake_s": 0.5}, {"weight": 100, "bake_s": 0}]}
        with pytest.raises(GateFailedError):
            h.deploy(ct.respec(spec, seed=2, strategy=strategy, gates=gates))
        obs = h.recorder.observe(spec.name) if h.recorder else None
        assert obs is not None and obs.traffic.weights == {"r0001": 100}
        ledger = Ledger(ct.target.ledger_path)
        try:
            failed = ledger.release(spec.name, "r0002")
        finally:
            ledger.close()
        assert failed is not None and failed.status == "failed" and failed.evidence
        assert self._live(ct.target.ledger_path, spec.name) == "r0001"
