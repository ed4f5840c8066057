"""A real Open Inference Protocol client (Triton's ``tritonclient.http``) against the local endpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import deployer
from tests.containers.conftest import ROWS, Flavored

pytestmark = pytest.mark.timeout(120)


def test_tritonclient_infers_against_the_local_endpoint(
    flavored: dict[str, Flavored], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    model = flavored["sklearn"]
    ep = deployer.deploy(str(model.src / "model.joblib"), name="iris-oip")
    try:
        assert ep.url is not None
        client = triton.InferenceServerClient(ep.url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("model") and client.is_model_ready("r0001")
        meta = client.get_model_metadata("model")
        assert meta["versions"] == ["r0001"] and meta["inputs"][0]["shape"] == [-1, 4]
        x = np.asarray(ROWS, dtype=np.float64)
        tensor = triton.InferInput("input", list(x.shape), "FP64")
        tensor.set_data_from_numpy(x, binary_data=False)
        result = client.infer(
            "model", [tensor], outputs=[triton.InferRequestedOutput("predictions", binary_data=False)]
        )
        assert result.as_numpy("predictions").tolist() == model.expected
        assert result.get_response()["model_version"] == "r0001"
        plain = client.infer("model", [tensor])  # no outputs named: the client asks for binary, JSON is answered
        assert plain.as_numpy("predictions").tolist() == model.expected
        wide = triton.InferInput("input", [1, 3], "FP64")
        wide.set_data_from_numpy(np.zeros((1, 3)), binary_data=False)
        with pytest.raises(InferenceServerException, match="needs 4 features"):
            client.infer("model", [wide])
        with pytest.raises(InferenceServerException):
            client.infer("no-such-model", [tensor])
    finally:
        ep.destroy()
