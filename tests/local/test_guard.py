"""The guard end to end: a live release that starts failing under real load is rolled back.

``deployer.guard(...)`` and ``deployer guard`` (run as a child process, as cron would) judge the
live release over a window from the local provider's per-release metrics. Exit codes: healthy 0,
rolled back 10, nothing to roll back to 11, inconclusive 12, locked 6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import deployer
from deployer.errors import SpecError
from deployer.ledger import Ledger
from deployer.local.provider import LocalProvider
from deployer.protocols import ProviderContext
from deployer.spec import Spec, Target

from .load import Load, failures_by_release
from .models import e2e_home_fixture, model_spec, spec_dict  # noqa: F401 - a fixture

WINDOW = "2s"


def spec(home: Path, name: str, kind: str, tag: str) -> Spec:
    return Spec.model_validate(spec_dict(name, model_spec(kind, home.parent, tag)))


def weights(home: Path, name: str) -> dict[str, int]:
    obs = LocalProvider(ProviderContext(target=Target(), options=LocalProvider.Options(), home=home)).observe(name)
    assert obs is not None
    return {k: v for k, v in obs.traffic.weights.items() if v}


def cli_guard(name: str, *extra: str) -> tuple[int, dict[str, Any], float]:
    """``deployer guard NAME --json ...`` in a child process: (exit code, result line, seconds)."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", "guard", name, "--max-error-rate", "0.05", "--max-p99-ms", "500",
         "--window", WINDOW, "--min-samples", "10", "--json", *extra],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )
    took = time.monotonic() - start
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    results = [x for x in lines if x.get("kind") == "result"]
    assert results, (proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, results[-1], took


def api_guard(name: str) -> Any:
    return deployer.guard(name, max_error_rate=0.05, max_p99_ms=500, window=WINDOW, min_samples=10)


@contextmanager
def lock_held(home: Path, name: str) -> Iterator[None]:
    """Hold the endpoint lock from another thread, the way a running deploy would."""
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        ledger = Ledger(home / "ledger.db")
        try:
            with ledger.lock(name, "deploy by someone else"):
                holding.set()
                done.wait(30)
        finally:
            ledger.close()

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(10)
    try:
        yield
    finally:
        done.set()
        t.join()


def journal(home: Path, name: str) -> list[Any]:
    ledger = Ledger(home / "ledger.db")
    try:
        return ledger.operations(name)
    finally:
        ledger.close()


@pytest.mark.timeout(120)
def test_guard_idle_healthy_failing_and_locked(e2e_home: Path) -> None:
    name = "fraud"
    ep = deployer.apply(spec(e2e_home, name, "healthy", "v1"))
    url = ep.url
    assert url

    # idle: nobody called it, so it cannot be judged healthy
    rep = api_guard(name)
    assert (rep.outcome, rep.exit_code, rep.release) == ("inconclusive", 12, "r0001")
    assert "requests" in rep.reason and {e["outcome"] for e in rep.evidence} == {"inconclusive"}
    code, res, _ = cli_guard(name)
    assert (code, res["outcome"]) == (12, "inconclusive")

    with Load(url, e2e_home.parent / "load.json", seconds=60, concurrency=4, rps=150, timeline=True) as load:
        # healthy under load
        time.sleep(1.5)
        code, res, _ = cli_guard(name)
        assert (code, res["outcome"], res["release"]) == (0, "healthy", "r0001"), res

        # v2 starts failing 20% of its requests once it is live (no gates stopped it)
        deployer.apply(spec(e2e_home, name, "flaky", "v2"))
        assert weights(e2e_home, name) == {"r0002": 100}
        live_at = time.time()
        time.sleep(2.0)

        # one guard run, judging one window, rolls it back
        code, res, took = cli_guard(name)
        back_at = time.time()
        assert (code, res["outcome"], res["release"], res["rolled_back_to"]) == (10, "rolled_back", "r0002", "r0001")
        assert "error_rate" in res["reason"] and took < 10
        assert weights(e2e_home, name) == {"r0001": 100}
        assert back_at - live_at < 2.0 + took + 1.0

        # a second guard while another operation holds the lock does nothing, and says why
        before = len(journal(e2e_home, name))
        with lock_held(e2e_home, name):
            code, res, _ = cli_guard(name)
            assert (code, res["outcome"]) == (6, "locked")
            assert "deploy by someone else" in res["reason"] and "did nothing" in res["reason"]
            rep = api_guard(name)
            assert (rep.outcome, rep.exit_code) == ("locked", 6) and f"pid {os.getpid()}" in rep.reason
        ops = journal(e2e_home, name)
        assert [o.step for o in ops[before:] if not o.step.startswith("lock")] == []
        assert weights(e2e_home, name) == {"r0001": 100}

        time.sleep(0.5)
        data = load.stop()

    # clients: every failure came from v2 while it was live; v1 never failed
    failures = failures_by_release(data)
    assert failures.get("r0001", 0) == 0 and failures["r0002"] > 0 and data["transport_errors"] == {}
    after = {(s, r) for sent, _, s, r in data["timeline"] if sent > back_at + 0.2}
    assert after == {(200, "r0001")}
    # the ledger: v2 rolled back, marked failed with the guard's evidence
    ledger = Ledger(e2e_home / "ledger.db")
    try:
        row = ledger.release(name, "r0002")
        live = ledger.live_release(name)
    finally:
        ledger.close()
    assert live is not None and live.id == "r0001"
    assert row is not None and row.status == "rolled_back" and row.outcome == "failed"
    assert any(ev["gate"] == "error_rate" and ev["outcome"] == "fail" for ev in row.evidence)
    assert any(o.step == "guard:error_rate" and o.phase == "fail" for o in journal(e2e_home, name))


@pytest.mark.timeout(90)
def test_guard_with_nothing_to_roll_back_to(e2e_home: Path) -> None:
    name = "solo"
    ep = deployer.apply(spec(e2e_home, name, "flaky", "v1"))
    assert ep.url
    gates = e2e_home.parent / "gates.yaml"
    gates.write_text(json.dumps({
        "name": name, "model": {"flavor": "container", "image": "unused"},
        "gates": [{"type": "metric", "metric": "error_rate", "max": 0.05, "min_samples": 10, "failure_limit": 3}],
    }))
    with Load(ep.url, e2e_home.parent / "load.json", seconds=30, concurrency=4, rps=100) as load:
        time.sleep(2.0)
        code, res, _ = cli_guard(name)
        rep = api_guard(name)
        # a gate that needs three failures still decides within one run (it used to say "inconclusive")
        before = len(journal(e2e_home, name))
        start = time.monotonic()
        three = deployer.guard(name, gates_from=gates, window=WINDOW)
        took = time.monotonic() - start
        load.stop()
    assert (code, res["outcome"], res["release"], res["rolled_back_to"]) == (11, "no_rollback_target", "r0001", None)
    assert (rep.outcome, rep.exit_code) == ("no_rollback_target", 11)
    assert (three.outcome, three.exit_code) == ("no_rollback_target", 11), three.reason
    assert "3 failure(s), limit 3" in three.reason and took < 4.0
    assert [o.phase for o in journal(e2e_home, name)[before:] if o.step.startswith("guard:")] == ["fail"] * 3
    assert weights(e2e_home, name) == {"r0001": 100}
    ledger = Ledger(e2e_home / "ledger.db")
    try:
        row = ledger.release(name, "r0001")
    finally:
        ledger.close()
    assert row is not None and row.status == "live" and "error_rate" in (row.reason or "")
    assert any(ev["outcome"] == "fail" for ev in row.evidence)


@pytest.mark.timeout(30)
def test_deployer_guard_stays_callable_once_its_module_is_imported() -> None:
    """Regression: the verb's module used to be ``deployer.guard``; importing it (the CLI does) rebound
    the package attribute to the module, so the second ``deployer.guard(...)`` of a session raised
    "'module' object is not callable". The module is ``deployer.guards`` now."""
    import importlib

    assert callable(deployer.guard)
    importlib.import_module("deployer.guards")
    assert callable(deployer.guard)
    with pytest.raises(SpecError):
        deployer.guard("nothing-to-check")
    with pytest.raises(SpecError):
        deployer.guard("nothing-to-check")
