"""Unit tests of the core pieces: artifacts, the wait loop, retries, the ledger, config and the planner."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from deployer import artifacts, retry
from deployer.config import interpolate, load_spec
from deployer.errors import (
    LockedError,
    NoPreviousReleaseError,
    SpecError,
    TransientError,
    WaitTimeoutError,
)
from deployer.ledger import Ledger
from deployer.ledgers.lease import Lease, machine_id
from deployer.planning import LedgerHead, make_plan
from deployer.records import ArtifactRef, Observed, ObservedRelease, Operation, OperationStatus, Release, Traffic
from deployer.spec import Spec
from deployer.waiting import FakeClock, wait_for

pytestmark = pytest.mark.timeout(60)


# ---- artifacts ------------------------------------------------------------------------------------


def test_packaging_is_deterministic_and_hash_matches(tmp_path: Path) -> None:
    src = tmp_path / "m"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.py").write_text("print(1)")
    p1 = artifacts.package(src, tmp_path / "o1")
    os.utime(src / "a.txt", (1, 1))  # mtimes must not matter
    p2 = artifacts.package(src, tmp_path / "o2")
    assert p1.digest == p2.digest and p1.path.read_bytes() == p2.path.read_bytes()
    assert artifacts.sha256_file(p1.path) == p1.sha256 and p1.size == p1.path.stat().st_size
    with tarfile.open(p1.path, "r:gz") as tar:
        member = tar.extractfile(artifacts.MANIFEST_NAME)
        assert member is not None
        manifest = member.read()
    assert hashlib.sha256(manifest).hexdigest() == p1.digest, "the digest names the manifest, not the archive"
    assert [f["path"] for f in json.loads(manifest)["files"]] == ["a.txt", "sub/b.py"]
    (src / "a.txt").write_text("beta")
    assert artifacts.package(src, tmp_path / "o3").digest != p1.digest


def test_packaging_missing_path_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        artifacts.package(tmp_path / "nope", tmp_path / "out")
    assert e.value.field == "model.path"


# ---- waiting and retries ------------------------------------------------------------------------


def _op() -> Operation:
    return Operation(kind="route", provider="t", endpoint="ep")


def test_wait_for_polls_until_terminal_with_backoff() -> None:
    states = iter(["running", "running", "running", "succeeded"])
    clock = FakeClock()
    st = wait_for(_op(), lambda op: OperationStatus(state=next(states)), timeout_s=60, clock=clock)  # type: ignore[arg-type]
    assert st.state == "succeeded" and len(clock.sleeps) == 3 and all(s > 0 for s in clock.sleeps)


def test_wait_for_times_out_with_the_operation() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeoutError) as e:
        wait_for(_op(), lambda op: OperationStatus(state="running", message="still"), timeout_s=5, clock=clock)
    assert e.value.operation == _op().model_copy(update={"started_at": e.value.operation.started_at})
    assert clock.t >= 5 and "still" in str(e.value)


def test_wait_for_treats_transient_poll_errors_as_running() -> None:
    calls = {"n": 0}

    def poll(op: Operation) -> OperationStatus:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("throttled")
        return OperationStatus(state="failed", message="boom")

    assert wait_for(_op(), poll, timeout_s=60, clock=FakeClock()).message == "boom"


def test_retry_only_transient() -> None:
    sleeps: list[float] = []
    n = {"i": 0}

    def flaky() -> str:
        n["i"] += 1
        if n["i"] < 3:
            raise TransientError("503")
        return "ok"

    assert retry.call(flaky, sleep=sleeps.append) == "ok" and len(sleeps) == 2

    def bad() -> None:
        raise SpecError("x", "no")

    with pytest.raises(SpecError):
        retry.call(bad, sleep=sleeps.append)
    assert len(sleeps) == 2


# ---- ledger ----------------------------------------------------------------------------------------


def _release(rid: str, fp: str = "f1") -> Release:
    return Release(id=rid, endpoint="ep", fingerprint=fp, artifact=ArtifactRef(digest="a" * 64, uri="/x", size=1))


def test_ledger_lifecycle_and_rollback_target(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    assert led.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(NoPreviousReleaseError):
        led.rollback_target("ep")
    led.add_release(_release("r0001"), spec_hash="s")
    led.set_release("ep", "r0001", status="live")
    assert led.next_release_id("ep") == "r0002"
    led.add_release(_release("r0002", "f2"), spec_hash="s")
    assert led.in_flight("ep") is not None and led.in_flight("ep").id == "r0002"  # type: ignore[union-attr]
    led.set_release("ep", "r0001", status="superseded")
    led.set_release("ep", "r0002", status="live", outcome="succeeded", finished=True)
    assert led.rollback_target("ep", exclude="r0002").id == "r0001"
    row = led.release("ep", "r0002")
    assert row is not None and row.actor and row.spec_hash == "s" and row.artifact_digest == "a" * 64


def test_lock_names_holder_and_dead_holders_are_taken_over(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    other = Ledger(tmp_path / "l.db")
    with led.lock("ep", "deploy"), pytest.raises(LockedError) as e, other.lock("ep"):
        pass
    assert f"pid {os.getpid()}" in e.value.holder and "deploy" in e.value.holder
    # a lease left by a process that died on this machine is taken over, and the takeover is journaled
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ghost = Lease("t", "ghost", "h", machine_id(), int(dead.stdout), "1", "deploy", 0.0, time.time() + 600)
    assert led.leases.objects.create("ep", ghost.dump())
    with other.lock("ep"):
        assert "ghost" not in (other.lock_holder("ep") or "")
    assert any(op.step == "lock" and op.phase == "taken_over" for op in led.operations("ep"))


# ---- config ----------------------------------------------------------------------------------------


def test_interpolation_and_overlays(tmp_path: Path) -> None:
    assert interpolate({"a": "${X}-${Y:-d}"}, {"X": "x"}) == {"a": "x-d"}
    with pytest.raises(SpecError) as e:
        interpolate({"t": {"k": "${NOPE}"}}, {})
    assert e.value.field == "t.k"
    (tmp_path / "m.joblib").write_bytes(b"x")
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        "name: ${NAME:-churn}\nmodel: {path: m.joblib}\nresources: {replicas: 1}\n"
        "environments:\n  prod: {resources: {replicas: 3}, tags: {env: prod}}\n"
    )
    base = load_spec(spec_file, environ={})
    prod = load_spec(spec_file, env="prod", environ={"NAME": "churn-prod"})
    assert base.name == "churn" and base.resources.replicas == 1 and base.model.path == str(tmp_path / "m.joblib")
    assert prod.name == "churn-prod" and prod.resources.replicas == 3 and prod.tags == {"env": "prod"}
    with pytest.raises(SpecError) as e:
        load_spec(spec_file, env="staging", environ={})
    assert e.value.field == "environments" and "prod" in str(e.value)


# ---- planner ---------------------------------------------------------------------------------------


def _spec(**extra: object) -> Spec:
    return Spec.model_validate({"name": "ep", "model": {"uri": "s3://b/m"}, **extra})


def _observed(weights: dict[str, int]) -> Observed:
    return Observed(
        endpoint="ep",
        releases={r: ObservedRelease(id=r, status="ready") for r in weights},
        traffic=Traffic(weights=weights),
    )


def test_plan_noop_when_live_release_matches() -> None:
    live = _release("r0001", "f1")
    plan = make_plan(
        _spec(),
        _release("r0000", "f1"),
        _observed({"r0001": 100}),
        LedgerHead(live=live, next_id="r0002"),
        artifact_present=True,
    )
    assert plan.noop and plan.release == live


def test_plan_repairs_a_release_the_provider_lost() -> None:
    live = _release("r0001", "f1")
    plan = make_plan(
        _spec(), _release("r0000", "f1"), None, LedgerHead(live=live, next_id="r0002"), artifact_present=True
    )
    assert [s.kind for s in plan.steps] == ["repair", "route"]


def test_plan_canary_steps_and_retire() -> None:
    spec = _spec(strategy={"type": "canary", "steps": [{"weight": 10, "bake_s": 5}, {"weight": 100, "bake_s": 0}]})
    plan = make_plan(
        spec,
        _release("r0000", "f2"),
        _observed({"r0001": 100}),
        LedgerHead(live=_release("r0001"), next_id="r0002"),
        artifact_present=False,
    )
    assert [s.kind for s in plan.steps] == [
        "upload",
        "deploy_release",
        "route",
        "bake",
        "route",
        "promote",
        "retire_release",
    ]
    assert plan.steps[2].weights == {"r0001": 90, "r0002": 10} and plan.steps[4].weights == {"r0002": 100}
    assert plan.release is not None and plan.release.id == "r0002" and plan.baseline == "r0001"


def test_plan_resumes_interrupted_rollout_from_its_weight() -> None:
    spec = _spec(strategy={"type": "linear", "step_percent": 25, "interval_s": 0})
    flight = _release("r0002", "f2")
    plan = make_plan(
        spec,
        _release("r0000", "f2"),
        _observed({"r0001": 50, "r0002": 50}),
        LedgerHead(live=_release("r0001"), in_flight=flight, next_id="r0003"),
        artifact_present=True,
    )
    routes = [s.weights for s in plan.steps if s.kind == "route"]
    assert plan.release is not None and plan.release.id == "r0002"
    assert routes == [{"r0001": 50, "r0002": 50}, {"r0001": 25, "r0002": 75}, {"r0002": 100}]


def test_plan_abandons_interrupted_rollout_of_another_spec() -> None:
    plan = make_plan(
        _spec(),
        _release("r0000", "f3"),
        _observed({"r0001": 100}),
        LedgerHead(live=_release("r0001"), in_flight=_release("r0002", "f2"), next_id="r0003"),
        artifact_present=True,
    )
    assert plan.steps[0].kind == "abandon" and plan.release is not None and plan.release.id == "r0003"


def test_traffic_must_sum_to_100() -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        Traffic(weights={"r0001": 60, "r0002": 30})
    assert Traffic(weights={"r0001": 100, "r0002": 0}) == Traffic.all_to("r0001")


def test_ledger_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    led.add_release(_release("r0001"), spec_hash="s")
    led.set_release("ep", "r0001", status="live")
    led.add_release(_release("r0002", "f2"), spec_hash="s")
    with pytest.raises(RuntimeError), led.transaction():
        led.set_release("ep", "r0001", status="superseded")
        raise RuntimeError("killed between the two writes")
    assert led.live_release("ep") is not None and led.live_release("ep").id == "r0001"  # type: ignore[union-attr]
