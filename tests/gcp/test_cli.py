"""`deployer deploy configs/gcp-example.yaml` as a user types it: a subprocess, settings from the
environment, GCS on gcp-storage-emulator and Vertex AI / Cloud Monitoring on the fake, all on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployer.testing import make_model

from .conftest import BUCKET, PROJECT, SERVING_IMAGE, Emulator
from .fake_server import FakeServer

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]


def _cli(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return proc.returncode, lines, proc.stderr


@pytest.mark.slow
def test_deploy_the_example_config_through_the_cli(
    vertex: FakeServer, storage_emulator: Emulator, tmp_path: Path
) -> None:
    work = tmp_path / "project"
    (work / "configs").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "gcp-example.yaml", work / "configs" / "gcp-example.yaml")
    model = make_model(tmp_path / "m", 1)
    (work / "configs" / "models").mkdir()
    shutil.copy(model, work / "configs" / "models" / "churn.joblib")
    env = {
        **os.environ,
        "DEPLOYER_HOME": str(tmp_path / "home"),
        "GCP_PROJECT": PROJECT,
        "DEPLOYER_BUCKET": BUCKET,
        "DEPLOYER_SERVING_IMAGE": SERVING_IMAGE,
        "VERTEX_API_ENDPOINT": vertex.url,
        "MONITORING_API_ENDPOINT": vertex.monitoring.url,
        "STORAGE_EMULATOR_HOST": storage_emulator.url,
    }
    code, out, err = _cli(work, env, "deploy", "configs/gcp-example.yaml", "--json")
    assert code == 0, err
    assert out[-1]["kind"] == "result" and out[-1]["outcome"] == "deployed" and out[-1]["release"] == "r0001"
    assert any(e["kind"] == "progress" and e["task"] == "upload" for e in out)
    assert vertex.fake.calls["endpoints.deployModel"] == 1
    res = vertex.fake.endpoints["churn"].deployed_models[0].dedicated_resources
    assert (res.min_replica_count, res.max_replica_count) == (1, 4)  # the spec's autoscaling, set at deploy
    assert [(m.metric_name.rsplit("/", 2)[-2], m.target) for m in res.autoscaling_metric_specs] == [("cpu", 60)]

    calls = sum(vertex.fake.calls.values())
    code, out, err = _cli(work, env, "deploy", "configs/gcp-example.yaml", "--json")
    assert code == 0 and out[-1]["outcome"] == "unchanged", err
    assert sum(vertex.fake.calls.values()) - calls == 1  # one GetEndpoint, no write
    assert vertex.fake.errors == []

    from deployer import api

    api.destroy("churn", state=str(tmp_path / "home" / "ledger.db"))  # in-process: one interpreter less
    assert vertex.fake.endpoints == {} and vertex.fake.models == {}


def test_iam_policy_prints_roles_and_exact_permissions() -> None:
    from click.testing import CliRunner

    from deployer.cli import cli

    result = CliRunner().invoke(cli, ["iam-policy", "gcp", "--bucket", BUCKET])
    assert result.exit_code == 0, result.output
    policy = json.loads(result.output)
    assert "roles/aiplatform.user" in policy["roles"]
    assert "aiplatform.endpoints.deploy" in policy["custom_role"]["includedPermissions"]
    assert policy["bucket"] == f"gs://{BUCKET}/deployer/"
