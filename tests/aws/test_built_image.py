"""An onnx model on SageMaker (moto) served by the image ``deployer build`` made: the fake runs that image's
runtime under SageMaker's container contract, as a process, and the predictions are the model's."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from deployer_aws import testing as fakes
from deployer_aws.provider import AwsProvider

from deployer import artifacts
from deployer.containers import write_context
from deployer.records import Traffic
from deployer.spec import Spec

from .helpers import REGION, make_provider, release, wait

pytestmark = pytest.mark.timeout(120)

ROWS = [[0.5, -1.0, 0.2, 0.0], [-2.0, 0.3, 1.1, -0.4], [0.05, 0.0, 0.0, 0.0]]


def test_an_onnx_model_deploys_on_the_built_image_and_serves_real_predictions(
    aws: None, sagemaker_fake: fakes.SageMakerFake, tmp_path: Path
) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 4))
    clf = LogisticRegression().fit(x, (x[:, 0] + x[:, 2] > 0).astype(int))
    src = tmp_path / "onnx-model"
    src.mkdir()
    (src / "model.onnx").write_bytes(to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}).SerializeToString())
    spec = Spec.model_validate(
        {
            "name": "churn",
            "target": {"provider": "aws", "region": REGION},
            "model": {"path": str(src), "flavor": "onnx"},
        }
    )
    context = write_context(spec, tmp_path / "context")
    image = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/deployer/churn:{context.digest[:12]}"
    sagemaker_fake.runtime.images[image] = context.path  # the image, pushed to ECR
    provider: AwsProvider = make_provider(tmp_path, image=image)
    packaged = artifacts.package(src, tmp_path / "pkg", flavor="onnx")
    assert packaged.digest == context.artifact, "the image and the release carry the same artifact"
    ref = provider.store().put(packaged.path, packaged.digest, sha256=packaged.sha256)
    status = wait(provider, provider.deploy_release(release("r0001", ref, flavor="onnx"), Traffic()))
    assert status.state == "succeeded", status.message
    expected = clf.predict(np.asarray(ROWS)).tolist()
    resp = provider.invoke("churn", {"instances": ROWS})
    assert resp.status == 200 and resp.body == {"predictions": expected, "release": "r0001"}
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    csv = "\n".join(",".join(str(v) for v in row) for row in ROWS)
    out = runtime.invoke_endpoint(EndpointName="churn", Body=csv.encode(), ContentType="text/csv")
    assert json.loads(out["Body"].read())["predictions"] == expected
    bad = provider.invoke("churn", {"instances": [[1.0, 2.0]]})
    assert bad.status != 200, "the runtime refuses rows of the wrong width"
