"""The generated inference handler, run as the prebuilt scikit-learn container runs it (the fake's
InvokeEndpoint: bundle and artifact from S3, model_fn / input_fn / predict_fn / output_fn)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from deployer_aws.provider import AwsProvider

from deployer import artifacts
from deployer.records import Traffic
from deployer.testing import make_model

from .helpers import REGION, release, wait

pytestmark = pytest.mark.timeout(90)

ROWS = [[0.5, -1.0, 0.2, 0.0], [-2.0, 0.3, 1.1, -0.4], [0.05, 0.0, 0.0, 0.0]]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model", seed=3)


@pytest.fixture
def deployed(provider: AwsProvider, model: Path, tmp_path: Path) -> AwsProvider:
    packaged = artifacts.package(model, tmp_path / "pkg")
    ref = provider.store().put(packaged.path, packaged.digest, sha256=packaged.sha256)
    assert wait(provider, provider.deploy_release(release("r0001", ref), Traffic())).state == "succeeded"
    return provider


def _expected(model: Path) -> list[Any]:
    return list(joblib.load(model).predict(np.asarray(ROWS)).tolist())


def test_json_payload_gives_the_models_predictions(deployed: AwsProvider, model: Path) -> None:
    resp = deployed.invoke("churn", {"instances": ROWS})
    assert resp.status == 200 and resp.release == "r0001"
    assert resp.body == {"predictions": _expected(model), "release": "r0001"}
    assert deployed.invoke("churn", ROWS).body["predictions"] == _expected(model)  # a bare list of rows


def test_csv_payload_gives_the_models_predictions(deployed: AwsProvider, model: Path) -> None:
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    csv = "\n".join(",".join(str(x) for x in row) for row in ROWS) + "\n"
    resp = runtime.invoke_endpoint(EndpointName="churn", Body=csv.encode(), ContentType="text/csv")
    assert resp["InvokedProductionVariant"] == "r0001"
    assert json.loads(resp["Body"].read())["predictions"] == _expected(model)


def test_a_payload_the_model_cannot_take_is_a_model_error(deployed: AwsProvider) -> None:
    resp = deployed.invoke("churn", {"instances": [[1.0, 2.0]]})  # 2 features, the model wants 4
    assert resp.status == 500 and "features" in str(resp.body)
