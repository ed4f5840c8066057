"""The CLI as a user runs it against Azure: a subprocess whose environment points Blob at Azurite
(``AZURE_STORAGE_CONNECTION_STRING``) and ARM at the fake (``DEPLOYER_AZURE_ENDPOINT_URL``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from armfake import ArmFake
from conftest import SUB

from deployer.testing import make_model

pytestmark = pytest.mark.timeout(240)


def _cli(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", *args], env=env, capture_output=True, text=True, timeout=180
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{") and x.endswith("}")]
    return proc.returncode, lines, proc.stdout, proc.stderr


def _spec(tmp: Path, seed: int) -> Path:
    model = make_model(tmp / "models", seed)
    path = tmp / f"churn-{seed}.yaml"
    path.write_text(
        "name: churn-az\n"
        f"target: {{provider: azure, region: eastus, subscription: '{SUB}', workspace: rg/ws}}\n"
        f"model: {{path: {model}, flavor: sklearn}}\n"
        "resources: {instance_type: Standard_DS3_v2, replicas: 1}\n"
        "provider_options: {container: models, tags: {team: risk}}\n"
    )
    return path


@pytest.mark.slow
def test_deploy_redeploy_status_destroy_through_the_cli(arm: ArmFake, tmp_path: Path) -> None:
    env = dict(os.environ)
    code, out, stdout, err = _cli(env, "deploy", str(_spec(tmp_path, 1)), "--json")
    assert code == 0, err
    assert out[-1]["kind"] == "result" and out[-1]["outcome"] == "deployed" and out[-1]["release"] == "r0001"
    assert any(e["kind"] == "progress" and e["task"] == "upload" for e in out)

    code, out, _, err = _cli(env, "deploy", str(_spec(tmp_path, 1)), "--json")
    assert code == 0 and out[-1]["outcome"] == "unchanged", err
    assert not any(e["kind"] in ("progress", "step.started") for e in out)

    traffic = arm.resources[("endpoint", "churn-az")]["properties"]["traffic"]
    assert traffic == {"r0001": 100}

    code, out, stdout, err = _cli(env, "status", "churn-az", "--json")
    assert code == 0 and out[-1]["live"] == "r0001" and out[-1]["provider"] == "azure", err
    key = arm.resources[("endpoint", "churn-az")]["_key"]
    ledger = (Path(env["DEPLOYER_HOME"]) / "ledger.db").read_bytes()
    assert key not in stdout and key not in err and key.encode() not in ledger

    code, out, _, err = _cli(env, "destroy", "churn-az", "--json")
    assert code == 0, err
    assert ("endpoint", "churn-az") not in arm.resources


def test_a_bad_name_is_refused_offline_with_the_field(arm: ArmFake, tmp_path: Path) -> None:
    spec = _spec(tmp_path, 1)
    spec.write_text(spec.read_text().replace("name: churn-az", "name: " + "x" * 40))
    code, _, _, err = _cli(dict(os.environ), "plan", str(spec))
    assert code == 2 and "name" in err and "3-32" in err, err
    assert arm.calls == []


def test_iam_policy_prints_a_custom_role(arm: ArmFake) -> None:
    code, _, stdout, err = _cli(dict(os.environ), "iam-policy", "azure", "--account", SUB)
    assert code == 0, err
    role = json.loads(stdout)
    assert role["IsCustom"] is True and role["AssignableScopes"] == [f"/subscriptions/{SUB}"]
    assert "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write" in role["Actions"]
    assert any(a.endswith("/blobs/write") for a in role["DataActions"])
