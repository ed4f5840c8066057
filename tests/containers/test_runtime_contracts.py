"""The container runtime as a plain process under each cloud's container environment.

Each contract's own health and predict routes, the Open Inference Protocol routes and CSV where the
contract has it all give the same predictions, for the sklearn, onnx and python flavors.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from deployer.artifacts import unpack
from deployer.testing.processes import free_port
from tests.containers.conftest import ROWS, Flavored, runtime

FLAVORS = ("sklearn", "onnx", "python")


def _flavor_env(model: Flavored) -> dict[str, str]:
    env = {"DEPLOYER_FLAVOR": model.flavor, "DEPLOYER_RELEASE": "r0007"}
    if model.entrypoint:
        env["DEPLOYER_ENTRYPOINT"] = model.entrypoint
    return env


def _oip(base: str, name: str = "model") -> list[object]:
    body = {"id": "q1", "inputs": [{"name": "input", "shape": [len(ROWS), 4], "datatype": "FP64", "data": ROWS}]}
    r = httpx.post(f"{base}/v2/models/{name}/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "q1" and out["model_name"] == name and out["model_version"] == "r0007"
    assert out["outputs"][0]["shape"] == [len(ROWS)]
    assert httpx.get(f"{base}/v2/models/{name}/ready", timeout=5).status_code == 200
    return list(out["outputs"][0]["data"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_sagemaker_contract(flavor: str, flavored: dict[str, Flavored], tmp_path: Path) -> None:
    model = flavored[flavor]
    port = str(free_port())
    opt_ml_model = unpack(model.archive, tmp_path / "opt-ml-model")  # SageMaker unpacks ModelDataUrl here
    env = {"SAGEMAKER_BIND_TO_PORT": port, "DEPLOYER_MODEL_DIR": str(opt_ml_model), **_flavor_env(model)}
    with runtime(env, tmp_path / "runtime.log", ("serve",), ready="/ping"):
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/invocations", json=ROWS, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": model.expected, "release": "r0007"}
        assert r.headers["x-deployer-release"] == "r0007"
        csv = "\n".join(",".join(str(v) for v in row) for row in ROWS)
        r = httpx.post(f"{base}/invocations", content=csv, headers={"content-type": "text/csv"}, timeout=10)
        assert r.status_code == 200 and r.json()["predictions"] == model.expected, r.text
        assert _oip(base) == model.expected
        bad = httpx.post(f"{base}/invocations", content="1,x", headers={"content-type": "text/csv"}, timeout=10)
        assert bad.status_code == 422 and "not a number" in bad.json()["message"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_vertex_contract(flavor: str, flavored: dict[str, Flavored], tmp_path: Path) -> None:
    model = flavored[flavor]
    port = str(free_port())
    storage = tmp_path / "bucket" / "model"  # what AIP_STORAGE_URI names: the artifact directory
    storage.mkdir(parents=True)
    (storage / "model.tar.gz").write_bytes(model.archive.read_bytes())
    route = "/v1/endpoints/123/deployedModels/456"
    env = {
        "AIP_HTTP_PORT": port,
        "AIP_HEALTH_ROUTE": route,
        "AIP_PREDICT_ROUTE": f"{route}:predict",
        "AIP_STORAGE_URI": storage.as_uri(),
        **_flavor_env(model),
    }
    with runtime(env, tmp_path / "runtime.log", ready=route):
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}{route}:predict", json={"instances": ROWS}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.expected
        assert _oip(base) == model.expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_azureml_contract(flavor: str, flavored: dict[str, Flavored], tmp_path: Path) -> None:
    model = flavored[flavor]
    port = str(free_port())
    mount = tmp_path / "azureml-models" / "m" / "1"  # Azure ML mounts the registered model's files here
    mount.mkdir(parents=True)
    (mount / "model.tar.gz").write_bytes(model.archive.read_bytes())
    env = {"AZUREML_MODEL_DIR": str(tmp_path / "azureml-models"), "DEPLOYER_PORT": port, **_flavor_env(model)}
    with runtime(env, tmp_path / "runtime.log"):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/", timeout=5).status_code == 200
        for body in ({"data": ROWS}, {"inputs": ROWS}, ROWS):
            r = httpx.post(f"{base}/score", json=body, timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == model.expected
        assert _oip(base) == model.expected
        assert _oip(base, "r0007") == model.expected, "a release id is a model name too"
        assert httpx.get(f"{base}/v2/models/other/ready", timeout=5).status_code == 404
