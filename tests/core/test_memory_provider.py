"""The in-memory provider refuses what the provider contract forbids (it is only as good as it is strict)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from deployer.errors import ConflictError, NotFoundError, StorageError
from deployer.records import Release, Traffic
from deployer.spec import Autoscaling
from deployer.testing.harness import Crash
from deployer.testing.memory import FaultPlan, MemoryProvider, MemoryWorld
from deployer.waiting import FakeClock, wait_for

pytestmark = pytest.mark.timeout(30)


def _release(p: MemoryProvider, tmp_path: Path, rid: str, body: bytes) -> Release:
    path = tmp_path / f"{rid}.bin"
    path.write_bytes(body)
    ref = p.store().put(path, hashlib.sha256(body).hexdigest())
    return Release(id=rid, endpoint="e", fingerprint=f"fp-{rid}", artifact=ref)


def _ready(p: MemoryProvider, op: object) -> None:
    assert wait_for(op, p.poll, timeout_s=60, clock=FakeClock()).state == "succeeded"  # type: ignore[arg-type]


def test_releases_take_polls_and_say_what_they_serve(tmp_path: Path) -> None:
    p = MemoryProvider(MemoryWorld(pending_polls=4))
    r1 = _release(p, tmp_path, "r0001", b"one")
    op = p.deploy_release(r1, Traffic())
    obs = p.observe("e")
    assert obs is not None and obs.releases["r0001"].status == "creating"
    assert obs.releases["r0001"].fingerprint == "fp-r0001" and obs.traffic == Traffic.all_to("r0001")
    assert [p.poll(op).state for _ in range(4)] == ["running"] * 3 + ["succeeded"]
    with pytest.raises(ConflictError):  # same name, another fingerprint
        p.deploy_release(r1.model_copy(update={"fingerprint": "other"}), Traffic())
    with pytest.raises(StorageError):
        p.deploy_release(r1.model_copy(update={"id": "r0009", "artifact": None}), Traffic())


def test_traffic_mirror_updating_and_retire_rules(tmp_path: Path) -> None:
    world = MemoryWorld(pending_polls=2)
    p = MemoryProvider(world)
    _ready(p, p.deploy_release(_release(p, tmp_path, "r0001", b"one"), Traffic()))
    r2 = _release(p, tmp_path, "r0002", b"two")
    p.deploy_release(r2, Traffic.all_to("r0001"))
    with pytest.raises(ConflictError):  # not ready yet
        p.route("e", Traffic(weights={"r0001": 100}, mirror={"r0002": 50}))
    _ready(p, p.deploy_release(r2, Traffic.all_to("r0001")))
    p.route("e", Traffic(weights={"r0001": 100}, mirror={"r0002": 50}))
    obs = p.observe("e")
    assert obs is not None and obs.traffic.mirror == {"r0002": 50}
    with pytest.raises(ConflictError):  # a mirrored release still receives requests
        p.retire_release("e", "r0002")
    with pytest.raises(NotFoundError):
        p.route("e", Traffic.all_to("r0007"))
    p.scale("e", "r0001", Autoscaling(min=2, max=3))
    obs = p.observe("e")
    assert obs is not None and obs.releases["r0001"].status == "updating" and obs.traffic.weights == {"r0001": 100}
    world.maintenance("e", "r0002", observes=2)
    states = [p.observe("e").releases["r0002"].status for _ in range(3)]  # type: ignore[union-attr]
    assert states == ["updating", "updating", "ready"]
    p.route("e", Traffic.all_to("r0001"))
    p.retire_release("e", "r0002")
    p.retire_release("e", "r0002")  # idempotent
    p.destroy("e")
    p.destroy("e")
    assert p.observe("e") is None


def test_faults_strike_before_or_after_the_named_call(tmp_path: Path) -> None:
    world = MemoryWorld(pending_polls=0)
    p = MemoryProvider(world)
    r1 = _release(p, tmp_path, "r0001", b"one")
    world.faults = FaultPlan(at={1: ("after", lambda n: Crash(n))}, call="deploy_release")
    with pytest.raises(Crash):
        p.deploy_release(r1, Traffic())
    assert "r0001" in world.endpoints["e"].releases  # it took effect before the process died
    world.faults = FaultPlan(at={1: ("before", lambda n: ConflictError(n))}, call=("route", "destroy"))
    with pytest.raises(ConflictError):
        p.destroy("e")
    assert "e" in world.endpoints and world.faults.fired == ["ConflictError before destroy"]
