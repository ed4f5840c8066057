"""The ledger conformance suite: what every ledger (SQLite, and the shared ledger on any object store)
must show. One suite for all; a backend runs it by subclassing :class:`LedgerConformance` and supplying
one fixture, ``ledger_state``: the ``--state`` value of a fresh, empty ledger (a SQLite path, or a URI
such as ``s3://bucket/<unique prefix>`` with its emulator's endpoint in the environment, which the race's
worker processes inherit)::

    from deployer.testing.ledgers import LedgerConformance

    class TestS3Ledger(LedgerConformance):
        @pytest.fixture
        def ledger_state(self, moto_server, monkeypatch):
            monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
            return f"s3://ledger-bucket/{uuid.uuid4().hex}"

Object stores also pass :meth:`LedgerConformance.test_objects_conditional_writes` (skipped for SQLite).
The race (8 processes, :data:`RACE_ROUNDS` rounds, spawned once and synchronised by a barrier per round)
is marked ``slow``; it checks exactly one lock holder per round, that every loser's ``LockedError``
names the winner, and that no racing journal append is lost or duplicated.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from deployer.errors import ConflictError, LockedError
from deployer.ledgers import transfer
from deployer.ledgers.race import race_worker
from deployer.ledgers.select import open_objects, open_store, scheme
from deployer.protocols import LedgerStore
from deployer.records import Release, Traffic

RACE_WORKERS = 8
RACE_ROUNDS = 200
EP = "churn"


def _release(rid: str, digest: str | None = None) -> Release:
    art = {"digest": digest, "uri": f"mem://{digest}", "size": 1} if digest else None
    return Release.model_validate({"id": rid, "endpoint": EP, "fingerprint": f"fp-{rid}", "artifact": art})


def _fill(store: LedgerStore, n: int = 3) -> None:
    """An endpoint with ``n`` releases (the last live, the others superseded) and a journal."""
    store.upsert_endpoint(EP, "memory", {"provider": "memory", "options": {"zone": "a"}})
    for i in range(1, n + 1):
        rid = f"r{i:04d}"
        store.add_release(_release(rid, f"{i:064x}"), spec_hash=f"h{i}")
        store.journal(EP, rid, "deploy_release", "started", operation={"kind": "deploy_release", "ref": {"id": rid}})
        with store.transaction():
            for row in store.releases(EP):
                if row.status == "live":
                    store.set_release(EP, row.id, status="superseded")
            store.set_release(EP, rid, status="live", outcome="succeeded", finished=True, running=True)
            store.journal(EP, rid, "deploy_release", "done", detail={"evidence": [{"gate": "smoke", "ok": True}]})
        store.set_traffic(EP, Traffic.all_to(rid))
    store.set_endpoint_facts(EP, url="http://127.0.0.1:1/", meta={"pid": "1"})


class LedgerConformance:
    """Subclass and supply ``ledger_state`` (see the module docstring)."""

    @pytest.fixture
    def ledger_state(self) -> str:  # pragma: no cover - supplied by the subclass
        raise NotImplementedError("supply a ledger_state fixture: the --state of a fresh ledger")

    @pytest.fixture
    def store(self, ledger_state: str) -> Any:
        s = open_store(ledger_state)
        yield s
        s.close()

    # ---- the primitive ---------------------------------------------------------------------------

    @pytest.mark.timeout(60)
    def test_objects_conditional_writes(self, ledger_state: str) -> None:
        if scheme(ledger_state) == "sqlite":
            pytest.skip("SQLite is not an object store")
        objects = open_objects(ledger_state)
        key = f"conformance/{uuid.uuid4().hex}.json"
        v1 = objects.create(key, b"one")
        assert v1 and objects.create(key, b"two") is None, "create must refuse an existing key"
        assert objects.read(key) == (b"one", v1)
        v2 = objects.replace(key, b"two", v1)
        assert v2 and v2 != v1
        assert objects.replace(key, b"three", v1) is None, "replace at a stale version must be refused"
        assert objects.read(key) == (b"two", v2)
        assert objects.delete(key, v1) is False and objects.read(key) is not None
        assert key in objects.list("conformance/") and objects.list("nothing-here/") == []
        assert objects.delete(key, v2) is True and objects.read(key) is None
        assert objects.delete(key) is True, "deleting a missing key succeeds"
        assert objects.replace(key, b"x", v2) is None, "replace of a missing key is refused"
        v3 = objects.create(key, b"two")
        assert v3 not in (v1, v2), "a re-created object must not revive an old version"
        objects.delete(key)

    # ---- records ---------------------------------------------------------------------------------

    @pytest.mark.timeout(60)
    def test_append_and_read_back_from_another_handle(self, store: LedgerStore, ledger_state: str) -> None:
        _fill(store)
        other = open_store(ledger_state)
        try:
            assert [e.name for e in other.endpoints()] == [EP]
            ep = other.endpoint(EP)
            assert ep is not None and ep.traffic == Traffic.all_to("r0003") and ep.url == "http://127.0.0.1:1/"
            assert ep.target == {"provider": "memory", "options": {"zone": "a"}} and ep.meta == {"pid": "1"}
            rows = other.releases(EP)
            assert [(r.id, r.status) for r in rows] == [
                ("r0001", "superseded"),
                ("r0002", "superseded"),
                ("r0003", "live"),
            ]
            assert rows[2].actor == store.actor and rows[2].spec_hash == "h3" and rows[2].finished_at
            assert other.next_release_id(EP) == "r0004"
            assert other.rollback_target(EP, exclude="r0003").id == "r0002"
            assert other.in_flight(EP) is None
            ops = other.operations(EP)
            assert [(o.release, o.phase) for o in ops] == [
                (f"r{i:04d}", p) for i in (1, 2, 3) for p in ("started", "done")
            ]
            assert [o.id for o in ops] == sorted({o.id for o in ops}), "journal ids increase"
            assert ops[1].detail == {"evidence": [{"gate": "smoke", "ok": True}]}
            assert [o.step for o in other.operations(EP, limit=2)] == ["deploy_release"] * 2
            other.mark_pruned(EP, f"{1:064x}")
            assert store.release(EP, "r0001").artifact_pruned  # type: ignore[union-attr]
            assert ("r0001", f"{1:064x}") not in store.prunable_artifacts(EP, keep=1)
            assert f"{3:064x}" in store.referenced_digests(keep=1)
            store.mark_destroyed(EP)
            gone = other.endpoint(EP)
            assert gone is not None and gone.destroyed_at and not any(r.running for r in other.releases(EP))
        finally:
            other.close()

    @pytest.mark.timeout(60)
    def test_transaction_is_all_or_nothing(self, store: LedgerStore, ledger_state: str) -> None:
        _fill(store, 1)
        with pytest.raises(RuntimeError), store.transaction():
            store.set_release(EP, "r0001", status="failed")
            store.journal(EP, "r0001", "rollback", "done")
            raise RuntimeError("killed in between")
        other = open_store(ledger_state)
        try:
            assert other.release(EP, "r0001").status == "live"  # type: ignore[union-attr]
            assert "rollback" not in [o.step for o in other.operations(EP)]
        finally:
            other.close()

    # ---- the lease -------------------------------------------------------------------------------

    @pytest.mark.timeout(60)
    def test_lease_is_exclusive_and_renewed(
        self, store: LedgerStore, ledger_state: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DEPLOYER_LEASE_S", "0.9")
        other = open_store(ledger_state)
        try:
            with store.lock(EP, "deploy") as token:
                assert token
                for _ in range(3):  # three lease lengths: the holder's renewals keep it
                    with pytest.raises(LockedError) as e, other.lock(EP, "guard"):
                        pass
                    assert f"pid {os.getpid()} (deploy)" in e.value.holder
                    time.sleep(0.9)
                holder = other.lock_holder(EP)
                assert holder is not None and "(deploy)" in holder
                store.journal(EP, None, "deploy", "done")  # the holder still writes
            assert other.lock_holder(EP) is None
            with other.lock(EP, "guard"):  # released: the next one takes it at once
                pass
        finally:
            other.close()

    @pytest.mark.timeout(60)
    def test_dead_holder_elsewhere_blocks_until_expiry_then_takeover_is_journaled(
        self, store: LedgerStore, ledger_state: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DEPLOYER_LEASE_S", "1.5")
        holder = _hold_and_die(ledger_state, machine="another-machine")
        with pytest.raises(LockedError) as e, store.lock(EP, "guard"):
            pass  # its pid is dead here, but it ran on another machine: only expiry frees it
        assert f"pid {holder} (deploy)" in e.value.holder
        lease = store.lease(EP)
        assert lease is not None and lease.machine == "another-machine"
        deadline = time.time() + 10
        while True:
            try:
                with store.lock(EP, "guard"):
                    break
            except LockedError:
                assert time.time() < deadline, "an expired lease must be taken over"
                time.sleep(0.1)
        assert time.time() >= lease.expires_at
        taken = [o for o in store.operations(EP) if o.step == "lock" and o.phase == "taken_over"]
        assert len(taken) == 1 and taken[0].detail is not None
        assert taken[0].detail["old"]["pid"] == holder and taken[0].detail["new"]["pid"] == os.getpid()
        assert taken[0].detail["new"]["operation"] == "guard"

    @pytest.mark.timeout(60)
    def test_dead_holder_on_this_machine_is_taken_over_but_a_live_pid_is_not(
        self, store: LedgerStore, ledger_state: str
    ) -> None:
        dead = _hold_and_die(ledger_state, machine=None)
        with store.lock(EP, "deploy"):  # same machine, pid gone: no need to wait out the lease
            pass
        taken = [o for o in store.operations(EP) if o.phase == "taken_over"]
        assert taken and taken[-1].detail["old"]["pid"] == dead  # type: ignore[index]

    @pytest.mark.timeout(60)
    def test_force_unlock_is_audited(
        self, store: LedgerStore, ledger_state: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DEPLOYER_LEASE_S", "0.6")
        other = open_store(ledger_state)
        try:
            with store.lock(EP, "deploy"):
                old = other.force_unlock(EP)
                assert old is not None and old.pid == os.getpid() and other.lock_holder(EP) is None
                # the first holder lost it: it may not write over the new holder's work
                with other.lock(EP, "rollback"), pytest.raises(LockedError):
                    _wait_lost(store)
            rows = [o for o in other.operations(EP) if o.phase == "force_unlocked"]
            assert len(rows) == 1 and rows[0].actor == other.actor
            assert rows[0].detail["old"]["operation"] == "deploy"  # type: ignore[index]
        finally:
            other.close()

    # ---- migration -------------------------------------------------------------------------------

    @pytest.mark.timeout(60)
    def test_push_then_pull_round_trips_the_history(self, store: LedgerStore, tmp_path: Any) -> None:
        from deployer.ledger import Ledger

        local = Ledger(tmp_path / "laptop.db")
        back = Ledger(tmp_path / "other-laptop.db")
        try:
            _fill(local, 3)
            local.journal(EP, None, "lock", "taken_over", detail={"stale_holder": "x", "n": [1, 2.5, None]})
            before = transfer.export(local, EP)
            transfer.copy(local, store, EP)
            assert transfer.export(store, EP) == before
            with pytest.raises(ConflictError):
                transfer.copy(local, store, EP)
            transfer.copy(store, back, EP)
            assert _json(transfer.export(back, EP)) == _json(before)
        finally:
            local.close()
            back.close()

    # ---- the race --------------------------------------------------------------------------------

    @pytest.mark.slow
    @pytest.mark.timeout(180)
    def test_eight_processes_race_to_append_and_lock(self, store: LedgerStore, ledger_state: str) -> None:
        store.upsert_endpoint(EP, "memory", {"provider": "memory"})
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(RACE_WORKERS)
        results: Any = ctx.Queue()
        procs = [
            ctx.Process(target=race_worker, args=(ledger_state, EP, i, RACE_ROUNDS, barrier, results), daemon=True)
            for i in range(RACE_WORKERS)
        ]
        for p in procs:
            p.start()
        try:
            got = [results.get(timeout=150) for _ in procs]
        except queue.Empty:
            pytest.fail("a race worker hung")
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    os.kill(p.pid or 0, signal.SIGKILL)
        errors = [g for g in got if "error" in g]
        assert not errors, errors
        by_worker = {g["worker"]: g for g in got}
        pids = {g["worker"]: g["pid"] for g in got}
        for rnd in range(RACE_ROUNDS):
            winners = [w for w in by_worker if by_worker[w]["won"][rnd] is None]
            assert len(winners) == 1, f"round {rnd}: {len(winners)} lock holders"
            for w, g in by_worker.items():
                if w != winners[0]:
                    assert f"pid {pids[winners[0]]} (race-{winners[0]})" in g["won"][rnd], g["won"][rnd]
        appended = [o for o in store.operations(EP, limit=10**9) if o.step == "race"]
        seen = [(o.detail or {}).get("worker") for o in appended], [(o.detail or {}).get("round") for o in appended]
        pairs = sorted(zip(*seen, strict=True))
        assert pairs == sorted((w, r) for w in range(RACE_WORKERS) for r in range(RACE_ROUNDS)), "lost or doubled"
        ids = [o.id for o in appended]
        assert len(set(ids)) == len(ids) and ids == sorted(ids)


_HOLD = """
import os, sys
from deployer.ledgers.select import open_store
store = open_store(sys.argv[1])
cm = store.lock("churn", "deploy")
cm.__enter__()
store.journal("churn", None, "deploy_release", "started")
print(os.getpid(), flush=True)
os.kill(os.getpid(), 9)
"""


def _hold_and_die(state: str, machine: str | None) -> int:
    """Take the lock in a subprocess that is then SIGKILLed holding it; return its pid."""
    env = {**os.environ}
    if machine:
        env["DEPLOYER_MACHINE_ID"] = machine
    out = subprocess.run([sys.executable, "-c", _HOLD, state], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, out.stderr
    return int(out.stdout.split()[0])


def _wait_lost(store: LedgerStore) -> None:
    """Write as the former holder until its renewer notices the lease is gone (LockedError)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        store.journal(EP, None, "deploy", "progress")
        time.sleep(0.05)


def _json(data: Any) -> str:
    import json

    return json.dumps(data, sort_keys=True, indent=2)
