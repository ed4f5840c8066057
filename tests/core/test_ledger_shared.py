"""One shared ``file://`` ledger used from several places: two machines (two ``DEPLOYER_HOME``s) deploy
and guard the same endpoint; a holder SIGKILLed mid-rollout on another machine is waited out until its
lease expires, then the rollout is resumed and the journal shows both holders."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from gate_fakes import TimedProvider, World, release, spec

import deployer
from deployer import api, registry
from deployer.engine import Engine
from deployer.errors import LockedError
from deployer.ledgers.select import open_store
from deployer.testing.conformance import make_model


@pytest.mark.timeout(60)
def test_deploy_from_one_home_guard_from_another_rolls_back_and_the_first_sees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = f"file://{tmp_path / 'shared-ledger'}"
    monkeypatch.setattr(registry, "_entry_points", lambda: {"timed": "gate_fakes:TimedProvider"})
    world = World(rps=10)
    # machine A deploys r0001 then r0002
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "laptop"))
    monkeypatch.setenv("DEPLOYER_ACTOR", "ana@laptop")
    engine = Engine(TimedProvider(world=world), open_store(state), clock=world.clock)
    engine.deploy(spec({"type": "all-at-once"}, gates=[]), release("r0000", "fp-old"), None)
    engine.deploy(spec({"type": "all-at-once"}, gates=[]), release("r0000", "fp-new"), None)
    engine.ledger.close()
    assert not (tmp_path / "laptop" / "ledger.db").exists(), "the shared ledger is the only ledger"
    world.error_rate["r0002"] = 0.5
    world.clock.sleep(600)
    # machine B never deployed: it finds the endpoint, its live release and rollback target in the ledger
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "ci-runner"))
    monkeypatch.setenv("DEPLOYER_ACTOR", "ci@runner")
    rep = deployer.guard("churn", max_error_rate=0.05, window="2m", state=state, clock=world.clock)
    assert (rep.outcome, rep.release, rep.rolled_back_to) == ("rolled_back", "r0002", "r0001")
    assert world.traffic().weights == {"r0001": 100}
    # back on machine A: history shows what the guard did, and who
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "laptop"))
    rows = {r.id: r for r in api.history("churn", state=state)}
    assert (rows["r0001"].status, rows["r0002"].status, rows["r0002"].outcome) == ("live", "rolled_back", "failed")
    assert rows["r0002"].evidence and rows["r0001"].actor == "ana@laptop"
    trail = api.export_history("churn", state=state)["journal"]
    assert any(o["step"] == "rollback" and o["actor"] == "ci@runner" for o in trail)


KILLER = r"""
import os, signal, sys
import deployer
def hook(event):
    if event.kind == "step.started" and getattr(event, "step", "") == "bake":
        print(os.getpid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
deployer.apply(sys.argv[1], on_event=hook)
"""


def _spec_file(tmp_path: Path, state: str, seed: int) -> Path:
    data: dict[str, Any] = {
        "name": "lease-churn",
        "target": {"provider": "local"},
        "model": {"path": str(make_model(tmp_path / "models", seed=seed)), "flavor": "sklearn"},
        "strategy": {"type": "canary", "steps": [{"weight": 20, "bake_s": 1}, {"weight": 100, "bake_s": 0}]},
        "state": {"type": "file", "uri": state},
    }
    path = tmp_path / f"v{seed}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_holder_killed_mid_rollout_is_waited_out_then_the_rollout_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = f"file://{tmp_path / 'shared-ledger'}"
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEPLOYER_LEASE_S", "4")
    v1, v2 = _spec_file(tmp_path, state, 1), _spec_file(tmp_path, state, 2)
    try:
        deployer.apply(v1)
        env = {**os.environ, "DEPLOYER_MACHINE_ID": "build-agent-7", "DEPLOYER_ACTOR": "ci@build-agent-7"}
        killed = subprocess.run(
            [sys.executable, "-c", KILLER, str(v2)], env=env, capture_output=True, text=True, timeout=120
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        dead_pid = int(killed.stdout.split()[0])
        # its pid is dead here, but it held the lease on another machine: refused until the lease runs out
        with pytest.raises(LockedError) as e:
            deployer.apply(v2)
        assert f"pid {dead_pid} (deploy)" in e.value.holder
        status = api.status("lease-churn", state=state)
        assert status.lease is not None and status.lease["pid"] == dead_pid
        expires = status.lease["expires_at"]
        while time.time() < expires:
            time.sleep(0.2)
        out = deployer.apply(v2)
        assert out.last is not None and (out.last.outcome, out.last.release) == ("resumed", "r0002")
        trail = api.export_history("lease-churn", state=state)["journal"]
        started = [o for o in trail if o["actor"] == "ci@build-agent-7" and o["phase"] == "started"]
        taken = [o for o in trail if o["step"] == "lock" and o["phase"] == "taken_over"]
        assert started, "the killed holder's journaled steps stay"
        assert len(taken) == 1 and taken[0]["detail"]["old"]["pid"] == dead_pid
        assert taken[0]["detail"]["new"]["pid"] == os.getpid() and taken[0]["at"] >= expires
        assert api.status("lease-churn", state=state).live == "r0002"
    finally:
        with contextlib.suppress(Exception):
            deployer.destroy("lease-churn", state=state)
