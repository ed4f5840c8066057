"""The one decoder and encoder: every body shape the contracts accept, and the generated cloud scripts embed it."""

from __future__ import annotations

import numpy as np
import pytest
from deployer_aws import images
from deployer_azure import scoring

from deployer.serving import codec
from deployer.serving.codec import BadInput, decode, infer_body, predictions_body

ROWS = [[1.0, 2.0], [3.0, 4.0]]


def _tensor(name: str, shape: list[int], data: list[object]) -> dict[str, object]:
    return {"name": name, "shape": shape, "datatype": "FP64", "data": data}


def test_every_body_shape_gives_the_same_rows() -> None:
    assert decode(b"[[1.0, 2.0], [3.0, 4.0]]") == ROWS
    for key in ("instances", "inputs", "data"):
        assert decode(f'{{"{key}": [[1.0, 2.0], [3.0, 4.0]]}}'.encode()) == ROWS
    assert decode(b"1,2\n3,4\n", "text/csv; charset=utf-8") == ROWS
    assert codec.rows_of({"inputs": [_tensor("x", [2, 2], [1.0, 2.0, 3.0, 4.0])]}) == ROWS
    assert codec.rows_of({"inputs": [_tensor("x", [2, 2], ROWS)]}) == ROWS, "nested data is flattened by shape"
    columns = {"inputs": [_tensor("a", [2], [1.0, 3.0]), _tensor("b", [2, 1], [[2.0], [4.0]])]}
    assert codec.rows_of(columns) == [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}], "named columns"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/json", 400),
        (b"{not json", "application/json", 400),
        (b'{"rows": [[1]]}', "application/json", 400),
        (b"[]", "application/json", 422),
        (b"1,x\n", "text/csv", 422),
        (
            b'{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}]}',
            "application/json",
            422,
        ),
        (b'{"inputs": [{"name": "x", "shape": [1, 2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]}', "", 422),
    ],
)
def test_bodies_the_model_cannot_take_are_the_callers_error(body: bytes, content_type: str, status: int) -> None:
    with pytest.raises(BadInput) as err:
        decode(body, content_type)
    assert err.value.status == status and str(err.value)


def test_answers_carry_the_predictions_in_each_contracts_shape() -> None:
    assert predictions_body(np.array([1, 0]), "r0002") == {"predictions": [1, 0], "release": "r0002"}
    out = infer_body(np.array([[0.25, 0.75]], dtype=np.float32), "iris", "r0002", "q")
    assert out["outputs"] == [{"name": "predictions", "shape": [1, 2], "datatype": "FP32", "data": [0.25, 0.75]}]
    assert (out["model_name"], out["model_version"], out["id"]) == ("iris", "r0002", "q")
    assert infer_body(np.array(["a", "b"]), "m")["outputs"][0]["datatype"] == "BYTES"
    assert infer_body([1, 2.5], "m")["outputs"][0]["datatype"] == "FP64"
    assert infer_body([{"k": 1}], "m")["outputs"][0]["data"] == ['{"k": 1}']


def test_the_generated_cloud_scripts_embed_the_one_codec() -> None:
    source = codec.source()
    assert source in images.INFERENCE_SCRIPT and source in scoring.SCORING_SCRIPT
    compile(images.INFERENCE_SCRIPT, "inference.py", "exec")
    compile(scoring.SCORING_SCRIPT, "score.py", "exec")
