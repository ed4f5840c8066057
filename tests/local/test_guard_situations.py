"""The guard in the situations it exists for, with real processes, and the documented recipes' verdicts.

* the supervisor killed with SIGKILL (every caller refused): ``endpoint_down`` (13), never healthy;
* a deploy killed at 50% with a candidate that answers 500: the candidate is rolled back (10) and the
  report names both releases with their shares and verdicts;
* an idle endpoint: ``inconclusive`` (12), which the recipes fail unless the job opts in.

Each guard runs as ``deployer guard ... --json`` in a child process, as a scheduler would, and its exit
code goes through the systemd and CI recipes read from docs/operations.md (:mod:`.recipes`).
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
from deployer.ledger import Ledger
from deployer.spec import Spec

from .load import Load
from .models import e2e_home_fixture, local_provider, model_spec, spec_dict, write_spec  # noqa: F401 - a fixture
from .recipes import ci_passes, job_outcomes

KILLER = r"""
import os, signal, sys
import deployer
def hook(event):
    if event.kind == "step.started" and event.step == "bake":
        os.kill(os.getpid(), signal.SIGKILL)
deployer.apply(sys.argv[1], on_event=hook)
"""


def cli_guard(name: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    """``deployer guard NAME --json`` in a child process: (exit code, result line, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", "guard", name, "--max-error-rate", "0.05", "--window", "2s",
         "--min-samples", "10", "--json", *extra],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )
    results = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith('{"kind": "result"')]
    assert results, (proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, results[-1], proc.stderr


def cli_status(name: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "deployer", "status", name], capture_output=True, text=True,
                          timeout=30, env=os.environ.copy())
    return proc.returncode, proc.stdout


def weights(home: Path, name: str) -> dict[str, int]:
    obs = local_provider(home).observe(name)
    assert obs is not None
    return dict(obs.traffic.weights)


def statuses(home: Path, name: str) -> dict[str, str]:
    ledger = Ledger(home / "ledger.db")
    try:
        return {r.id: r.status for r in ledger.releases(name)}
    finally:
        ledger.close()


@pytest.mark.timeout(90)
def test_guard_after_sigkill_of_the_supervisor_is_endpoint_down(e2e_home: Path) -> None:
    name = "killed"
    ep = deployer.apply(Spec.model_validate(spec_dict(name, model_spec("healthy", e2e_home.parent, "v1"))))
    assert ep.url
    # idle first: reachable, judged, no traffic -> inconclusive, which no recipe counts as success by default
    code, res, _ = cli_guard(name)
    assert (code, res["outcome"]) == (12, "inconclusive")
    assert job_outcomes(code) == {"systemd": False, "ci": False}
    assert ci_passes(code, ALLOW_INCONCLUSIVE="true")

    pid = int(local_provider(e2e_home).observe(name).meta["pid"])  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # its workers die with it: callers are refused
        try:
            ep.predict([[1.0, 2.0, 3.0, 4.0]])
        except Exception:  # noqa: BLE001 - any failure to answer is what we wait for
            break
        time.sleep(0.1)
    else:
        pytest.fail("the endpoint still answers after its supervisor was killed")

    code, res, _ = cli_guard(name, "--probe", "[[1.0, 2.0, 3.0, 4.0]]")
    assert (code, res["outcome"], res["release"]) == (13, "endpoint_down", "r0001"), res
    assert [(r["id"], r["weight"], r["verdict"]) for r in res["releases"]] == [("r0001", 100, "down")]
    assert "supervisor is not running" in res["reason"] and "deployer deploy" in res["reason"]
    assert job_outcomes(code) == {"systemd": False, "ci": False}

    # status agrees: failed, with its own exit code, no "None" anywhere
    code, out = cli_status(name)
    assert code == 15, out
    assert "None" not in out and "failed" in out


@pytest.mark.timeout(120)
def test_guard_rolls_back_a_failing_candidate_left_at_50_percent_by_a_killed_deploy(e2e_home: Path) -> None:
    name = "split"
    ep = deployer.apply(Spec.model_validate(spec_dict(name, model_spec("healthy", e2e_home.parent, "v1"))))
    assert ep.url
    v2 = write_spec(e2e_home.parent / "v2.yaml", spec_dict(
        name, model_spec("failing", e2e_home.parent, "v2"),
        strategy={"type": "canary", "steps": [{"weight": 50, "bake_s": 60}, {"weight": 100, "bake_s": 0}]},
    ))
    proc = subprocess.run([sys.executable, "-c", KILLER, str(v2)], capture_output=True, text=True, timeout=90,
                          env=os.environ.copy())
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert weights(e2e_home, name) == {"r0001": 50, "r0002": 50}
    assert statuses(e2e_home, name) == {"r0001": "live", "r0002": "deploying"}

    with Load(ep.url, e2e_home.parent / "load.json", seconds=40, concurrency=4, rps=100) as load:
        load.wait_for(100)
        code, res, _ = cli_guard(name)
        after = weights(e2e_home, name)
        load.stop()
    assert (code, res["outcome"], res["release"], res["rolled_back_to"]) == (10, "rolled_back", "r0002", "r0001"), res
    verdicts = {r["id"]: (r["weight"], r["role"], r["verdict"]) for r in res["releases"]}
    assert verdicts == {"r0001": (50, "live", "pass"), "r0002": (50, "candidate", "fail")}
    assert after == {"r0001": 100}
    assert statuses(e2e_home, name) == {"r0001": "live", "r0002": "failed"}
    assert job_outcomes(code) == {"systemd": True, "ci": True}
