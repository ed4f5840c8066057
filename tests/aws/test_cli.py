"""The CLI as a user runs it against AWS: a subprocess, credentials from the environment, and
`AWS_ENDPOINT_URL` pointing at moto over HTTP on loopback (with deployer_aws.testing in the server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from deployer.testing import make_model

from .helpers import BUCKET, REGION, ROLE, SKLEARN_CONTAINER

pytestmark = pytest.mark.timeout(240)


def _cli(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", *args], env=env, capture_output=True, text=True, timeout=180
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return proc.returncode, lines, proc.stderr


def _spec(tmp: Path, seed: int) -> Path:
    model = make_model(tmp / "models", seed)
    path = tmp / f"churn-{seed}.yaml"
    path.write_text(
        "name: churn\n"
        f"target: {{provider: aws, region: {REGION}}}\n"
        f"model: {{path: {model}, flavor: sklearn}}\n"
        "resources: {instance_type: ml.m5.large, replicas: 1}\n"
        f"provider_options: {{bucket: {BUCKET}, role_arn: '{ROLE}', sklearn_version: '{SKLEARN_CONTAINER}'}}\n"
    )
    return path


def test_deploy_redeploy_rollback_destroy_through_the_cli(
    moto_server: str, sagemaker_fake: Any, tmp_path: Path
) -> None:
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    boto3.client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(Bucket=BUCKET)
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_server, "DEPLOYER_HOME": str(tmp_path / "home")}

    code, out, err = _cli(env, "deploy", str(_spec(tmp_path, 1)), "--json")
    assert code == 0, err
    assert out[-1]["kind"] == "result" and out[-1]["outcome"] == "deployed" and out[-1]["release"] == "r0001"
    assert any(e["kind"] == "progress" and e["task"] == "upload" for e in out)

    code, out, err = _cli(env, "deploy", str(_spec(tmp_path, 1)), "--json")
    assert code == 0 and out[-1]["outcome"] == "unchanged", err
    assert not any(e["kind"] in ("progress", "step.started") for e in out)

    code, out, err = _cli(env, "deploy", str(_spec(tmp_path, 2)), "--json")
    assert code == 0 and out[-1]["release"] == "r0002", err
    code, out, err = _cli(env, "rollback", "churn", "--json")
    assert code == 0 and out[-1]["release"] == "r0001", err
    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_server)
    weights = {
        v["VariantName"]: v["CurrentWeight"] for v in sm.describe_endpoint(EndpointName="churn")["ProductionVariants"]
    }
    assert weights.get("r0001") and not weights.get("r0002")

    code, out, err = _cli(env, "status", "churn", "--json")
    assert code == 0 and out[-1]["live"] == "r0001" and out[-1]["provider"] == "aws", err
    code, out, err = _cli(env, "history", "churn", "--json")
    statuses = {r["id"]: r["status"] for r in out[-1]["releases"]}
    assert statuses == {"r0001": "live", "r0002": "rolled_back"}

    code, out, err = _cli(env, "destroy", "churn", "--json")
    assert code == 0, err
    assert sm.list_endpoints(NameContains="churn")["Endpoints"] == []


def test_bad_credentials_endpoint_gives_a_typed_error_and_exit_code(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "DEPLOYER_HOME": str(tmp_path / "home"),
        "AWS_MAX_ATTEMPTS": "1",
    }
    code, _, err = _cli(env, "deploy", str(_spec(tmp_path, 1)))
    assert code == 3, err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("error: ")
