"""A real image, built and run: the sklearn and onnx models' images built offline (a wheelhouse from this
machine, ``--network none``) on a base image made from Debian packages, each run on 127.0.0.1 and asked
for predictions through SageMaker's ``/ping`` + ``/invocations`` and the Open Inference Protocol routes.

Marked ``container``: run by ``.ci/run`` (which installs and starts the engine, see
``.ci/container-engine``) or with ``DEPLOYER_CONTAINER_TESTS=1``; where the engine cannot be started
the tests fail and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployer.containers import build
from deployer.testing.processes import free_port
from tests.containers.conftest import ROWS, Flavored
from tests.containers.test_build import spec_of

pytestmark = [pytest.mark.container, pytest.mark.timeout(600)]

ENGINE_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "container-engine"
CACHE = Path.home() / ".cache" / "deployer-containers"
BASE = "deployer-test-base"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment that reaches a running Docker engine (started here when .ci/run has not)."""
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    with open(log, "wb") as out:
        up = subprocess.run([str(ENGINE_SCRIPT), "up"], stdout=subprocess.PIPE, stderr=out, timeout=540, check=False)
    if up.returncode != 0:
        pytest.fail(f"no container engine could be started here:\n{log.read_text()}")
    env = {**os.environ, "DOCKER_HOST": up.stdout.decode().strip()}
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = env["DOCKER_HOST"]
    try:
        yield env
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old
        subprocess.run([str(ENGINE_SCRIPT), "down"], capture_output=True, timeout=60, check=False)


def _docker() -> str:
    found = shutil.which("docker")
    assert found is not None, "the docker client is not installed"
    return found


@pytest.mark.parametrize("flavor", ["sklearn", "onnx"])
def test_the_image_serves_the_sagemaker_and_oip_contracts(
    flavor: str, flavored: dict[str, Flavored], engine: dict[str, str], tmp_path: Path
) -> None:
    model = flavored[flavor]
    lines: list[str] = []
    built = build(
        spec_of(model, name=f"iris-{flavor}"),
        tag=f"deployer-test/iris-{flavor}:latest",
        base_image=BASE,
        wheelhouse=True,
        offline=True,
        wheel_cache=CACHE / "wheels",
        on_event=lambda e: lines.append(getattr(e, "detail", "")),
    )
    assert built.image == f"deployer-test/iris-{flavor}:latest" and built.engine in ("docker", "podman")
    assert any(line.startswith("build step 1/") for line in lines), "the build's steps are reported"
    label = subprocess.run(
        [_docker(), "image", "inspect", "--format", '{{index .Config.Labels "ai.deployer.artifact"}}', built.image],
        capture_output=True, text=True, env=engine, check=True,
    ).stdout.strip()  # fmt: skip
    assert label == f"sha256:{built.context.artifact}", "the image says which artifact it serves"
    port = free_port()
    name = f"deployer-test-{flavor}-{port}"
    run = [_docker(), "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8080", built.image, "serve"]
    subprocess.run(run, capture_output=True, env=engine, check=True, timeout=60)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run([_docker(), "logs", name], capture_output=True, text=True, env=engine)
                raise AssertionError(f"the container never answered /ping:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.5)
        r = httpx.post(f"{base}/invocations", json=ROWS, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.expected
        assert httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200
        body = {"inputs": [{"name": "input", "shape": [len(ROWS), 4], "datatype": "FP64", "data": ROWS}]}
        r = httpx.post(f"{base}/v2/models/iris-{flavor}/infer", json=body, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == model.expected
    finally:
        subprocess.run([_docker(), "rm", "--force", name], capture_output=True, env=engine, timeout=60)
