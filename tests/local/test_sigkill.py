"""Crash safety with real processes: SIGKILL the deploying process, deploy again, converge.

The deploy runs in a child process (``deployer.apply`` with an ``on_event`` hook that sends itself
SIGKILL at a chosen journaled step), so nothing in it gets to clean up: no ``finally``, no lock
release, no rollback. Running ``deploy`` again in this process must converge, and the only
processes left under the test's ``DEPLOYER_HOME`` are one supervisor and its workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import deployer
from deployer.errors import GateFailedError, LockedError
from deployer.ledger import Ledger
from deployer.local.provider import LocalProvider
from deployer.local.state import Paths, read_json

from .load import Load, failures_by_release
from .models import (  # noqa: F401 - e2e_home_fixture is a fixture
    canary,
    deployer_processes,
    e2e_home_fixture,
    local_provider,
    model_spec,
    observed_weights,
    parent_of,
    spec_dict,
    wait_no_processes,
    write_spec,
)

NAME = "churn"

KILLER = r"""
import os, signal, sys
import deployer
spec, mode, arg = sys.argv[1], sys.argv[2], sys.argv[3]
seen = {"n": 0}
def hook(event):
    if event.kind not in ("step.started", "step.done"):
        return
    seen["n"] += 1
    if (mode == "nth" and seen["n"] == int(arg)) or (
            mode == "step" and event.kind == "step.started" and event.step == arg):
        os.kill(os.getpid(), signal.SIGKILL)
deployer.apply(spec, on_event=hook)
"""


def deploy_and_kill(spec: Path, mode: str, arg: str | int) -> int:
    """Run ``deployer.apply(spec)`` in a child that SIGKILLs itself at the chosen step; its exit code."""
    proc = subprocess.run([sys.executable, "-c", KILLER, str(spec), mode, str(arg)],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


def provider(home: Path) -> LocalProvider:
    return local_provider(home)


def weights(home: Path) -> dict[str, int]:
    return observed_weights(home, NAME)


def ledger_state(home: Path) -> tuple[str | None, dict[str, str]]:
    ledger = Ledger(home / "ledger.db")
    try:
        live = ledger.live_release(NAME)
        return (live.id if live else None), {r.id: r.status for r in ledger.releases(NAME)}
    finally:
        ledger.close()


def assert_one_supervisor_and_its_workers(home: Path, timeout: float = 10.0) -> None:
    """Exactly one supervisor for the endpoint plus the worker count it was asked for; nothing else."""
    paths = Paths(home / "local" / "endpoints" / NAME)
    deadline = time.monotonic() + timeout
    while True:
        procs = deployer_processes(home)
        sups = [p for p in procs if "deployer.local.supervisor" in procs[p] and parent_of(p) not in procs]
        state = read_json(paths.state) or {}
        want = int(state.get("desired_workers", 1))
        workers = [p for p in procs if parent_of(p) in sups]
        ok = len(sups) == 1 and len(workers) == want and len(procs) == 1 + want
        ok = ok and sorted(workers) == sorted(int(w) for w in state.get("workers", []))
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"want 1 supervisor + {want} workers, found {procs} (state {state})")
        time.sleep(0.1)


@pytest.mark.timeout(240)
def test_sigkill_after_every_journaled_step_then_deploy_again_converges(e2e_home: Path) -> None:
    tmp = e2e_home.parent
    v1 = spec_dict(NAME, model_spec("healthy", tmp, "v1"))
    v2 = spec_dict(NAME, model_spec("healthy", tmp, "v2"), strategy=canary(50, 100, bake_s=0))
    v2_file = write_spec(tmp / "v2.yaml", v2)
    deployer.apply(v1_file := write_spec(tmp / "v1.yaml", v1))
    assert_one_supervisor_and_its_workers(e2e_home)
    url = deployer.status(NAME).url
    assert url

    k = 1
    with Load(url, tmp / "load.json", seconds=200, concurrency=2, rps=40) as load:
        while True:
            code = deploy_and_kill(v2_file, "nth", k)
            if code == 0:
                break
            # the killed process left its lock and maybe a half-done rollout: deploy again converges
            out = deployer.apply(v2_file)
            assert out.last is not None and out.last.outcome in ("deployed", "resumed", "unchanged"), (k, out.last)
            rid = out.last.release
            assert weights(e2e_home) == {rid: 100}, k
            live, statuses = ledger_state(e2e_home)
            assert live == rid, (k, statuses)
            assert "deploying" not in statuses.values(), (k, statuses)
            again = deployer.apply(v2_file).last
            assert again is not None and again.outcome == "unchanged"
            assert_one_supervisor_and_its_workers(e2e_home)
            # back to v1 for the next round
            deployer.rollback(NAME, to="r0001")
            assert weights(e2e_home) == {"r0001": 100}
            k += 1
        data = load.stop()

    assert k > 8, f"the rollout should have had several journaled steps, it completed at kill point {k}"
    live, statuses = ledger_state(e2e_home)
    assert weights(e2e_home) == {live: 100} and "deploying" not in statuses.values(), statuses
    assert_one_supervisor_and_its_workers(e2e_home)
    # no client request failed through all the kills and recoveries
    assert data["failed"] == 0 and data["requests"] > 100, {k: v for k, v in data.items() if k != "timeline"}
    assert v1_file.exists()

    deployer.destroy(NAME)
    assert wait_no_processes(e2e_home) == {}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["healthy", "flaky"])
def test_sigkill_in_the_middle_of_a_canary_bake(e2e_home: Path, kind: str) -> None:
    tmp = e2e_home.parent
    deployer.apply(write_spec(tmp / "v1.yaml", spec_dict(NAME, model_spec("healthy", tmp, "v1"))))
    url = deployer.status(NAME).url
    assert url
    gates = [{"type": "metric", "name": "errors", "metric": "error_rate", "max": 0.01, "min_samples": 5}]
    v2_file = write_spec(tmp / "v2.yaml", spec_dict(NAME, model_spec(kind, tmp, "v2"),
                                                    strategy=canary(20, 100, bake_s=1.5), gates=gates))
    with Load(url, tmp / "load.json", seconds=60, concurrency=4, rps=150) as load:
        load.wait_for(20)
        assert deploy_and_kill(v2_file, "step", "bake") == -signal.SIGKILL
        # killed while baking at 20%: the canary still takes its share, the ledger says deploying
        assert weights(e2e_home) == {"r0001": 80, "r0002": 20}
        assert ledger_state(e2e_home)[1] == {"r0001": "live", "r0002": "deploying"}
        time.sleep(0.5)
        if kind == "healthy":
            out = deployer.apply(v2_file)
            assert out.last is not None and (out.last.outcome, out.last.release) == ("resumed", "r0002")
            expect_live, expect_statuses = "r0002", {"r0001": "superseded", "r0002": "live"}
        else:
            with pytest.raises(GateFailedError):
                deployer.apply(v2_file)
            expect_live, expect_statuses = "r0001", {"r0001": "live", "r0002": "failed"}
        time.sleep(0.5)
        data = load.stop()

    assert weights(e2e_home) == {expect_live: 100}
    assert ledger_state(e2e_home) == (expect_live, expect_statuses)
    assert_one_supervisor_and_its_workers(e2e_home)
    failures = failures_by_release(data)
    assert failures.get("r0001", 0) == 0 and data["transport_errors"] == {}, data["releases"]
    if kind == "healthy":
        assert data["failed"] == 0
    else:
        assert failures["r0002"] > 0
    # nothing is left on a failed release: the load's last requests all went to the live one
    assert data["releases"][expect_live]["200"] > 0


@pytest.mark.timeout(90)
def test_two_concurrent_deploys_one_proceeds_the_other_is_locked_out(e2e_home: Path) -> None:
    tmp = e2e_home.parent
    deployer.apply(write_spec(tmp / "v1.yaml", spec_dict(NAME, model_spec("healthy", tmp, "v1"))))
    # a rollout that holds the lock for a few seconds (a bake without gates is a plain wait)
    specs = [
        write_spec(tmp / f"v{i}.yaml", spec_dict(NAME, model_spec("healthy", tmp, f"v{i}"),
                                                 strategy=canary(50, 100, bake_s=1.5)))
        for i in (2, 3)
    ]
    cmd = [sys.executable, "-m", "deployer", "deploy", "--json"]
    procs = [subprocess.Popen([*cmd, str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=os.environ.copy()) for s in specs]

    # while one of them holds the lock, an in-process deploy is refused too, naming the holder
    ledger = Ledger(e2e_home / "ledger.db")
    try:
        deadline = time.monotonic() + 30
        while (holder := ledger.lock_holder(NAME)) is None:
            assert time.monotonic() < deadline, "neither deploy took the lock"
            time.sleep(0.02)
    finally:
        ledger.close()
    with pytest.raises(LockedError) as err:
        deployer.apply(specs[0])
    assert err.value.holder == holder and "(deploy)" in holder

    results: list[tuple[int, list[dict[str, Any]], str]] = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=60)
        results.append((p.returncode, [json.loads(x) for x in stdout.splitlines() if x.startswith("{")], stderr))
    codes = sorted(r[0] for r in results)
    assert codes == [0, 6], [(r[0], r[2]) for r in results]
    winner = next(i for i, r in enumerate(results) if r[0] == 0)
    loser = results[1 - winner]
    error = [x for x in loser[1] if x.get("kind") == "error"]
    assert error and error[0]["error"] == "LockedError"
    assert f"pid {procs[winner].pid} (deploy)" in error[0]["message"] and "locked by" in loser[2]
    assert f"pid {procs[winner].pid}" in holder
    # the winner's release is live; the loser changed nothing
    done = [x for x in results[winner][1] if x.get("kind") == "result"][0]
    assert (done["outcome"], done["release"]) == ("deployed", "r0002")
    assert weights(e2e_home) == {"r0002": 100}
    assert ledger_state(e2e_home)[1] == {"r0001": "superseded", "r0002": "live"}
