"""The operator-facing verbs say what is really there and are safe to run twice, on the in-memory platform.

* ``rollback`` journals its target: a re-run after it completed changes nothing and says so; a re-run
  after an interrupted one resumes the same target (not "the previous one" again);
* ``scale --min 0`` gets the spec path's capability check (exit 2 with the reason, no provider call);
* ``status`` lists releases per release, marks what the provider no longer has ``gone`` (the next
  apply reconciles the ledger, journaled), names a failed candidate with its reason, and exits with
  the health's code;
* a guard that cannot read metrics is an error, not "inconclusive".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import verbs_rig
from click.testing import CliRunner
from verbs_rig import NAME, WORLD, spec

import deployer
from deployer import api, registry
from deployer.cli import cli as command
from deployer.errors import AuthError, CapabilityError, GateFailedError, ProviderError, TransientError
from deployer.ledger import Ledger
from deployer.testing.harness import Crash
from deployer.testing.memory import FaultPlan, MemEndpoint, MemoryWorld
from deployer.waiting import FakeClock

pytestmark = pytest.mark.timeout(30)

FAIL = [{"type": "callable", "function": "deployer.testing.gatefns:always_fail"}]


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    WORLD[0] = MemoryWorld(pending_polls=0)
    monkeypatch.setattr(registry, "_entry_points", lambda: {"memory": "verbs_rig:WorldProvider"})
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    return tmp_path


def ledger_of(root: Path) -> Ledger:
    return Ledger(root / "ledger.db")


def statuses(root: Path) -> dict[str, str]:
    ledger = ledger_of(root)
    try:
        return {r.id: r.status for r in ledger.releases(NAME)}
    finally:
        ledger.close()


def traffic() -> dict[str, int]:
    return dict(WORLD[0].endpoints[NAME].traffic.weights)


def three_releases(root: Path) -> None:
    for v in (1, 2, 3):
        api.apply(spec(root, v))
    assert statuses(root) == {"r0001": "superseded", "r0002": "superseded", "r0003": "live"}


def cli(root: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(command, [*args, "--state", str(root / "ledger.db")])
    return res.exit_code, res.stdout


def test_rollback_rerun_after_completion_changes_nothing_and_says_so(root: Path) -> None:
    three_releases(root)
    first = api.rollback(NAME)
    assert (first.release, first.outcome) == ("r0002", "rolled_back")
    routes = WORLD[0].calls["route"]
    again = api.rollback(NAME)
    assert (again.release, again.outcome) == ("r0002", "unchanged")
    assert "already rolled back from r0003 to r0002" in again.notes[0]
    assert WORLD[0].calls["route"] == routes and traffic() == {"r0002": 100}
    assert statuses(root) == {"r0001": "superseded", "r0002": "live", "r0003": "rolled_back"}
    code, out = cli(root, "rollback", NAME)
    assert code == 0 and "already rolled back" in out and "r0002 is live (unchanged)" in out
    assert statuses(root)["r0001"] == "superseded"
    # going further back is a choice, named with --to
    assert api.rollback(NAME, to="r0001").release == "r0001"


def test_rerun_of_an_interrupted_rollback_resumes_the_same_target(root: Path) -> None:
    three_releases(root)
    WORLD[0].faults = FaultPlan(call="route", at={1: ("after", lambda _: Crash())})
    with pytest.raises(Crash):
        api.rollback(NAME, to="r0001")  # the process dies once traffic moved, before the ledger says so
    WORLD[0].faults = None
    assert traffic() == {"r0001": 100} and statuses(root)["r0003"] == "live"
    resumed = api.rollback(NAME)
    assert (resumed.release, resumed.outcome) == ("r0001", "rolled_back")  # not r0002, "the previous one"
    assert traffic() == {"r0001": 100}
    assert statuses(root) == {"r0001": "live", "r0002": "superseded", "r0003": "rolled_back"}
    assert api.rollback(NAME).outcome == "unchanged"


def test_scale_to_zero_gets_the_spec_paths_capability_check(root: Path) -> None:
    api.apply(spec(root, 1))
    scales = WORLD[0].calls["scale"]
    code, _ = cli(root, "scale", NAME, "--min", "0")
    assert code == 2
    with pytest.raises(CapabilityError) as by_verb:
        api.scale(NAME, min=0)
    with pytest.raises(CapabilityError) as by_spec:
        api.apply(spec(root, 1, autoscaling={"min": 0, "max": 2, "scale_to_zero": True}))
    assert str(by_verb.value) == str(by_spec.value)
    assert "scale to zero" in str(by_verb.value) and "min 1" in str(by_verb.value)
    assert WORLD[0].calls["scale"] == scales
    assert api.scale(NAME, min=2, max=3).outcome == "scaled"


def test_status_lists_a_failed_candidate_marks_gone_releases_and_apply_reconciles(root: Path) -> None:
    api.apply(spec(root, 1))
    api.apply(spec(root, 2))
    with pytest.raises(GateFailedError):
        api.apply(spec(root, 3, gates=FAIL, strategy={
            "type": "canary", "steps": [{"weight": 25, "bake_s": 0.5}, {"weight": 100, "bake_s": 0}],
            "retire_failed": False,
        }))
    s = api.status(NAME)
    rows = {r["id"]: r for r in s.to_dict()["releases"]}
    assert rows["r0003"]["status"] == "failed" and "gate failed" in rows["r0003"]["reason"]
    assert (s.exit_code, s.to_dict()["replicas"]) == (0, 1)
    code, out = cli(root, "status", NAME)
    assert code == 0 and "r0003  failed" in out and "gate failed" in out and "None" not in out

    # the endpoint is recreated out of band with only the live release
    old = WORLD[0].endpoints[NAME]
    fresh = MemEndpoint(NAME, releases={"r0002": old.releases["r0002"]}, traffic=old.traffic)
    WORLD[0].endpoints[NAME] = fresh
    rows = {r["id"]: r for r in api.status(NAME).to_dict()["releases"]}
    assert rows["r0003"]["provider_status"] == "gone" and rows["r0003"]["replicas"] == 0
    code, out = cli(root, "status", NAME)
    assert "gone" in out

    api.apply(spec(root, 2))  # unchanged spec: nothing to roll out, but the ledger is reconciled
    assert "r0003" not in {r["id"] for r in api.status(NAME).releases}
    ledger = ledger_of(root)
    try:
        rec = [o for o in ledger.operations(NAME) if o.step == "reconcile"]
    finally:
        ledger.close()
    assert len(rec) == 1 and rec[0].detail == {"gone": ["r0003"]}


def test_status_exit_code_absent_after_destroy(root: Path) -> None:
    api.apply(spec(root, 1))
    assert cli(root, "status", NAME)[0] == 0
    api.destroy(NAME)
    code, out = cli(root, "status", NAME)
    assert code == 16 and "absent" in out and "live: none (nothing serving)" in out and "None" not in out


@pytest.mark.parametrize("error", [AuthError("expired token"), ProviderError("metrics API refused")])
def test_guard_that_cannot_read_metrics_is_an_error_not_inconclusive(root: Path, error: ProviderError) -> None:
    api.apply(spec(root, 1))
    WORLD[0].faults = FaultPlan(call="metrics", at={1: ("before", lambda _: error)})
    with pytest.raises(type(error)):
        deployer.guard(NAME, max_error_rate=0.01, window="1m", clock=FakeClock())
    assert verbs_rig.WORLD[0].faults is not None and WORLD[0].faults.fired == [f"{type(error).__name__} before metrics"]


def test_guard_with_an_unreachable_control_plane_is_an_error_after_retries(root: Path) -> None:
    api.apply(spec(root, 1))
    down = {n: ("before", lambda _: TransientError("connect timeout to the control plane")) for n in range(1, 30)}
    WORLD[0].faults = FaultPlan(call="observe", at=dict(down))
    with pytest.raises(TransientError, match="control plane"):
        deployer.guard(NAME, max_error_rate=0.01, window="1m", clock=FakeClock())
    assert len(WORLD[0].faults.fired) > 1  # retried first, as every provider call is
    assert WORLD[0].calls["metrics"] == 0  # never judged blind


def test_plan_offline_asks_the_platform_nothing_and_judges_from_the_ledger(root: Path) -> None:
    api.apply(spec(root, 1))
    before = dict(WORLD[0].calls)
    assert api.plan(spec(root, 1), offline=True).noop
    changed = api.plan(spec(root, 2), offline=True)
    kinds = [s.kind for s in changed.steps]
    assert not changed.noop and "upload" in kinds and "deploy_release" in kinds
    assert dict(WORLD[0].calls) == before  # not one observe, find or write
    api.plan(spec(root, 1))
    assert WORLD[0].calls["observe"] > before.get("observe", 0)  # the plain plan does look
