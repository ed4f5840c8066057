"""One guard run decides: gates needing several failures or passes are evaluated again within the run
(spaced by the provider's metrics granularity, bounded by the window) until each one decides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from gate_fakes import TimedProvider, World, live_endpoint, release, spec

import deployer
from deployer import api, registry

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    """r0001 then r0002 deployed (r0002 live, r0001 its rollback target), in the default ledger."""
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points", lambda: {"timed": "gate_fakes:TimedProvider"})
    w = World(rps=10)
    engine, _, _ = live_endpoint(tmp_path, w)
    engine.deploy(spec({"type": "all-at-once"}, gates=[]), release("r0000", "fp-new"), None)
    engine.ledger.close()
    w.clock.sleep(600)  # r0002 has served for ten minutes
    return w


def gates_file(tmp_path: Path, **counts: int) -> Path:
    path = tmp_path / "gates.yaml"
    gate = {"type": "metric", "metric": "error_rate", "max": 0.05, "min_samples": 10, **counts}
    path.write_text(yaml.safe_dump({"name": "churn", "model": {"flavor": "container", "image": "x"}, "gates": [gate]}))
    return path


def guard_rows(tmp_path: Path) -> list[str]:
    ledger = api.open_ledger(str(tmp_path / "ledger.db"))
    try:
        return [o.phase for o in ledger.operations("churn") if o.step.startswith("guard:")]
    finally:
        ledger.close()


def test_failure_limit_3_at_50_percent_errors_rolls_back_in_one_run(world: World, tmp_path: Path) -> None:
    """Reproduction: one evaluation with ``failure_limit: 3`` used to answer "inconclusive" (exit 12)."""
    world.error_rate["r0002"] = 0.5
    t0 = world.clock.now()
    rep = deployer.guard("churn", gates_from=gates_file(tmp_path, failure_limit=3), window="2m", clock=world.clock)
    assert (rep.outcome, rep.exit_code, rep.release, rep.rolled_back_to) == ("rolled_back", 10, "r0002", "r0001")
    assert guard_rows(tmp_path) == ["fail", "fail", "fail"]
    assert 0 < world.clock.now() - t0 <= 120
    assert world.traffic().weights == {"r0001": 100}


def test_successes_required_3_on_a_healthy_release_is_healthy(world: World, tmp_path: Path) -> None:
    rep = deployer.guard(
        "churn", gates_from=gates_file(tmp_path, successes_required=3), window="1m", clock=world.clock
    )
    assert (rep.outcome, rep.exit_code) == ("healthy", 0)
    assert guard_rows(tmp_path) == ["pass", "pass", "pass"]


def test_idle_endpoint_is_inconclusive_without_waiting_out_the_window(world: World, tmp_path: Path) -> None:
    world.rps = 0
    world.clock.sleep(3600)  # no traffic in the last hour
    t0 = world.clock.now()
    rep = deployer.guard("churn", gates_from=gates_file(tmp_path, failure_limit=3), window="10m", clock=world.clock)
    assert (rep.outcome, rep.exit_code) == ("inconclusive", 12)
    assert "0 requests" in rep.reason
    assert guard_rows(tmp_path) == ["inconclusive"] and world.clock.now() == t0


def test_flapping_release_fails_when_the_failures_add_up(world: World, tmp_path: Path) -> None:
    world.error_rate["r0002"] = 0.5
    rep = deployer.guard(
        "churn", gates_from=gates_file(tmp_path, failure_limit=2, successes_required=2), window="1m",
        clock=world.clock,
    )
    assert rep.outcome == "rolled_back" and guard_rows(tmp_path) == ["fail", "fail"]


def test_evaluations_follow_the_metrics_granularity(world: World, tmp_path: Path) -> None:
    TimedProvider.world.granularity_s, TimedProvider.world.delay_s = 60, 60
    world.error_rate["r0002"] = 0.5
    before = len(world.reads)
    rep = deployer.guard("churn", gates_from=gates_file(tmp_path, failure_limit=3), window="10m", clock=world.clock)
    assert rep.outcome == "rolled_back"
    times = [now for now, _, _ in world.reads[before:]]
    assert len(times) == 3 and all(b - a >= 60 for a, b in zip(times, times[1:], strict=False))


def test_a_window_too_short_for_the_counts_is_inconclusive_not_a_rollback(world: World, tmp_path: Path) -> None:
    TimedProvider.world.granularity_s, TimedProvider.world.delay_s = 60, 0
    world.error_rate["r0002"] = 0.5
    rep = deployer.guard("churn", gates_from=gates_file(tmp_path, failure_limit=5), window="2m", clock=world.clock)
    assert (rep.outcome, rep.exit_code) == ("inconclusive", 12)
    assert "failures" in rep.reason
    assert world.traffic().weights == {"r0002": 100}
