"""Trying the aws provider offline, as docs/providers/aws.md tells a user to.

* ``python -m deployer_aws.testing`` starts moto with the SageMaker additions and prints what to
  export; a deploy and a redeploy (UpdateEndpoint) through the CLI work against it.
* A plain moto server has no UpdateEndpoint: its answer (Flask's HTML error page) becomes a typed
  error naming the API, at once, instead of HTML after every retry.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_aws import testing
from deployer_aws.errors import NotImplementedByEndpointError
from deployer_aws.provider import AwsProvider

from deployer.errors import TransientError
from deployer.records import ArtifactRef, Traffic
from deployer.testing import make_model

from .helpers import BUCKET, REGION, ROLE, SKLEARN_CONTAINER, make_provider, release, wait

pytestmark = pytest.mark.timeout(150)


def _spec(tmp: Path, seed: int) -> Path:
    path = tmp / f"churn-{seed}.yaml"
    path.write_text(
        "name: churn\n"
        f"target: {{provider: aws, region: {REGION}}}\n"
        f"model: {{path: {make_model(tmp / 'models', seed)}, flavor: sklearn}}\n"
        "resources: {instance_type: ml.m5.large}\n"
        f"provider_options: {{bucket: {BUCKET}, role_arn: '{ROLE}', sklearn_version: '{SKLEARN_CONTAINER}'}}\n"
    )
    return path


def _exports(proc: subprocess.Popen[str], log: Path, deadline_s: float = 60) -> dict[str, str]:
    """The ``export K=V`` lines the helper prints before it says it is serving."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        text = log.read_text()
        if "# serving at" in text:
            return dict(
                line.removeprefix("export ").split("=", 1) for line in text.splitlines() if line.startswith("export ")
            )
        assert proc.poll() is None, text
        time.sleep(0.1)
    raise AssertionError(f"the helper did not start: {log.read_text()}")


@pytest.mark.slow
def test_the_offline_helper_serves_a_deploy_and_a_redeploy(tmp_path: Path) -> None:
    log = tmp_path / "helper.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log, "w") as out:
        helper = subprocess.Popen(
            [sys.executable, "-m", "deployer_aws.testing", "--bucket", BUCKET, "--region", REGION],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean,
        )
    try:
        exported = _exports(helper, log)
        assert exported["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert exported["AWS_DEFAULT_REGION"] == REGION
        env = {**clean, **exported, "DEPLOYER_HOME": str(tmp_path / "home")}
        for seed, rid in ((1, "r0001"), (2, "r0002")):
            proc = subprocess.run(
                [sys.executable, "-m", "deployer", "deploy", str(_spec(tmp_path, seed))],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"{rid} is live" in proc.stdout + proc.stderr
        status = subprocess.run(
            [sys.executable, "-m", "deployer", "status", "churn", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert '"live": "r0002"' in status.stdout, status.stdout + status.stderr
        assert f"{exported['AWS_ENDPOINT_URL']}/endpoints/churn/invocations" in status.stdout
    finally:
        helper.send_signal(signal.SIGTERM)
        helper.wait(timeout=30)
    assert helper.returncode == 0, log.read_text()


@pytest.fixture
def plain_moto(moto_server: str) -> Iterator[str]:
    """The session's moto server without the SageMaker additions, as ``moto_server`` runs it."""
    testing.uninstall()
    try:
        yield moto_server
    finally:
        testing.install()


def test_a_plain_moto_without_update_endpoint_is_a_typed_error_at_once(
    server_provider: AwsProvider, artifact_on_server: ArtifactRef, plain_moto: str
) -> None:
    op = server_provider.deploy_release(release("r0001", artifact_on_server), Traffic())
    assert wait(server_provider, op).state == "succeeded"  # plain moto: InService at once
    start = time.monotonic()
    with pytest.raises(NotImplementedByEndpointError) as e:
        server_provider.deploy_release(release("r0002", artifact_on_server), Traffic.all_to("r0001"))
    assert time.monotonic() - start < 10
    text = str(e.value)
    assert "UpdateEndpoint" in text and "this mock does not implement it" in text
    assert "<html" not in text.lower() and "python -m deployer_aws.testing" in text
    assert not isinstance(e.value, TransientError)


@pytest.fixture
def artifact_on_server(server_provider: AwsProvider, tmp_path: Path) -> ArtifactRef:
    from deployer import artifacts

    packaged = artifacts.package(make_model(tmp_path / "model", 1), tmp_path / "pkg")
    return server_provider.store().put(packaged.path, packaged.digest, sha256=packaged.sha256)


class _HtmlEverywhere(http.server.BaseHTTPRequestHandler):
    """Any endpoint that answers every request with a 404 web page."""

    requests: list[str] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests.append(self.headers.get("X-Amz-Target") or self.path)
        body = b"<!doctype html><html><body><h1>Not Found</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_PUT = _answer

    def log_message(self, *_: object) -> None:
        pass


def test_a_web_page_for_describe_is_not_read_as_a_missing_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404 web page must not mean "no endpoint" (which would plan a create over a live one)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlEverywhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        _HtmlEverywhere.requests.clear()
        with pytest.raises(NotImplementedByEndpointError) as e:
            make_provider(tmp_path).observe("churn")
        assert "DescribeEndpoint" in str(e.value) and "HTTP 404" in str(e.value)
        assert _HtmlEverywhere.requests == ["SageMaker.DescribeEndpoint"]  # botocore did not retry it
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
