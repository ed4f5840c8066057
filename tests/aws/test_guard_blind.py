"""A guard without AWS credentials is blind: an AuthError (exit 3), never "inconclusive" (12), and the
documented systemd and CI recipes (docs/operations.md) fail the job.

The guard runs as a scheduler runs it: ``deployer guard`` in a child process with ``AWS_ENDPOINT_URL``
on moto over loopback and every credential source removed from its environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local.recipes import job_outcomes

from deployer.engine import target_record
from deployer.ledger import Ledger
from deployer.records import Release
from deployer.spec import Spec

from .helpers import REGION, TEST_OPTIONS

pytestmark = pytest.mark.timeout(60)

CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                   "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                   "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def test_guard_without_credentials_is_an_auth_error_and_fails_the_recipes(moto_server: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = Spec.model_validate({
        "name": "churn", "target": {"provider": "aws", "region": REGION},
        "model": {"flavor": "container", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1"},
        "provider_options": TEST_OPTIONS,
    })
    ledger = Ledger(home / "ledger.db")  # the endpoint as a deploy with credentials left it
    try:
        ledger.upsert_endpoint("churn", "aws", target_record(spec))
        ledger.add_release(Release(id="r0001", endpoint="churn", fingerprint="fp-1", flavor="container",
                                   image=spec.model.image), spec_hash="h")
        ledger.set_release("churn", "r0001", status="live", running=True)
    finally:
        ledger.close()
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(DEPLOYER_HOME=str(home), AWS_ENDPOINT_URL=moto_server, AWS_EC2_METADATA_DISABLED="true",
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", "guard", "churn", "--max-error-rate", "0.01", "--window", "10m", "--json"],
        env=env, capture_output=True, text=True, timeout=50,
    )
    last = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert (last["kind"], last["error"]) == ("error", "AuthError"), last
    assert "credentials" in (last["message"] + (last["hint"] or "")).lower()
    assert job_outcomes(proc.returncode) == {"systemd": False, "ci": False}
