"""Two machines, one S3 ledger: deploy from one DEPLOYER_HOME, guard from another rolls the failing release
back, and the first machine's history shows it. Compute is tests/core/gate_fakes.py's TimedProvider (its
metrics arrive as a cloud publishes them); the ledger is S3LedgerObjects on moto over HTTP."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import boto3
import pytest

import deployer
from deployer import api, registry
from deployer.engine import Engine
from deployer.ledgers.select import open_store

from .helpers import REGION
from .test_ledger_objects import LEDGER_BUCKET, atomic_conditional_writes  # noqa: F401 - a fixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from gate_fakes import TimedProvider, World, release, spec  # noqa: E402


@pytest.mark.timeout(90)
def test_guard_from_a_second_home_rolls_back_and_the_first_sees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_server: str, atomic_conditional_writes: None  # noqa: F811
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    if LEDGER_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=LEDGER_BUCKET)
    state = f"s3://{LEDGER_BUCKET}/{uuid.uuid4().hex}"
    monkeypatch.setattr(registry, "_entry_points", lambda: {"timed": "gate_fakes:TimedProvider"})
    world = World(rps=10)
    # machine A deploys r0001 then r0002
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "laptop"))
    monkeypatch.setenv("DEPLOYER_ACTOR", "ana@laptop")
    engine = Engine(TimedProvider(world=world), open_store(state), clock=world.clock)
    engine.deploy(spec({"type": "all-at-once"}, gates=[]), release("r0000", "fp-old"), None)
    engine.deploy(spec({"type": "all-at-once"}, gates=[]), release("r0000", "fp-new"), None)
    engine.ledger.close()
    assert not (tmp_path / "laptop" / "ledger.db").exists(), "the S3 ledger is the only ledger"
    world.error_rate["r0002"] = 0.5
    world.clock.sleep(600)
    # machine B never deployed: it reads the live release and its rollback target from S3
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "ci-runner"))
    monkeypatch.setenv("DEPLOYER_ACTOR", "ci@runner")
    rep = deployer.guard("churn", max_error_rate=0.05, window="2m", state=state, clock=world.clock)
    assert (rep.outcome, rep.release, rep.rolled_back_to) == ("rolled_back", "r0002", "r0001")
    assert world.traffic().weights == {"r0001": 100}
    # back on machine A: the history in S3 shows what the guard did, and who
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "laptop"))
    rows = {r.id: r for r in api.history("churn", state=state)}
    assert (rows["r0001"].status, rows["r0002"].status, rows["r0002"].outcome) == ("live", "rolled_back", "failed")
    assert rows["r0002"].evidence and rows["r0001"].actor == "ana@laptop"
    trail = api.export_history("churn", state=state)["journal"]
    assert any(o["step"] == "rollback" and o["actor"] == "ci@runner" for o in trail)
    keys = s3.list_objects_v2(Bucket=LEDGER_BUCKET, Prefix=state.split("/", 3)[3] + "/")
    assert keys.get("KeyCount", 0) > 0, "the ledger's objects are in the bucket"
