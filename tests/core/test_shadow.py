"""The shadow phase: mirror a share of requests to the candidate, judge it on its copies, and only
then move live traffic. A failure in the shadow phase clears the mirror; live traffic never moved."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import gate_fakes
import pytest
from gate_fakes import ERROR_GATE, TimedProvider, World, live_endpoint, release, spec

from deployer.errors import CapabilityError, GateFailedError, SpecError
from deployer.events import Event, StepStarted
from deployer.ledger import Ledger
from deployer.planning import LedgerHead, Step, make_plan
from deployer.records import Capabilities, Observed, ObservedRelease, Traffic
from deployer.rollout import check_strategy

pytestmark = pytest.mark.timeout(30)

SHADOW_CANARY = {
    "type": "canary",
    "steps": [{"weight": 10, "bake_s": 30}, {"weight": 100, "bake_s": 30}],
    "shadow": {"percent": 20, "bake_s": 40},
}


def observed_live() -> Observed:
    return Observed(
        endpoint="churn",
        releases={"r0001": ObservedRelease(id="r0001", status="ready")},
        traffic=Traffic.all_to("r0001"),
    )


def test_plan_mirrors_then_clears_before_the_first_traffic_step() -> None:
    head = LedgerHead(live=release("r0001", "fp-old"), next_id="r0002")
    plan = make_plan(spec(SHADOW_CANARY), release("r0000"), observed_live(), head, artifact_present=True)
    names = [s.name for s in plan.steps]
    assert names == [
        "deploy_release:r0002",
        "route:r0001=100;mirror:r0002=20",
        "bake:r0002",
        "route:r0001=100",
        "route:r0001=90,r0002=10",
        "bake:r0002",
        "route:r0002=100",
        "bake:r0002",
        "promote:r0002",
        "retire_release:r0001",
    ]
    shadow_route, shadow_bake = plan.steps[1], plan.steps[2]
    assert shadow_route.mirror == {"r0002": 20} and shadow_bake.bake_s == 40
    assert "mirror r0002 20%" in shadow_route.describe()


def test_no_shadow_phase_on_a_new_endpoint() -> None:
    plan = make_plan(spec(SHADOW_CANARY), release("r0000"), None, LedgerHead(), artifact_present=True)
    assert all(not s.mirror for s in plan.steps)


def test_shadow_passes_then_traffic_moves(tmp_path: Path) -> None:
    world = World(rps=20)
    engine, _, events = live_endpoint(tmp_path, world)
    mirrors_while_baking: list[dict[str, int]] = []

    def watch(event: Event) -> None:
        events.append(event)
        if isinstance(event, StepStarted) and event.step == "bake" and not mirrors_while_baking:
            row = engine.ledger.endpoint("churn")
            assert row is not None
            mirrors_while_baking.append(dict(row.traffic.mirror))

    engine.on_event = watch
    gate_fakes.SHARES.clear()
    gates = [ERROR_GATE, {"type": "callable", "function": "gate_fakes:note_shares"}]
    out = engine.deploy(spec(SHADOW_CANARY, gates=gates), release("r0000"), None)
    assert out.outcome == "deployed" and out.release == "r0002"
    routes = [t for _, t in world.routes][-4:]
    assert routes == [
        Traffic(weights={"r0001": 100}, mirror={"r0002": 20}),
        Traffic(weights={"r0001": 100}),
        Traffic(weights={"r0001": 90, "r0002": 10}),
        Traffic(weights={"r0002": 100}),
    ]
    # the ledger kept the mirror beside the weights while the shadow phase ran
    assert mirrors_while_baking == [{"r0002": 20}]
    # the shadow bake judged the candidate on its mirrored requests
    first = next(o for o in engine.ledger.operations("churn") if o.step.startswith("gate:"))
    assert first.phase == "pass" and first.detail is not None and first.detail["observed"]["requests"] > 0
    row = engine.ledger.endpoint("churn")
    assert row is not None and row.traffic == Traffic.all_to("r0002")
    # gates are told what the candidate was judged at: copies only, then live shares
    assert sorted(set(gate_fakes.SHARES)) == [(0, 20), (10, None), (100, None)]


def test_a_gate_failing_in_shadow_clears_the_mirror_and_never_moves_live_traffic(tmp_path: Path) -> None:
    world = World(rps=20, error_rate={"r0002": 0.5})
    engine, _, _ = live_endpoint(tmp_path, world)
    before = len(world.routes)
    with pytest.raises(GateFailedError, match="error_rate"):
        engine.deploy(spec(SHADOW_CANARY), release("r0000"), None)
    after = [t for _, t in world.routes[before:]]
    assert after == [Traffic(weights={"r0001": 100}, mirror={"r0002": 20}), Traffic.all_to("r0001")]
    assert all(t.weights == {"r0001": 100} for t in after)
    row = engine.ledger.release("churn", "r0002")
    assert row is not None and row.status == "failed" and row.evidence
    live = engine.ledger.live_release("churn")
    assert live is not None and live.id == "r0001"
    ep = engine.ledger.endpoint("churn")
    assert ep is not None and ep.traffic == Traffic.all_to("r0001")


def test_a_provider_without_shadow_is_refused_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from deployer import api, registry

    with pytest.raises(CapabilityError, match="cannot copy requests"):
        check_strategy(spec(SHADOW_CANARY), Capabilities(shadow=False, unsupported={"shadow": "cannot copy requests"}))
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points", lambda: {"timed": "gate_fakes:TimedProvider"})
    world = World(shadow=False)
    TimedProvider(world=world)
    with pytest.raises(CapabilityError, match=r"strategy.shadow.*cannot copy requests"):
        api.plan(spec(SHADOW_CANARY))
    assert [c for c in world.calls if c[0] != "validate"] == []


def test_shadow_with_a_native_rollout_is_refused() -> None:
    s = spec({**SHADOW_CANARY, "native": True})
    with pytest.raises(SpecError) as e:
        check_strategy(s, Capabilities(shadow=True, native_rollout=True))
    assert e.value.field == "strategy.shadow"


def test_an_unchanged_spec_clears_a_mirror_left_by_a_crash() -> None:
    live = release("r0001")
    obs = observed_live().model_copy(update={"traffic": Traffic(weights={"r0001": 100}, mirror={"r0002": 5})})
    plan = make_plan(spec(SHADOW_CANARY), release("r0000"), obs, LedgerHead(live=live), artifact_present=True)
    assert plan.steps == [Step("route", "r0001", weights={"r0001": 100})]


def test_ledger_stores_the_mirror_and_opens_an_older_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path)  # an endpoints table as older versions made it: no mirror column
    db.execute(
        "CREATE TABLE endpoints (name TEXT PRIMARY KEY, provider TEXT NOT NULL, target TEXT NOT NULL, url TEXT, "
        "meta TEXT NOT NULL DEFAULT '{}', traffic TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL, destroyed_at REAL)"
    )
    db.execute("INSERT INTO endpoints VALUES ('old', 'local', '{}', NULL, '{}', '{\"r0001\": 100}', 1, 1, NULL)")
    db.commit()
    db.close()
    ledger = Ledger(path)
    try:
        old = ledger.endpoint("old")
        assert old is not None and old.traffic == Traffic.all_to("r0001")
        ledger.upsert_endpoint("churn", "timed", {})
        mirrored = Traffic(weights={"r0001": 100}, mirror={"r0002": 20})
        ledger.set_traffic("churn", mirrored)
        row = ledger.endpoint("churn")
        assert row is not None and row.traffic == mirrored
        ledger.set_traffic("churn", Traffic.all_to("r0001"))
        row = ledger.endpoint("churn")
        assert row is not None and row.traffic.mirror == {}
    finally:
        ledger.close()
