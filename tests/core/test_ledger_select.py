"""Choosing a ledger (spec, --state, DEPLOYER_STATE), the CLI's ledger commands, and the store calls a
journaled step costs on the shared ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from deployer.errors import ProviderNotFoundError, SpecError
from deployer.ledger import Ledger
from deployer.ledgers import select
from deployer.ledgers.files import FileObjects
from deployer.ledgers.objects import ObjectLedger
from deployer.records import Traffic
from deployer.spec import StateBackend
from deployer.testing.ledgers import EP, _fill, _release

pytestmark = pytest.mark.timeout(60)


class CountingObjects(FileObjects):
    """``file://`` objects that count each call by name."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.counts: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def read(self, key: str) -> Any:
        self._count("read")
        return super().read(key)

    def create(self, key: str, data: bytes) -> Any:
        self._count("create")
        return super().create(key, data)

    def replace(self, key: str, data: bytes, version: str) -> Any:
        self._count("replace")
        return super().replace(key, data, version)


def test_a_journaled_step_is_one_conditional_write(tmp_path: Path) -> None:
    objects = CountingObjects(f"file://{tmp_path}")
    store = ObjectLedger(objects)
    _fill(store, 2)
    objects.counts.clear()
    store.journal(EP, "r0002", "route", "started", operation={"kind": "route"})
    assert objects.counts == {"read": 1, "replace": 1}
    objects.counts.clear()
    with store.transaction():  # a promotion: four changes, one write
        store.set_release(EP, "r0002", status="superseded")
        store.set_release(EP, "r0001", status="live")
        store.journal(EP, "r0001", "rollback", "done")
        store.set_traffic(EP, Traffic.all_to("r0001"))
    assert objects.counts == {"read": 1, "replace": 1}
    assert store.live_release(EP).id == "r0001"  # type: ignore[union-attr]


def test_a_write_that_loses_the_race_is_reapplied_on_the_new_head(tmp_path: Path) -> None:
    first, second = ObjectLedger(FileObjects(str(tmp_path))), ObjectLedger(FileObjects(str(tmp_path)))
    _fill(first, 1)
    real = first.objects.read
    raced = []

    def read_then_lose(key: str) -> Any:  # another writer appends between our read and our write
        got = real(key)
        if not raced and key.endswith("head.json"):
            raced.append(second.journal(EP, None, "guard:errors", "pass"))
        return got

    first.objects.read = read_then_lose  # type: ignore[method-assign]
    mine = first.journal(EP, None, "deploy", "done")
    steps = [(o.id, o.step) for o in second.operations(EP)][-2:]
    assert steps == [(raced[0], "guard:errors"), (mine, "deploy")] and mine == raced[0] + 1


def test_journal_compaction_keeps_every_entry_and_reads_stay_one_head(tmp_path: Path) -> None:
    objects = CountingObjects(str(tmp_path))
    store = ObjectLedger(objects)
    _fill(store, 1)
    for i in range(450):
        store.journal(EP, None, "step", "done", detail={"i": i})
    chunks = objects.list(f"endpoints/{EP}/journal/")
    assert chunks and all(k.endswith(".json") for k in chunks)
    fresh = ObjectLedger(CountingObjects(str(tmp_path)))
    assert [o.detail["i"] for o in fresh.operations(EP, limit=10**6) if o.step == "step"] == list(range(450))
    ids = [o.id for o in fresh.operations(EP, limit=10**6)]
    assert ids == list(range(1, len(ids) + 1))
    objects.counts.clear()
    store.releases(EP), store.live_release(EP)
    assert objects.counts == {"read": 2}


def test_state_backends_are_validated_offline() -> None:
    assert StateBackend.model_validate({"type": "s3", "uri": "s3://b/p"}).where() == "s3://b/p"
    assert StateBackend.named("gs://b/p").type == "gcs" and StateBackend.named("a/l.db").path == "a/l.db"
    for bad, words in (
        ({"type": "s3"}, "needs state.uri"),
        ({"type": "gcs", "uri": "s3://b/p"}, "must start with gs://"),
        ({"type": "sqlite", "uri": "s3://b/p"}, "set state.type"),
        ({"type": "azblob", "uri": "az://a/c/p", "path": "x.db"}, "state.path is for type sqlite"),
    ):
        with pytest.raises(ValueError, match=words):
            StateBackend.model_validate(bad)


def test_state_selection_and_missing_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEPLOYER_STATE", raising=False)
    assert isinstance(select.open_store(), Ledger)
    monkeypatch.setenv("DEPLOYER_STATE", f"file://{tmp_path}/shared")
    assert isinstance(select.open_store(), ObjectLedger)
    assert isinstance(select.open_store(str(tmp_path / "explicit.db")), Ledger)  # --state wins
    monkeypatch.setattr(select, "_entry_points", dict)
    with pytest.raises(ProviderNotFoundError) as e:
        select.open_store("s3://bucket/ledger")
    assert e.value.hint == "pip install mldeployer-aws"
    with pytest.raises(SpecError, match="unsupported ledger URI scheme 'ftp'"):
        select.open_store("ftp://host/x")


def _cli(*args: str, code: int = 0) -> str:
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == code, out.output
    return out.output


def test_push_then_pull_round_trips_history_json_byte_for_byte(tmp_path: Path) -> None:
    laptop, shared, other = str(tmp_path / "laptop.db"), f"file://{tmp_path}/shared", str(tmp_path / "other.db")
    ledger = Ledger(Path(laptop))
    _fill(ledger, 4)
    ledger.set_release(EP, "r0002", evidence=[{"gate": "errors", "value": 0.25, "samples": [1, 2]}], reason="x")
    ledger.mark_pruned(EP, f"{1:064x}")
    ledger.close()
    before = _cli("history", EP, "--json", "--state", laptop)
    assert json.loads(before)["journal"] and json.loads(before)["row"]["name"] == EP
    assert "4 releases" in _cli("ledger", "push", EP, "--to", shared, "--state", laptop)
    assert _cli("history", EP, "--json", "--state", shared) == before
    _cli("ledger", "pull", EP, "--from", shared, "--state", other)
    assert _cli("history", EP, "--json", "--state", other) == before
    again = CliRunner().invoke(cli, ["ledger", "push", EP, "--to", shared, "--state", laptop])
    assert again.exit_code != 0 and "already has a history" in again.output


def test_audit_exports_jsonl_since_a_time(tmp_path: Path) -> None:
    state = f"file://{tmp_path}/shared"
    store = select.open_store(state)
    _fill(store, 2)
    lines = [json.loads(line) for line in _cli("audit", "--state", state).splitlines()]
    assert len(lines) == 4 and {x["endpoint"] for x in lines} == {EP} and all(x["actor"] for x in lines)
    assert _cli("audit", "--state", state, "--since", "2999-01-01") == ""
    assert len(_cli("audit", "--state", state, "--since", "1h", "--endpoint", EP).splitlines()) == 4


def test_unlock_needs_force_and_leaves_an_audit_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYER_ACTOR", "ops@console")
    state = f"file://{tmp_path}/shared"
    store = select.open_store(state)
    store.add_release(_release("r0001"), spec_hash="h")
    with store.lock(EP, "deploy"):
        refused = CliRunner().invoke(cli, ["unlock", EP, "--state", state])
        assert refused.exit_code == 6 and "--force" in refused.output
        assert "unlocked (was ops@console pid" in _cli("unlock", EP, "--force", "--state", state)
        assert store.lock_holder(EP) is None
    rows = [o for o in store.operations(EP) if o.phase == "force_unlocked"]
    assert len(rows) == 1 and rows[0].actor == "ops@console" and rows[0].detail["old"]["operation"] == "deploy"  # type: ignore[index]
    assert "not locked" in _cli("unlock", EP, "--force", "--state", state)


def test_status_shows_a_live_lease_and_calls_an_expired_one_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from deployer.ledgers.rows import Lease

    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    state = f"file://{tmp_path}/shared"
    store = select.open_store(state)
    store.upsert_endpoint(EP, "local", {"provider": "local"})
    store.mark_destroyed(EP)  # status asks the provider nothing about a destroyed endpoint
    objects = FileObjects(state)
    ghost = Lease("t", "ci@agent-7", "agent-7", "agent-7/boot/ns", 4242, "1", "deploy", 0.0, time.time() + 60)
    version = objects.create(f"endpoints/{EP}/lease.json", ghost.dump())
    assert version
    out = _cli("status", EP, "--state", state, code=16)  # 16: absent (destroyed)
    assert "locked by ci@agent-7 pid 4242 (deploy), lease until" in out and "stale" not in out
    expired = Lease(**{**ghost.to_dict(), "expires_at": 1_700_000_000.0})  # type: ignore[arg-type]
    assert objects.replace(f"endpoints/{EP}/lease.json", expired.dump(), version)
    out = _cli("status", EP, "--state", state, code=16)
    assert "lock: stale, expired at 2023-11-14 22:13:20Z (held by ci@agent-7 pid 4242)" in out
    assert "locked by" not in out
    data = json.loads(_cli("status", EP, "--state", state, "--json", code=16).splitlines()[-1])
    assert data["lock_holder"] is None and data["lease"]["live"] is False and data["lease"]["pid"] == 4242


def test_a_long_transaction_that_loses_its_race_leaves_no_wrong_journal_chunk(tmp_path: Path) -> None:
    first, second = ObjectLedger(FileObjects(str(tmp_path))), ObjectLedger(FileObjects(str(tmp_path)))
    _fill(first, 1)
    real = first.objects.replace
    raced: list[int] = []

    def lose_once(key: str, data: bytes, version: str) -> Any:  # another writer commits first
        if not raced and key.endswith("head.json"):
            raced.append(second.journal(EP, None, "guard:errors", "pass"))
        return real(key, data, version)

    first.objects.replace = lose_once  # type: ignore[method-assign]
    with first.transaction():
        for i in range(120):
            first.journal(EP, None, "step", "done", detail={"i": i})
    for _ in range(3):  # later writes compact the long tail into chunks
        second.journal(EP, None, "later", "done")
    ops = ObjectLedger(FileObjects(str(tmp_path))).operations(EP, limit=10**6)
    assert [o.id for o in ops] == list(range(1, len(ops) + 1))
    assert [o.detail["i"] for o in ops if o.step == "step"] == list(range(120))  # type: ignore[index]
    assert [o.step for o in ops].count("guard:errors") == 1 and FileObjects(str(tmp_path)).list(
        f"endpoints/{EP}/journal/"
    )
