"""A python-flavor model on Azure ML served by the image ``deployer build`` made: a custom-container environment
naming the runtime's routes, the deployment without a scoring script, and the fake running that image's
runtime as a process under Azure ML's contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from armfake import ArmFake
from conftest import TARGET
from helpers import make_provider, settle

from deployer.artifacts import package
from deployer.containers import write_context
from deployer.errors import CapabilityError
from deployer.records import Release, Traffic
from deployer.spec import Spec

pytestmark = pytest.mark.timeout(120)

MODEL = """
class Model:
    @classmethod
    def load(cls, path):
        return cls()

    def predict(self, rows):
        return [float(sum(r)) for r in rows]
"""


def test_a_python_model_serves_from_its_built_image(arm: ArmFake, tmp_path: Path) -> None:
    src = tmp_path / "rowsum"
    src.mkdir()
    (src / "rowsum.py").write_text(MODEL)
    source = {"path": str(src), "flavor": "python", "entrypoint": "rowsum:Model"}
    spec = Spec.model_validate({"name": "sum-az", "target": TARGET, "model": source})
    with pytest.raises(CapabilityError, match="serving image") as err:
        make_provider(tmp_path / "home").validate(spec)
    assert err.value.hint is not None and "deployer build" in err.value.hint
    context = write_context(spec, tmp_path / "context")
    image = f"deployerdemo.azurecr.io/deployer/sum-az:{context.digest[:12]}"
    arm.images[image] = context.path  # the image, pushed to the workspace's registry
    p = make_provider(tmp_path / "home", serving_image=image)
    p.validate(spec.model_copy(update={"provider_options": {"serving_image": image}}))
    packaged = package(src, tmp_path / "pkg", flavor="python")
    ref = p.store().put(packaged.path, packaged.digest, sha256=packaged.sha256)
    release = Release(
        id="r0001", endpoint="sum-az", fingerprint="fp-r0001", artifact=ref, flavor="python", entrypoint="rowsum:Model"
    )
    assert settle(p, p.deploy_release(release, Traffic.all_to("r0001"))) == "succeeded"
    assert settle(p, p.route("sum-az", Traffic.all_to("r0001"))) == "succeeded"
    deployment = arm.resources[("deployment", "sum-az", "r0001")]["properties"]
    assert not deployment.get("codeConfiguration")
    assert deployment["environmentVariables"] == {
        "DEPLOYER_FLAVOR": "python",
        "DEPLOYER_RELEASE": "r0001",
        "DEPLOYER_ENTRYPOINT": "rowsum:Model",
    }
    resp = p.invoke("sum-az", [[1.0, 2.0], [3.0, 4.5]])
    assert resp.status == 200 and resp.body["predictions"] == [3.0, 7.5]
    assert resp.body["release"] == "r0001"
