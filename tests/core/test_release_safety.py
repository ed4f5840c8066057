"""The engine's release safety on the in-memory platform: ownership, cleanup, "updating", interruptions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from memory_rig import CANARY, FAIL, NAME, PASS, Rig

from deployer import cli
from deployer.adoption import adopt
from deployer.engine import Engine
from deployer.errors import AuthError, ConflictError, GateFailedError, TransientError
from deployer.events import CleanupFailed, Interrupted
from deployer.ledger import Ledger
from deployer.local.provider import LocalProvider
from deployer.spec import Autoscaling
from deployer.testing.harness import Crash
from deployer.testing.memory import FaultPlan, MemoryProvider

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


# ---- who owns an endpoint ----------------------------------------------------------------------


def test_a_second_ledger_is_refused_then_adopts(rig: Rig, tmp_path: Path) -> None:
    rig.harness.deploy(rig.spec(1))
    other = tmp_path / "ci-run-2" / "ledger.db"
    h2 = rig.harness_for(other)
    with pytest.raises(ConflictError) as err:
        h2.deploy(rig.spec(2, ledger=other))
    assert "r0001" in str(err.value) and "deployer adopt churn --spec" in str(err.value)
    assert h2.recorder is not None and h2.recorder.writes == 0
    assert rig.traffic() == {"r0001": 100}  # still what the first ledger serves

    # the same spec's bytes from a fresh ledger is refused too: an id alone never proves ownership
    h3 = rig.harness_for(tmp_path / "ci-run-3" / "ledger.db")
    with pytest.raises(ConflictError):
        h3.deploy(rig.spec(1, ledger=tmp_path / "ci-run-3" / "ledger.db"))

    out = h2.engine_call(rig.spec(2, ledger=other), lambda e: _adopt(e, rig, 2, other), "adopt")
    assert out.outcome == "adopted" and out.release == "r0001"
    assert out.notes and "not the spec's" in out.notes[0]
    assert rig.rows(other)["r0001"].status == "live"
    journal = [op for op in Ledger(other).operations(NAME) if op.step == "adopt"]
    assert journal and journal[0].actor and journal[0].detail and journal[0].detail["host"]

    deployed = h2.deploy(rig.spec(2, ledger=other))
    assert deployed.outcome == "deployed" and deployed.release == "r0002"
    assert rig.traffic() == {"r0002": 100}
    assert set(rig.world.endpoints[NAME].releases) <= set(rig.rows(other))  # nothing served it cannot name
    with pytest.raises(ConflictError):  # and now the first ledger is the stranger
        rig.harness.deploy(rig.spec(1))


def _adopt(engine: Engine, rig: Rig, version: int, ledger: Path) -> object:
    from deployer import api

    spec = rig.spec(version, ledger=ledger)
    prep = api.prepare(spec, provider=engine.provider)
    return adopt(engine, spec, prep.candidate, prep.upload)


def test_adopting_the_spec_that_runs_makes_the_next_deploy_unchanged(rig: Rig, tmp_path: Path) -> None:
    rig.harness.deploy(rig.spec(1))
    other = tmp_path / "b" / "ledger.db"
    h2 = rig.harness_for(other)
    out = h2.engine_call(rig.spec(1, ledger=other), lambda e: _adopt(e, rig, 1, other), "adopt")
    assert out.notes == []
    again = h2.deploy(rig.spec(1, ledger=other))
    assert again.outcome == "unchanged" and h2.recorder is not None and h2.recorder.writes == 0


def test_a_reused_release_id_with_another_fingerprint_is_a_conflict_at_the_provider(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1))
    rel = rig.rows()["r0001"].release
    with pytest.raises(ConflictError):
        MemoryProvider(rig.world).deploy_release(rel.model_copy(update={"fingerprint": "f" * 64}), rig_traffic(rig))


def rig_traffic(rig: Rig):  # type: ignore[no-untyped-def]
    return rig.world.endpoints[NAME].traffic


# ---- cleanup after promotion -------------------------------------------------------------------


def test_a_pruning_failure_after_promotion_keeps_the_promoted_release_live(rig: Rig) -> None:
    for v in (1, 2):
        rig.harness.deploy(rig.spec(v, strategy={"keep_releases": 1}))

    def refuse(name: str) -> BaseException:
        return AuthError("not allowed to delete objects", code="AccessDenied")

    store_calls = rig.world.calls["store.delete"]
    rig.world.faults = _on_call(rig, "store.delete", refuse)
    out = rig.harness.deploy(rig.spec(3, strategy={"keep_releases": 1}))
    assert rig.world.calls["store.delete"] > store_calls
    assert out.outcome == "cleanup_failed" and out.release == "r0003"
    assert out.cleanup_errors and "not allowed" in out.cleanup_errors[0]
    assert cli.outcome_code(out.outcome) == cli.EXIT_CLEANUP_FAILED == 8
    assert rig.live() == "r0003" and rig.traffic() == {"r0003": 100}
    assert rig.rows()["r0003"].outcome == "succeeded"
    assert any(isinstance(e, CleanupFailed) for e in rig.harness.events)
    assert rig.journal("cleanup") and rig.journal("cleanup")[-1].phase == "failed"


def _on_call(rig: Rig, name: str, fault: object) -> FaultPlan:
    """A FaultPlan that fails every call named ``name`` (before it takes effect)."""

    class Every(FaultPlan):
        def check(self, call: str, when: str) -> None:
            if call == name and when == "before":
                raise fault(call)  # type: ignore[operator]

    return Every()


def test_a_retire_failure_after_promotion_is_cleanup_and_the_next_apply_retires(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1))
    rig.world.faults = _on_call(rig, "retire_release", lambda n: AuthError("no", code="AccessDenied"))
    out = rig.harness.deploy(rig.spec(2))
    assert out.outcome == "cleanup_failed" and rig.live() == "r0002"
    assert set(rig.world.endpoints[NAME].releases) == {"r0001", "r0002"}  # r0001 left running at 0%
    rig.world.faults = None
    again = rig.harness.deploy(rig.spec(2))
    assert again.outcome == "deployed" and set(rig.world.endpoints[NAME].releases) == {"r0002"}
    assert rig.harness.deploy(rig.spec(2)).outcome == "unchanged"


def test_a_crash_between_promotion_and_retirement_is_retired_by_the_next_apply(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1))

    def crash_at_retire(event: object) -> None:
        if getattr(event, "kind", "") == "step.started" and getattr(event, "step", "") == "retire_release":
            raise Crash("killed before retiring the baseline")

    with pytest.raises(Crash):
        rig.harness.deploy(rig.spec(2), on_event=crash_at_retire)
    assert rig.live() == "r0002" and "r0001" in rig.world.endpoints[NAME].releases
    out = rig.harness.deploy(rig.spec(2))
    assert out.plan is not None and [s.name for s in out.plan.steps] == ["retire_release:r0001"]
    assert "r0001" not in rig.world.endpoints[NAME].releases
    assert any(op.step == "retire_release:r0001" and op.phase == "done" for op in rig.journal("retire_release:r0001"))


def test_keep_previous_warm_keeps_the_rollback_target_running(rig: Rig) -> None:
    warm = {"keep_previous_warm": True}
    rig.harness.deploy(rig.spec(1, strategy=warm))
    rig.harness.deploy(rig.spec(2, strategy=warm))
    assert rig.harness.deploy(rig.spec(2, strategy=warm)).outcome == "unchanged"
    assert set(rig.world.endpoints[NAME].releases) == {"r0001", "r0002"}


# ---- "updating" is not "lost"; the failure path never touches the live release ---------------------


def test_an_updating_live_release_is_not_lost(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1))
    rig.world.maintenance(NAME, "r0001", observes=50)
    out = rig.harness.deploy(rig.spec(1))
    assert out.outcome == "unchanged"
    assert rig.harness.recorder is not None and rig.harness.recorder.writes == 0
    assert rig.rows()["r0001"].status == "live"


def test_a_failed_scale_of_an_unchanged_spec_leaves_the_live_release_live(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1))
    rig.world.faults = _on_call(rig, "scale", lambda n: AuthError("no scaling for you", code="AccessDenied"))
    with pytest.raises(AuthError):
        rig.harness.deploy(rig.spec(1, autoscaling={"min": 2, "max": 4}))
    row = rig.rows()["r0001"]
    assert row.status == "live" and row.outcome == "succeeded" and rig.traffic() == {"r0001": 100}


def test_applied_autoscaling_lives_on_the_release_row(rig: Rig) -> None:
    auto = {"min": 2, "max": 4}
    rig.harness.deploy(rig.spec(1, autoscaling=auto))
    assert rig.rows()["r0001"].autoscaling == Autoscaling(min=2, max=4)
    db = Ledger(rig.root / "ledger.db")
    for i in range(250):  # push every scale row out of any window of recent journal rows
        db.journal(NAME, "r0001", "guard:error_rate", "pass", detail={"i": i})
    db.close()
    assert rig.harness.deploy(rig.spec(1, autoscaling=auto)).outcome == "unchanged"
    assert rig.harness.recorder is not None and rig.harness.recorder.writes == 0
    rig.harness.scale(rig.spec(1), Autoscaling(min=3, max=5))
    assert rig.rows()["r0001"].autoscaling == Autoscaling(min=3, max=5)
    out = rig.harness.deploy(rig.spec(1, autoscaling=auto))  # the spec says 2..4 again: one scale
    assert out.plan is not None and [s.kind for s in out.plan.steps] == ["scale"]


def test_an_old_ledger_file_gains_the_autoscaling_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Ledger(path)
    db.db.execute(
        "INSERT INTO releases(endpoint, id, seq, fingerprint, spec_hash, release, status, actor, created_at) "
        "VALUES ('e','r0001',1,'f','h','{\"id\":\"r0001\",\"endpoint\":\"e\",\"fingerprint\":\"f\"}','live','a',0)"
    )
    db.journal("e", "r0001", "scale:r0001", "done", detail={"autoscaling": {"min": 2, "max": 3}})
    db.close()
    raw = sqlite3.connect(path)  # make it look like a ledger written before the column existed
    raw.execute("ALTER TABLE releases DROP COLUMN autoscaling")
    raw.commit()
    raw.close()
    db = Ledger(path)
    row = db.release("e", "r0001")
    db.close()
    assert row is not None and row.autoscaling == Autoscaling(min=2, max=3)


# ---- retire_failed -------------------------------------------------------------------------------


@pytest.mark.parametrize(("retire", "left"), [(None, {"r0001"}), (True, {"r0001"}), (False, {"r0001", "r0002"})])
def test_a_failed_candidate_is_retired_on_clouds_unless_kept(rig: Rig, retire: bool | None, left: set[str]) -> None:
    rig.harness.deploy(rig.spec(1))
    strategy = {**CANARY, **({} if retire is None else {"retire_failed": retire})}
    with pytest.raises(GateFailedError):
        rig.harness.deploy(rig.spec(2, strategy=strategy, gates=FAIL))
    assert set(rig.world.endpoints[NAME].releases) == left
    assert rig.live() == "r0001" and rig.rows()["r0002"].status == "failed"


def test_local_keeps_failed_candidates_by_default() -> None:
    assert LocalProvider.retire_failed_default is False
    assert getattr(MemoryProvider, "retire_failed_default", True) is True


# ---- interruptions -------------------------------------------------------------------------------


def _interrupt_at_bake(event: object) -> None:
    if getattr(event, "kind", "") == "step.started" and getattr(event, "step", "") == "bake":
        raise KeyboardInterrupt


def test_ctrl_c_mid_canary_sends_traffic_back_and_deploy_resumes(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1))
    events: list[object] = []

    def hook(event: object) -> None:
        events.append(event)
        _interrupt_at_bake(event)

    with pytest.raises(KeyboardInterrupt):
        rig.harness.deploy(rig.spec(2, strategy=CANARY, gates=PASS), on_event=hook)
    assert rig.traffic() == {"r0001": 100}
    assert rig.live() == "r0001" and rig.rows()["r0002"].status == "deploying"
    stop = [e for e in events if isinstance(e, Interrupted)]
    assert stop and stop[0].returned and stop[0].weights == {"r0001": 100}
    assert rig.journal("interrupted")[-1].phase == "done"
    out = rig.harness.deploy(rig.spec(2, strategy=CANARY, gates=PASS))
    assert out.outcome == "resumed" and rig.live() == "r0002" and rig.traffic() == {"r0002": 100}


def test_an_unexpected_error_mid_canary_sends_traffic_back(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1))

    def bug(event: object) -> None:
        if getattr(event, "kind", "") == "step.started" and getattr(event, "step", "") == "bake":
            raise ValueError("a bug")

    with pytest.raises(ValueError):
        rig.harness.deploy(rig.spec(2, strategy=CANARY, gates=PASS), on_event=bug)
    assert rig.traffic() == {"r0001": 100} and rig.live() == "r0001"


def test_when_traffic_cannot_go_back_the_split_is_reported_and_rollback_undoes_it(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    from deployer.render import Renderer

    rig.harness.deploy(rig.spec(1))
    calls = {"route": 0}

    class RefuseSecondRoute(FaultPlan):
        def check(self, call: str, when: str) -> None:
            if call == "route" and when == "before":
                calls["route"] += 1
                if calls["route"] > 1:
                    raise TransientError("throttled", code="Throttling")

    rig.world.faults = RefuseSecondRoute()
    renderer = Renderer(as_json=False)
    renderer.resume_with = "deployer deploy churn.yaml"
    events: list[object] = []

    def hook(event: object) -> None:
        events.append(event)
        renderer(event)
        _interrupt_at_bake(event)

    with pytest.raises(KeyboardInterrupt):
        rig.harness.deploy(rig.spec(2, strategy=CANARY, gates=PASS), on_event=hook)
    stop = [e for e in events if isinstance(e, Interrupted)][0]
    assert not stop.returned and stop.weights == {"r0001": 75, "r0002": 25} == rig.traffic()
    assert rig.journal("interrupted")[-1].phase == "failed"
    err = capsys.readouterr().err
    assert "finish it:  deployer deploy churn.yaml" in err
    assert f"undo it:    deployer rollback churn --to r0001 --state {rig.root / 'ledger.db'}" in err

    rig.world.faults = None
    out = rig.harness.rollback(rig.spec(2), to="r0001")  # the printed undo command
    assert out.outcome == "rolled_back" and rig.traffic() == {"r0001": 100} and rig.live() == "r0001"


def test_exit_code_8_is_documented_where_the_cli_says() -> None:
    page = (Path(__file__).parents[2] / "docs" / "exit-codes.md").read_text()
    assert f"| {cli.EXIT_CLEANUP_FAILED} | done, but cleanup failed" in page
    assert cli.__doc__ is not None and f"{cli.EXIT_CLEANUP_FAILED}    done, but cleanup failed" in cli.__doc__


def _lost_answer(call: str) -> FaultPlan:
    """The first ``call`` takes effect, then its answer is lost (a typed error reaches the engine)."""
    return FaultPlan(at={1: ("after", lambda n: ConflictError(f"lost answer of {n}", code="Busy"))}, call=call)


def test_a_rollback_into_a_destroyed_endpoint_names_what_it_serves_even_when_it_fails(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1))
    rig.harness.destroy(rig.spec(1))
    rig.world.faults = _lost_answer("deploy_release")
    with pytest.raises(ConflictError):
        rig.harness.rollback(rig.spec(1))
    assert rig.traffic() == {"r0001": 100} and rig.live() == "r0001"
    rig.world.faults = None
    assert rig.harness.rollback(rig.spec(1), to="r0001").outcome == "rolled_back"
    assert rig.live() == "r0001" and rig.world.endpoints[NAME].releases["r0001"].status == "ready"


def test_a_rollback_whose_route_answer_is_lost_follows_the_provider(rig: Rig) -> None:
    rig.harness.deploy(rig.spec(1, strategy={"keep_previous_warm": True}))
    rig.harness.deploy(rig.spec(2, strategy={"keep_previous_warm": True}))
    rig.world.faults = _lost_answer("route")
    out = rig.harness.rollback(rig.spec(1))
    assert out.outcome == "rolled_back" and rig.traffic() == {"r0001": 100} and rig.live() == "r0001"
    assert rig.rows()["r0002"].status == "rolled_back"
